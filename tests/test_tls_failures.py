"""TLS failures say what failed; CA bundles load once per shared context; verify=False stays apart."""

from __future__ import annotations

import datetime
import socket
import ssl
import warnings
from collections.abc import Iterator

import pytest
import requests
import trustme
from urllib3.exceptions import InsecureRequestWarning

from session_presets import InsecureSessionWarning, ephemeral_session
from session_presets import _tls as tls

from .fault_servers import leaf_context
from .servers import LoopbackServer
from .waiting import wait_until


@pytest.fixture
def serve() -> Iterator[object]:
    """Start HTTPS servers from given contexts; close them all at the end."""
    started: list[LoopbackServer] = []

    def start(context: ssl.SSLContext) -> LoopbackServer:
        server = LoopbackServer(context).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def _handshake_errors(server: LoopbackServer) -> list[str]:
    """What the server saw of failed handshakes, once its handler thread has recorded them."""
    wait_until(
        lambda: server.accepted > 0 and len(server.handshake_errors) >= server.accepted,
        10.0,
        "the server to record a handshake error for each connection it accepted",
    )
    return server.handshake_errors


def _contexts_in_use(session: object) -> list[ssl.SSLContext]:
    """The SSLContext of every HTTPS pool the session opened."""
    pools = session.adapter.poolmanager.pools  # type: ignore[attr-defined]
    # RecentlyUsedContainer refuses plain iteration; keys() is its snapshot.
    return [pools[key].conn_kw["ssl_context"] for key in pools.keys() if key.key_scheme == "https"]  # noqa: SIM118


def _ssl_failure(url: str, **overrides: object) -> requests.exceptions.SSLError:
    with ephemeral_session(retries=0, **overrides) as session, pytest.raises(requests.exceptions.SSLError) as info:
        session.get(url)
    return info.value


@pytest.mark.timeout(20)
def test_wrong_ca_is_refused(serve, ca_bundle: str) -> None:  # type: ignore[no-untyped-def]
    """A certificate from a CA the session does not trust fails with a verify-failed SSLError."""
    server = serve(leaf_context(trustme.CA(), "127.0.0.1"))
    error = _ssl_failure(server.url("/ok"), ca_bundle=ca_bundle)
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)
    assert "unable to get local issuer certificate" in str(error)
    assert server.requests == []
    assert ["unknown ca" in e for e in _handshake_errors(server)] == [True]


@pytest.mark.timeout(20)
def test_expired_certificate_is_refused(serve, ca: trustme.CA, ca_bundle: str) -> None:  # type: ignore[no-untyped-def]
    """An expired certificate fails with an SSLError that says it has expired."""
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)
    server = serve(leaf_context(ca, "127.0.0.1", not_after=past))
    error = _ssl_failure(server.url("/ok"), ca_bundle=ca_bundle)
    assert "certificate has expired" in str(error)
    assert server.requests == []
    assert ["certificate expired" in e for e in _handshake_errors(server)] == [True]


@pytest.mark.timeout(20)
def test_hostname_mismatch_is_refused(serve, ca: trustme.CA, ca_bundle: str) -> None:  # type: ignore[no-untyped-def]
    """A trusted certificate for another name fails with an SSLError naming the mismatch."""
    server = serve(leaf_context(ca, "localhost"))
    error = _ssl_failure(server.url("/ok"), ca_bundle=ca_bundle)
    assert "mismatch" in str(error).lower()
    assert "127.0.0.1" in str(error)
    assert server.requests == []
    assert ["bad certificate" in e for e in _handshake_errors(server)] == [True]


