"""More libraries requests users run, used the way their docs show, against loopback servers.

The second part of tests/test_compat.py, in its style: each library runs with
``get_session()``, ``default_session()`` and a plain ``requests.Session()`` as
the control, or with the caller-owned kinds only where the library mounts an
adapter or resizes pools (shared sessions are read-only). Assertions are on
what the loopback server saw. A library that is not installed is skipped with
its reason; the ``compat`` extra installs them all. Patches that must not
reach the pytest process (eventlet) run in a child process, and pytest-socket
runs in a child pytest.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import importlib.util
import json
import os
import socketserver
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

import session_presets as sp
from session_presets import _process

from .servers import Handler, LoopbackServer
from .session_kinds import KINDS
from .session_kinds import is_preset as _is_preset

#: Run once, by nox's compat session, not in the four-Python core matrix (noxfile.CORE_SELECTION).
pytestmark = pytest.mark.compat

#: How long a gate route waits for the requests it expects (bounded; the tests never time it).
GATE_WAIT = 20.0


def _missing(library: str) -> str:
    """The skip reason of a library that is not installed."""
    return f"{library} is not installed (extra 'compat')"


def _max_age_route(handler: Handler) -> None:
    handler.reply(200, b"cacheable", {"Cache-Control": "max-age=300", "Content-Type": "text/plain"})


# -- CacheControl ----------------------------------------------------------------------------------


def test_cachecontrol_with_adapter_factory_caches(http_server: LoopbackServer) -> None:
    """CacheControl with session.adapter_factory(CacheControlAdapter) on a protocol preset: 2 GETs, 1 at the server."""
    pytest.importorskip("cachecontrol", reason=_missing("CacheControl"))
    from cachecontrol import CacheControl, CacheControlAdapter

    http_server.route("/cached", _max_age_route)
    with sp.default_session(cache_policy="protocol") as session:
        cached = CacheControl(session, adapter_class=session.adapter_factory(CacheControlAdapter))
        assert cached is session
        assert isinstance(session.get_adapter("http://x/"), sp.PresetAdapter)
        first, second = session.get(http_server.url("/cached")), session.get(http_server.url("/cached"))
        assert (first.text, second.text) == ("cacheable", "cacheable")
        assert (first.from_cache, second.from_cache) == (False, True)  # type: ignore[attr-defined]
        assert session.stats.requests == 1  # the preset's adapter carried the one that left
    with CacheControl(requests.Session()) as control:
        control.get(http_server.url("/cached?control")), control.get(http_server.url("/cached?control"))
    assert [r.path for r in http_server.requests] == ["/cached", "/cached?control"]
    [first_seen, _] = http_server.requests
    assert first_seen.header("Cache-Control") is None


def test_cachecontrol_on_a_reload_preset_reaches_the_server(http_server: LoopbackServer) -> None:
    """A reload preset's no-cache request headers make CacheControl skip its cache: every GET reaches the server."""
    pytest.importorskip("cachecontrol", reason=_missing("CacheControl"))
    from cachecontrol import CacheControl, CacheControlAdapter

    http_server.route("/cached", _max_age_route)
    with sp.default_session() as session:
        CacheControl(session, adapter_class=session.adapter_factory(CacheControlAdapter))
        responses = [session.get(http_server.url("/cached")) for _ in range(2)]
    assert [getattr(r, "from_cache", None) for r in responses] == [False, False]
    assert [r.header("Cache-Control") for r in http_server.requests] == ["no-cache", "no-cache"]


def test_cachecontrol_as_documented_warns_and_works(http_server: LoopbackServer) -> None:
    """CacheControl(default_session()) as its docs show: it caches, and mount() warns, naming adapter_factory."""
    pytest.importorskip("cachecontrol", reason=_missing("CacheControl"))
    from cachecontrol import CacheControl

    http_server.route("/cached", _max_age_route)
    with sp.default_session(cache_policy="protocol") as session:
        with pytest.warns(sp.ForeignAdapterWarning, match=r"adapter_factory\(CacheControlAdapter\)"):
            CacheControl(session)
        assert session.get(http_server.url("/cached")).text == "cacheable"
        assert session.get(http_server.url("/cached")).from_cache  # type: ignore[attr-defined]
    assert len(http_server.requests) == 1


