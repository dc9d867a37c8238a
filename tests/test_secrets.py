"""Secrets: netrc never read, Authorization stripped across hosts, no shared cookies, no leaked proxy passwords."""

from __future__ import annotations

import base64
import logging
import os
import socket
import stat
import traceback
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
import requests

from session_presets import (
    ConfigError,
    PresetConfig,
    default_session,
    ephemeral_session,
    get_preset,
    get_session,
    register_preset,
)

from .servers import LoopbackServer

NETRC_USER = "netrc-user"
NETRC_PASSWORD = "netrc-pa55word"
PROXY_PASSWORD = "s3cret"


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def netrc_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A netrc with credentials for 127.0.0.1, both at $NETRC and at ~/.netrc."""
    text = f"machine 127.0.0.1\nlogin {NETRC_USER}\npassword {NETRC_PASSWORD}\n"
    home_netrc = Path(os.environ["HOME"]) / ".netrc"
    env_netrc = tmp_path / "netrc"
    for path in (home_netrc, env_netrc):
        path.write_text(text)
        path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(env_netrc))
    return env_netrc


@pytest.fixture
def second_server() -> Iterator[LoopbackServer]:
    """Another plain HTTP server, reached as localhost."""
    with LoopbackServer() as server:
        yield server


def _closed_port() -> int:
    """A loopback port nobody listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.usefixtures("netrc_everywhere")
@pytest.mark.parametrize("preset", ["default", "ephemeral", "background", "custom"])
def test_netrc_is_never_used(http_server: LoopbackServer, preset: str) -> None:
    """With NETRC and ~/.netrc holding 127.0.0.1 credentials, no preset ever sends Authorization."""
    if preset == "custom":
        register_preset("custom", base="ephemeral", retries=0)
    get_session(preset).get(http_server.url("/echo"))
    with default_session() as session:
        session.get(http_server.url("/echo"))
    with ephemeral_session() as session:
        session.get(http_server.url("/echo"))
    assert len(http_server.requests) == 3
    assert [r.header("Authorization") for r in http_server.requests] == [None] * 3


@pytest.mark.usefixtures("netrc_everywhere")
def test_netrc_is_used_only_with_store_credentials(http_server: LoopbackServer) -> None:
    """Control: store_credentials=True is the one way netrc credentials reach the server."""
    with ephemeral_session(store_credentials=True) as session:
        session.get(http_server.url("/echo"))
    assert [r.header("Authorization") for r in http_server.requests] == [
        f"Basic {_basic(NETRC_USER, NETRC_PASSWORD)}"
    ]


