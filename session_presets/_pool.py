"""The pool classes: connection bookkeeping, max_connection_age, and the first-come-first-served line of pool_block."""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import ssl
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, Final

from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ClosedPoolError, EmptyPoolError, FullPoolError

from . import _metrics, _process, _upstream
from ._calls import Call, current_call, shutdown_connection
from ._config import PresetConfig
from ._connection import ConnectionMixin
from ._counters import Counters
from ._metrics import SessionMetrics
from ._readonly import shared_refusal
from ._tls import TrustConfig, get_ssl_context
from ._tls_sessions import TLSSessionCache

__all__ = ["AdapterPools", "PoolMixin", "pool_classes", "socks_pool_classes"]

log = logging.getLogger(__name__)

#: How finely a wait in line checks for cancellation.
_SLEEP_SLICE: Final = 0.05


if TYPE_CHECKING:
    # What the mixins below are mixed into (urllib3's HTTPConnectionPool or a subclass):
    # their super() calls are checked against it.
    _Pool = HTTPConnectionPool
    _Adapter = HTTPAdapter
else:
    _Pool = _Adapter = object


class _WaiterState(enum.Enum):
    """Where a pool_block waiter stands; each change happens under its pool's lock."""

    #: In line for a connection.
    WAITING = "waiting"
    #: Woken: an item in urllib3's queue is promised to it.
    GRANTED = "granted"
    #: Not in line: before joining, and after leaving the line or taking its grant.
    LEFT = "left"
    #: Woken by the pool's close(): it raises ClosedPoolError.
    CLOSED = "closed"


class _Waiter:
    """One call queued for a connection of a ``pool_block`` pool, in arrival order."""

    __slots__ = ("state", "woken")

    def __init__(self) -> None:
        # Held until a grant (or the pool's close) releases it: lighter than an
        # Event, which builds a Condition and a lock per wait.
        self.woken = threading.Lock()
        self.woken.acquire()
        self.state = _WaiterState.LEFT


