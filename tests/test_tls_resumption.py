"""TLS session resumption, counted by the server: which handshakes were full and which resumed."""

from __future__ import annotations

import pathlib
import select
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import trustme

import session_presets as sp
from session_presets._tls_sessions import ResumingSSLSocket

from .servers import LoopbackServer
from .waiting import wait_until


def _server_context(ca: trustme.CA, *, maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.maximum_version = maximum
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(params=["TLSv1.3", "TLSv1.2"])
def tls_server(request: pytest.FixtureRequest, ca: trustme.CA) -> Iterator[LoopbackServer]:
    """An HTTPS server speaking at most the given TLS version, with a context of its own (fresh ticket keys)."""
    maximum = ssl.TLSVersion.TLSv1_3 if request.param == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
    with LoopbackServer(_server_context(ca, maximum=maximum)) as server:
        yield server


def test_default_sessions_of_one_preset_resume_each_others_tls_sessions(
    tls_server: LoopbackServer, ca_bundle: str
) -> None:
    """Five caller-owned default sessions, one call each: one full handshake, then four resumed."""
    for _ in range(5):
        with sp.default_session(ca_bundle=ca_bundle) as session:
            assert session.get(tls_server.url()).text == "ok"
    assert (tls_server.full_handshakes, tls_server.resumed_handshakes) == (1, 4)


def test_resumed_connections_are_counted_in_stats(tls_server: LoopbackServer, ca_bundle: str) -> None:
    """stats.connections_resumed counts the connections whose handshake resumed, as the server saw."""
    with sp.default_session(ca_bundle=ca_bundle) as first:
        first.get(tls_server.url())
        assert first.stats.connections_resumed == 0
    with sp.default_session(ca_bundle=ca_bundle) as second:
        second.get(tls_server.url())
        second.flush()  # closes the idle connection: the next call connects again
        second.get(tls_server.url())
        assert second.stats.connections_resumed == 2
    assert tls_server.resumed_handshakes == 2


def test_ephemeral_sessions_never_share_tickets(tls_server: LoopbackServer, ca_bundle: str) -> None:
    """Each ephemeral session starts with a full handshake; only its own later connections resume."""
    for _ in range(3):
        with sp.ephemeral_session(ca_bundle=ca_bundle) as session:
            session.get(tls_server.url())
            session.flush()
            session.get(tls_server.url())
    assert (tls_server.full_handshakes, tls_server.resumed_handshakes) == (3, 3)


def test_a_session_cached_for_one_hostname_is_never_offered_to_another(
    tls_server: LoopbackServer, ca_bundle: str
) -> None:
    """127.0.0.1 and localhost are different origins: the second gets a full handshake."""
    with sp.default_session(ca_bundle=ca_bundle) as session:
        session.get(tls_server.url())
    with sp.default_session(ca_bundle=ca_bundle) as session:
        session.get(tls_server.localhost_url())
    assert (tls_server.full_handshakes, tls_server.resumed_handshakes) == (2, 0)


def test_a_session_is_never_offered_under_another_trust_configuration(
    tls_server: LoopbackServer, ca_bundle: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same CA under another path is another trust configuration: no resumption across it."""
    other = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    other.write_bytes(pathlib.Path(ca_bundle).read_bytes())
    with sp.default_session(ca_bundle=ca_bundle) as session:
        session.get(tls_server.url())
    with sp.default_session(ca_bundle=str(other)) as session:
        session.get(tls_server.url())
    assert (tls_server.full_handshakes, tls_server.resumed_handshakes) == (2, 0)
    with sp.default_session(ca_bundle=ca_bundle) as session:  # the first configuration again: resumes
        session.get(tls_server.url())
    assert (tls_server.full_handshakes, tls_server.resumed_handshakes) == (2, 1)


def test_connections_the_server_closes_after_each_response_still_resume(
    tls_server: LoopbackServer, ca_bundle: str
) -> None:
    """Responses with Connection: close (one connection per call): one full handshake, then every call resumes."""
    with sp.default_session(ca_bundle=ca_bundle) as session:
        for _ in range(3):
            assert session.get(tls_server.url("/close")).text == "closing"
        assert session.stats.connections_resumed == 2
    with sp.default_session(ca_bundle=ca_bundle) as session:
        assert session.get(tls_server.url("/close")).text == "closing"
    assert (tls_server.connections, tls_server.full_handshakes, tls_server.resumed_handshakes) == (4, 1, 3)


def test_reset_empties_the_cache(tls_server: LoopbackServer, ca_bundle: str) -> None:
    """After reset(), the next connection makes a full handshake."""
    with sp.default_session(ca_bundle=ca_bundle) as session:
        session.get(tls_server.url())
        session.reset()
        session.get(tls_server.url())
    assert (tls_server.full_handshakes, tls_server.resumed_handshakes) == (2, 0)


def test_shared_session_resumes_after_idle_connections_close(tls_server: LoopbackServer, ca_bundle: str) -> None:
    """A shared session's new connection to a known origin resumes."""
    sp.register_preset("resuming", ca_bundle=ca_bundle)
    session = sp.get_session("resuming")
    session.get(tls_server.url())
    session.flush()
    session.get(tls_server.url())
    assert (tls_server.full_handshakes, tls_server.resumed_handshakes) == (1, 1)


def test_a_server_that_refuses_resumption_gets_a_full_handshake(ca: trustme.CA, ca_bundle: str) -> None:
    """A server whose ticket keys changed rejects the offered session; the call still succeeds."""
    with LoopbackServer(_server_context(ca)) as server:
        with sp.default_session(ca_bundle=ca_bundle) as session:
            session.get(server.url())
        server.mock._ssl_context = _server_context(ca)  # new ticket keys: old tickets are unreadable
        with sp.default_session(ca_bundle=ca_bundle) as session:
            assert session.get(server.url()).text == "ok"
            assert session.stats.connections_resumed == 0
        assert (server.full_handshakes, server.resumed_handshakes) == (2, 0)


def test_a_server_without_tickets_gets_full_handshakes(ca: trustme.CA, ca_bundle: str) -> None:
    """No ticket, nothing cached: every new connection makes a full handshake and works."""
    context = _server_context(ca)
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0
    with LoopbackServer(context) as server:
        for _ in range(2):
            with sp.default_session(ca_bundle=ca_bundle) as session:
                assert session.get(server.url()).text == "ok"
        assert server.resumed_handshakes == 0
        assert server.full_handshakes == 2


def test_a_connection_looks_for_a_ticket_once_when_the_server_sends_none(
    ca: trustme.CA, ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a TLS 1.3 server without tickets, 20 calls on one connection read its TLS session once, not 20 times."""
    reads = _count_session_reads(monkeypatch)
    context = _server_context(ca)
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0
    with LoopbackServer(context) as server, sp.default_session(ca_bundle=ca_bundle) as session:
        for _ in range(20):
            assert session.get(server.url()).text == "ok"
        assert (server.full_handshakes, server.resumed_handshakes) == (1, 0)
    assert len(reads) == 1


def _count_session_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count reads of SSLSocket.session on the library's sockets (each costs CPython a copy of the session)."""
    reads: list[int] = []
    getter = ssl.SSLSocket.session.fget
    assert getter is not None

    def counted(sock: ssl.SSLSocket) -> ssl.SSLSession | None:
        reads.append(1)
        return getter(sock)  # type: ignore[no-any-return]

    monkeypatch.setattr(ResumingSSLSocket, "session", property(counted), raising=False)
    return reads


def test_an_ephemeral_session_of_one_call_keeps_no_tls_session(
    tls_server: LoopbackServer, ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A private cache dies with its session: one call then close reads no TLS session (nothing could use it)."""
    reads = _count_session_reads(monkeypatch)
    for _ in range(3):
        with sp.ephemeral_session(ca_bundle=ca_bundle) as session:
            assert session.get(tls_server.url()).text == "ok"
    assert (tls_server.full_handshakes, tls_server.resumed_handshakes) == (3, 0)
    assert reads == []


def _pool(session: sp.PresetSession, url: str) -> Any:
    """The connection pool that ``session`` uses for ``url``."""
    return session.get_adapter(url).get_connection_with_tls_context(requests.Request("GET", url).prepare(), True)


def test_a_private_cache_keeps_the_session_of_a_connection_the_server_closed(
    tls_server: LoopbackServer, ca_bundle: str
) -> None:
    """An ephemeral session whose idle connection the server closed resumes on its next connection."""
    with sp.ephemeral_session(ca_bundle=ca_bundle, retries=0) as session:
        assert session.get(tls_server.url()).text == "ok"
        idle = _pool(session, tls_server.url()).pool.queue[-1]
        tls_server.close_idle_connections()
        wait_until(lambda: select.select([idle.sock], [], [], 0)[0], 10.0, "the server's close to reach the client")
        assert session.get(tls_server.url()).text == "ok"
        assert session.stats.connections_resumed == 1
    assert (tls_server.connections, tls_server.full_handshakes, tls_server.resumed_handshakes) == (2, 1, 1)


def test_a_private_cache_keeps_sessions_while_other_calls_are_in_flight(
    tls_server: LoopbackServer, ca_bundle: str
) -> None:
    """With a streamed response open, an ephemeral session keeps its other connection's session for the next one."""
    with sp.ephemeral_session(ca_bundle=ca_bundle) as session:
        first = session.get(tls_server.url(), stream=True)  # holds connection 1
        assert session.get(tls_server.url()).text == "ok"  # connection 2, back in the pool while 1 is held
        second = session.get(tls_server.url(), stream=True)  # holds connection 2 again
        assert session.get(tls_server.url()).text == "ok"  # connection 3 resumes connection 2's session
        first.close()
        second.close()
    assert (tls_server.connections, tls_server.full_handshakes, tls_server.resumed_handshakes) == (3, 2, 1)
