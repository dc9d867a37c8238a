"""TLS session resumption: a bounded, short-lived cache of TLS sessions per origin and trust configuration.

A resumed handshake skips the certificate exchange and its verification (and,
with TLS 1.2, a round trip). Because verification is skipped, a cached session
is only ever offered under exactly the key it was made under: host, port, SNI
name, and the SSLContext itself, which stands for the whole trust
configuration (trust store or CA bundle, verify mode, client certificate,
minimum version: one context per distinct configuration, see tls.py).
OpenSSL also refuses a session made by another context.

Sessions live at most :data:`MAX_LIFETIME` (Apple documents ten minutes for
URLSession's per-session TLS cache), less when the server's ticket lifetime
hint is shorter.

How a session reaches the handshake: urllib3 calls
``SSLContext.wrap_socket(sock, server_hostname=...)`` with no ``session``
argument. Each context we build gets :class:`ResumingSSLSocket` as its
``sslsocket_class``; the connection puts the session to offer on its call's
context (``Call.tls_offer``, see ``_calls``) just before it connects, and the
socket class takes it from there, in the same call, a moment later. That socket class overrides the
private ``ssl.SSLSocket._create``, so it lives in ``_upstream`` with the other
reaches into upstream internals (hook ``tls_resumption``, docs/fast-path.md):
where the hook is missing, every handshake is a full one.
"""

from __future__ import annotations

import collections
import ssl
import time
from typing import Final

from . import _process, _upstream
from ._upstream import ResumingSSLSocket

__all__ = [
    "MAX_LIFETIME",
    "MAX_SESSIONS",
    "ResumingSSLSocket",
    "TLSSessionCache",
    "enable_resumption",
    "shared_cache",
]

#: The longest a TLS session is offered for, in seconds.
MAX_LIFETIME: Final = 600.0
#: Sessions kept per cache; the oldest goes first.
MAX_SESSIONS: Final = 256

_Key = tuple[str, int, str, int]

#: The socket class ResumingSSLSocket extends: ssl.SSLSocket as it was when this module was imported.
_BASE_SOCKET: Final = ssl.SSLSocket


def enable_resumption(context: ssl.SSLContext) -> None:
    """Let connections made with ``context`` offer cached sessions.

    Only a context whose socket class is the one :class:`ResumingSSLSocket`
    extends: a context of truststore's, or one whose socket class gevent
    replaced after this module was imported, keeps its own class and simply
    makes full handshakes. Without the hook (``ssl.SSLSocket._create`` taking
    ``session=``) every context makes full handshakes.
    """
    if not _upstream.hook_enabled("tls_resumption"):
        return
    if getattr(context, "sslsocket_class", None) is _BASE_SOCKET:
        context.sslsocket_class = ResumingSSLSocket


class TLSSessionCache:
    """TLS sessions by (host, port, SNI name, context), bounded in size and age; thread-safe."""

    def __init__(
        self, *, max_sessions: int = MAX_SESSIONS, max_lifetime: float = MAX_LIFETIME, shared: bool = False
    ) -> None:
        self.max_sessions = max_sessions
        self.max_lifetime = max_lifetime
        #: Whether other sessions look sessions up here (a preset's cache), so a connection's
        #: session is worth keeping as soon as it is known, rather than only when its own
        #: session may need it (see _pool._PresetPool._put_conn).
        self.shared = shared
        #: True while the session owning a private cache closes: its connections' sessions are not kept.
        self.discarding = False
        #: Advanced by clear(): a connection made under an earlier epoch puts nothing (see put).
        self.epoch = 0
        self._lock = _process.fork_safe_lock()
        self._sessions: collections.OrderedDict[_Key, tuple[ssl.SSLSession, float]] = collections.OrderedDict()
        # The contexts behind the keys: a key holds id(context), so keep the
        # context alive as long as a session made with it is cached.
        self._contexts: dict[int, ssl.SSLContext] = {}

    @staticmethod
    def key(host: str, port: int, server_hostname: str | None, context: ssl.SSLContext) -> _Key:
        """Return the cache key: everything certificate verification depended on."""
        return (host.lower(), port, (server_hostname or host).lower(), id(context))

    def get(self, key: _Key) -> ssl.SSLSession | None:
        """Return the session cached under ``key`` if it has not expired."""
        with self._lock:
            entry = self._sessions.get(key)
            if entry is None:
                return None
            session, expires = entry
            if time.monotonic() >= expires:
                del self._sessions[key]
                return None
            return session

    def put(self, key: _Key, session: ssl.SSLSession, context: ssl.SSLContext, *, epoch: int | None = None) -> None:
        """Cache ``session`` under ``key`` for at most max_lifetime (or the server's hint, if shorter).

        Args:
            key: see :meth:`key`.
            session: the connection's TLS session.
            context: the context it was made with.
            epoch: the cache's ``epoch`` when the connection was made; a session
                from before the last clear() (a body still being read during a
                reset) is dropped, so it is never resumed after the reset.
        """
        lifetime = self.max_lifetime
        hint = getattr(session, "timeout", 0)
        if hint and hint > 0:
            lifetime = min(lifetime, float(hint))
        with self._lock:
            if epoch is not None and epoch != self.epoch:
                return
            self._sessions[key] = (session, time.monotonic() + lifetime)
            self._sessions.move_to_end(key)
            self._contexts[key[3]] = context
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            if len(self._contexts) > 2 * self.max_sessions:
                live = {k[3] for k in self._sessions}
                self._contexts = {i: c for i, c in self._contexts.items() if i in live}

    def clear(self) -> None:
        """Forget every cached session, and refuse those of connections made before now."""
        with self._lock:
            self.epoch += 1
            self._sessions.clear()
            self._contexts.clear()

    def __len__(self) -> int:
        return len(self._sessions)


_shared: dict[str, TLSSessionCache] = {}
_shared_lock = _process.fork_safe_lock()


def shared_cache(preset: str) -> TLSSessionCache:
    """Return the cache shared by every non-ephemeral session of ``preset`` in this process."""
    cache = _shared.get(preset)
    if cache is None:
        with _shared_lock:
            cache = _shared.setdefault(preset, TLSSessionCache(shared=True))
    return cache


def _clear_shared() -> None:
    with _shared_lock:
        for cache in _shared.values():
            cache.clear()
        _shared.clear()


_process.on_reset(_clear_shared, order=_process.ORDER_TLS)
_process.on_fork_child(_clear_shared, order=_process.ORDER_TLS)