@pytest.mark.parametrize("how", ["auth", "header"])
def test_authorization_stripped_on_redirect_to_another_host(
    http_server: LoopbackServer, second_server: LoopbackServer, how: str
) -> None:
    """Authorization sent to 127.0.0.1 is not forwarded when a redirect leads to localhost."""
    target = second_server.localhost_url("/echo")
    kwargs: dict[str, object] = (
        {"auth": ("alice", "hunter2")} if how == "auth" else {"headers": {"Authorization": "Bearer tok-123"}}
    )
    with ephemeral_session() as session:
        response = session.get(http_server.url(f"/redirect?to={target}"), **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200
    [first] = http_server.requests
    assert first.header("Authorization") in (f"Basic {_basic('alice', 'hunter2')}", "Bearer tok-123")
    [second] = second_server.requests
    assert second.path == "/echo"
    assert second.header("Authorization") is None


def test_cookies_never_cross_sessions(http_server: LoopbackServer) -> None:
    """A cookie set in one ephemeral_session() is sent by it and by no other session, as the server sees."""
    with ephemeral_session() as owner:
        owner.get(http_server.url("/set-cookie?name=sid&value=private-42"))
        owner.get(http_server.url("/echo"))
        with ephemeral_session() as other:
            other.get(http_server.url("/echo"))
        get_session().get(http_server.url("/echo"))
        with default_session() as third:
            third.get(http_server.url("/echo"))
    with ephemeral_session() as later:
        later.get(http_server.url("/echo"))
    cookies = [r.header("Cookie") for r in http_server.requests if r.path == "/echo"]
    assert cookies == ["sid=private-42", None, None, None, None]


def _leaks(text: str) -> bool:
    return PROXY_PASSWORD in text or _basic("user", PROXY_PASSWORD) in text


def _exception_text(exc: BaseException) -> str:
    parts = ["".join(traceback.format_exception(exc)), repr(exc)]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("password", [PROXY_PASSWORD, f"pre@{PROXY_PASSWORD}"], ids=["plain", "with-at"])
def test_proxy_password_never_in_repr_logs_or_errors(
    http_server: LoopbackServer, caplog: pytest.LogCaptureFixture, password: str
) -> None:
    """A proxy password is absent from reprs, DEBUG logs and the error of a refusing proxy."""
    caplog.set_level(logging.DEBUG, logger="session_presets")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    proxy = f"http://user:{password}@127.0.0.1:{_closed_port()}"
    with ephemeral_session(proxies={"http": proxy}, retries=0, connect_timeout=2) as session:
        texts = [repr(session.config), str(session.config), str(session.config.as_dict()), repr(session)]
        with pytest.raises(requests.exceptions.ProxyError) as info:
            session.get(http_server.url("/ok"))
        texts.append(_exception_text(info.value))
    texts += [repr(PresetConfig(proxies={"https": proxy})), _log_text(caplog)]
    assert caplog.records, "DEBUG logging captured nothing: the check would be vacuous"
    for text in texts:
        assert not _leaks(text), text
    assert http_server.requests == []


@pytest.mark.timeout(30)
def test_proxy_password_goes_only_to_the_proxy(
    http_server: LoopbackServer, second_server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Through a working proxy, only the proxy sees Proxy-Authorization, and no log carries it."""
    caplog.set_level(logging.DEBUG, logger="session_presets")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    proxy = f"http://user:{PROXY_PASSWORD}@127.0.0.1:{http_server.port}"
    with ephemeral_session(proxies={"http": proxy}) as session:
        response = session.get(second_server.url("/echo"))
    assert response.status_code == 200
    # The loopback server answered as the proxy: it got the absolute URI and the credentials.
    [seen] = http_server.requests
    assert seen.path == second_server.url("/echo")
    assert seen.header("Proxy-Authorization") == f"Basic {_basic('user', PROXY_PASSWORD)}"
    assert second_server.requests == []
    assert not _leaks(_log_text(caplog)), _log_text(caplog)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SESSION_PRESETS_PROXIES", '{"http": "http://user:' + PROXY_PASSWORD + '@proxy:3128"'),
        ("SESSION_PRESETS_PROXIES", '{"http": "http://user:' + PROXY_PASSWORD + '@proxy:3128\\n"}'),
        ("SESSION_PRESETS_DEFAULT_PROXIES", '["http://user:' + PROXY_PASSWORD + '@proxy:3128"]'),
    ],
)
def test_proxy_password_not_in_config_errors(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    """A bad proxies variable holding a password raises ConfigError without showing the password."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        get_preset("default")
    assert variable in str(info.value)
    assert not _leaks(_exception_text(info.value)), str(info.value)
    with pytest.raises(ConfigError) as info:
        PresetConfig(proxies={"http": f"http://user:{PROXY_PASSWORD}@proxy:3128\r\n"})
    assert not _leaks(_exception_text(info.value)), str(info.value)


def test_cookie_file_is_private_and_holds_no_credentials(http_server: LoopbackServer, tmp_path: Path) -> None:
    """After flush() the cookie file is mode 0600, holds the cookie, and no Authorization value."""
    path = tmp_path / "cookies.txt"
    path.write_text("# Netscape HTTP Cookie File\n")
    path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        with ephemeral_session(cookies="file", cookie_file=str(path)) as session:
            session.auth = ("alice", "auth-secret-1")
            session.get(http_server.url("/set-cookie?name=sid&value=cookie-1"))
            session.auth = None
            session.get(http_server.url("/echo"), headers={"Authorization": "Bearer auth-secret-2"})
            session.flush()
            mode = stat.S_IMODE(path.stat().st_mode)
            content = path.read_text()
    finally:
        os.umask(old_umask)
    assert mode == 0o600
    assert "cookie-1" in content
    for secret in ("auth-secret-1", "auth-secret-2", _basic("alice", "auth-secret-1"), "Authorization"):
        assert secret not in content
    assert [r.header("Authorization") for r in http_server.requests] == [
        f"Basic {_basic('alice', 'auth-secret-1')}",
        "Bearer auth-secret-2",
    ]
    # The file is what a later session really sends, as the server sees it.
    with ephemeral_session(cookies="file", cookie_file=str(path)) as later:
        later.get(http_server.url("/echo"))
    assert http_server.requests[-1].header("Cookie") == "sid=cookie-1"
    assert http_server.requests[-1].header("Authorization") is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("bogus", ["garbage", "certifi", "missing"])
def test_requests_ca_bundle_does_not_override_code(
    https_server: LoopbackServer, ca_bundle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bogus: str
) -> None:
    """REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE never override a ca_bundle set in code (requests issue 3829)."""
    paths = {"garbage": tmp_path / "bogus.pem", "certifi": Path(certifi.where()), "missing": tmp_path / "nope.pem"}
    path = paths[bogus]
    if bogus == "garbage":
        path.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(path))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(path))
    with ephemeral_session(ca_bundle=ca_bundle) as session:
        assert session.get(https_server.url("/ok")).content == b"ok"
    register_preset("pinned", ca_bundle=ca_bundle)
    assert get_session("pinned").get(https_server.url("/ok")).content == b"ok"
    assert get_preset("pinned").ca_bundle == ca_bundle
    assert len(https_server.requests) == 2
    # Control: without a bundle in code, the variable is honoured, so the checks above were not vacuous.
    if bogus == "certifi":
        with default_session() as session, pytest.raises(requests.exceptions.SSLError):
            session.get(https_server.url("/ok"))
    else:
        with pytest.raises(ConfigError, match="ca_bundle"):
            default_session()
    assert len(https_server.requests) == 2
