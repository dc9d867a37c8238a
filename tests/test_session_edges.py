"""Edge cases of sessions, adapters and TLS: each checked against the server or the file system."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import requests

from session_presets import ConfigError, SessionReuseError, SessionState, default_session, ephemeral_session
from session_presets import _tls as sp_tls
from session_presets._redact import safe_url

from .servers import LoopbackServer
from .waiting import wait_until


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host:8443/p/a?token=s#frag", "https://host:8443/p/a"),
        (b"http://host/x?y=1", "http://host/x"),
        (None, ""),
        ("http://[::1/broken", "<invalid URL>"),
    ],
)
def test_safe_url_drops_credentials_query_and_fragment(url: str | bytes | None, shown: str) -> None:
    """URLs in logs and errors keep scheme, host, port and path only."""
    assert safe_url(url) == shown


def test_cookie_file_of_another_user_is_refused(tmp_path: Path) -> None:
    """A cookie file owned by someone else is a ConfigError, and it is left in place."""
    if not hasattr(os, "getuid") or os.getuid() != 0:
        pytest.skip("needs root to give a file to another user")
    path = tmp_path / "cookies.txt"
    path.write_text("# Netscape HTTP Cookie File\n")
    os.chown(path, 4242, 4242)
    with pytest.raises(ConfigError, match="owned by another user"):
        default_session(cookies="file", cookie_file=str(path))
    assert path.exists()


def test_explicit_proxy_mapping_with_no_proxy(http_server: LoopbackServer) -> None:
    """An explicit mapping's no_proxy entry sends those hosts direct."""
    with LoopbackServer() as proxy:
        mapping = {"http": proxy.url("").rstrip("/"), "no_proxy": "127.0.0.1"}
        with default_session(proxies=mapping) as session:
            session.get(http_server.url())
            session.get("http://via-proxy.test/x")
        assert [seen.path for seen in proxy.requests] == ["http://via-proxy.test/x"]
        assert len(http_server.requests) == 1