def test_cachecontrol_on_the_shared_session_is_refused_clearly() -> None:
    """CacheControl(get_session()) raises SharedSessionError naming default_session(); the shared adapters stay."""
    pytest.importorskip("cachecontrol", reason=_missing("CacheControl"))
    from cachecontrol import CacheControl

    shared = sp.get_session()
    with pytest.raises(sp.SharedSessionError, match=r"default_session\("):
        CacheControl(shared)
    assert all(type(adapter) is sp.PresetAdapter for adapter in shared.adapters.values())


# -- requests-futures ------------------------------------------------------------------------------


def test_requests_futures_from_several_threads(session: requests.Session, http_server: LoopbackServer) -> None:
    """FuturesSession(session=...) fed from 4 threads: 20 requests reach the server, each with the session's headers."""
    futures_sessions = pytest.importorskip("requests_futures.sessions", reason=_missing("requests-futures"))
    futures = futures_sessions.FuturesSession(session=session, max_workers=4)
    results: dict[int, list[str]] = {}
    done = threading.Barrier(5, timeout=60)

    def feed(worker: int) -> None:
        pending = [futures.get(http_server.url(f"/ok?worker={worker}&n={n}")) for n in range(5)]
        results[worker] = [future.result(timeout=60).text for future in pending]
        done.wait()

    try:
        for worker in range(4):
            _process.start_thread(feed, name=f"compat-futures-{worker}", args=(worker,))
        done.wait()
    finally:
        futures.close()
    assert results == {worker: ["ok"] * 5 for worker in range(4)}
    assert len(http_server.requests) == 20
    expected = "no-cache" if _is_preset(session) else None
    assert {seen.header("Cache-Control") for seen in http_server.requests} == {expected}


class _Gate:
    """A route that holds each request until ``expected`` are in flight at once (or GATE_WAIT passes)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.full = threading.Event()

    def __call__(self, handler: Handler) -> None:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if self.in_flight >= self.expected:
                self.full.set()
        self.full.wait(GATE_WAIT)
        with self.lock:
            self.in_flight -= 1
        handler.reply(200, b"through")


def test_requests_futures_resizes_a_used_session(owned_session: requests.Session, http_server: LoopbackServer) -> None:
    """FuturesSession(session=..., max_workers=12) on a used session: 12 run at once, and the pool keeps all 12."""
    futures_sessions = pytest.importorskip("requests_futures.sessions", reason=_missing("requests-futures"))
    gates = {round_: _Gate(12) for round_ in (1, 2)}
    for round_, gate in gates.items():
        http_server.route(f"/gate{round_}", gate)
    assert owned_session.get(http_server.url("/ok")).text == "ok"  # a pool of the default size (10) exists
    opened = {}
    with futures_sessions.FuturesSession(session=owned_session, max_workers=12) as futures:
        for round_ in gates:
            pending = [futures.get(http_server.url(f"/gate{round_}")) for _ in range(12)]
            assert [future.result(timeout=GATE_WAIT * 3).text for future in pending] == ["through"] * 12
            opened[round_] = http_server.connections
    assert [gate.peak for gate in gates.values()] == [12, 12]
    # The second round reuses the 12 connections of the first: a pool still sized 10 drops 2 of them.
    assert opened[2] == opened[1]
    if _is_preset(owned_session):
        assert owned_session.stats.requests == 25  # type: ignore[attr-defined]


def test_requests_futures_resizing_the_shared_session_is_refused() -> None:
    """FuturesSession(session=get_session(), max_workers=16) raises SharedSessionError naming pool_maxsize."""
    futures_sessions = pytest.importorskip("requests_futures.sessions", reason=_missing("requests-futures"))
    shared = sp.get_session()
    with pytest.raises(sp.SharedSessionError, match="pool_maxsize"):
        futures_sessions.FuturesSession(session=shared, max_workers=16)
    assert shared.get_adapter("http://x/")._pool_maxsize == sp.get_preset("default").pool_maxsize  # type: ignore[attr-defined]


def test_requests_futures_retries_on_the_shared_session_are_refused(http_server: LoopbackServer) -> None:
    """adapter_kwargs={'max_retries': 5} on get_session() raises SharedSessionError; on default_session() it applies."""
    futures_sessions = pytest.importorskip("requests_futures.sessions", reason=_missing("requests-futures"))
    shared = sp.get_session()
    with pytest.raises(sp.SharedSessionError, match="retries in the preset"):
        futures_sessions.FuturesSession(session=shared, adapter_kwargs={"max_retries": 5})
    assert shared.get_adapter("http://x/").max_retries.total == sp.get_preset("default").retries
    owned = sp.default_session(backoff_factor=0)
    with owned, futures_sessions.FuturesSession(session=owned, adapter_kwargs={"max_retries": 1}) as futures:
        futures.get(http_server.url("/reset")).exception(timeout=60)
    # Retry.from_int(1): one retry after the reset, where the preset's retries=2 makes two.
    assert [r.path for r in http_server.requests] == ["/reset"] * 2


# -- httpretty -------------------------------------------------------------------------------------


def _import_httpretty(monkeypatch: pytest.MonkeyPatch) -> Any:
    # httpretty imports eventlet when it is installed, and an imported eventlet warns
    # (DeprecationWarning) at every later os.fork() of the process: the fork tests'.
    monkeypatch.setitem(sys.modules, "eventlet", None)  # httpretty then runs without it
    return pytest.importorskip("httpretty", reason=_missing("httpretty"))


# httpretty 1.1.4 calls datetime.utcnow() (deprecated since Python 3.12) in the thread that serves a mock.
@pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")
def test_httpretty_intercepts_our_sockets(
    session: requests.Session, http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpretty.enable() answers a registered URL from our own socket code; after disable() the server is reached."""
    httpretty = _import_httpretty(monkeypatch)
    mocked = http_server.url("/mocked")
    # The default allow_net_connect=True: with False, urllib3 2's getresponse() itself fails on
    # httpretty's socket (UnmockedError for socket.shutdown), the plain Session included.
    httpretty.enable()
    try:
        httpretty.register_uri(httpretty.GET, mocked, body="from httpretty")
        assert session.get(mocked).text == "from httpretty"
        sent = httpretty.last_request()
    finally:
        httpretty.disable()
        httpretty.reset()
    assert sent.headers.get("Cache-Control") == ("no-cache" if _is_preset(session) else None)
    assert http_server.requests == []
    assert session.get(http_server.url("/ok")).text == "ok"
    assert [r.path for r in http_server.requests] == ["/ok"]


