"""requests semantics kept (or deliberately changed) by presets: headers, shared sessions, timeouts, SOCKS, pickling."""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests

from session_presets import (
    ConfigError,
    ForeignAdapterWarning,
    PresetAdapter,
    PresetSession,
    SessionState,
    SharedSessionError,
    TotalTimeoutError,
    _process,
    close_all,
    default_session,
    ephemeral_session,
    get_preset,
    get_session,
    register_preset,
)

from .servers import Handler, LoopbackServer

# -- helpers -------------------------------------------------------------------------


@pytest.fixture
def silent(http_server: LoopbackServer) -> Iterator[str]:
    """URL of a route that reads the request and never answers (until teardown)."""
    release = threading.Event()

    def handler(h: Handler) -> None:
        release.wait(60)

    http_server.route("/silent", handler)
    yield http_server.url("/silent")
    release.set()


def _seen_header(server: LoopbackServer, name: str, index: int = -1) -> str | None:
    return server.requests[index].header(name)


# -- §2 no-cache headers, foreign adapters, PresetAdapter on plain sessions ------------


def test_no_cache_headers_are_session_defaults(http_server: LoopbackServer) -> None:
    """cache_policy='reload' puts no-cache in session.headers, and a per-call None removes it on the wire."""
    with default_session() as session:
        assert session.headers["Cache-Control"] == "no-cache"
        assert session.headers["Pragma"] == "no-cache"
        session.get(http_server.url("/ok"), headers={"Cache-Control": None, "Pragma": None})
        session.get(http_server.url("/redirect?to=/ok"), headers={"Cache-Control": None})
    first, hop, target = http_server.requests
    assert first.header("Cache-Control") is None and first.header("Pragma") is None
    assert hop.header("Cache-Control") is None and target.header("Cache-Control") is None
    assert target.header("Pragma") == "no-cache"


def test_protocol_cache_policy_sends_no_cache_headers(http_server: LoopbackServer) -> None:
    """cache_policy='protocol' leaves Cache-Control and Pragma out of the headers and off the wire."""
    with default_session(cache_policy="protocol") as session:
        assert "Cache-Control" not in session.headers
        session.get(http_server.url("/ok"))
    assert _seen_header(http_server, "Cache-Control") is None


def test_preset_adapter_on_plain_session_sends_preset_headers(http_server: LoopbackServer) -> None:
    """A PresetAdapter on a plain requests.Session adds no-cache and the preset's headers; the caller's win."""
    adapter = PresetAdapter(get_preset("default").replace(headers={"X-Team": "a", "X-Env": "prod"}))
    with requests.Session() as session:
        session.mount("http://", adapter)
        session.get(http_server.url("/ok"), headers={"X-Env": "staging"})
    seen = http_server.requests[-1]
    assert seen.header("Cache-Control") == "no-cache" and seen.header("Pragma") == "no-cache"
    assert seen.header("X-Team") == "a" and seen.header("X-Env") == "staging"


def test_default_headers_go_in_a_plain_session_headers(http_server: LoopbackServer) -> None:
    """adapter.default_headers can sit in a plain Session's headers; a per-call value still wins, once."""
    adapter = PresetAdapter(get_preset("default"))
    assert adapter.default_headers == {"Cache-Control": "no-cache", "Pragma": "no-cache"}
    assert PresetAdapter(get_preset("default").replace(cache_policy="protocol")).default_headers == {}
    with requests.Session() as session:
        session.mount("http://", adapter)
        session.headers.update(adapter.default_headers)
        assert session.headers["Pragma"] == "no-cache"
        session.get(http_server.url("/ok"), headers={"Cache-Control": "max-age=0"})
    assert _seen_header(http_server, "Cache-Control") == "max-age=0"
    assert _seen_header(http_server, "Pragma") == "no-cache"


def test_foreign_adapter_mount_warns_once_and_keeps_headers(http_server: LoopbackServer) -> None:
    """Mounting a plain HTTPAdapter warns once naming what is lost; the preset's headers still go out."""
    adapter = requests.adapters.HTTPAdapter(max_retries=3)
    with default_session(headers={"X-Team": "payments"}) as session:
        with pytest.warns(ForeignAdapterWarning) as record:
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        assert len(record) == 1
        message = str(record[0].message)
        for lost in ("retries", "total_timeout", "HTTPAdapter", "subclass", "PresetAdapter"):
            assert lost in message
        session.get(http_server.url("/ok"))
    seen = http_server.requests[-1]
    assert seen.header("Cache-Control") == "no-cache"
    assert seen.header("X-Team") == "payments"


