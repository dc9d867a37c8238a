"""PresetSession lifecycle with URLSession semantics: invalidate, cancel, flush, reset, leak guard, stats."""

from __future__ import annotations

import gc
import logging
import os
import stat
import subprocess
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path

import pytest
import requests

from session_presets import (
    InvalidationTimeoutError,
    PresetSession,
    SessionInvalidatedError,
    SessionRegistry,
    SessionReuseError,
    SessionReuseWarning,
    SessionState,
    default_session,
    ephemeral_session,
    get_preset,
    get_session,
    register_preset,
)

from .servers import LoopbackServer
from .waiting import wait_until


def _in_thread(target, *args):  # type: ignore[no-untyped-def]
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = target(*args)
        except BaseException as exc:
            box["error"] = exc
        box["done"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _wait_for_request(server: LoopbackServer, path: str, count: int = 1) -> None:
    wait_until(
        lambda: server.saw(path) >= count,
        20.0,
        f"the server to see {path} {count} time(s)",
    )


def test_finish_tasks_waits_for_requests_in_flight(https_server: LoopbackServer, ca_bundle: str) -> None:
    """A slow request completes with its full body; invalidation returns after it; then requests are refused."""
    session = default_session(ca_bundle=ca_bundle)
    thread, box = _in_thread(lambda: session.get(https_server.url("/slow?delay=0.6")))
    _wait_for_request(https_server, "/slow")
    session.finish_tasks_and_invalidate()
    returned = time.monotonic()
    thread.join(5)
    assert box["result"].content == b"slow"  # type: ignore[attr-defined]
    assert box["done"] <= returned  # type: ignore[operator]
    assert session.state is SessionState.INVALIDATED
    with pytest.raises(SessionInvalidatedError, match="refuses new requests"):
        session.get(https_server.url())
    assert len(https_server.requests) == 1
    session.close()  # a second close is harmless


def test_finish_tasks_timeout_leaves_invalidating(http_server: LoopbackServer) -> None:
    """A timeout while requests are in flight raises and leaves the session invalidating."""
    session = default_session()
    thread, _box = _in_thread(lambda: session.get(http_server.url("/slow?delay=1")))
    _wait_for_request(http_server, "/slow")
    with pytest.raises(InvalidationTimeoutError):
        session.finish_tasks_and_invalidate(timeout=0.05)
    assert session.state is SessionState.INVALIDATING
    with pytest.raises(SessionInvalidatedError):
        session.get(http_server.url())
    thread.join(5)
    session.close()
    assert session.state is SessionState.INVALIDATED


@pytest.mark.timeout(20)
def test_invalidate_and_cancel_aborts_blocked_read(https_server: LoopbackServer, ca_bundle: str) -> None:
    """A thread blocked on a 1 byte/s body raises SessionInvalidatedError after cancel, long before the body ends."""
    session = default_session(ca_bundle=ca_bundle, total_timeout=None)
    headers_in = threading.Event()
    # Response hooks run before requests reads a non-streamed body: the call is in its body read from here on.
    session.hooks["response"].append(lambda response, *args, **kwargs: headers_in.set())
    thread, box = _in_thread(lambda: session.get(https_server.url("/trickle?bytes=30&interval=1")))
    assert headers_in.wait(10), "the response headers never arrived"
    session.invalidate_and_cancel()
    thread.join(10)
    assert not thread.is_alive(), "the cancelled read went on (the body takes 30 s)"
    assert isinstance(box.get("error"), SessionInvalidatedError), box
    assert session.state is SessionState.INVALIDATED
    assert session.stats.errors == 1


def test_cancel_interrupts_retry_backoff(http_server: LoopbackServer) -> None:
    """A call sleeping between retries is cancelled too, and the server sees no further attempt."""
    session = default_session(retries=3, backoff_factor=5, total_timeout=None)
    thread, box = _in_thread(lambda: session.get(http_server.url("/status/503")))
    _wait_for_request(http_server, "/status/503", count=2)  # urllib3 retries once at once, then backs off
    session.invalidate_and_cancel()
    thread.join(5)
    assert not thread.is_alive(), "the cancelled call went on backing off"
    assert isinstance(box.get("error"), SessionInvalidatedError)
    # The call's thread has ended, so no later attempt can still be on its way to the server.
    assert len(http_server.requests) == 2


def test_flush_opens_new_connection_and_keeps_cookies(https_server: LoopbackServer, ca_bundle: str,
                                                      tmp_path: Path) -> None:
    """flush() writes the cookie file (0600) and the next request opens a new connection."""
    cookie_file = tmp_path / "cookies.txt"
    with default_session(ca_bundle=ca_bundle, cookies="file", cookie_file=str(cookie_file)) as session:
        session.get(https_server.url("/set-cookie?name=sid&value=42"))
        session.get(https_server.url("/ok"))
        assert https_server.connections == 1
        session.flush()
        assert stat.S_IMODE(cookie_file.stat().st_mode) == 0o600
        assert "sid\t42" in cookie_file.read_text()
        session.get(https_server.url("/ok"))
        assert https_server.connections == 2
        assert https_server.requests[-1].header("Cookie") == "sid=42"
        assert session.stats.connections_opened == https_server.connections
    with default_session(ca_bundle=ca_bundle, cookies="file", cookie_file=str(cookie_file)) as again:
        again.get(https_server.url("/echo"))
    assert https_server.requests[-1].header("Cookie") == "sid=42"


def test_reset_forgets_cookies_auth_file_and_connections(http_server: LoopbackServer, tmp_path: Path) -> None:
    """reset() empties cookies and credentials, deletes the cookie file, and reconnects."""
    cookie_file = tmp_path / "cookies.txt"
    with default_session(cookies="file", cookie_file=str(cookie_file)) as session:
        session.auth = ("user", "pw")
        session.get(http_server.url("/set-cookie?name=sid&value=1"))
        session.flush()
        assert cookie_file.exists()
        session.reset()
        assert not cookie_file.exists()
        session.get(http_server.url("/echo"))
        seen = http_server.requests[-1]
        assert seen.header("Cookie") is None
        assert seen.header("Authorization") is None
        assert http_server.connections == 2
        assert session.state is SessionState.ACTIVE


def test_stats_match_server_connection_counts(http_server: LoopbackServer) -> None:
    """connections_opened equals what the server accepted: reuse, flush, and server-closed keep-alive."""
    with default_session() as session:
        for _ in range(10):
            session.get(http_server.url())
        assert (session.stats.connections_opened, http_server.connections) == (1, 1)
        session.flush()
        session.get(http_server.url())
        assert (session.stats.connections_opened, http_server.connections) == (2, 2)
        session.get(http_server.url("/close"))
        session.get(http_server.url())
        assert (session.stats.connections_opened, http_server.connections) == (3, 3)
        http_server.close_idle_connections()
        wait_until(lambda: http_server.mock.open_connections == 0, 10.0, "the server to close its idle connection")
        session.get(http_server.url())
        stats = session.stats
        assert stats.connections_opened == http_server.connections == 4
        assert stats.requests == 14 == stats.connections_opened + stats.connections_reused
        assert stats.errors == stats.retries == 0


def test_stats_count_in_place_reconnects(http_server: LoopbackServer) -> None:
    """A reconnect that urllib3 makes in place on a retired connection is counted too."""
    with default_session(max_connection_age=0.05) as session:
        session.get(http_server.url())
        time.sleep(0.1)
        session.get(http_server.url())
        assert session.stats.connections_opened == http_server.connections == 2


def test_gc_of_unclosed_session_warns() -> None:
    """An active caller-owned session collected by the GC emits a ResourceWarning naming the preset."""
    with pytest.warns(ResourceWarning, match="unclosed session for preset 'ephemeral'.*with"):
        ephemeral_session()
        gc.collect()


_EXIT_WITH_REGISTRY_SESSIONS = """
import sys
import weakref
import session_presets as sp

freed = []
for preset in ("default", "ephemeral"):
    session = sp.get_session(preset)
    session.get(sys.argv[1]).close()
    freed.append(weakref.ref(session, lambda _ref, name=preset: print("freed", name, flush=True)))
del session
"""


@pytest.mark.parametrize(
    ("options", "environment"),
    [
        (["-W", "error::ResourceWarning"], {}),
        ([], {"PYTHONWARNINGS": "error::ResourceWarning"}),
        (["-X", "dev", "-W", "error"], {}),
    ],
    ids=["W-error-ResourceWarning", "PYTHONWARNINGS", "X-dev-W-error"],
)
def test_registry_sessions_never_warn_at_interpreter_exit(
    http_server: LoopbackServer, options: list[str], environment: dict[str, str]
) -> None:
    """A process that used get_session() exits unclosed: its sessions are freed at exit and stderr stays empty."""
    result = subprocess.run(
        [sys.executable, *options, "-c", _EXIT_WITH_REGISTRY_SESSIONS, http_server.url()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **environment},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # Freed at exit, so PresetSession.__del__ really ran there (a session kept alive never gets to warn).
    assert sorted(result.stdout.splitlines()) == ["freed default", "freed ephemeral"]
    assert http_server.saw("/ok") == 2


def test_registry_session_freed_unclosed_never_warns(http_server: LoopbackServer) -> None:
    """A registry's session collected without close (its registry dropped) runs __del__ and emits no warning."""
    registry = SessionRegistry()
    registry.get().get(http_server.url()).close()
    collected = weakref.ref(registry.get())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del registry
        gc.collect()
    assert collected() is None, "the session outlived its registry: __del__ was not exercised"
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert http_server.saw("/ok") == 1


def test_many_sessions_warn_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """33 quick default_session() calls emit exactly one SessionReuseWarning pointing at get_session."""
    with pytest.warns(SessionReuseWarning, match=r"get_session\('default'\)") as record:
        for _ in range(40):
            default_session().close()
    assert len([w for w in record if w.category is SessionReuseWarning]) == 1


def test_strict_reuse_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """SESSION_PRESETS_STRICT_REUSE=1 turns the churn warning into an error."""
    monkeypatch.setenv("SESSION_PRESETS_STRICT_REUSE", "1")
    with pytest.raises(SessionReuseError, match="get_session"):
        for _ in range(33):
            ephemeral_session().close()


def test_registry_replaces_invalidated_session(http_server: LoopbackServer) -> None:
    """Invalidating a registry session removes it; the next get_session builds a new one."""
    first = get_session()
    first.get(http_server.url())
    first.finish_tasks_and_invalidate()
    second = get_session()
    assert second is not first
    assert second.state is SessionState.ACTIVE
    second.get(http_server.url())
    assert http_server.connections == 2


def test_lifecycle_logged_without_query(caplog: pytest.LogCaptureFixture, http_server: LoopbackServer) -> None:
    """DEBUG carries lifecycle events; error messages and logs never carry query strings."""
    caplog.set_level(logging.DEBUG, logger="session_presets")
    session = default_session(total_timeout=0.3)
    with pytest.raises(requests.Timeout) as info:
        session.get(http_server.url("/trickle?bytes=10&interval=0.2&token=SECRET"))
    session.close()
    text = caplog.text + str(info.value)
    assert "invalidated" in caplog.text
    assert "SECRET" not in text


def test_cookie_policy_none_stores_nothing(http_server: LoopbackServer) -> None:
    """cookies='none' never stores a cookie a server sets, but sends per-request cookies."""
    with default_session(cookies="none") as session:
        session.get(http_server.url("/set-cookie?name=a&value=1"))
        session.get(http_server.url("/echo"), cookies={"explicit": "yes"})
    assert http_server.requests[-1].header("Cookie") == "explicit=yes"
    assert len(session.cookies) == 0


def test_corrupt_cookie_file_is_reported_and_kept(tmp_path: Path) -> None:
    """A cookie file that is not a cookies.txt file raises ConfigError naming it, and is not deleted."""
    from session_presets import ConfigError

    path = tmp_path / "cookies.txt"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ConfigError, match="cookies.txt"):
        default_session(cookies="file", cookie_file=str(path))
    assert path.read_bytes() == b"\x00garbage"


def test_plain_constructor_uses_default_preset(http_server: LoopbackServer) -> None:
    """PresetSession() with no config uses the effective default preset."""
    with PresetSession() as session:
        assert session.config == get_preset("default")
        assert repr(session) == "<PresetSession preset='default' state=active>"


def test_registered_preset_through_registry(http_server: LoopbackServer) -> None:
    """get_session works for a registered preset and applies its headers."""
    register_preset("tagged", headers={"X-Team": "core"})
    get_session("tagged").get(http_server.url("/echo"))
    assert http_server.requests[-1].header("X-Team") == "core"


def test_close_from_inside_a_hook_does_not_deadlock(http_server: LoopbackServer) -> None:
    """A session closed by its own thread mid-call does not wait for itself."""
    session = default_session()

    def hook(response, *args, **kwargs):  # type: ignore[no-untyped-def]
        session.finish_tasks_and_invalidate(timeout=1)
        return response

    session.hooks["response"].append(hook)
    assert session.get(http_server.url()).status_code == 200
    assert session.state is SessionState.INVALIDATED
    assert [seen.path for seen in http_server.requests] == ["/ok"]


@pytest.mark.timeout(20)
def test_invalidate_and_cancel_cuts_a_streamed_body(http_server: LoopbackServer) -> None:
    """A body read with stream=True after send() returned is cut too, and its reader gets a requests error."""
    session = default_session(total_timeout=None)
    response = session.get(http_server.url("/trickle?bytes=30&interval=1"), stream=True)
    received: list[bytes] = []
    thread, box = _in_thread(lambda: received.extend(response.iter_content(1)))
    wait_until(lambda: len(received) >= 1, 10.0, "the reader to receive the body's first byte")
    session.invalidate_and_cancel()
    thread.join(10)
    assert not thread.is_alive(), "the cancelled read went on (the body takes 30 s)"
    assert isinstance(box.get("error"), requests.RequestException), box
    assert len(received) < 30
    response.close()


def test_finished_streams_leave_nothing_checked_out(http_server: LoopbackServer) -> None:
    """Connections return to the pool when a streamed body is consumed, so cancel has nothing to cut."""
    with default_session() as session:
        for _ in range(3):
            with session.get(http_server.url(), stream=True) as response:
                assert response.content == b"ok"
        assert len(session.adapter._checked_out) == 0
        session.get(http_server.url())
        assert len(session.adapter._checked_out) == 0
    assert http_server.connections == 1