class _FirstComeFirstServed(_Pool):
    """With ``block`` (the preset's ``pool_block``), calls beyond ``pool_maxsize`` wait in line, in arrival order.

    A connection given back while calls wait goes into urllib3's queue
    *granted* to the oldest waiter: newcomers leave granted items alone, and
    the waiter takes its item through urllib3's own ``_get_conn``, so a patched
    ``_get_conn`` or ``is_connection_dropped`` (vcrpy) sees every connection
    handed out. Without the ``pool_queue`` hook, urllib3's own blocking wait
    runs instead.
    """

    #: How long a call waits for a free connection before it opens an extra one.
    wait_limit: ClassVar[float | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Guards the line and the grants; re-created unlocked in a forked child.
        self._preset_lock = _process.fork_safe_lock()
        self._preset_waiters: collections.deque[_Waiter] = collections.deque()
        #: Items in the queue promised to woken waiters that have not taken them yet.
        self._preset_granted = 0
        super().__init__(*args, **kwargs)

    @property
    def preset_waiting(self) -> int:
        """How many calls wait in line for a connection of this pool now."""
        return len(self._preset_waiters)

    def _get_conn(self, timeout: float | None = None) -> Any:
        if not self.block:
            return super()._get_conn(timeout)
        if _upstream.hook_enabled("pool_queue"):
            return self._wait_for_conn(current_call())
        return self._get_conn_from_urllib3(timeout)

    def _get_conn_from_urllib3(self, timeout: float | None) -> Any:
        """Without the pool_queue hook: urllib3's own blocking wait, bounded by wait_limit, then an extra connection."""
        limit = self.wait_limit if timeout is None else timeout
        try:
            return super()._get_conn(limit)
        except EmptyPoolError:
            log.debug("no free connection after %.3g s; opening an extra one", limit or 0.0)
            return self._new_conn()

    def _take(self) -> Any:
        """Take an item from urllib3's queue without blocking (EmptyPoolError when there is none)."""
        return super()._get_conn(timeout=0)

    def _wait_for_conn(self, call: Call | None) -> Any:
        """Take a pooled connection, waiting in line for one when all pool_maxsize are in use."""
        if not self._preset_waiters and not self._preset_granted:
            with contextlib.suppress(EmptyPoolError):
                return self._take()
        conn = self._wait_in_line(call)
        return self._new_conn() if conn is None else conn

    def _wait_in_line(self, call: Call | None) -> Any:
        """Wait for a connection first come first served; None: wait_limit passed, open an extra one.

        The wait ends at the call's deadline or cancellation, and in any case
        after ``wait_limit`` (connect_timeout): past that an extra connection
        is opened (and closed when given back to a full pool), so a caller
        that never closes its streamed responses slows other calls down but
        never starves them.

        Raises:
            EmptyPoolError: the call was aborted or ran out of time while waiting;
                urllib3 then knows that no slot was taken and puts nothing back.
            ClosedPoolError: the pool was closed, before or during the wait.
        """
        give_up = time.monotonic() + (self.wait_limit or 0.0)
        waiter = _Waiter()
        # Back at the head of the line after a newcomer took a granted item in a race.
        front = False
        reason: str | None = None
        while True:
            reason = _abort_reason(call)
            left = give_up - time.monotonic()
            if reason is not None or left <= 0:
                with self._preset_lock:
                    if waiter.state == _WaiterState.WAITING:
                        self._preset_waiters.remove(waiter)
                        waiter.state = _WaiterState.LEFT
                if waiter.state != _WaiterState.GRANTED:
                    break
            elif waiter.state == _WaiterState.LEFT:
                if not self._join_line(waiter, front=front):
                    # A free item, granted to nobody: take it, or look again if it went meanwhile.
                    with contextlib.suppress(EmptyPoolError):
                        return self._take()
                continue
            elif not waiter.woken.acquire(timeout=min(left, _SLEEP_SLICE)):
                # Sliced: cancellation and the deadline only set call.reason.
                continue
            if waiter.state == _WaiterState.CLOSED:
                break
            # Granted: an item in the queue is this waiter's, unless the call was aborted meanwhile.
            reason = _abort_reason(call)
            if reason is not None:
                with self._preset_lock:
                    self._preset_granted -= 1
                    waiter.state = _WaiterState.LEFT
                    self._grant_locked()  # to the next in line
                break
            try:
                return self._take()
            except EmptyPoolError:
                front = True
            finally:
                with self._preset_lock:
                    self._preset_granted -= 1
                    waiter.state = _WaiterState.LEFT
        if waiter.state == _WaiterState.CLOSED:
            raise ClosedPoolError(self, "Pool was closed while waiting for a connection.")
        if reason is not None:
            raise EmptyPoolError(self, f"call aborted while waiting for a connection: {reason}")
        log.debug("no free connection after %.3g s; opening an extra one", self.wait_limit)
        return None

    def _join_line(self, waiter: _Waiter, *, front: bool) -> bool:
        """Put ``waiter`` in line, unless an item granted to nobody is in the queue (then False)."""
        with self._preset_lock:
            pool = self.pool
            if pool is None:
                raise ClosedPoolError(self, "Pool is closed.")
            if pool.qsize() > self._preset_granted:
                return False
            waiter.state = _WaiterState.WAITING
            if front:
                self._preset_waiters.appendleft(waiter)
            else:
                self._preset_waiters.append(waiter)
            return True

    def _grant_locked(self) -> None:
        """Promise each queued item granted to nobody to the oldest waiter (the pool's lock is held)."""
        pool = self.pool
        while self._preset_waiters and pool is not None and pool.qsize() > self._preset_granted:
            waiter = self._preset_waiters.popleft()
            waiter.state = _WaiterState.GRANTED
            self._preset_granted += 1
            waiter.woken.release()

    def _put_conn(self, conn: Any) -> None:
        if not self.block:
            super()._put_conn(conn)
            return
        if not _upstream.hook_enabled("pool_queue"):
            with contextlib.suppress(FullPoolError):  # an extra connection: urllib3 has closed it
                super()._put_conn(conn)
            return
        with self._preset_lock:
            try:
                super()._put_conn(conn)
            except FullPoolError:
                # An extra connection opened after waiting (see _wait_in_line)
                # came back to a full pool; urllib3 has closed it.
                return
            if self._preset_waiters:
                self._grant_locked()

    def close(self) -> None:
        """Close the pool as urllib3 does, and wake every waiter with ClosedPoolError."""
        super().close()
        with self._preset_lock:
            waiters, self._preset_waiters = self._preset_waiters, collections.deque()
            for waiter in waiters:
                waiter.state = _WaiterState.CLOSED
                waiter.woken.release()


class _PresetPool(_Pool):
    """Hands the call its connection and takes it back; retires connections past max_connection_age.

    Each connection handed out is held by its call (which can cut it), counted
    as checked out, and marked active for the gauges; given back, its request's
    metrics end and its TLS session may be cached.
    """

    max_connection_age: ClassVar[float | None]
    #: Connections handed out and not yet returned, including those under a streamed body.
    checked_out: ClassVar[weakref.WeakSet[Any]]
    #: The insecure context of a verify=False preset: warned about once per session already.
    acknowledged_context: ClassVar[ssl.SSLContext | None] = None
    # The line of _FirstComeFirstServed: whether other calls are waiting (see _put_conn).
    _preset_waiters: collections.deque[_Waiter]

    def _validate_conn(self, conn: Any) -> None:
        acknowledged = self.acknowledged_context
        if acknowledged is None or self.conn_kw.get("ssl_context") is not acknowledged:
            super()._validate_conn(conn)
            return
        # urllib3 would warn on every request; the session warned once when built.
        if conn.is_closed:
            conn.connect()

    def _get_conn(self, timeout: float | None = None) -> Any:
        call = current_call()
        if self.pool is None and _abort_reason(call) is None:
            # flush(), reset() or close() closed this pool after the call looked it up:
            # the call still gets a connection, which closes when released (as it
            # would have from a pool the manager merely dropped). Calls already
            # waiting in line when the pool closes fail instead (see close).
            conn: Any = self._new_conn()
        else:
            conn = super()._get_conn(timeout)
        age_limit = self.max_connection_age
        if (
            age_limit is not None
            and conn.sock is not None
            and time.monotonic() - conn.preset_connected_at > age_limit
        ):
            log.debug("closing a connection older than max_connection_age=%r", age_limit)
            conn.close()
        if call is not None:
            call.hold(conn)
        self.checked_out.add(conn)
        if conn._preset_state == "idle":
            if _metrics._sinks:
                conn.metrics.connection_state(conn, "active")
            else:
                conn._preset_state = "active"  # what connection_state does, without an exporter
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:  # urllib3 puts None back for a connection it dropped
            self.checked_out.discard(conn)
            if not conn.preset_tls_saved and conn.preset_tls_key is not None and (
                conn.tls_sessions.shared or self.checked_out or self._preset_waiters
            ):
                # Reading the session costs a copy of it (about 0.1 ms). A
                # private cache serves only this session's later connections:
                # with no other call in flight, none is coming before this one
                # closes, and the session is read then, if at all.
                conn.save_tls_session()
            # The body was read to its end or the response closed: its request is over.
            tx = conn._preset_tx
            if tx is not None:
                tx.finish()
            if conn._preset_state == "active":
                if _metrics._sinks:
                    conn.metrics.connection_state(conn, "idle")
                else:
                    conn._preset_state = "idle"
            # Before it is back in the pool, where another call may take it.
            holder = conn.preset_call
            if holder is not None:
                holder.release(conn)
        super()._put_conn(conn)


class PoolMixin(_PresetPool, _FirstComeFirstServed):
    """What a preset's pool adds to urllib3's: the bookkeeping of each connection handed out, then the line."""


def _abort_reason(call: Call | None) -> str | None:
    """Why ``call`` must stop waiting (cancelled, or past its deadline, which marks it), or None."""
    return None if call is None else call.stop_reason()


class _CurrentConnectionCls:
    """A pool's ``ConnectionCls``, derived from its urllib3 base class's current one at each use.

    vcrpy and pytest-recording patch ``ConnectionCls`` on urllib3's pool classes,
    before or after this module is imported. A class attribute set once here would
    hide that patch; reading the base class's attribute whenever a connection is
    made lets the patch reach the pool, and its removal too. The counting subclass
    is built once per base connection class and reused, so ``isinstance`` checks on
    pooled connections (vcrpy makes them) keep holding.
    """

    def __init__(self, base_pool: type[HTTPConnectionPool], name: str, attrs: dict[str, Any]) -> None:
        self._base_pool = base_pool
        self._name = name
        self._attrs = attrs
        self._built: tuple[type, type] | None = None

    def __get__(self, pool: object, owner: type | None = None) -> type:
        current: type = self._base_pool.ConnectionCls
        built = self._built
        if built is None or built[0] is not current:
            with _classes_lock:
                built = self._built
                if built is None or built[0] is not current:
                    built = (current, type(self._name, (ConnectionMixin, current), dict(self._attrs)))
                    self._built = built
        return built[1]


class _AcknowledgedContext:
    """The insecure context a verify=False preset was warned about, looked up when a pool asks."""

    def __init__(self, trust: TrustConfig) -> None:
        self._trust = trust

    def __get__(self, pool: object, owner: type | None = None) -> ssl.SSLContext:
        return get_ssl_context(self._trust)


_classes_lock = _process.fork_safe_lock()


def pool_classes(
    counters: Counters,
    max_age: float | None,
    acknowledged: TrustConfig | None,
    checked_out: weakref.WeakSet[Any],
    metrics: SessionMetrics,
    tls_sessions: TLSSessionCache | None = None,
    wait_limit: float | None = None,
    static_headers: frozenset[tuple[str, str]] = frozenset(),
    header_lines: dict[tuple[str, str], bytes] | None = None,
) -> dict[str, type[HTTPConnectionPool]]:
    # The pool classes carry this adapter's counters and limits; their connection
    # classes and the acknowledged context are resolved only when a pool needs them.
    pool_attrs = {"max_connection_age": max_age, "checked_out": checked_out, "wait_limit": wait_limit}
    conn_attrs = {
        "counters": counters,
        "metrics": metrics,
        "tls_sessions": tls_sessions,
        "preset_static_headers": static_headers,
        "preset_header_lines": {} if header_lines is None else header_lines,
    }
    http_pool = type(
        "PresetHTTPConnectionPool",
        (PoolMixin, HTTPConnectionPool),
        {
            **pool_attrs,
            "ConnectionCls": _CurrentConnectionCls(
                HTTPConnectionPool, "PresetHTTPConnection", {**conn_attrs, "preset_scheme": "http"}
            ),
        },
    )
    https_attrs: dict[str, Any] = {
        **pool_attrs,
        "ConnectionCls": _CurrentConnectionCls(
            HTTPSConnectionPool, "PresetHTTPSConnection", {**conn_attrs, "preset_scheme": "https"}
        ),
    }
    if acknowledged is not None:
        https_attrs["acknowledged_context"] = _AcknowledgedContext(acknowledged)
    https_pool = type("PresetHTTPSConnectionPool", (PoolMixin, HTTPSConnectionPool), https_attrs)
    return {"http": http_pool, "https": https_pool}


def socks_pool_classes(
    counters: Counters,
    metrics: SessionMetrics,
    max_age: float | None,
    acknowledged: ssl.SSLContext | None,
    checked_out: weakref.WeakSet[Any],
    wait_limit: float | None,
) -> dict[str, type[HTTPConnectionPool]]:
    """The preset's pool classes built on urllib3's SOCKS ones (needs PySocks: requests[socks])."""
    from urllib3.contrib.socks import (
        SOCKSConnection,
        SOCKSHTTPConnectionPool,
        SOCKSHTTPSConnection,
        SOCKSHTTPSConnectionPool,
    )

    attrs = {"counters": counters, "metrics": metrics}
    http_conn = type("PresetSOCKSConnection", (ConnectionMixin, SOCKSConnection), {**attrs, "preset_scheme": "http"})
    https_conn = type(
        "PresetSOCKSHTTPSConnection", (ConnectionMixin, SOCKSHTTPSConnection), {**attrs, "preset_scheme": "https"}
    )
    pool_attrs = {
        "max_connection_age": max_age,
        "acknowledged_context": acknowledged,
        "checked_out": checked_out,
        "wait_limit": wait_limit,
    }
    http_pool = type(
        "PresetSOCKSHTTPConnectionPool",
        (PoolMixin, SOCKSHTTPConnectionPool),
        {**pool_attrs, "ConnectionCls": http_conn},
    )
    https_pool = type(
        "PresetSOCKSHTTPSConnectionPool",
        (PoolMixin, SOCKSHTTPSConnectionPool),
        {**pool_attrs, "ConnectionCls": https_conn},
    )
    return {"http": http_pool, "https": https_pool}


class AdapterPools(_Adapter):
    """A PresetAdapter's pools: built from the preset's pool classes, looked up once per origin, resized, closed.

    Closing a pool closes its idle connections now; those in use close when
    released, and ``abort_checked_out`` cuts them.
    """

    preset: PresetConfig
    #: Set on the adapter of a shared (registry) session: its pools and retries are not changed in place.
    shared_preset: bool = False
    _pool_classes: dict[str, type[HTTPConnectionPool]]
    _pool_cache: _upstream.LRUMemo
    _checked_out: weakref.WeakSet[Any]
    #: Whether pools may be remembered per origin (not when a subclass adds per-request pool settings).
    _memo_pools: bool

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        """Build the pool manager, as requests does; called again, resize the pools in place.

        requests-futures calls it again to size the pools for its workers
        (``max_workers`` above 10, or ``adapter_kwargs``): the pools come from
        the new manager from then on, and the old one's idle connections close.

        Raises:
            SharedSessionError: a resize of the pools of a shared session's adapter.
        """
        previous = self._resizing(connections, maxsize, block, pool_kwargs)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self._adopt_pool_manager(previous)

    def _resizing(self, connections: int, maxsize: int, block: bool, pool_kwargs: dict[str, Any]) -> Any:
        """Return the pool manager being replaced, if any; refuse a resize of a shared session's pools."""
        previous = self.__dict__.get("poolmanager")
        current = (self._pool_connections, self._pool_maxsize, self._pool_block) if previous is not None else None
        if previous is not None and self.shared_preset and (pool_kwargs or (connections, maxsize, block) != current):
            raise shared_refusal(
                self.preset.name,
                f"the connection pool sizes (init_poolmanager({connections}, {maxsize}, block={block}), "
                "as requests-futures does for max_workers above 10; set pool_maxsize in the preset)",
            )
        return previous

    def _adopt_pool_manager(self, previous: Any) -> None:
        """Give the new pool manager the preset's pool classes; close the one it replaces."""
        self.poolmanager.pool_classes_by_scheme = self._pool_classes
        if previous is not None and previous is not self.poolmanager:
            # Pools memoised from the old manager would keep the old sizes.
            self._pool_cache.clear()
            previous.clear()

    def get_connection_with_tls_context(
        self,
        request: PreparedRequest,
        verify: Any,
        proxies: dict[str, str] | None = None,
        cert: Any = None,
    ) -> HTTPConnectionPool:
        # Direct connections are looked up once per origin and trust setting;
        # requests would parse the URL three times and rebuild the pool key.
        url = request.url
        if (
            proxies
            or not self._memo_pools
            or not isinstance(url, str)
            or isinstance(cert, list)
            or not _upstream.ADAPTER_GET_CONNECTION.live()
        ):
            return super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
        slash = url.find("/", url.find("//") + 2)
        # ssl.SSLContext is in the key: after truststore or gevent replace it, the
        # pools holding contexts built from the old class are not used again.
        key = (url[:slash] if slash > 0 else url, verify, cert, ssl.SSLContext)
        pool: HTTPConnectionPool | None = self._pool_cache.get(key)
        if pool is None or pool.pool is None:
            pool = super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
            self._pool_cache.put(key, pool)
        return pool

    def abort_checked_out(self) -> None:
        """Shut down the socket of every connection in use, streamed bodies included."""
        for conn in list(self._checked_out):
            shutdown_connection(conn)

    def _close_every_pool(self) -> None:
        """Close each pool now, its idle connections with it; connections in use close when released.

        Clearing a PoolManager only drops its pools: urllib3 2 closes a dropped
        pool when it is garbage-collected, and every response the caller keeps
        refers to its pool, so without this the idle sockets of a session's
        fully read responses stayed open after invalidation.
        """
        for manager in (self.poolmanager, *self.proxy_manager.values()):
            pools: Any = getattr(manager, "pools", None)
            try:
                keys = list(pools.keys())
            except (AttributeError, TypeError):
                # Not urllib3's manager (a test double in proxy_manager, as requests' own suite
                # puts there): it has no pools to close; clear() below still reaches it.
                continue
            for key in keys:
                pool = pools.get(key)
                if pool is not None:
                    pool.close()

    def close_idle(self) -> None:
        """Close every pooled connection; connections in use close when released."""
        self._pool_cache.clear()
        self._close_every_pool()
        self.poolmanager.clear()
        for manager in list(self.proxy_manager.values()):
            manager.clear()

    def forget_pools_after_fork(self) -> None:
        """Drop every pool without touching its sockets (they belong to the parent)."""
        self.proxy_manager = {}
        self._pool_cache.clear()
        # Those sockets are shared with the parent: shutting one down would cut its call.
        self._checked_out.clear()
        # Not a resize: the old manager's sockets are the parent's, so it is dropped unclosed.
        del self.poolmanager
        self.init_poolmanager(self._pool_connections, self._pool_maxsize, block=self._pool_block)
