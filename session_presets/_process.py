"""Process-wide state: the one owner of fork and exit hooks, fork-safe locks, thread starts and reset().

Every module that keeps state for the whole process registers here instead of
calling ``os.register_at_fork`` or ``atexit.register`` itself, so the order in
which that state is rebuilt in a forked child, or wound down at exit, is
written in one place (the ``ORDER_*`` constants below) and no lock can be
forgotten: locks made with :func:`fork_safe_lock` are re-created in every child.

This module imports nothing from the package; everything else may import it.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "ORDER_BACKGROUND",
    "ORDER_CALLS",
    "ORDER_ENV",
    "ORDER_PRESETS",
    "ORDER_REGISTRY",
    "ORDER_SESSIONS",
    "ORDER_TLS",
    "ForkSafeLock",
    "fork_safe_lock",
    "on_exit",
    "on_fork_child",
    "on_reset",
    "reset",
    "start_thread",
]

log = logging.getLogger(__name__)

# The order of the hooks: lower runs first, in a forked child and on reset().
# At exit the order is reversed, so the layers on top (background transfers)
# wind down before the sessions they use.
#: Per-call bookkeeping: the deadline watchdog.
ORDER_CALLS: Final = 10
#: Environment: the warned-variable memo.
ORDER_ENV: Final = 20
#: TLS contexts per trust configuration.
ORDER_TLS: Final = 30
#: Presets registered with register_preset.
ORDER_PRESETS: Final = 40
#: Every live PresetSession: their pools hold the parent's sockets.
ORDER_SESSIONS: Final = 50
#: Registries of shared sessions.
ORDER_REGISTRY: Final = 60
#: Background sessions and their transfers.
ORDER_BACKGROUND: Final = 70

_Hook = Callable[[], None]

_fork_hooks: list[tuple[int, int, _Hook]] = []
_exit_hooks: list[tuple[int, int, _Hook]] = []
_reset_hooks: list[tuple[int, int, _Hook]] = []
_hooks_lock = threading.Lock()


def _add(table: list[tuple[int, int, _Hook]], order: int, hook: _Hook) -> _Hook:
    with _hooks_lock:
        table.append((order, len(table), hook))
        table.sort(key=lambda item: (item[0], item[1]))
    return hook


def on_fork_child(hook: _Hook, *, order: int) -> _Hook:
    """Run ``hook`` in every child created by ``os.fork()``, after the fork-safe locks are new."""
    return _add(_fork_hooks, order, hook)


def on_exit(hook: _Hook, *, order: int) -> _Hook:
    """Run ``hook`` at interpreter exit; higher orders run first."""
    return _add(_exit_hooks, order, hook)


def on_reset(hook: _Hook, *, order: int) -> _Hook:
    """Run ``hook`` on :func:`reset`, lower orders first."""
    return _add(_reset_hooks, order, hook)


class ForkSafeLock:
    """A ``threading.Lock`` (or RLock) that a forked child gets back unlocked.

    A lock held by another thread at the moment of ``fork()`` stays held
    forever in the child, where that thread does not exist. Every lock made
    here is replaced by a new one in the child before any fork hook runs.
    """

    __slots__ = ("__weakref__", "_factory", "_lock")

    def __init__(self, factory: Callable[[], Any] = threading.Lock) -> None:
        self._factory = factory
        self._lock = factory()
        _fork_safe_locks.add(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return bool(self._lock.acquire(blocking, timeout))

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return bool(self._lock.acquire())

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def _renew(self) -> None:
        self._lock = self._factory()


_fork_safe_locks: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


def fork_safe_lock(*, reentrant: bool = False) -> ForkSafeLock:
    """Return a new lock that is re-created, unlocked, in a forked child."""
    return ForkSafeLock(threading.RLock if reentrant else threading.Lock)


#: Serialises thread starts; see start_thread.
_start_lock = threading.Lock()
#: How often a thread start looks whether the new thread died before running.
_START_POLL: Final = 0.05


def start_thread(target: Callable[..., object], *, name: str, args: tuple[Any, ...] = ()) -> threading.Thread:
    """Start a daemon thread running ``target(*args)``, one thread start at a time.

    The call returns once the new thread runs ``target``, and thread starts go
    one at a time through a process-wide lock. On Python 3.10 and 3.11, a
    thread's bootstrap calls ``sys.settrace`` when a tracer such as coverage
    is installed, and two threads doing that at the same moment make one of
    them die with "Cannot install a trace function while another trace
    function is being installed" (CPython issue 98257), before it runs a
    single line of its target. Waiting until the target runs means that no
    two of our threads are ever in that window together.
    """
    running = threading.Event()

    def run() -> None:
        running.set()
        target(*args)

    with _start_lock:
        while True:
            thread = threading.Thread(target=run, name=name, daemon=True)
            thread.start()
            while not running.wait(_START_POLL):
                if not thread.is_alive():
                    break
            if running.is_set():
                return thread
            # The thread died in its bootstrap (a foreign thread raced the
            # tracer installation): its excepthook has reported it; try again.
            log.debug("thread %r died before running its target; starting it again", name)


def reset() -> None:
    """Forget every piece of process state the library keeps, as if freshly imported.

    Shared sessions are invalidated, background sessions cancelled, registered
    presets, TLS contexts and warning memos dropped. Meant for tests.
    """
    with _hooks_lock:
        hooks = [hook for _, _, hook in _reset_hooks]
    for hook in hooks:
        hook()


def _after_fork_in_child() -> None:
    global _start_lock, _hooks_lock
    _start_lock = threading.Lock()
    _hooks_lock = threading.Lock()
    for lock in list(_fork_safe_locks):
        lock._renew()
    for _, _, hook in list(_fork_hooks):
        hook()


def _at_exit() -> None:
    for _, _, hook in reversed(list(_exit_hooks)):
        try:
            hook()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            log.debug("exit hook %r failed", hook, exc_info=True)


if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