def test_foreign_adapter_gets_the_preset_read_timeout(silent: str, http_server: LoopbackServer) -> None:
    """A foreign adapter on a PresetSession gets the preset's read timeout instead of waiting forever."""
    with default_session(read_timeout=0.5, total_timeout=None) as session:
        with pytest.warns(ForeignAdapterWarning):
            session.mount("http://", requests.adapters.HTTPAdapter())
        with pytest.raises(requests.ReadTimeout):
            session.get(silent)
    assert len(http_server.requests) == 1


def test_preset_adapter_on_plain_session_enforces_total_timeout(silent: str, http_server: LoopbackServer) -> None:
    """A PresetAdapter on a plain Session raises TotalTimeoutError at total_timeout, not after read timeouts."""
    config = get_preset("default").replace(total_timeout=0.5, read_timeout=30, retries=0)
    with requests.Session() as session:
        session.mount("http://", PresetAdapter(config))
        with pytest.raises(TotalTimeoutError, match=r"total_timeout=0\.5s"):
            session.get(silent)
    assert len(http_server.requests) == 1


def test_preset_adapter_on_plain_session_deadline_covers_the_body(http_server: LoopbackServer) -> None:
    """On a plain Session the adapter's deadline includes the body when stream=False."""
    config = get_preset("default").replace(total_timeout=0.5, read_timeout=30, retries=0)
    with requests.Session() as session:
        session.mount("http://", PresetAdapter(config))
        with pytest.raises(TotalTimeoutError):
            session.get(http_server.url("/stall?after=1&for=30"))
        response = session.get(http_server.url("/ok"))
    assert response.content == b"ok"


@pytest.fixture
def netrc_for_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A netrc at $NETRC with credentials for 127.0.0.1."""
    path = tmp_path / "netrc"
    path.write_text("machine 127.0.0.1\nlogin netrc-user\npassword netrc-secret\n")
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    return "netrc-user", "netrc-secret"


def test_preset_adapter_on_plain_session_never_sends_netrc(
    http_server: LoopbackServer, netrc_for_loopback: tuple[str, str]
) -> None:
    """A plain Session reads netrc; its PresetAdapter drops those credentials, keeps explicit ones."""
    with requests.Session() as session:
        session.mount("http://", PresetAdapter(get_preset("default")))
        session.get(http_server.url("/ok"))
        session.get(http_server.url("/ok"), auth=("someone", "else"))
    assert http_server.requests[0].header("Authorization") is None
    assert http_server.requests[1].header("Authorization") == requests.auth._basic_auth_str("someone", "else")


def test_preset_adapter_with_store_credentials_keeps_netrc(
    http_server: LoopbackServer, netrc_for_loopback: tuple[str, str]
) -> None:
    """store_credentials=True lets a plain Session's netrc credentials through, as requests would send them."""
    config = get_preset("default").replace(store_credentials=True)
    with requests.Session() as session:
        session.mount("http://", PresetAdapter(config))
        session.get(http_server.url("/ok"))
    assert _seen_header(http_server, "Authorization") == requests.auth._basic_auth_str(*netrc_for_loopback)


