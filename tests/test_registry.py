"""The registry: one shared session per preset per process, lock-free lookups, fork safety."""

from __future__ import annotations

import os
import threading

import pytest

from session_presets import (
    ConfigError,
    SessionRegistry,
    SessionState,
    UnknownPresetError,
    close_all,
    get_session,
)
from session_presets import _registry as sp_registry

from .servers import LoopbackServer


def test_same_object_every_call_and_thread() -> None:
    """32 threads racing on the first call all get the same session object."""
    barrier = threading.Barrier(32)
    seen: list[object] = []

    def grab() -> None:
        barrier.wait(5)
        seen.append(get_session("ephemeral"))

    threads = [threading.Thread(target=grab) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(seen) == 32
    assert all(item is seen[0] for item in seen)
    assert get_session("ephemeral") is seen[0]
    assert get_session("default") is not seen[0]


def test_lookup_after_first_call_takes_no_lock() -> None:
    """Once built, get_session never touches the registry lock."""
    session = get_session()

    class Forbidden:
        def __enter__(self) -> None:
            raise AssertionError("lock taken on a warm lookup")

        def __exit__(self, *args: object) -> None:  # pragma: no cover
            pass

    registry = sp_registry.default_registry
    real_lock, registry._lock = registry._lock, Forbidden()  # type: ignore[assignment]
    try:
        assert get_session() is session
        assert registry.get() is session
    finally:
        registry._lock = real_lock


def test_unknown_and_bad_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown name raises UnknownPresetError; a bad variable raises when the session is built."""
    with pytest.raises(UnknownPresetError, match="did you mean 'background'"):
        get_session("backgroud")
    monkeypatch.setenv("SESSION_PRESETS_DEFAULT_RETRIES", "many")
    with pytest.raises(ConfigError, match="SESSION_PRESETS_DEFAULT_RETRIES"):
        get_session()


def test_close_all_invalidates_and_empties(http_server: LoopbackServer) -> None:
    """close_all() invalidates every shared session; the next call builds fresh ones."""
    first = get_session()
    first.get(http_server.url())
    other = get_session("ephemeral")
    close_all(timeout=5)
    assert first.state is SessionState.INVALIDATED
    assert other.state is SessionState.INVALIDATED
    assert sp_registry.default_registry.names() == []
    assert get_session() is not first


def test_standalone_registry_with_its_own_environment(http_server: LoopbackServer) -> None:
    """A SessionRegistry works on its own, reading the environment mapping it was given."""
    registry = SessionRegistry(environ={"SESSION_PRESETS_HEADERS": '{"X-Env": "injected"}'})
    session = registry.get()
    assert session is not get_session()
    session.get(http_server.url("/echo"))
    assert http_server.requests[-1].header("X-Env") == "injected"
    registry.close_all()
    assert session.state is SessionState.INVALIDATED


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_builds_its_own_session(http_server: LoopbackServer) -> None:
    """In a forked child get_session builds a new session and the server sees a new connection."""
    parent = get_session()
    parent.get(http_server.url("/echo"))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            child = get_session()
            response = child.get(http_server.url("/echo"))
            code = 0 if (child is not parent and response.json()["connection"] != 1) else 2
        finally:
            os.write(write_end, bytes([code]))
            os._exit(0)
    os.close(write_end)
    status = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert status == b"\x00"
    assert http_server.connections == 2
    parent.get(http_server.url("/echo"))
    assert http_server.requests[-1].connection == 1  # the parent keeps its own connection


def test_exit_handler_cancels_a_session_still_busy(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At exit, a shared session busy past the grace period is cancelled instead of hanging."""
    monkeypatch.setattr(sp_registry, "EXIT_GRACE", 0.1)
    session = get_session()
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            session.get(http_server.url("/trickle?bytes=20&interval=0.5"))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=slow)
    worker.start()
    for _ in range(200):
        if http_server.requests:
            break
        threading.Event().wait(0.01)
    sp_registry._close_at_exit()
    worker.join(5)
    assert session.state is SessionState.INVALIDATED
    assert errors and type(errors[0]).__name__ == "SessionInvalidatedError"
