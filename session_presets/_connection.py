"""The connection classes' features: counting, a cuttable connect, TLS tickets, metrics marks, the header-line memo."""

from __future__ import annotations

import socket
import ssl
import sys
import threading
import time
from socket import getdefaulttimeout
from typing import TYPE_CHECKING, Any, ClassVar

import requests
import requests.adapters
import requests.utils
from urllib3.connection import HTTPConnection
from urllib3.exceptions import ConnectTimeoutError, LocationParseError, NameResolutionError, NewConnectionError
from urllib3.util import Timeout
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from . import _metrics, _upstream
from ._calls import AbortHandle, Call, current_call, reset_current_call, set_current_call, shutdown_connection
from ._config import PresetConfig
from ._counters import Counters
from ._metrics import CountingHTTPResponse, SessionMetrics, Transaction
from ._redact import looks_secret
from ._tls_sessions import TLSSessionCache

__all__ = ["ConnectionMixin", "static_header_lines"]

if TYPE_CHECKING:
    # What the mixins below are mixed into (urllib3's HTTPConnection or a subclass):
    # their super() calls are checked against it.
    _Connection = HTTPConnection
else:
    _Connection = object


def static_header_lines(config: PresetConfig, defaults: dict[str, str]) -> frozenset[tuple[str, str]]:
    """The (name, value) pairs every request of the preset sends, which the header-line memo may keep.

    requests' default headers, the preset's User-Agent and no-cache headers and
    its ``headers``: never a per-call value, and never a name that looks like
    a credential (``_redact.looks_secret``).
    """
    pairs = {**requests.utils.default_headers(), "User-Agent": config.user_agent, **defaults}
    return frozenset(
        (name, value)
        for name, value in pairs.items()
        if isinstance(value, str) and not looks_secret(name)
    )


