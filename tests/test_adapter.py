"""PresetAdapter and PresetSession request behaviour, checked against what the server saw."""

from __future__ import annotations

import ssl
import threading
import time

import pytest
import requests

from session_presets import ConfigError, InsecureSessionWarning, PresetAdapter, default_session, get_preset
from session_presets import _tls as sp_tls

from .servers import LoopbackServer


def test_preset_timeout_applies_when_call_gives_none(http_server: LoopbackServer) -> None:
    """requests passes timeout=None by default; the preset's read_timeout applies, a per-call timeout wins."""
    with default_session(read_timeout=0.2, retries=0) as session:
        with pytest.raises(requests.ReadTimeout, match="Read timed out"):
            session.get(http_server.url("/slow?delay=0.6"))
        assert session.get(http_server.url("/slow?delay=0.4"), timeout=3).content == b"slow"


def test_cache_headers_under_reload_policy(http_server: LoopbackServer) -> None:
    """cache_policy='reload' sends no-cache headers; 'protocol' sends none; a caller's header wins."""
    with default_session() as session:
        session.get(http_server.url("/echo"))
        session.get(http_server.url("/echo"), headers={"Cache-Control": "max-age=5"})
    first, second = http_server.requests
    assert (first.header("Cache-Control"), first.header("Pragma")) == ("no-cache", "no-cache")
    assert second.header("Cache-Control") == "max-age=5"
    with default_session(cache_policy="protocol") as session:
        session.get(http_server.url("/echo"))
    assert http_server.requests[-1].header("Cache-Control") is None
    assert http_server.requests[-1].header("Pragma") is None


def test_user_agent_and_default_headers(http_server: LoopbackServer) -> None:
    """The preset's User-Agent and extra headers reach the server."""
    with default_session(user_agent="probe/1", headers={"X-Team": "core"}) as session:
        session.get(http_server.url("/echo"))
    seen = http_server.requests[-1]
    assert (seen.header("User-Agent"), seen.header("X-Team")) == ("probe/1", "core")


def test_hundred_calls_one_connection(https_server: LoopbackServer, ca_bundle: str) -> None:
    """100 calls on one session open exactly one connection, as counted by the server."""
    with default_session(ca_bundle=ca_bundle) as session:
        for _ in range(100):
            session.get(https_server.url())
        assert session.stats.connections_opened == 1
    assert https_server.connections == 1
    assert len(https_server.requests) == 100


