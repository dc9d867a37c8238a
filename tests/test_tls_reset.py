"""reset() while a response is being read: no TLS session made before the reset is ever resumed after it."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import pytest
import trustme

import session_presets as sp

from .servers import LoopbackServer

BODY = 200_000


@pytest.fixture(params=["TLSv1.3", "TLSv1.2"])
def tls_server(request: pytest.FixtureRequest, ca: trustme.CA) -> Iterator[LoopbackServer]:
    """An HTTPS server at most at the given TLS version, with its own context (fresh ticket keys)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.maximum_version = ssl.TLSVersion.TLSv1_3 if request.param == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with LoopbackServer(context) as server:
        yield server


FACTORIES: dict[str, Callable[..., sp.PresetSession]] = {
    "default_session": sp.default_session,
    "ephemeral_session": sp.ephemeral_session,
}


@pytest.mark.parametrize("factory", sorted(FACTORIES))
@pytest.mark.parametrize("release", ["read", "close"])
def test_a_body_released_after_reset_does_not_bring_its_tls_session_back(
    factory: str, release: str, tls_server: LoopbackServer, ca_bundle: str
) -> None:
    """A streamed body read or closed after reset(): the next connection makes a full handshake, as the server saw."""
    with FACTORIES[factory](ca_bundle=ca_bundle) as session:
        streamed = session.get(tls_server.url(f"/ok?size={BODY}"), stream=True)
        session.reset()
        if release == "read":
            assert len(streamed.content) == BODY
        else:
            streamed.close()
        session.flush()  # the released connection closes: the next call must connect again
        assert session.get(tls_server.url()).text == "ok"
    assert (tls_server.full_handshakes, tls_server.resumed_handshakes) == (2, 0)


def test_another_session_of_the_preset_releasing_after_reset_does_not_refill_the_cache(
    tls_server: LoopbackServer, ca_bundle: str
) -> None:
    """The shared cache emptied by one session's reset() is not refilled by another session's pre-reset connection."""
    with sp.default_session(ca_bundle=ca_bundle) as other, sp.default_session(ca_bundle=ca_bundle) as session:
        streamed = other.get(tls_server.url(f"/ok?size={BODY}"), stream=True)
        session.reset()
        assert len(streamed.content) == BODY
        other.flush()
        assert session.get(tls_server.url()).text == "ok"
    assert (tls_server.full_handshakes, tls_server.resumed_handshakes) == (2, 0)


def test_sessions_made_after_reset_still_resume(tls_server: LoopbackServer, ca_bundle: str) -> None:
    """After reset(), the first new connection's TLS session is cached and resumed as usual."""
    with sp.default_session(ca_bundle=ca_bundle) as session:
        session.get(tls_server.url())
        session.reset()
        session.get(tls_server.url())
        session.flush()
        session.get(tls_server.url())
    assert (tls_server.full_handshakes, tls_server.resumed_handshakes) == (2, 1)