# -- requests-unixsocket ---------------------------------------------------------------------------


class _UnixHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10

    def do_GET(self) -> None:
        self.server.seen.append((self.path, dict(self.headers.items())))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"unix")

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: ``seen`` is the log."""


#: A Unix-socket server: its path, and the (path, headers) of each request it got.
UnixServer = tuple[str, list[tuple[str, dict[str, str]]]]


@pytest.fixture
def unix_server() -> Iterator[UnixServer]:
    """An HTTP/1.1 server on a Unix socket: its path and the (path, headers) of each request it got."""
    folder = tempfile.mkdtemp(prefix="sp-unix-")
    path = os.path.join(folder, "http.sock")
    server = socketserver.UnixStreamServer(path, _UnixHandler)
    server.seen = []  # type: ignore[attr-defined]
    stopped = threading.Event()

    def serve() -> None:
        try:
            server.serve_forever(poll_interval=0.05)
        finally:
            stopped.set()

    _process.start_thread(serve, name="compat-unix-server")
    try:
        yield path, server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        stopped.wait(30)
        server.server_close()
        os.unlink(path)
        os.rmdir(folder)


def test_requests_unixsocket_mounts_without_a_warning(
    owned_session: requests.Session, unix_server: UnixServer, http_server: LoopbackServer
) -> None:
    """UnixAdapter mounted for http+unix:// warns nothing; the Unix server gets the call, http:// keeps the preset."""
    requests_unixsocket = pytest.importorskip("requests_unixsocket", reason=_missing("requests-unixsocket"))
    path, seen = unix_server
    owned_session.mount("http+unix://", requests_unixsocket.UnixAdapter())  # -W error: a warning would fail here
    assert owned_session.get("http+unix://" + urllib.parse.quote(path, safe="") + "/info?x=1").text == "unix"
    assert owned_session.get(http_server.url("/ok")).text == "ok"
    if _is_preset(owned_session):
        assert isinstance(owned_session.get_adapter(http_server.url("/ok")), sp.PresetAdapter)
        assert owned_session.stats.requests == 1  # type: ignore[attr-defined]  # the http:// one
    owned_session.close()  # the Unix connection, before the server stops
    [(target, headers)] = seen
    assert target == "/info?x=1"
    assert headers.get("Cache-Control") == ("no-cache" if _is_preset(owned_session) else None)
    assert [r.path for r in http_server.requests] == ["/ok"]


