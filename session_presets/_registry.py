"""SessionRegistry: one shared PresetSession per preset name, per process."""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from typing import Any, Final

from . import _process
from ._presets import resolve
from ._sessions import InvalidationTimeoutError, PresetSession

__all__ = ["SessionRegistry", "close_all", "default_registry", "get_session"]

log = logging.getLogger(__name__)

_registries: weakref.WeakSet[SessionRegistry] = weakref.WeakSet()


class SessionRegistry:
    """Shared sessions keyed by preset name.

    ``get(name)`` returns the same session on every call, from any thread; after
    the first call it is a dict lookup with no lock. Its configuration is
    read-only (SharedSessionError) and its ``close()`` does nothing, since every
    holder shares it; ``close_all()``, ``finish_tasks_and_invalidate()`` and
    ``invalidate_and_cancel()`` end it. A session that is
    invalidated leaves the registry, and the next ``get`` builds a new one. In a
    child made by ``os.fork()`` the registry starts empty, so the child never
    uses a socket its parent opened.

    Args:
        environ: the environment to read presets from; ``os.environ`` if omitted.
    """

    def __init__(self, *, environ: Any = None) -> None:
        self._sessions: dict[str, PresetSession] = {}
        self._lock = threading.Lock()
        self._environ = environ
        _registries.add(self)

    def get(self, name: str = "default") -> PresetSession:
        """Return the shared session of preset ``name``, building it on first use.

        Raises:
            UnknownPresetError: no preset has that name.
            ConfigError: the preset or its environment variables are invalid.
        """
        try:
            return self._sessions[name]
        except (KeyError, TypeError):
            pass
        with self._lock:
            session = self._sessions.get(name)
            if session is None:
                config = resolve(name, environ=self._environ)
                session = PresetSession(config, _registry_owned=True, _shared=True)
                # Forgotten as soon as it stops accepting requests, not once it is
                # drained: from then on get() hands out its replacement, and a
                # caller that fetched the old one a moment before is served by it.
                session._on_invalidating.append(self._forget)
                session._successor = functools.partial(self.get, name)
                self._sessions[name] = session
                log.debug("registry built session for preset %r", name)
            return session

    def _forget(self, session: PresetSession) -> None:
        with self._lock:
            if self._sessions.get(session.config.name) is session:
                del self._sessions[session.config.name]

    def names(self) -> list[str]:
        """Return the names of the presets with a live shared session."""
        return sorted(self._sessions)

    def close_all(self, timeout: float | None = None) -> None:
        """Invalidate every session, waiting up to ``timeout`` for each one's requests."""
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.finish_tasks_and_invalidate(timeout)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._sessions = {}


default_registry = SessionRegistry()


def get_session(name: str = "default") -> PresetSession:
    """Return the process-wide shared session of preset ``name``.

    Raises:
        UnknownPresetError: no preset has that name.
        ConfigError: the preset or its environment variables are invalid.
    """
    return default_registry.get(name)


def close_all(timeout: float | None = None) -> None:
    """Invalidate every session of the default registry (registered with atexit)."""
    default_registry.close_all(timeout)


#: How long the exit handler lets each shared session finish its requests.
EXIT_GRACE: Final = 5.0


def _close_at_exit() -> None:
    """Invalidate every shared session at exit; cancel those still busy after EXIT_GRACE."""
    with default_registry._lock:
        sessions = list(default_registry._sessions.values())
    for session in sessions:
        try:
            session.finish_tasks_and_invalidate(EXIT_GRACE)
        except InvalidationTimeoutError:
            log.debug("session for preset %r still busy at exit; cancelling", session.config.name)
            session.invalidate_and_cancel()


def _after_fork_in_child() -> None:
    for registry in list(_registries):
        registry._after_fork_in_child()


def _cancel_all() -> None:
    for registry in list(_registries):
        with registry._lock:
            sessions = list(registry._sessions.values())
        for session in sessions:
            session.invalidate_and_cancel()


_process.on_fork_child(_after_fork_in_child, order=_process.ORDER_REGISTRY)
_process.on_exit(_close_at_exit, order=_process.ORDER_REGISTRY)
_process.on_reset(_cancel_all, order=_process.ORDER_REGISTRY)