def test_invalid_strict_reuse_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad SESSION_PRESETS_STRICT_REUSE value is a ConfigError naming it."""
    monkeypatch.setenv("SESSION_PRESETS_STRICT_REUSE", "sometimes")
    with pytest.raises(ConfigError, match="SESSION_PRESETS_STRICT_REUSE='sometimes'"):
        for _ in range(40):
            ephemeral_session().close()


def test_strict_reuse_off_value_only_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    """SESSION_PRESETS_STRICT_REUSE=0 keeps the warning, not the error."""
    from session_presets import SessionReuseWarning

    monkeypatch.setenv("SESSION_PRESETS_STRICT_REUSE", "0")
    with pytest.warns(SessionReuseWarning):
        for _ in range(40):
            ephemeral_session().close()
    assert not isinstance(SessionReuseError("x"), Warning)


def test_session_params_and_request_params_merge(http_server: LoopbackServer) -> None:
    """Session-level params and per-call params both reach the server, as with requests."""
    with default_session() as session:
        session.params = {"team": "core"}
        session.get(http_server.url("/echo"), params={"page": "2"})
        session.get(http_server.url("/echo"))
    first, second = http_server.requests
    assert "team=core" in first.path and "page=2" in first.path
    assert second.path.endswith("?team=core")


def test_session_and_request_cookies_are_sent(http_server: LoopbackServer) -> None:
    """Cookies from the session jar and from the call are both sent."""
    with default_session() as session:
        session.cookies.set("jar", "1", domain="127.0.0.1", path="/")
        session.get(http_server.url("/echo"), cookies={"call": "2"})
    sent = http_server.requests[-1].header("Cookie") or ""
    assert sorted(sent.split("; ")) == ["call=2", "jar=1"]


def test_system_trust_store_without_truststore(monkeypatch: pytest.MonkeyPatch) -> None:
    """trust_store='system' without the truststore package is a clear ConfigError."""
    monkeypatch.setitem(sys.modules, "truststore", None)
    sp_tls._clear_contexts()
    with pytest.raises(ConfigError, match=r"pip install 'session-presets\[truststore\]'"):
        default_session(trust_store="system")


def test_ca_directory(https_server: LoopbackServer, ca_bundle: str, tmp_path: Path) -> None:
    """A CA directory (c_rehash layout) works as ca_bundle."""
    import ssl

    directory = tmp_path / "cas"
    directory.mkdir()
    cert = ssl.PEM_cert_to_DER_cert(Path(ca_bundle).read_text())
    # The file name must be OpenSSL's subject hash: let openssl compute it.
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to name the hashed file")
    import subprocess

    subject_hash = subprocess.run(
        [openssl, "x509", "-hash", "-noout", "-in", ca_bundle], capture_output=True, text=True, check=True
    ).stdout.strip()
    shutil.copy(ca_bundle, directory / f"{subject_hash}.0")
    assert cert
    with default_session(ca_bundle=str(directory)) as session:
        assert session.get(https_server.url()).status_code == 200


def test_per_call_client_cert_tuple_selects_its_context(https_server: LoopbackServer, ca, ca_bundle,  # type: ignore[no-untyped-def]
                                                        tmp_path: Path) -> None:
    """A per-call cert=(cert, key) builds its own context and the call still succeeds."""
    client = ca.issue_cert("client@example.org")
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    client.cert_chain_pems[0].write_to_path(str(cert_path))
    client.private_key_pem.write_to_path(str(key_path))
    with default_session(ca_bundle=ca_bundle) as session:
        response = session.get(https_server.url(), cert=(str(cert_path), str(key_path)))
        assert response.status_code == 200
        from urllib3.exceptions import InsecureRequestWarning

        with pytest.warns(InsecureRequestWarning):  # per call, exactly as plain requests does
            response = session.get(https_server.url(), verify=False)
        assert response.status_code == 200
    assert https_server.connections == 2


def test_redirect_hop_after_cancel_is_refused(http_server: LoopbackServer) -> None:
    """A call cancelled while its redirect is followed raises SessionInvalidatedError."""
    from session_presets import SessionInvalidatedError

    session = default_session()

    def cancel_then_redirect(handler) -> None:  # type: ignore[no-untyped-def]
        import threading

        threading.Thread(target=session.invalidate_and_cancel).start()
        wait_until(lambda: session.state is not SessionState.ACTIVE, 10.0, "the cancel to take effect")
        handler.reply(302, b"", {"Location": "/ok"})

    http_server.route("/hop", cancel_then_redirect)
    with pytest.raises(SessionInvalidatedError):
        session.get(http_server.url("/hop"))
    assert [seen.path for seen in http_server.requests] == ["/hop"]


def test_requests_exceptions_pass_through(http_server: LoopbackServer) -> None:
    """Invalid URLs and schemes give requests' own errors, counted as errors."""
    with default_session() as session:
        with pytest.raises(requests.exceptions.InvalidSchema):
            session.get("ftp://127.0.0.1/x")
        with pytest.raises(requests.exceptions.MissingSchema):
            session.get("127.0.0.1/x")
        with pytest.raises(requests.exceptions.InvalidURL):
            session.get("http://")


def test_bad_per_call_ca_path_is_an_oserror_naming_it(http_server: LoopbackServer) -> None:
    """A per-call verify= path that cannot be loaded fails that call with OSError, as in requests."""
    with default_session() as session:
        with pytest.raises(OSError, match="/nonexistent/ca.pem") as info:
            session.get("https://127.0.0.1:9/", verify="/nonexistent/ca.pem")
        assert not isinstance(info.value, ConfigError)
        assert session.get(http_server.url()).status_code == 200


def test_client_cert_given_as_a_list(https_server: LoopbackServer, ca, ca_bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """cert=[cert, key] (a list, not a tuple) works like the tuple form."""
    client = ca.issue_cert("client@example.org")
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    client.cert_chain_pems[0].write_to_path(str(cert_path))
    client.private_key_pem.write_to_path(str(key_path))
    with default_session(ca_bundle=ca_bundle) as session:
        assert session.get(https_server.url(), cert=[str(cert_path), str(key_path)]).status_code == 200


def test_prepared_url_memo_is_exact(http_server: LoopbackServer) -> None:
    """Remembered URLs reach the server exactly as requests would prepare them, with and without params."""
    with default_session() as session:
        odd = http_server.url("/echo/ü space?q=a b")
        for _ in range(2):
            session.get(odd)
            session.get(odd, params={"x": "1"})
    paths = [seen.path for seen in http_server.requests]
    expected = requests.Request("GET", odd).prepare().path_url
    assert paths == [expected, expected + "&x=1"] * 2