# -- pytest-socket ---------------------------------------------------------------------------------

_SOCKET_TEST = '''
import os

import pytest
import requests

import session_presets as sp


@pytest.mark.parametrize("kind", ["get_session", "default_session", "plain"])
def test_call(kind):
    make = {"get_session": sp.get_session, "default_session": sp.default_session, "plain": requests.Session}[kind]
    session = make()
    try:
        assert session.get(os.environ["COMPAT_URL"] + "?kind=" + kind).text == "ok"
    finally:
        if kind != "get_session":
            session.close()
'''


def _child_pytest(folder: Path, url: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:cov", "-W", "error", *options],
        cwd=folder,
        env={**os.environ, "COMPAT_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_pytest_socket(http_server: LoopbackServer, tmp_path: Path) -> None:
    """pytest-socket: --allow-hosts=127.0.0.1 lets every kind through; --disable-socket fails each with its error."""
    pytest.importorskip("pytest_socket", reason=_missing("pytest-socket"))
    (tmp_path / "test_sockets.py").write_text(_SOCKET_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    allowed = _child_pytest(tmp_path, http_server.url("/ok"), "--allow-hosts=127.0.0.1")
    assert allowed.returncode == 0, allowed.stdout[-3000:] + allowed.stderr[-2000:]
    assert "3 passed" in allowed.stdout
    assert sorted(r.path for r in http_server.requests) == sorted(f"/ok?kind={kind}" for kind in KINDS)
    blocked = _child_pytest(tmp_path, http_server.url("/ok"), "--disable-socket")
    assert "3 failed" in blocked.stdout, blocked.stdout[-3000:]
    # pytest-socket warns its message, then raises it (under -W error the warning is what raises).
    assert blocked.stdout.count("A test tried to use socket.getaddrinfo") >= 3, blocked.stdout[-3000:]
    elsewhere = _child_pytest(tmp_path, http_server.url("/ok"), "--allow-hosts=192.0.2.1")
    assert "3 failed" in elsewhere.stdout, elsewhere.stdout[-3000:]
    assert 'with host "127.0.0.1"' in elsewhere.stdout
    assert len(http_server.requests) == 3


# -- eventlet --------------------------------------------------------------------------------------

_EVENTLET_CHILD = '''
import json
import sys
import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"\\s*Eventlet is deprecated")
    import eventlet
eventlet.monkey_patch()

import requests

import session_presets as sp

url = sys.argv[1]
report = {}
makers = {"get_session": sp.get_session, "default_session": sp.default_session, "plain": requests.Session}
for kind, make in makers.items():
    session = make()
    pool = eventlet.GreenPool(8)
    report[kind] = list(pool.imap(lambda n: session.get(f"{url}?kind={kind}&n={n}").text, range(8)))
    if kind != "get_session":
        session.close()
report["stats"] = sp.get_session().stats.requests
sp.close_all()
print(json.dumps(report))
'''


def test_eventlet_monkey_patch(http_server: LoopbackServer) -> None:
    """eventlet.monkey_patch() then 8 green threads per session kind: 24 requests reach the server."""
    # Not imported here: an imported eventlet warns at every later os.fork() of the process.
    if importlib.util.find_spec("eventlet") is None:
        pytest.skip(_missing("eventlet"))
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", _EVENTLET_CHILD, http_server.url("/ok")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {kind: report[kind] for kind in KINDS} == dict.fromkeys(KINDS, ["ok"] * 8)
    assert report["stats"] == 8
    assert len(http_server.requests) == 24


# -- auth objects ----------------------------------------------------------------------------------


def _aws4_checks(seen: Any, body: bytes) -> None:
    authorization = seen.header("Authorization")
    assert authorization is not None and authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/s3/aws4_request" in authorization
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date" in authorization
    assert seen.header("x-amz-content-sha256") == hashlib.sha256(body).hexdigest()
    assert seen.header("x-amz-date") is not None


def test_requests_aws4auth_per_call(session: requests.Session, http_server: LoopbackServer) -> None:
    """An AWS4Auth object passed per call signs a PUT on every kind of session: the server sees the signature."""
    requests_aws4auth = pytest.importorskip("requests_aws4auth", reason=_missing("requests-aws4auth"))
    auth = requests_aws4auth.AWS4Auth("AKIDEXAMPLE", "secret", "us-east-1", "s3")
    body = b"signed body"
    assert session.put(http_server.url("/ok"), data=body, auth=auth).text == "ok"
    [seen] = http_server.requests
    assert seen.body == body
    _aws4_checks(seen, body)


def test_requests_aws4auth_on_a_caller_owned_session(http_server: LoopbackServer) -> None:
    """default_session(auth=AWS4Auth(...)) signs every call, the redirect target's too."""
    requests_aws4auth = pytest.importorskip("requests_aws4auth", reason=_missing("requests-aws4auth"))
    auth = requests_aws4auth.AWS4Auth("AKIDEXAMPLE", "secret", "us-east-1", "s3")
    with sp.default_session(auth=auth) as session:
        assert session.get(http_server.url("/redirect?to=/ok")).text == "ok"
    assert [r.path for r in http_server.requests] == ["/redirect?to=/ok", "/ok"]
    for seen in http_server.requests:
        _aws4_checks(seen, b"")


@pytest.fixture
def ntlm_route(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A route that runs NTLM's handshake as a server (pyspnego), one context per connection, for CORP\\alice."""
    spnego = pytest.importorskip("spnego", reason=_missing("requests-ntlm"))
    users = tmp_path / "ntlm-users.txt"
    users.write_text("CORP:alice:s3cret\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))  # where pyspnego's NTLM acceptor reads credentials

    def route(handler: Handler) -> None:
        authorization = handler.recorded.headers.get("Authorization")
        if not authorization:
            handler.reply(401, b"", {"WWW-Authenticate": "NTLM"})
            return
        token = base64.b64decode(authorization.split(" ", 1)[1])
        # NTLM authenticates the connection: its context lives on the connection's handler,
        # from the NEGOTIATE message (type 1) to the AUTHENTICATE one (type 3).
        if token[8] == 1:
            handler.ntlm_context = spnego.server(protocol="ntlm")  # type: ignore[attr-defined]
        context = handler.ntlm_context  # type: ignore[attr-defined]
        out = context.step(token)
        if not context.complete:
            handler.reply(401, b"", {"WWW-Authenticate": "NTLM " + base64.b64encode(out).decode()})
            return
        handler.reply(200, context.client_principal.encode())

    return route


def _ntlm_legs(http_server: LoopbackServer) -> list[tuple[int, str]]:
    """(connection, message type) of each request the NTLM route got: '' when it had no Authorization."""
    legs = []
    for seen in http_server.requests:
        token = (seen.header("Authorization") or " ").split(" ", 1)[1]
        legs.append((seen.connection, str(base64.b64decode(token)[8]) if token else ""))
    return legs


def test_requests_ntlm_per_call(session: requests.Session, http_server: LoopbackServer, ntlm_route: Any) -> None:
    """HttpNtlmAuth per call: the three-leg handshake runs on one connection and the server names the user."""
    requests_ntlm = pytest.importorskip("requests_ntlm", reason=_missing("requests-ntlm"))
    http_server.route("/ntlm", ntlm_route)
    response = session.get(http_server.url("/ntlm"), auth=requests_ntlm.HttpNtlmAuth("CORP\\alice", "s3cret"))
    assert (response.status_code, response.text) == (200, "CORP\\alice")
    assert _ntlm_legs(http_server) == [(1, ""), (1, "1"), (1, "3")]


def test_requests_ntlm_on_a_caller_owned_session(http_server: LoopbackServer, ntlm_route: Any) -> None:
    """default_session(auth=HttpNtlmAuth(...)): each call authenticates on its one pooled connection."""
    requests_ntlm = pytest.importorskip("requests_ntlm", reason=_missing("requests-ntlm"))
    http_server.route("/ntlm", ntlm_route)
    with sp.default_session(auth=requests_ntlm.HttpNtlmAuth("CORP\\alice", "s3cret")) as session:
        assert [session.get(http_server.url("/ntlm")).text for _ in range(2)] == ["CORP\\alice"] * 2
        assert session.stats.connections_opened == 1
    assert _ntlm_legs(http_server) == [(1, ""), (1, "1"), (1, "3")] * 2


# -- adapters users mount themselves ---------------------------------------------------------------


def test_http_adapter_with_urllib3_retry(owned_session: requests.Session, http_server: LoopbackServer) -> None:
    """An HTTPAdapter(max_retries=Retry(...)) mounted as requests documents retries as configured; a preset warns."""
    retry = Retry(total=2, status_forcelist=[503], backoff_factor=0, raise_on_status=False)
    adapter = HTTPAdapter(max_retries=retry)
    if _is_preset(owned_session):
        with pytest.warns(sp.ForeignAdapterWarning, match=r"adapter_factory\(HTTPAdapter\)"):
            owned_session.mount("http://", adapter)
    else:
        owned_session.mount("http://", adapter)
    assert owned_session.get(http_server.url("/status/503")).status_code == 503
    assert [r.path for r in http_server.requests] == ["/status/503"] * 3
    expected = "no-cache" if _is_preset(owned_session) else None
    assert {seen.header("Cache-Control") for seen in http_server.requests} == {expected}


def test_adapter_factory_of_http_adapter_is_the_preset_adapter() -> None:
    """preset_adapter_class(HTTPAdapter) is PresetAdapter itself; a non-adapter is refused with a TypeError."""
    assert sp.preset_adapter_class(HTTPAdapter) is sp.PresetAdapter
    assert sp.preset_adapter_class(sp.PresetAdapter) is sp.PresetAdapter
    with pytest.raises(TypeError, match="HTTPAdapter subclass"):
        sp.preset_adapter_class(requests.Session)  # type: ignore[arg-type]


def _peer_route(handler: Handler) -> None:
    handler.reply(200, handler.client_address[0].encode())


def test_requests_toolbelt_source_address_adapter(owned_session: requests.Session, http_server: LoopbackServer) -> None:
    """SourceAddressAdapter('127.0.0.2') as its docs show: the server sees 127.0.0.2; on a preset mount() warns."""
    source = pytest.importorskip("requests_toolbelt.adapters.source", reason=_missing("requests-toolbelt"))
    http_server.route("/peer", _peer_route)
    adapter = source.SourceAddressAdapter("127.0.0.2")
    if _is_preset(owned_session):
        with pytest.warns(sp.ForeignAdapterWarning, match="SourceAddressAdapter"):
            owned_session.mount("http://", adapter)
    else:
        owned_session.mount("http://", adapter)
    assert owned_session.get(http_server.url("/peer")).text == "127.0.0.2"


def test_source_address_adapter_through_adapter_factory(http_server: LoopbackServer) -> None:
    """session.adapter_factory(SourceAddressAdapter) binds 127.0.0.2 and keeps the preset: pool reuse and stats."""
    source = pytest.importorskip("requests_toolbelt.adapters.source", reason=_missing("requests-toolbelt"))
    http_server.route("/peer", _peer_route)
    with sp.default_session() as session:
        adapter = session.adapter_factory(source.SourceAddressAdapter)("127.0.0.2")
        assert isinstance(adapter, sp.PresetAdapter)
        session.mount("http://", adapter)
        assert [session.get(http_server.url("/peer")).text for _ in range(3)] == ["127.0.0.2"] * 3
        stats = session.stats
    assert (stats.requests, stats.connections_opened, stats.connections_reused) == (3, 1, 2)
    assert http_server.connections == 1
    assert {seen.header("Cache-Control") for seen in http_server.requests} == {"no-cache"}


# -- urllib3.contrib -------------------------------------------------------------------------------


# urllib3 before 2.8 calls pyOpenSSL's X509.get_subject, which pyOpenSSL now deprecates: upstream's
# warning, raised inside urllib3's own module, is not this package's to fix.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:urllib3.contrib.pyopenssl")
def test_urllib3_contrib_pyopenssl_injection(
    session: requests.Session, https_server: LoopbackServer, ca_bundle: str
) -> None:
    """urllib3's pyOpenSSL inject_into_urllib3() leaves every kind's https:// calls working, and its extraction too."""
    pytest.importorskip("OpenSSL", reason=_missing("pyopenssl"))
    pyopenssl = pytest.importorskip("urllib3.contrib.pyopenssl", reason=_missing("pyopenssl"))
    pyopenssl.inject_into_urllib3()
    try:
        # Presets keep their shared stdlib SSLContext (and TLS resumption): pyOpenSSL serves plain sessions only.
        assert session.get(https_server.url("/ok"), verify=ca_bundle).text == "ok"
    finally:
        pyopenssl.extract_from_urllib3()
    assert session.get(https_server.url("/echo"), verify=ca_bundle).json()["path"] == "/echo"
    assert [r.path for r in https_server.requests] == ["/ok", "/echo"]