def _legacy_server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context offering only TLS 1.0 and 1.1 (callers silence their DeprecationWarning)."""
    context = leaf_context(
        ca, "127.0.0.1", minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1
    )
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _can_serve_tls11() -> str | None:
    """Return why this OpenSSL cannot complete a TLS 1.1 handshake, or None if it can."""
    if not getattr(ssl, "HAS_TLSv1_1", False):
        return "this OpenSSL was built without TLS 1.1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            ca = trustme.CA()
            server = _legacy_server_context(ca)
            client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client.check_hostname = False
            client.verify_mode = ssl.CERT_NONE
            client.set_ciphers("DEFAULT:@SECLEVEL=0")
            client.minimum_version = ssl.TLSVersion.TLSv1_1
            client.maximum_version = ssl.TLSVersion.TLSv1_1
        except (ssl.SSLError, ValueError) as exc:
            return f"this OpenSSL refuses to configure TLS 1.1 ({exc})"
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        done = 0
        for end, out, peer_in in ((c, c_out, s_in), (s, s_out, c_in)):
            try:
                end.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                return f"this OpenSSL cannot complete a TLS 1.1 handshake ({exc.reason})"
            peer_in.write(out.read())
        if done == 2:
            return None
    return "TLS 1.1 handshake did not complete in memory"


@pytest.mark.timeout(20)
def test_legacy_tls_server_is_refused(serve, ca: trustme.CA, ca_bundle: str) -> None:  # type: ignore[no-untyped-def]
    """A server offering only TLS 1.0/1.1 is refused under tls_min_version=TLSv1.2."""
    reason = _can_serve_tls11()
    if reason is not None:
        pytest.skip(reason)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = _legacy_server_context(ca)
    server = serve(context)
    error = _ssl_failure(server.url("/ok"), ca_bundle=ca_bundle)
    message = str(error).lower()
    assert "protocol" in message or "version" in message, message
    assert server.requests == []
    assert ["unsupported protocol" in e for e in _handshake_errors(server)] == [True]
    # Control: a client that allows TLS 1.1 does get through, so the refusal came from the floor.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(ca_bundle)
        client.set_ciphers("DEFAULT:@SECLEVEL=0")
        client.minimum_version = ssl.TLSVersion.TLSv1
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
            client.wrap_socket(raw, server_hostname="127.0.0.1") as tls_sock:
        assert tls_sock.version() in ("TLSv1", "TLSv1.1")


@pytest.mark.timeout(20)
def test_tls12_server_is_refused_under_tls13_minimum(serve, ca: trustme.CA, ca_bundle: str) -> None:  # type: ignore[no-untyped-def]
    """A TLS 1.2-only server is refused under tls_min_version=TLSv1.3, and accepted under TLSv1.2."""
    server = serve(leaf_context(ca, "127.0.0.1", maximum_version=ssl.TLSVersion.TLSv1_2))
    error = _ssl_failure(server.url("/ok"), ca_bundle=ca_bundle, tls_min_version="TLSv1.3")
    message = str(error).lower()
    assert "protocol" in message or "version" in message, message
    assert server.requests == []
    assert ["unsupported protocol" in e for e in _handshake_errors(server)] == [True]
    with ephemeral_session(ca_bundle=ca_bundle, tls_min_version="TLSv1.2") as session:
        assert session.get(server.url("/ok")).content == b"ok"
    assert [r.path for r in server.requests] == ["/ok"]


@pytest.mark.timeout(30)
def test_ca_bundle_loaded_once_for_twenty_sessions(https_server: LoopbackServer, ca_bundle: str) -> None:
    """20 ephemeral sessions with one ca_bundle: 20 new TLS connections, at most one CA load, store unchanged."""
    before = tls.ca_loads()
    shared = tls.get_ssl_context(tls.TrustConfig(ca_bundle=ca_bundle))
    stats_before = shared.cert_store_stats()
    assert stats_before["x509_ca"] >= 1
    for n in range(20):
        with ephemeral_session(ca_bundle=ca_bundle) as session:
            assert session.get(https_server.url(f"/ok?n={n}")).content == b"ok"
            assert _contexts_in_use(session) == [shared]
    assert tls.ca_loads() - before <= 1
    assert shared.cert_store_stats() == stats_before
    assert https_server.connections == 20
    assert sorted({r.connection for r in https_server.requests}) == list(range(1, 21))


@pytest.mark.timeout(30)
def test_verify_false_warns_once_and_keeps_the_verified_context_apart(
    https_server: LoopbackServer, ca_bundle: str
) -> None:
    """verify=False warns once per session, not per request; the verified shared context is untouched."""
    verified = tls.get_ssl_context(tls.TrustConfig(ca_bundle=ca_bundle))
    default = tls.get_ssl_context(tls.TrustConfig())
    snapshot = [(c.verify_mode, c.check_hostname, c.cert_store_stats()) for c in (verified, default)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ephemeral_session(verify=False) as session:
            for n in range(5):
                assert session.get(https_server.url(f"/ok?n={n}")).content == b"ok"
            [insecure] = _contexts_in_use(session)
    insecure_warnings = [w for w in caught if issubclass(w.category, InsecureRequestWarning)]
    assert [w.category for w in insecure_warnings] == [InsecureSessionWarning], [str(w.message) for w in caught]
    assert len(https_server.requests) == 5

    assert insecure is not verified
    assert insecure is not default
    assert [(c.verify_mode, c.check_hostname, c.cert_store_stats()) for c in (verified, default)] == snapshot
    assert verified.verify_mode == ssl.CERT_REQUIRED
    assert verified.check_hostname is True

    # A verified session built afterwards still refuses the throwaway CA it was not told about ...
    error = _ssl_failure(https_server.url("/ok"))
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)
    # ... and accepts it with the bundle, with no warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ephemeral_session(ca_bundle=ca_bundle) as session:
            assert session.get(https_server.url("/ok")).content == b"ok"
    assert [w for w in caught if issubclass(w.category, InsecureRequestWarning)] == []
    assert len(https_server.requests) == 6
