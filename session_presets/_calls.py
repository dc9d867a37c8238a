"""The per-call context: one object carries a call's deadline, cancellation, metrics record and TLS offer.

A call is one ``PresetSession.send`` (redirect hops included), or one
``PresetAdapter.send`` on any other session. Its :class:`Call` is the only
per-request state the package keeps: our own code passes it along, and the
classes urllib3 calls back into (connection, pool, retry, the TLS socket) read
it from one context variable, :func:`current_call`. A context variable is per
thread, and per greenlet under gevent or eventlet, so concurrent calls never
see each other's state; a nested call (made from a response hook, say) sets
its own and puts the outer one back when it ends (see docs/design.md).

Aborting a call shuts down the sockets it holds, which wakes a thread blocked
in ``connect``, in the TLS handshake or in ``recv`` at once; that is how
``invalidate_and_cancel`` and ``total_timeout`` interrupt a blocking requests
call from another thread.

A call holds a connection from the moment the pool hands it out until it goes
back to the pool (or is released after a streamed body): only then, never
after, may the call cut it. A connection being connected is reached through
an :class:`AbortHandle`, since urllib3 publishes its socket only once the
connection (and the TLS handshake) is done.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

from . import _process
from ._errors import TotalTimeoutError
from ._redact import safe_url

__all__ = [
    "CANCELLED",
    "DEADLINE",
    "AbortHandle",
    "AbortReason",
    "Call",
    "as_redirect_hops",
    "current_call",
    "reset_current_call",
    "set_current_call",
    "shutdown_connection",
    "watchdog",
]



class AbortReason(str, enum.Enum):
    """Why a call was aborted; a str, so that messages and logs show the bare value."""

    #: The session was invalidated with invalidate_and_cancel().
    CANCELLED = "cancelled"
    #: The call ran past its total_timeout.
    DEADLINE = "deadline"

    __str__ = str.__str__


CANCELLED: Final = AbortReason.CANCELLED
DEADLINE: Final = AbortReason.DEADLINE

log = logging.getLogger(__name__)

#: How often the watchdog looks at deadlines while calls are in flight.
_WATCH_INTERVAL: Final = 0.05

#: The call in flight in this thread (or greenlet); None between calls.
_current: contextvars.ContextVar[Call | None] = contextvars.ContextVar("session_presets_call", default=None)

#: Return the call in flight here, or None: what the classes urllib3 calls back into read.
current_call: Final = _current.get


#: Make a call the call in flight here; hand the token it returns to :func:`reset_current_call` when it ends.
set_current_call: Final = _current.set

#: Put back the call that was in flight before the :func:`set_current_call` that returned the token.
reset_current_call: Final = _current.reset


class Call:
    """One call in flight: the per-call context (see the module docstring).

    Attributes:
        total_timeout: the call's ``total_timeout`` (None: no deadline).
        deadline: when it runs out, in ``time.monotonic()`` seconds, or None.
        reason: why the call was aborted (:data:`CANCELLED`, :data:`DEADLINE`), or None.
        thread_id: the thread that makes the call.
        sent: requests sent so far, redirect hops and retries included (metrics' resend count).
        redirecting: True while the session's redirect loop is about to send a hop of this call.
        tx: the metrics record of the request being sent now, if metrics are on.
        caller_timeout: whether that request has the caller's own ``timeout=`` (not retried on timeout).
        origin: the origin of the guarded hop in flight (resilience), or None.
        probe: whether that hop's attempt is a half-open breaker probe.
        tls_offer: the TLS session to offer to the next handshake of this call, or None.
    """

    __slots__ = (
        "_conns",
        "_lock",
        "caller_timeout",
        "deadline",
        "origin",
        "probe",
        "reason",
        "redirecting",
        "sent",
        "thread_id",
        "tls_offer",
        "total_timeout",
        "tx",
    )

    def __init__(self, total_timeout: float | None) -> None:
        self.total_timeout = total_timeout
        self.deadline = None if total_timeout is None else time.monotonic() + total_timeout
        # An ordered set: the connections this call holds at this moment.
        self._conns: dict[Any, None] = {}
        # Serialises abort() with release(), so a connection handed back to the
        # pool (and perhaps taken by another call) is never cut by this one.
        self._lock = threading.Lock()
        self.reason: str | None = None
        self.thread_id = threading.get_ident()
        self.sent = 0
        self.redirecting = False
        self.tx: Any = None
        self.caller_timeout = False
        self.origin: str | None = None
        self.probe = False
        self.tls_offer: Any = None

    def hold(self, conn: Any) -> None:
        """Record that this call now holds ``conn``; an abort from now on cuts it."""
        with self._lock:
            self._conns[conn] = None
        conn.preset_call = self

    def release(self, conn: Any) -> None:
        """Record that ``conn`` went back to its pool: this call may no longer cut it."""
        with self._lock:
            self._conns.pop(conn, None)
        if getattr(conn, "preset_call", None) is self:
            conn.preset_call = None

    def remaining(self) -> float | None:
        """Seconds left before the deadline, or None without one."""
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()

    def stop_reason(self) -> str | None:
        """Why the call must stop now, or None: the one deadline check.

        A call past its deadline is marked so (:data:`DEADLINE`) here, whoever
        looks first: this check, a socket timeout capped at the deadline, or
        the watchdog.
        """
        if self.reason is None:
            deadline = self.deadline
            if deadline is not None and deadline - time.monotonic() <= 0:
                self.reason = DEADLINE
        return self.reason

    def check(self) -> None:
        """Raise when the call must stop: aborted, or past its deadline (then marked so).

        Raises:
            urllib3.exceptions.ProtocolError: as :meth:`raise_if_aborted`.
        """
        # stop_reason(), inlined: this runs once per request sent.
        if self.reason is None:
            deadline = self.deadline
            if deadline is None or deadline - time.monotonic() > 0:
                return
            self.reason = DEADLINE
        self.raise_if_aborted()

    def cap(self, timeout: float | None) -> float | None:
        """Return ``timeout`` (None: no limit) capped at the time left before the deadline.

        Raises:
            urllib3.exceptions.ProtocolError: the call was aborted, or no time is left
                (the call is then marked as past its deadline).
        """
        if self.reason is not None:
            self.raise_if_aborted()
        deadline = self.deadline
        if deadline is None:
            return timeout
        # stop_reason(), inlined: this runs twice per request.
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self.reason = DEADLINE
            self.raise_if_aborted()
        return remaining if timeout is None else min(timeout, remaining)

    def abort(self, reason: str) -> None:
        """Mark the call aborted and shut down every socket it holds now."""
        if self.reason is None:
            self.reason = reason
        with self._lock:
            for conn in list(self._conns):
                shutdown_connection(conn)

    def raise_if_aborted(self) -> None:
        """Raise urllib3's ProtocolError if the call was aborted (mapped by the session)."""
        if self.reason is not None:
            from urllib3.exceptions import ProtocolError

            raise ProtocolError(f"call aborted: {self.reason}")

    def timeout_error(self, request: Any, preset: str, detail: str = "") -> TotalTimeoutError:
        """The TotalTimeoutError of this call past its deadline: one message, wherever it is raised.

        Args:
            request: the PreparedRequest of the call (its URL is shown without credentials or query).
            preset: the name of the preset whose ``total_timeout`` ran out.
            detail: what the call was doing or gave up on, appended as is (``"; ..."`` or ``" ..."``).
        """
        return TotalTimeoutError(
            f"request to {safe_url(request.url)} exceeded total_timeout={self.total_timeout:g}s "
            f"(preset {preset!r}; retries and body included){detail}",
            request=request,
        )


def as_redirect_hops(call: Call | None, steps: Iterator[Any]) -> Iterator[Any]:
    """Run a session's redirect loop ``steps`` so that each request it sends is a hop of ``call``.

    ``call.redirecting`` is True only while the loop runs, and the session's
    send clears it as a hop starts: a request sent from a response hook, even
    a hook of a hop, is a call of its own, with its own deadline and context.
    """
    if call is None:
        yield from steps
        return
    while True:
        call.redirecting = True
        try:
            step = next(steps)
        except StopIteration:
            return
        finally:
            call.redirecting = False
        yield step


class AbortHandle:
    """A duplicate of a socket being connected, through which another thread can cut it.

    ``ssl`` wraps a socket by detaching its descriptor, so the object urllib3
    holds during the handshake no longer reaches the connection; a ``dup()``
    stays valid, and ``shutdown`` on it cuts the socket both descriptors share
    (in ``connect`` as well as in the handshake).
    """

    __slots__ = ("_lock", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = sock.dup()

    def abort(self) -> None:
        """Shut the shared socket down; a thread blocked on it wakes with an error."""
        # Under the lock: a descriptor closed by close() could be reused at once by
        # another socket, which a late shutdown would then cut.
        with self._lock:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the duplicate descriptor (the socket itself stays open)."""
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def shutdown_connection(conn: Any) -> None:
    """Shut down the socket under a urllib3 connection without closing its descriptor.

    A connection still connecting or in its TLS handshake is cut through its
    :class:`AbortHandle`.
    """
    handle = getattr(conn, "preset_abort_handle", None)
    if handle is not None:
        handle.abort()
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    # The plain socket method: SSLSocket.shutdown would also drop the TLS
    # object under a thread that is still reading from it.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread per process that aborts calls past their deadline."""

    def __init__(self) -> None:
        self._calls: dict[Call, None] = {}
        self._wake_condition: threading.Condition | None = None
        self._thread: threading.Thread | None = None
        self._idle = True

    @property
    def _wake(self) -> threading.Condition:
        # Built on first use, from the threading module as it is then: a lock
        # made at import time stays an OS lock after gevent's patch_all(), and
        # holding one while the watchdog greenlet starts blocks every greenlet.
        wake = self._wake_condition
        if wake is None:
            with _wake_lock:
                if self._wake_condition is None:
                    self._wake_condition = threading.Condition(threading.Lock())
                wake = self._wake_condition
        return wake

    def add(self, call: Call) -> None:
        self._calls[call] = None
        if self._idle:
            with self._wake:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = _process.start_thread(self._run, name="session-presets-watchdog")
                self._idle = False
                self._wake.notify()

    def discard(self, call: Call) -> None:
        self._calls.pop(call, None)

    def _run(self) -> None:
        while True:
            with self._wake:
                # Idle is set before the emptiness check, and add() inserts before
                # it reads idle, so a call added now is either seen here or wakes us.
                self._idle = True
                if not self._calls:
                    self._wake.wait()
                    continue
                self._idle = False
            self._abort_overdue()
            time.sleep(_WATCH_INTERVAL)

    def _abort_overdue(self) -> None:
        # A method of its own so that no local of this thread's long-lived frame
        # keeps the last call, and the connections it held, alive while idle.
        for call in list(self._calls):
            if call.reason is None and call.stop_reason() is not None:
                log.debug("call exceeded total_timeout=%r; aborting it", call.total_timeout)
                call.abort(DEADLINE)

    def after_fork(self) -> None:
        self.__init__()  # type: ignore[misc]


#: Guards the watchdog's lazy condition; held for no I/O, so an OS lock is fine under gevent.
_wake_lock = _process.fork_safe_lock()

watchdog = _Watchdog()
_process.on_fork_child(watchdog.after_fork, order=_process.ORDER_CALLS)
