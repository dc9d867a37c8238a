"""Two differences from requests that real clients meet, pinned as docs/migrating.md describes them."""

from __future__ import annotations

import gc
import ssl
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import trustme

import session_presets as sp

from .servers import LoopbackServer
from .waiting import wait_until

#: The filter docs/migrating.md gives for the leak guard's warning.
SILENCE: dict[str, Any] = {"message": "unclosed session for preset", "category": ResourceWarning}


def _collect_unclosed(make: Any) -> list[warnings.WarningMessage]:
    """Warnings emitted while a session built by ``make`` is dropped unclosed and collected."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = make()
        del session
        gc.collect()
    return [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_an_unclosed_session_collected_warns_where_requests_does_not() -> None:
    """A default_session() collected unclosed emits ResourceWarning; a requests.Session does not."""
    assert _collect_unclosed(requests.Session) == []
    (warning,) = _collect_unclosed(sp.default_session)
    assert "unclosed session for preset 'default'" in str(warning.message)


def test_the_documented_filter_silences_the_leak_guard() -> None:
    """The filter the docs give (message "unclosed session for preset", ResourceWarning) silences the leak guard."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", **SILENCE)
        session = sp.default_session()
        del session
        gc.collect()
    assert caught == []


@pytest.fixture(scope="module")
def client_pem(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A client certificate and its key in one PEM file, signed by the test CA."""
    path = tmp_path_factory.mktemp("client") / "client.pem"
    ca.issue_cert("client@example.test").private_key_and_cert_chain_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def mtls_server(ca: trustme.CA) -> Iterator[LoopbackServer]:
    """An HTTPS server that requires a client certificate signed by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    # TLS 1.2: the server checks the client certificate inside the handshake, so a client without one
    # fails there with SSLError. Under TLS 1.3 the refusal comes after the client's handshake ended,
    # and the client sees an SSLError or a reset depending on timing (seen under load).
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with LoopbackServer(context) as server:
        yield server


class _MutualTlsAdapter(requests.adapters.HTTPAdapter):
    """What a Google-auth-style client mounts: an HTTPAdapter whose context carries the client certificate."""

    def __init__(self, cert: str, ca_bundle: str) -> None:
        self._cert, self._ca_bundle = cert, ca_bundle
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        context = ssl.create_default_context(cafile=self._ca_bundle)
        context.load_cert_chain(self._cert)
        kwargs["ssl_context"] = context
        super().init_poolmanager(*args, **kwargs)


def _configure_mtls_channel(session: requests.Session, cert: str, ca_bundle: str) -> bool:
    """The client's rule: mount its mTLS adapter only over requests' own, untouched HTTPAdapter."""
    if type(session.get_adapter("https://")) is not requests.adapters.HTTPAdapter:
        return False
    session.mount("https://", _MutualTlsAdapter(cert, ca_bundle))
    return True


def test_a_client_that_wants_requests_own_adapter_skips_mtls(
    mtls_server: LoopbackServer, client_pem: str, ca_bundle: str
) -> None:
    """On a requests.Session the client's mTLS works; on a PresetSession it is skipped and the server refuses."""
    with requests.Session() as plain:
        assert _configure_mtls_channel(plain, client_pem, ca_bundle)
        assert plain.get(mtls_server.url()).text == "ok"
    with sp.default_session(ca_bundle=ca_bundle, retries=0) as session:
        assert not _configure_mtls_channel(session, client_pem, ca_bundle)
        with pytest.raises(requests.exceptions.SSLError):
            session.get(mtls_server.url())
    assert [seen.path for seen in mtls_server.requests] == ["/ok"]
    wait_until(lambda: mtls_server.handshake_errors, 10.0, "the server to record the refused handshake")


def test_client_cert_in_the_preset_gives_mtls_back(
    mtls_server: LoopbackServer, client_pem: str, ca_bundle: str
) -> None:
    """default_session(client_cert=...) presents the certificate: the server accepts the handshake and the request."""
    with sp.default_session(ca_bundle=ca_bundle, client_cert=client_pem) as session:
        assert session.get(mtls_server.url()).text == "ok"
    assert [seen.path for seen in mtls_server.requests] == ["/ok"]
    assert mtls_server.handshake_errors == []


def test_mounting_the_clients_adapter_gives_mtls_back(
    mtls_server: LoopbackServer, client_pem: str, ca_bundle: str
) -> None:
    """Mounting the client's own adapter on a PresetSession presents its certificate (ForeignAdapterWarning once)."""
    with sp.default_session(ca_bundle=ca_bundle) as session:
        with pytest.warns(sp.ForeignAdapterWarning):
            session.mount("https://", _MutualTlsAdapter(client_pem, ca_bundle))
        assert session.get(mtls_server.url()).text == "ok"
    assert [seen.path for seen in mtls_server.requests] == ["/ok"]
    assert mtls_server.handshake_errors == []