def test_pool_sizes_come_from_preset(http_server: LoopbackServer) -> None:
    """Without pool_block, pool_maxsize bounds the connections kept per host: 6 parallel calls, 2 kept, 4 closed."""
    gate = threading.Barrier(6)

    def wait_all(handler) -> None:  # type: ignore[no-untyped-def]
        gate.wait(5)
        handler.reply(200, b"ok")

    http_server.route("/gate", wait_all)
    with default_session(pool_maxsize=2, pool_connections=1, pool_block=False) as session:
        threads = [threading.Thread(target=session.get, args=(http_server.url("/gate"),)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert http_server.connections == 6
        for _ in range(4):
            session.get(http_server.url())
        assert http_server.connections == 6  # the two kept connections are reused
        assert session.adapter.poolmanager.connection_pool_kw["maxsize"] == 2


def test_old_connections_are_not_reused(http_server: LoopbackServer) -> None:
    """A connection older than max_connection_age is replaced by a new one."""
    with default_session(max_connection_age=0.1) as session:
        session.get(http_server.url())
        session.get(http_server.url())
        assert http_server.connections == 1
        time.sleep(0.2)
        session.get(http_server.url())
        assert http_server.connections == 2


def test_one_ca_load_per_trust_configuration(https_server: LoopbackServer, ca_bundle: str) -> None:
    """20 new HTTPS connections from 20 sessions load the CA bundle once, into one shared context."""
    sp_tls._clear_contexts()
    before = sp_tls.ca_loads()
    for _ in range(20):
        with default_session(ca_bundle=ca_bundle) as session:
            session.get(https_server.url())
    assert https_server.connections == 20
    assert sp_tls.ca_loads() - before == 1
    context = sp_tls.get_ssl_context(sp_tls.TrustConfig(ca_bundle=ca_bundle))
    assert context.cert_store_stats()["x509_ca"] == 1


def test_verify_false_warns_once_and_keeps_shared_context(https_server: LoopbackServer, ca_bundle: str) -> None:
    """verify=False warns once per session, uses its own context, and never touches the verified one."""
    verified = sp_tls.get_ssl_context(sp_tls.TrustConfig(ca_bundle=ca_bundle))
    with pytest.warns(InsecureSessionWarning) as record, default_session(verify=False) as session:
        for _ in range(3):
            session.get(https_server.url())
    assert len(record) == 1
    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname
    assert session.adapter._context is not verified


def test_per_call_verify_and_tls_errors(https_server: LoopbackServer, ca_bundle: str) -> None:
    """Without the CA the handshake fails; a per-call verify path succeeds on the same session."""
    with default_session() as session:
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            session.get(https_server.url())
        assert session.get(https_server.url(), verify=ca_bundle).status_code == 200


def test_bad_ca_bundle_fails_when_built(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A missing or unreadable CA bundle is a ConfigError when the session is built, not on a request."""
    with pytest.raises(ConfigError, match="ca_bundle='/nonexistent.pem'"):
        default_session(ca_bundle="/nonexistent.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="junk.pem"):
        default_session(ca_bundle=str(junk))


def test_client_cert_is_loaded_into_its_own_context(ca, ca_bundle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A client certificate gets a context of its own, and the server sees it during the handshake."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server_ctx)
    client = ca.issue_cert("client@example.org")
    pem = tmp_path / "client.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(pem))
    with LoopbackServer(server_ctx) as server:
        with default_session(ca_bundle=ca_bundle, client_cert=str(pem)) as session:
            assert session.get(server.url()).status_code == 200
            shared = sp_tls.get_ssl_context(sp_tls.TrustConfig(ca_bundle=ca_bundle))
            assert session.adapter._context is not shared
        with default_session(ca_bundle=ca_bundle) as session, pytest.raises(requests.exceptions.SSLError):
            session.get(server.url())
    with pytest.raises(ConfigError, match="client_cert"):
        default_session(client_cert=str(tmp_path / "missing.pem"))


def test_system_trust_store(https_server: LoopbackServer) -> None:
    """trust_store='system' builds a truststore context; the throwaway CA is not trusted by the OS."""
    pytest.importorskip("truststore")
    with default_session(trust_store="system") as session, pytest.raises(requests.exceptions.SSLError):
        session.get(https_server.url())


def test_tls_min_version_is_applied(ca_bundle: str) -> None:
    """tls_min_version sets the shared context's minimum protocol version."""
    context = sp_tls.get_ssl_context(sp_tls.TrustConfig(ca_bundle=ca_bundle, tls_min_version="TLSv1.3"))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3


def test_environment_proxy_read_once(http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY is read when the session is built; later changes to os.environ do not apply."""
    with LoopbackServer() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url("").rstrip("/"))
        with default_session(retries=0) as session:
            monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
            session.get("http://target.invalid/ok")
        assert proxy.requests[-1].path == "http://target.invalid/ok"


def test_no_proxy_bypasses(http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_PROXY hosts and networks go direct; other hosts use the proxy."""
    with LoopbackServer() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url("").rstrip("/"))
        for no_proxy in ("127.0.0.1", "127.0.0.0/8", "*"):
            monkeypatch.setenv("NO_PROXY", f"example.org, {no_proxy}")
            with default_session() as session:
                session.get(http_server.url())
        monkeypatch.setenv("NO_PROXY", ".example.org,localhost")
        with default_session() as session:
            session.get("http://a.example.org:1/ok", proxies={"http": proxy.url("").rstrip("/")})
            session.get(http_server.localhost_url())
            session.get("http://other.test/ok")
        assert len(http_server.requests) == 4
        assert [seen.path for seen in proxy.requests] == ["http://a.example.org:1/ok", "http://other.test/ok"]


def test_explicit_and_disabled_proxies(http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """proxies='none' ignores the environment; an explicit mapping is used as given."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with default_session(proxies="none") as session:
        assert session.get(http_server.url()).status_code == 200
    with LoopbackServer() as proxy, default_session(proxies={"http": proxy.url("").rstrip("/")}) as session:
        session.get("http://elsewhere.test/x")
        assert proxy.requests[-1].path == "http://elsewhere.test/x"


def test_store_credentials_reads_netrc_only_when_asked(http_server: LoopbackServer, tmp_path,  # type: ignore[no-untyped-def]
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """netrc is never read by default; store_credentials=True opts in."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password wonderland\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with default_session() as session:
        session.get(http_server.url("/echo"))
    assert http_server.requests[-1].header("Authorization") is None
    with default_session(store_credentials=True) as session:
        session.get(http_server.url("/echo"))
    assert (http_server.requests[-1].header("Authorization") or "").startswith("Basic ")


def test_adapter_can_be_mounted_on_plain_session(http_server: LoopbackServer) -> None:
    """PresetAdapter works on a plain requests.Session too, and applies its preset."""
    adapter = PresetAdapter(get_preset("default"))
    with requests.Session() as session:
        session.mount("http://", adapter)
        session.get(http_server.url("/echo"))
    assert http_server.requests[-1].header("Pragma") == "no-cache"
    assert adapter.counters.snapshot()["requests"] == 1


def test_requests_read_no_environment_and_no_files(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once built, a session's requests read neither os.environ nor netrc nor any file."""
    import os
    import sys

    with default_session() as session:
        session.get(http_server.url())  # warm: pools built

        class SpyEnviron(dict):  # type: ignore[type-arg]
            reads: list[str] = []

            def __getitem__(self, key):  # type: ignore[no-untyped-def]
                self.reads.append(key)
                return super().__getitem__(key)

            def get(self, key, default=None):  # type: ignore[no-untyped-def]
                self.reads.append(key)
                return super().get(key, default)

            def __iter__(self):  # type: ignore[no-untyped-def]
                self.reads.append("<iter>")
                return super().__iter__()

        spy = SpyEnviron(os.environ)
        monkeypatch.setattr(os, "environ", spy)
        opened: list[str] = []

        def audit(event: str, args: tuple) -> None:  # type: ignore[type-arg]
            if event in ("open", "os.listdir", "os.scandir") and threading.current_thread() is main:
                opened.append(f"{event}:{args[0]!r}")

        def no_netrc(*args: object, **kwargs: object) -> None:
            raise AssertionError("netrc was consulted")

        main = threading.current_thread()
        monkeypatch.setattr(requests.sessions, "get_netrc_auth", no_netrc)
        monkeypatch.setattr(requests.utils, "get_netrc_auth", no_netrc)
        sys.addaudithook(audit)
        for _ in range(5):
            session.get(http_server.url())
        main = None  # type: ignore[assignment]  # disarm the hook (audit hooks cannot be removed)
        assert spy.reads == []
        assert opened == []


def test_read_timeout_after_retries_is_a_timeout(http_server: LoopbackServer) -> None:
    """A read timeout that outlives its retries raises requests.ReadTimeout, after one retry on the server."""
    with default_session(read_timeout=0.2, retries=1, backoff_factor=0) as session:
        with pytest.raises(requests.ReadTimeout):
            session.get(http_server.url("/slow?delay=0.6"))
        assert session.stats.retries == 1
    assert [seen.path for seen in http_server.requests] == ["/slow?delay=0.6"] * 2