class _HeaderLineMemo(_Connection):
    """Writes the preset's own header lines as http.client encoded them the first time (the header-line memo)."""

    #: Whether the putheader this class inherits is urllib3's own (not vcrpy's, say): see putheader.
    _preset_plain_putheader: ClassVar[bool] = False
    #: The header lines the preset itself sends on every request (see static_header_lines).
    preset_static_headers: ClassVar[frozenset[tuple[str, str]]] = frozenset()
    #: Those lines as http.client encoded them, filled as they are first sent; emptied when the adapter closes.
    preset_header_lines: ClassVar[dict[tuple[str, str], bytes]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._preset_plain_putheader = getattr(super(), "putheader", None) is _upstream.URLLIB3_PUTHEADER.original

    def putheader(self, header: Any, *values: Any) -> None:
        # The preset's own header lines go out on every request, and http.client
        # validates and encodes each one again (two regular expressions, two
        # encodes): a line it accepted once is written as it wrote it then.
        if len(values) == 1 and type(header) is str and type(values[0]) is str:
            key = (header, values[0])
            if key in self.preset_static_headers and self._preset_plain_putheader and _upstream.header_lines_usable():
                line = self.preset_header_lines.get(key)
                if line is not None and _upstream.write_header_line(self, line):
                    return
                super().putheader(header, *values)
                self.preset_header_lines[key] = header.encode("ascii") + b": " + values[0].encode("latin-1")
                return
        super().putheader(header, *values)


class _CountedConnection(_Connection):
    """Counts opened and reused connections, and remembers when this one connected (max_connection_age)."""

    counters: ClassVar[Counters]
    preset_connected_at: float = 0.0
    #: Connected and not yet used for a request.
    _preset_fresh: bool = False

    def connect(self) -> None:
        super().connect()
        self.preset_connected_at = time.monotonic()
        self._preset_fresh = True
        self.counters.add("connections_opened")

    def request(self, *args: Any, **kwargs: Any) -> None:
        if not self._preset_fresh and self.sock is not None:
            self.counters.add("connections_reused")
        try:
            super().request(*args, **kwargs)
        finally:
            self._preset_fresh = False


class _TLSTickets(_Connection):
    """Offers a cached TLS session to the handshake, and caches this connection's session for the next one."""

    counters: ClassVar[Counters]
    #: Where this connection's TLS sessions are cached and looked up; None: no resumption.
    tls_sessions: ClassVar[TLSSessionCache | None] = None
    #: The resumption cache key of this connection's origin and context, once connected over TLS.
    preset_tls_key: tuple[str, int, str, int] | None = None
    #: Whether this connection's TLS session has been offered to the cache.
    preset_tls_saved: bool = False
    #: The cache's epoch when this connection was made: a reset() since then keeps its session out.
    preset_tls_epoch: int = 0
    # Read to decide who may read the session (see _save_tls_session_before_close).
    preset_call: Call | None
    _preset_state: str | None

    def connect(self) -> None:
        key = self._tls_session_key() if _upstream.hook_enabled("tls_resumption") else None
        if key is None:
            super().connect()
        else:
            assert self.tls_sessions is not None
            call = current_call()
            token = None
            if call is None:
                # Connected outside any call (urllib3 driven directly): a context for this handshake alone.
                call = Call(None)
                token = set_current_call(call)
            # Read before the lookup: a clear() from here on makes this connection's session stale.
            self.preset_tls_epoch = self.tls_sessions.epoch
            call.tls_offer = self.tls_sessions.get(key)
            try:
                super().connect()
            finally:
                call.tls_offer = None
                if token is not None:
                    reset_current_call(token)
        self.preset_tls_key = key
        self.preset_tls_saved = False
        if key is not None and getattr(self.sock, "session_reused", False):
            self.counters.add("connections_resumed")

    def _tls_session_key(self) -> tuple[str, int, str, int] | None:
        context = getattr(self, "ssl_context", None)
        # Through a CONNECT tunnel the origin is not self.host: no resumption there.
        if self.tls_sessions is None or context is None or getattr(self, "_tunnel_host", None):
            return None
        return TLSSessionCache.key(self.host, self.port, getattr(self, "server_hostname", None), context)

    def save_tls_session(self) -> None:
        """Cache this connection's TLS session, once a response was read (TLS 1.3 tickets come after the handshake).

        One look per connection: reading ``SSLSocket.session`` makes CPython
        serialise the session and parse it back, the server's certificate
        included (about 0.1 ms with OpenSSL 3.0), so a connection whose
        server sends no ticket must not pay that on every request. Servers
        send their TLS 1.3 tickets right after the handshake, ahead of the
        first response: a connection that has none by then gets none.
        """
        sock: Any = self.sock
        key = self.preset_tls_key
        if key is None or sock is None or self.tls_sessions is None:
            return
        self.preset_tls_saved = True
        session = getattr(sock, "session", None)
        # Without a ticket a TLS 1.3 session cannot be resumed.
        if session is None or not (session.has_ticket or sock.version() != "TLSv1.3"):
            return
        self.tls_sessions.put(key, session, sock.context, epoch=self.preset_tls_epoch)

    def close(self) -> None:
        if not self.preset_tls_saved and self.preset_tls_key is not None:
            self._save_tls_session_before_close()
        super().close()

    def _save_tls_session_before_close(self) -> None:
        """Cache the TLS session of a connection about to close, if the closing thread owns the connection.

        http.client closes a connection as soon as a response head says
        ``Connection: close``, before urllib3 gives it back to the pool: the
        ticket would be lost exactly where every call needs a new connection.
        A private cache also keeps a session only here, when an idle
        connection closes (flush, a pool dropped, a connection the server
        closed), unless other calls were in flight (see ``_put_conn``).

        The session is read by the thread of the call holding the connection,
        while that call runs normally, or, for an idle connection, by the
        thread that took it out of the pool to close it: never by a cancelling
        thread, which must not touch an SSL object another thread may be using.
        """
        cache = self.tls_sessions
        if cache is None or cache.discarding:
            return
        call = self.preset_call
        if call is None:
            owned = self._preset_state == "idle"
        else:
            owned = call.reason is None and call.thread_id == threading.get_ident()
        if owned:
            self.save_tls_session()


class _CuttableConnect(_Connection):
    """Keeps every phase inside the call's deadline, and lets the call cut the connect phase.

    The socket is created here rather than in urllib3 so that the call can cut
    it (``invalidate_and_cancel``, ``total_timeout``) while it connects and
    during the TLS handshake, and every phase's socket timeout is capped at
    the time the call has left.
    """

    #: How a call cuts this connection while it connects (see _calls.AbortHandle).
    preset_abort_handle: AbortHandle | None = None
    #: The call holding this connection now, if any.
    preset_call: Call | None = None

    def _new_conn(self) -> socket.socket:
        call = current_call()
        tx = None if call is None else call.tx
        if hasattr(self, "_socks_options") or not _upstream.hook_enabled("cuttable_connect"):
            # A SOCKS connection connects through its proxy (PySocks), and without
            # the hook urllib3 connects: its own code does that; the deadline still
            # caps the timeouts it is given (see request and getresponse).
            sock = super()._new_conn()
            if tx is not None:
                tx.connect_done = _metrics._now()  # resolving and the proxy's handshake included
            return sock
        host = self._dns_host
        if host.startswith("["):
            host = host.strip("[]")
        try:
            host.encode("idna")
        except UnicodeError:
            raise LocationParseError(f"'{host}', label empty or too long") from None
        try:
            # Name resolution blocks in the C library and cannot be interrupted:
            # the deadline is checked as soon as it returns.
            addresses = socket.getaddrinfo(host, self.port, allowed_gai_family(), socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        if tx is not None:
            tx.dns_done = _metrics._now()
        error: OSError = OSError("getaddrinfo returned no address")
        for family, kind, proto, _, address in addresses:
            try:
                return self._connect_to(call, family, kind, proto, address)
            except OSError as exc:
                error = exc
        if call is not None:
            call.stop_reason()  # a connect timeout capped at the deadline: mark the call past it
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from error
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error

    def _connect_to(self, call: Call | None, family: int, kind: int, proto: int, address: Any) -> socket.socket:
        """Connect one socket to ``address``, cuttable by the call from before ``connect()`` starts."""
        sock = socket.socket(family, kind, proto)
        try:
            for option in self.socket_options or ():
                sock.setsockopt(*option)
            if self.source_address:
                sock.bind(self.source_address)
            self._preset_close_abort_handle()
            self.preset_abort_handle = AbortHandle(sock)
            timeout = Timeout.resolve_default_timeout(self.timeout)
            if call is not None:
                call.hold(self)
                # After the handle is published: an abort from now on reaches the socket.
                timeout = call.cap(timeout)
            sock.settimeout(timeout)
            sock.connect(address)
            if call is not None:
                if call.tx is not None:
                    call.tx.connect_done = _metrics._now()
                # An abort between the check above and connect() may have found
                # the socket not yet connecting; it is caught here. The cap also
                # bounds the TLS handshake that follows.
                sock.settimeout(call.cap(timeout))
        except BaseException:
            self._preset_close_abort_handle()
            sock.close()
            raise
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock

    def _preset_close_abort_handle(self) -> None:
        handle, self.preset_abort_handle = self.preset_abort_handle, None
        if handle is not None:
            handle.close()

    def connect(self) -> None:
        call = current_call()
        try:
            super().connect()
        except BaseException:
            if call is not None:
                call.stop_reason()  # a timeout capped at the deadline: mark the call past it
            raise
        finally:
            # Connected and, for HTTPS, handshaken: from now on the call cuts self.sock.
            self._preset_close_abort_handle()
        if call is not None and call.reason is not None:
            shutdown_connection(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        call = current_call()
        if call is not None:
            timeout: Any = self.timeout
            self.timeout = call.cap(getdefaulttimeout() if timeout is _DEFAULT_TIMEOUT else timeout)
        super().request(*args, **kwargs)

    def getresponse(self) -> Any:
        call = current_call()
        if call is None:
            return super().getresponse()
        timeout: Any = self.timeout
        self.timeout = call.cap(getdefaulttimeout() if timeout is _DEFAULT_TIMEOUT else timeout)
        try:
            return super().getresponse()
        except TimeoutError:
            call.stop_reason()  # a read timeout capped at the deadline: mark the call past it
            raise


class _MetricsMarks(_Connection):
    """Marks the phases of the request this connection carries (see :mod:`._metrics`) where they happen."""

    metrics: ClassVar[SessionMetrics]
    #: "http" or "https", for the open-connection gauges.
    preset_scheme: ClassVar[str]
    #: The request this connection carries now (metrics), until its body is released.
    _preset_tx: Transaction | None = None
    #: None (closed), "idle" or "active", for the open-connection gauges.
    _preset_state: str | None = None
    _preset_generation: int = 0
    #: Remote address, TLS version and cipher, read once when connected.
    _preset_peer: tuple[str | None, str | None, str | None] = (None, None, None)
    #: http.client's seam for the response it parses: this one counts bytes_received, chunked bodies included.
    response_class = CountingHTTPResponse
    _preset_fresh: bool

    def connect(self) -> None:
        call = current_call()
        tx = None if call is None else call.tx
        if tx is not None:
            tx.connect_start = _metrics._now()
            tx.dns_done = tx.connect_done = tx.tls_done = None
        super().connect()
        sock: Any = self.sock
        version = cipher = None
        if isinstance(sock, ssl.SSLSocket):
            if tx is not None:
                tx.tls_done = _metrics._now()
            version = sock.version()
            suite = sock.cipher()
            cipher = suite[0] if suite else None
        try:
            address: str | None = str(sock.getpeername()[0])
        except (OSError, AttributeError, IndexError, TypeError):
            address = None
        self._preset_peer = (address, version, cipher)
        self.metrics.connection_state(self, "active")

    def request(self, *args: Any, **kwargs: Any) -> None:
        call = current_call()
        tx = None if call is None else call.tx
        if tx is not None:
            if self.sock is None:
                # Connect first, so that the connect phase is not counted as sending.
                self.connect()
            tx.conn = self
            self._preset_tx = tx
            tx.reused = not self._preset_fresh
            tx.peer = self._preset_peer
            tx.request_start = _metrics._now()
        super().request(*args, **kwargs)
        if tx is not None:
            tx.request_done = _metrics._now()

    def send(self, data: Any) -> None:
        tx = self._preset_tx
        if tx is not None:
            if type(data) is bytes:
                tx.bytes_sent += len(data)
            elif isinstance(data, memoryview):
                tx.bytes_sent += data.nbytes
            elif isinstance(data, (bytearray, str)):
                tx.bytes_sent += len(data)
        super().send(data)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._preset_state is not None:
                self.metrics.connection_state(self, None)

    def getresponse(self) -> Any:
        response = super().getresponse()
        tx = self._preset_tx
        if tx is not None:
            tx.response_start = _metrics._now()
            tx.status = response.status
            tx.raw = response
        return response


class ConnectionMixin(_MetricsMarks, _CuttableConnect, _TLSTickets, _CountedConnection, _HeaderLineMemo):
    """What a preset's connection adds to urllib3's, one concern per base class.

    The order is the order of the phases: the metrics marks enclose everything a
    phase does (connect-first in ``request`` included), the deadline caps enclose
    the TLS ticket offer and the count, and the header memo sits next to
    urllib3's ``putheader``.
    """