def test_code_ca_bundle_beats_requests_ca_bundle_on_plain_session(
    https_server: LoopbackServer, ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ca_bundle set in code wins over REQUESTS_CA_BUNDLE that a plain Session passes as verify=."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # does not trust the loopback CA
    config = get_preset("default").replace(ca_bundle=ca_bundle)
    with requests.Session() as session:
        session.mount("https://", PresetAdapter(config))
        assert session.get(https_server.url("/ok")).content == b"ok"
    with requests.Session() as control:  # requests alone would verify with the environment's bundle
        control.mount("https://", PresetAdapter(get_preset("default")))
        with pytest.raises(requests.exceptions.SSLError):
            control.get(https_server.url("/ok"))


# -- §3 shared sessions are read-only ------------------------------------------------

_ASSIGNMENTS: dict[str, Any] = {
    "headers": {"X-Team": "a"},
    "auth": ("user", "password"),
    "verify": False,
    "cert": "/tmp/client.pem",
    "proxies": {"http": "http://proxy:3128"},
    "params": {"team": "a"},
    "hooks": {"response": []},
    "max_redirects": 3,
    "trust_env": True,
    "stream": True,
    "adapters": {},
}


@pytest.mark.parametrize("attribute", sorted(_ASSIGNMENTS))
def test_shared_session_configuration_is_read_only(attribute: str, http_server: LoopbackServer) -> None:
    """Setting or deleting a configuration attribute of a shared session raises SharedSessionError."""
    session = get_session()
    with pytest.raises(SharedSessionError, match=r"register_preset\(.*default_session\(") as info:
        setattr(session, attribute, _ASSIGNMENTS[attribute])
    assert isinstance(info.value, AttributeError)
    with pytest.raises(SharedSessionError):
        delattr(session, attribute)
    session.get(http_server.url("/echo"))
    seen = http_server.requests[-1]
    assert seen.header("Authorization") is None and seen.header("X-Team") is None


_MUTATIONS: dict[str, Callable[[PresetSession], object]] = {
    "headers[]": lambda s: s.headers.__setitem__("X-Team", "a"),
    "headers.update": lambda s: s.headers.update({"X-Team": "a"}),
    "headers.setdefault": lambda s: s.headers.setdefault("X-Team", "a"),
    "del headers[]": lambda s: s.headers.__delitem__("User-Agent"),
    "headers.pop": lambda s: s.headers.pop("User-Agent"),
    "hooks.append": lambda s: s.hooks["response"].append(print),
    "hooks.extend": lambda s: s.hooks["response"].extend([print]),
    "hooks +=": lambda s: s.hooks["response"].__iadd__([print]),
    "hooks *=": lambda s: s.hooks["response"].__imul__(2),
    "hooks[]": lambda s: s.hooks.__setitem__("response", [print]),
    "params[]": lambda s: s.params.__setitem__("team", "a"),
    "params.update": lambda s: s.params.update(team="a"),
    "proxies[]": lambda s: s.proxies.__setitem__("http", "http://proxy:3128"),
    "proxies |=": lambda s: s.proxies.__ior__({"http": "http://proxy:3128"}),
    "adapters[]": lambda s: s.adapters.__setitem__("http://", requests.adapters.HTTPAdapter()),
    "adapters.pop": lambda s: s.adapters.pop("http://"),
    "adapters |=": lambda s: s.adapters.__ior__({"http://": requests.adapters.HTTPAdapter()}),
    "mount": lambda s: s.mount("http://", requests.adapters.HTTPAdapter()),
}


@pytest.mark.parametrize("mutation", sorted(_MUTATIONS))
def test_shared_session_mappings_refuse_changes(mutation: str, http_server: LoopbackServer) -> None:
    """Changing the shared session's headers, hooks, params, proxies or adapters in place is refused."""
    session = get_session()
    with pytest.raises(SharedSessionError, match="get_session"):
        _MUTATIONS[mutation](session)
    session.get(http_server.url("/echo"))
    seen = http_server.requests[-1]
    assert seen.header("X-Team") is None
    assert seen.header("User-Agent") == get_preset("default").user_agent
    assert "team=" not in seen.path


def test_with_and_close_leave_the_shared_session_working(http_server: LoopbackServer) -> None:
    """Leaving `with get_session()` or calling close() keeps it active, for every holder, on one connection."""
    other_module = get_session()
    with get_session() as session:
        session.get(http_server.url("/ok"))
    session.close()
    assert session.state is SessionState.ACTIVE
    assert get_session() is other_module
    other_module.get(http_server.url("/ok"))
    assert http_server.connections == 1


def test_close_all_and_explicit_invalidation_still_end_shared_sessions(http_server: LoopbackServer) -> None:
    """close_all(), finish_tasks_and_invalidate() and invalidate_and_cancel() end a shared session."""
    first = get_session()
    close_all()
    assert first.state is SessionState.INVALIDATED
    second = get_session()
    assert second is not first
    second.invalidate_and_cancel()
    third = get_session()
    assert third is not second and third.state is SessionState.ACTIVE
    third.get(http_server.url("/ok"))
    assert http_server.connections == 1


def test_shared_session_takes_per_call_settings_and_keeps_cookies(http_server: LoopbackServer) -> None:
    """Per-call headers, auth, params and cookies work on a shared session, and its cookie jar fills."""
    session = get_session()
    session.get(http_server.url("/set-cookie?name=sid&value=42"))
    session.get(
        http_server.url("/echo"),
        headers={"X-Call": "1"},
        auth=("user", "pw"),
        params={"q": "x"},
        cookies={"extra": "1"},
    )
    seen = http_server.requests[-1]
    assert seen.header("X-Call") == "1"
    assert seen.header("Authorization") == requests.auth._basic_auth_str("user", "pw")
    assert seen.path.endswith("?q=x")
    assert "sid=42" in (seen.header("Cookie") or "") and "extra=1" in (seen.header("Cookie") or "")
    session.get(http_server.url("/echo"))
    assert http_server.requests[-1].header("Authorization") is None


def test_caller_owned_sessions_stay_mutable(http_server: LoopbackServer) -> None:
    """default_session() and ephemeral_session() accept header, auth and hook changes like requests.Session."""
    seen_by_hook: list[int] = []
    with default_session() as session, ephemeral_session() as private:
        session.headers["X-Team"] = "a"
        session.auth = ("user", "pw")
        session.hooks["response"].append(lambda r, **kw: seen_by_hook.append(r.status_code))
        session.get(http_server.url("/ok"))
        private.params = {"team": "b"}
        private.get(http_server.url("/ok"))
    first, second = http_server.requests
    assert first.header("X-Team") == "a" and first.header("Authorization") is not None
    assert seen_by_hook == [200]
    assert second.path.endswith("team=b")


def test_shared_session_of_a_registered_preset_has_its_headers(http_server: LoopbackServer) -> None:
    """The advised way to configure a shared session, register_preset, reaches the wire."""
    register_preset("teamed", headers={"X-Team": "a"})
    get_session("teamed").get(http_server.url("/ok"))
    assert _seen_header(http_server, "X-Team") == "a"


# -- §4 per-call timeout, auth advice --------------------------------------------------


def test_per_call_timeout_is_not_retried(silent: str, http_server: LoopbackServer) -> None:
    """timeout=1 against a silent server raises ReadTimeout after one attempt (the server sees one request)."""
    with default_session() as session:
        with pytest.raises(requests.ReadTimeout):
            session.get(silent, timeout=0.5)
        with pytest.raises(requests.ReadTimeout):
            session.get(silent, timeout=(5, 0.5))
    assert len(http_server.requests) == 2


def test_preset_read_timeout_is_retried(silent: str, http_server: LoopbackServer) -> None:
    """Without timeout=, a read timeout of an idempotent call is retried per the preset."""
    with default_session(read_timeout=0.3, retries=1, backoff_factor=0) as session, pytest.raises(requests.ReadTimeout):
        session.get(silent)
    assert len(http_server.requests) == 2


def test_timeout_none_lifts_the_read_timeout(http_server: LoopbackServer) -> None:
    """timeout=None waits past the preset's read_timeout, as it does in requests."""
    url = http_server.url("/slow?delay=1")
    with default_session(read_timeout=0.3, retries=0) as session:
        with pytest.raises(requests.ReadTimeout):
            session.get(url)
        assert session.get(url, timeout=None).content == b"slow"
        assert session.request("GET", url, None, None, None, None, None, None, None).content == b"slow"


def test_timeout_none_is_still_bounded_by_total_timeout(silent: str, http_server: LoopbackServer) -> None:
    """timeout=None lifts the read timeout but total_timeout still ends the call."""
    with default_session(total_timeout=0.5) as session, pytest.raises(TotalTimeoutError):
        session.get(silent, timeout=None)
    assert len(http_server.requests) == 1


def test_authorization_advice_is_true(http_server: LoopbackServer) -> None:
    """The refusal of Authorization in headers advises default_session(auth=...), which works."""
    with pytest.raises(ConfigError, match=r"default_session\(\)") as info:
        default_session(headers={"Authorization": "Bearer x"})
    assert "auth=" in str(info.value)
    with default_session(auth=("user", "pw")) as session, ephemeral_session(auth=("eph", "pw")) as private:
        session.get(http_server.url("/ok"))
        private.get(http_server.url("/ok"))
    assert http_server.requests[0].header("Authorization") == requests.auth._basic_auth_str("user", "pw")
    assert http_server.requests[1].header("Authorization") == requests.auth._basic_auth_str("eph", "pw")


# -- §5 SOCKS, None headers, bad paths, close once, pickling --------------------------


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


class Socks5Proxy:
    """A minimal SOCKS5 proxy (no auth, CONNECT only) that records every CONNECT target."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connects: list[tuple[str, int]] = []
        self._sockets: list[socket.socket] = [self.listener]
        _process.start_thread(self._serve, name="socks5-proxy")

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            _process.start_thread(self._handle, name="socks5-client", args=(client,))

    def _handle(self, client: socket.socket) -> None:
        try:
            _, count = _recv_exact(client, 2)
            _recv_exact(client, count)
            client.sendall(b"\x05\x00")
            _, _command, _, kind = _recv_exact(client, 4)
            if kind == 1:
                host = socket.inet_ntoa(_recv_exact(client, 4))
            else:
                host = _recv_exact(client, _recv_exact(client, 1)[0]).decode()
            (port,) = struct.unpack("!H", _recv_exact(client, 2))
            self.connects.append((host, port))
            upstream = socket.create_connection((host, port))
            self._sockets.append(upstream)
            client.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", port))
            _process.start_thread(self._pipe, name="socks5-relay", args=(upstream, client))
            self._pipe(client, upstream)
        except OSError:
            return

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


@pytest.fixture
def socks_proxy() -> Iterator[Socks5Proxy]:
    """A loopback SOCKS5 proxy."""
    proxy = Socks5Proxy()
    yield proxy
    proxy.close()


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_socks5_proxy_carries_the_request(
    scheme: str, socks_proxy: Socks5Proxy, http_server: LoopbackServer
) -> None:
    """A socks5:// proxy works: the proxy sees the CONNECT, the server the request, on pooled connections."""
    pytest.importorskip("socks", reason="PySocks (requests[socks]) is not installed")
    proxy = f"{scheme}://127.0.0.1:{socks_proxy.port}"
    with default_session(proxies={"http": proxy}) as session:
        for _ in range(2):
            assert session.get(http_server.url("/ok")).content == b"ok"
        stats = session.stats
    assert socks_proxy.connects == [("127.0.0.1", http_server.port)]
    assert len(http_server.requests) == 2 and http_server.connections == 1
    assert stats.connections_opened == 1 and stats.connections_reused == 1


def test_session_header_set_to_none_is_not_sent(http_server: LoopbackServer) -> None:
    """A session header set to None is dropped, as requests drops it, with or without per-call headers."""
    with default_session(headers={"X-Drop": "x"}) as session:
        session.headers["X-Drop"] = None
        session.headers["Pragma"] = None
        session.get(http_server.url("/ok"))
        session.get(http_server.url("/ok"), headers={"X-Call": "1"})
    for seen in http_server.requests:
        assert seen.header("X-Drop") is None and seen.header("Pragma") is None
    assert http_server.requests[0].header("Cache-Control") == "no-cache"


def test_missing_ca_bundle_keeps_requests_message(https_server: LoopbackServer, tmp_path: Path) -> None:
    """A per-call verify= path that does not exist raises OSError with requests' text first."""
    missing = str(tmp_path / "nope.pem")
    with default_session() as session, pytest.raises(OSError) as info:
        session.get(https_server.url("/ok"), verify=missing)
    assert str(info.value) == f"Could not find a suitable TLS CA certificate bundle, invalid path: {missing}"
    if sys.version_info >= (3, 11):
        assert "session_presets" in info.value.__notes__[0]
    assert https_server.accepted == 0


@pytest.mark.parametrize("which", ["cert", "key"])
def test_missing_client_cert_keeps_requests_message(
    which: str, https_server: LoopbackServer, tmp_path: Path, ca: Any
) -> None:
    """A per-call cert= path that does not exist raises OSError with requests' text first."""
    present = tmp_path / "client.pem"
    ca.issue_cert("client").private_key_and_cert_chain_pem.write_to_path(str(present))
    missing = str(tmp_path / "nope.pem")
    cert = (missing, str(present)) if which == "cert" else (str(present), missing)
    label = "certificate" if which == "cert" else "key"
    with default_session() as session, pytest.raises(OSError) as info:
        session.get(https_server.url("/ok"), cert=cert)
    assert str(info.value) == f"Could not find the TLS {label} file, invalid path: {missing}"
    assert https_server.accepted == 0


class _CountingAdapter(PresetAdapter):
    """A PresetAdapter that counts close() calls."""

    closes = 0

    def close(self) -> None:
        self.closes += 1
        super().close()


def test_adapter_mounted_twice_is_closed_once(http_server: LoopbackServer) -> None:
    """One adapter mounted for http:// and https:// is closed once when the session closes."""
    session = default_session()
    adapter = _CountingAdapter(session.config)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.get(http_server.url("/ok"))
    session.close()
    assert adapter.closes == 1
    assert http_server.requests[-1].header("Cache-Control") == "no-cache"


def test_caller_owned_session_pickles(http_server: LoopbackServer) -> None:
    """A pickled session comes back active, with its headers, auth, cookies and config, and new pools."""
    with default_session(read_timeout=7) as session:
        session.headers["X-Team"] = "a"
        session.auth = ("user", "pw")
        session.get(http_server.url("/set-cookie?name=sid&value=9"))
        copy = pickle.loads(pickle.dumps(session))
    with copy:
        assert copy.config == session.config and copy.config.read_timeout == 7
        assert copy.state is SessionState.ACTIVE and copy.stats.requests == 0
        copy.get(http_server.url("/ok"))
    seen = http_server.requests[-1]
    assert seen.header("X-Team") == "a" and seen.header("Cookie") == "sid=9"
    assert seen.header("Authorization") == requests.auth._basic_auth_str("user", "pw")
    assert http_server.connections == 2


def test_shared_session_unpickles_as_caller_owned(http_server: LoopbackServer) -> None:
    """A shared session pickles; the copy is caller-owned and mutable, the original stays read-only."""
    shared = get_session()
    copy = pickle.loads(pickle.dumps(shared))
    with copy:
        copy.headers["X-Copy"] = "1"
        copy.get(http_server.url("/ok"))
    assert _seen_header(http_server, "X-Copy") == "1"
    with pytest.raises(SharedSessionError):
        shared.headers["X-Copy"] = "1"


def test_session_with_a_foreign_mount_pickles_quietly(http_server: LoopbackServer) -> None:
    """Extra mounts travel in the pickle (a PresetAdapter of its own preset, too) without a second warning."""
    with default_session() as session:
        session.mount("http://127.0.0.1", PresetAdapter(get_preset("default").replace(read_timeout=3)))
        with pytest.warns(ForeignAdapterWarning):
            session.mount("http://localhost", requests.adapters.HTTPAdapter())
        copy = pickle.loads(pickle.dumps(session))
    with copy:
        mounted = copy.get_adapter(http_server.url("/ok"))
        assert isinstance(mounted, PresetAdapter) and mounted.preset.read_timeout == 3
        assert type(copy.get_adapter("http://localhost/")) is requests.adapters.HTTPAdapter
        copy.get(http_server.url("/ok"))
    assert len(http_server.requests) == 1


def test_environment_ca_bundle_is_the_preset_bundle_when_unset(
    https_server: LoopbackServer, ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a preset ca_bundle, a plain Session's REQUESTS_CA_BUNDLE is honoured as requests does."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
    assert os.environ["REQUESTS_CA_BUNDLE"] == ca_bundle
    with requests.Session() as session:
        session.mount("https://", PresetAdapter(get_preset("default")))
        assert session.get(https_server.url("/ok")).content == b"ok"


def test_unloadable_ca_bundle_is_an_oserror_naming_it(https_server: LoopbackServer, tmp_path: Path) -> None:
    """A per-call verify= file that exists but holds no certificate raises OSError naming the value."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with default_session() as session, pytest.raises(OSError, match=r"cannot use verify=.*garbage\.pem"):
        session.get(https_server.url("/ok"), verify=str(garbage))
    assert https_server.accepted == 0


def test_preset_session_keeps_a_caller_verify_equal_to_the_environment(
    https_server: LoopbackServer, ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a PresetSession a per-call verify= is the caller's, even when REQUESTS_CA_BUNDLE names the same file."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with default_session(ca_bundle=ca_bundle) as session:
        assert session.get(https_server.url("/ok")).content == b"ok"
        with pytest.raises(requests.exceptions.SSLError):
            session.get(https_server.url("/ok"), verify=certifi.where())


def test_socks5_proxy_from_the_environment_carries_https(
    socks_proxy: Socks5Proxy, https_server: LoopbackServer, ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALL_PROXY=socks5://... read when the session is built tunnels HTTPS, verified with the preset's CA."""
    pytest.importorskip("socks", reason="PySocks (requests[socks]) is not installed")
    monkeypatch.setenv("ALL_PROXY", f"socks5://127.0.0.1:{socks_proxy.port}")
    with default_session(ca_bundle=ca_bundle) as session:
        assert session.get(https_server.url("/ok")).content == b"ok"
        assert session.get(https_server.url("/ok")).content == b"ok"
    assert socks_proxy.connects == [("127.0.0.1", https_server.port)]
    assert https_server.connections == 1 and len(https_server.requests) == 2


def test_plain_session_closes_a_twice_mounted_preset_adapter_once(http_server: LoopbackServer) -> None:
    """requests.Session.close() closes each mount; a PresetAdapter mounted twice closes its pools once."""
    adapter = _CountingPoolsAdapter(get_preset("default"))
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.get(http_server.url("/ok"))
    session.close()
    assert adapter.pool_clears == 1
    session.get(http_server.url("/ok"))  # usable again, and closed again
    session.close()
    assert adapter.pool_clears == 2
    assert http_server.connections == 2


class _CountingPoolsAdapter(PresetAdapter):
    """A PresetAdapter that counts how often its pools are really closed."""

    pool_clears = 0

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        clear = self.poolmanager.clear

        def counting_clear() -> None:
            self.pool_clears += 1
            clear()

        self.poolmanager.clear = counting_clear  # type: ignore[method-assign]


def test_plain_session_forgives_a_bad_redirect_body(http_server: LoopbackServer) -> None:
    """On a plain Session the adapter leaves a redirect's undecodable body to requests, which skips it."""

    def bad_gzip_redirect(h: Handler) -> None:
        h.reply(302, b"not gzip", {"Location": "/ok", "Content-Encoding": "gzip"})

    http_server.route("/bad-redirect", bad_gzip_redirect)
    with requests.Session() as session:
        session.mount("http://", PresetAdapter(get_preset("default")))
        response = session.get(http_server.url("/bad-redirect"))
    assert response.content == b"ok"
    assert [seen.path for seen in http_server.requests] == ["/bad-redirect", "/ok"]


def test_pickling_a_subclass_with_its_own_init(http_server: LoopbackServer) -> None:
    """A PresetSession subclass whose __init__ takes no config still unpickles (as requests' own tests do)."""
    with _NoArgSession() as original:
        copy = pickle.loads(pickle.dumps(original))
    with copy:
        copy.get(http_server.url("/ok"))
    assert type(copy) is _NoArgSession and len(http_server.requests) == 1


class _NoArgSession(PresetSession):
    """A subclass built with no arguments, like a drop-in requests.Session."""

    def __init__(self) -> None:
        super().__init__()


def test_requests_cache_sees_the_no_cache_headers(http_server: LoopbackServer) -> None:
    """requests-cache reads no cache for a reload preset: CacheMixin on PresetSession, or default_headers."""
    requests_cache = pytest.importorskip("requests_cache", reason="requests-cache is not installed (extra 'compat')")

    class CachedPresetSession(requests_cache.CacheMixin, PresetSession):  # type: ignore[misc]
        """The CacheMixin pattern requests-cache documents, on a PresetSession."""

    with CachedPresetSession(backend="memory") as session:
        assert [session.get(http_server.url("/ok?n=1")).from_cache for _ in range(2)] == [False, False]
    adapter = PresetAdapter(get_preset("default"))
    with requests_cache.CachedSession(backend="memory") as cached:
        cached.mount("http://", adapter)
        cached.headers.update(adapter.default_headers)
        assert [cached.get(http_server.url("/ok?n=2")).from_cache for _ in range(2)] == [False, False]
    protocol = get_preset("default").replace(cache_policy="protocol")
    with CachedPresetSession(config=protocol, backend="memory") as session:
        assert [session.get(http_server.url("/ok?n=3")).from_cache for _ in range(2)] == [False, True]
    assert [seen.path for seen in http_server.requests] == ["/ok?n=1"] * 2 + ["/ok?n=2"] * 2 + ["/ok?n=3"]


def test_per_call_connect_timeout_is_not_retried() -> None:
    """timeout=(c, r) against a listener that never completes connect raises ConnectTimeout with no retry."""
    from .stalling_listeners import FullBacklogListener

    with FullBacklogListener() as listener, default_session(retries=1, backoff_factor=0) as session:
        with pytest.raises(requests.ConnectTimeout):
            session.get(listener.url(), timeout=(0.3, 5))
        assert session.stats.retries == 0
        with default_session(connect_timeout=0.3, retries=1, backoff_factor=0) as preset_timeouts:
            with pytest.raises(requests.ConnectTimeout):
                preset_timeouts.get(listener.url())
            assert preset_timeouts.stats.retries == 1
