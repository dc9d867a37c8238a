"""PresetAdapter: an HTTPAdapter that applies a preset to every request it sends."""

from __future__ import annotations

import collections
import contextlib
import http.client
import inspect
import itertools
import logging
import os
import queue
import socket
import ssl
import sys
import threading
import time
import weakref
from socket import getdefaulttimeout
from typing import Any, ClassVar, Final, TypeVar

import requests
import requests.adapters
import requests.utils
from requests.adapters import HTTPAdapter
from requests.auth import _basic_auth_str
from requests.models import PreparedRequest, Response
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, get_netrc_auth
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    EmptyPoolError,
    FullPoolError,
    InvalidHeader,
    LocationParseError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.util import Retry, Timeout
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from . import _metrics, _process, _resilience, _upstream
from ._calls import (
    DEADLINE,
    AbortHandle,
    Call,
    current_call,
    reset_current_call,
    set_current_call,
    shutdown_connection,
    watchdog,
)
from ._config import PresetConfig
from ._errors import ConfigError, TotalTimeoutError
from ._metrics import CountingHTTPResponse, MeteredResponse, SessionMetrics, Transaction
from ._readonly import shared_refusal
from ._redact import CREDENTIAL_HEADERS, RedactingFilter, safe_url
from ._tls import TrustConfig, check_trust, get_ssl_context
from ._tls_sessions import TLSSessionCache, shared_cache

__all__ = [
    "Counters",
    "PresetAdapter",
    "PresetRetry",
    "PresetTimeout",
    "build_retry",
    "preset_adapter_class",
    "readable_retry_after",
]

log = logging.getLogger(__name__)

#: Methods retried after a read error or a retryable status: the idempotent ones.
IDEMPOTENT_METHODS: Final = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PUT", "TRACE"})

#: Origins whose pool lookup is remembered per adapter before the memo is emptied.
_POOL_CACHE_SIZE: Final = 64

#: How finely a retry back-off sleep checks for cancellation.
_SLEEP_SLICE: Final = 0.05

#: The variables through which requests' merge_environment_settings hands a CA bundle to the adapter.
_ENV_CA_BUNDLE_VARIABLES: Final = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")

#: The classes preset_adapter_class built, by base class: one per base in a process.
_PRESET_ADAPTER_CLASSES: dict[type[HTTPAdapter], type[PresetAdapter]] = {}


#: The requests hook through which a preset's TLS settings reach urllib3's pool (public since requests 2.32.3).
TLS_HOOK: Final = "build_connection_pool_key_attributes"


def tls_hook_problem(adapter_class: type[HTTPAdapter]) -> str | None:
    """Say why ``adapter_class`` would not pass a preset's TLS settings to its pools, or None when it would.

    requests 2.32.0 to 2.32.2 look pools up without calling the hook, so an
    override of it is never called: the preset's CA bundle, client certificate
    and minimum TLS version would be dropped without a sign.

    Args:
        adapter_class: requests' ``HTTPAdapter`` (a parameter so that tests can
            hand it a class shaped like an older release).

    Returns:
        What is missing, naming the installed requests version; None when the hook is there and used.
    """
    lookup = getattr(adapter_class, "get_connection_with_tls_context", None)
    version = getattr(requests, "__version__", "?")
    if getattr(adapter_class, TLS_HOOK, None) is None or lookup is None:
        return f"requests {version} has no HTTPAdapter.{TLS_HOOK} (requests 2.32.3 added it)"
    code = getattr(inspect.unwrap(lookup), "__code__", None)
    if code is not None and TLS_HOOK not in code.co_names:
        return f"requests {version}'s HTTPAdapter.get_connection_with_tls_context does not call {TLS_HOOK}"
    return None


#: Checked once, at import: why this requests would drop a preset's TLS settings, or None.
_TLS_HOOK_PROBLEM: str | None = tls_hook_problem(HTTPAdapter)


def _refuse_dropped_trust(trust: TrustConfig) -> None:
    """Raise ConfigError when ``trust`` sets anything that requests without the TLS hook would drop."""
    if _TLS_HOOK_PROBLEM is None:
        return
    default = TrustConfig()
    changed = [name for name in TrustConfig.__slots__ if getattr(trust, name) != getattr(default, name)]
    if changed:
        settings = ", ".join(f"{name}={getattr(trust, name)!r}" for name in changed)
        raise ConfigError(
            f"{settings} cannot be applied: {_TLS_HOOK_PROBLEM}, so the TLS settings would be silently "
            "dropped; install requests>=2.32.3",
            field=changed[0],
            value=getattr(trust, changed[0]),
            expected="requests>=2.32.3",
            reason=_TLS_HOOK_PROBLEM,
        )

class PresetTimeout(Timeout):
    """The preset's own connect/read timeouts, as a session passes them when a call gives none.

    An adapter sees this type, or None, when the caller did not choose a
    timeout: a connect or read timeout is then retried like any transient
    error. Any other ``timeout=`` is the caller's: each attempt gets it, and the
    first timeout raises at once, as it would with requests.
    """


def _is_timeout(error: Exception | None) -> bool:
    # NewConnectionError subclasses ConnectTimeoutError but is a refusal, not a timeout.
    return isinstance(error, (ReadTimeoutError, ConnectTimeoutError)) and not isinstance(error, NewConnectionError)


#: urllib3's loggers that write request paths, with their query strings, into log records.
_URLLIB3_LOGGERS: Final = (
    "urllib3.connection",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
)

# Records that urllib3 emits during one of our calls lose their query strings
# and userinfo; records of other users of urllib3 are left alone.
_url_filter = RedactingFilter(lambda: current_call() is not None)
for _name in _URLLIB3_LOGGERS:
    logging.getLogger(_name).addFilter(_url_filter)


#: The counters a session keeps (SessionStats fields of the same names).
COUNTER_NAMES: Final = (
    "requests",
    "connections_opened",
    "connections_reused",
    "connections_resumed",
    "retries",
    "errors",
)


def _count_value(count: itertools.count[int]) -> int:
    # itertools.count offers its value only through repr() ("count(7)"); its
    # pickle support, the other way, is deprecated since Python 3.12.
    return int(repr(count)[6:-1])


def _counter(name: str, doc: str) -> property:
    """A read-only attribute of Counters giving the value of counter ``name``."""

    def value(self: Counters) -> int:
        return _count_value(self._counts[name])

    return property(value, doc=doc)


class Counters:
    """Live counters of one session, incremented where the events happen.

    Each counter is an ``itertools.count``: ``next()`` on it is one C call under
    the GIL, so threads never lose an increment and no lock is taken per request.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts = {name: itertools.count() for name in COUNTER_NAMES}

    def add(self, name: str) -> None:
        """Add one to counter ``name``."""
        next(self._counts[name])

    def after_fork(self) -> None:
        """Start from zero (in a forked child)."""
        self._counts = {name: itertools.count() for name in COUNTER_NAMES}

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a dict."""
        return {name: _count_value(count) for name, count in self._counts.items()}

    requests = _counter("requests", "Requests sent (each attempt a PresetAdapter sends).")
    connections_opened = _counter("connections_opened", "Connections opened.")
    connections_reused = _counter("connections_reused", "Requests sent over a connection that was already open.")
    connections_resumed = _counter("connections_resumed", "Connections whose TLS session was resumed.")
    retries = _counter("retries", "Retries made.")
    errors = _counter("errors", "Calls that failed.")


def _discard_connection(response: Any) -> None:
    """Close a retryable response's connection and give its slot back to the pool.

    urllib3 drains and releases such a response only when increment() raises
    MaxRetryError; any other exception from it (an aborted call's ProtocolError)
    would leave the socket open until the GC finds it, and the pool a slot short.
    """
    with contextlib.suppress(Exception):
        response.close()
    with contextlib.suppress(Exception):
        response.release_conn()


def readable_retry_after(policy: Retry, response: Any) -> float | None:
    """The pause the Retry-After of ``response`` asks for, as urllib3 reads it; None when missing or unreadable.

    urllib3 raises InvalidHeader for an unreadable one (``soon``, a negative
    number, a bad date), which would fail a call that plain requests, with
    no retries, answers with the server's response. A preset retries by
    default, so an unreadable value is ignored and the back-off applies: in a
    session (PresetRetry) and in a background transfer alike.
    """
    try:
        return Retry.get_retry_after(policy, response)
    except InvalidHeader:
        log.debug("ignoring an unreadable Retry-After: %r", response.headers.get("Retry-After"))
        return None


class PresetRetry(Retry):
    """urllib3's Retry, bounded by the call's total deadline and interruptible by cancel."""

    counters: Counters | None = None
    #: The resilience guard of the adapter (rate limit, breaker, pauses per attempt), if its preset has one.
    guard: _resilience.Guard | None = None

    def new(self, **kw: Any) -> PresetRetry:
        retry = super().new(**kw)
        retry.counters = self.counters
        retry.guard = self.guard
        return retry

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> PresetRetry:
        call = current_call()
        if call is not None:
            if call.reason is not None and response is not None:
                _discard_connection(response)
            call.raise_if_aborted()
        if call is not None and call.caller_timeout and _is_timeout(error):
            # The caller's own timeout= is the longest it wants to wait for a
            # silent peer; retrying would multiply it.
            raise MaxRetryError(_pool, url or "", error)
        retry: PresetRetry = super().increment(
            method, url, response=response, error=error, _pool=_pool, _stacktrace=_stacktrace
        )
        if call is not None:
            remaining = call.remaining()
            pause = retry.get_backoff_time()
            if response is not None:
                pause = max(pause, retry.get_retry_after(response) or 0.0)
            if remaining is not None and pause >= remaining:
                if error is None:
                    # No time for another try on a retryable status: with
                    # raise_on_status=False urllib3 hands this response back, as
                    # requests does when its retries run out.
                    status = getattr(response, "status", None)
                    raise MaxRetryError(_pool, url or "", ResponseError(f"no time left to retry status {status}"))
                call.reason = DEADLINE
                raise MaxRetryError(_pool, url or "", error)
        if self.counters is not None:
            self.counters.add("retries")
        if call is not None:
            if self.guard is not None:
                self.guard.after_failed_attempt(call, response, error)
            tx = call.tx
            if tx is not None:
                tx.new_attempt(getattr(response, "status", None), error)
        return retry

    def sleep(self, response: Any = None) -> None:
        super().sleep(response)
        call = current_call()
        if call is None:
            return
        tx = call.tx
        guard = self.guard
        if guard is not None:
            # The next attempt is another request at the origin: breaker and rate limit apply to it too.
            waited = guard.before_retry(call)
            if tx is not None and waited:
                tx.queued += waited
        # The next attempt starts after the pause (and any wait for a permit), not when the retry was decided.
        if tx is not None:
            tx.attempt_started = _metrics._now()

    def _sleep_backoff(self) -> None:
        self._interruptible_sleep(self.get_backoff_time())

    def _interruptible_sleep(self, seconds: float) -> None:
        call = current_call()
        if call is None:
            time.sleep(seconds)
            return
        until = time.monotonic() + seconds
        while True:
            call.raise_if_aborted()
            left = until - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _SLEEP_SLICE))

    def get_retry_after(self, response: Any) -> float | None:
        """The pause a Retry-After asks for; None when it is missing or cannot be read (see readable_retry_after)."""
        return readable_retry_after(self, response)

    def sleep_for_retry(self, response: Any) -> bool:
        seconds = self.get_retry_after(response)
        if seconds:
            self._interruptible_sleep(seconds)
            return True
        return False


_RetryT = TypeVar("_RetryT", bound=Retry)


def build_retry(config: PresetConfig, retry_class: type[_RetryT]) -> _RetryT:
    """The urllib3 Retry of a preset: the one place its retry fields become a policy.

    Idempotent methods only, after connect and read errors and on
    ``retry_statuses``; exponential back-off with jitter; Retry-After honoured.
    Like requests with ``raise_on_status=False``, when status retries run out
    (by count or by total_timeout) the last response is returned, never
    RetryError. The adapter uses it as is (a PresetRetry); the background
    runner drives one itself between its resumable attempts.
    """
    return retry_class(
        total=config.retries,
        connect=None,
        read=None,
        redirect=False,
        status=None,
        other=0,
        allowed_methods=IDEMPOTENT_METHODS,
        status_forcelist=config.retry_statuses,
        backoff_factor=config.backoff_factor,
        backoff_max=config.backoff_max,
        backoff_jitter=config.backoff_factor,
        raise_on_status=False,
        raise_on_redirect=False,
        respect_retry_after_header=True,
    )


#: Header names whose lines the header-line memo never keeps, even from a preset: their values are secrets.
_SECRET_HEADER_WORDS: Final = ("auth", "cookie", "key", "password", "secret", "session", "signature", "token")


def _static_header_lines(config: PresetConfig, defaults: dict[str, str]) -> frozenset[tuple[str, str]]:
    """The (name, value) pairs every request of the preset sends, which the header-line memo may keep.

    requests' default headers, the preset's User-Agent and no-cache headers and
    its ``headers``: never a per-call value, and never a name that looks like
    a credential.
    """
    pairs = {**requests.utils.default_headers(), "User-Agent": config.user_agent, **defaults}
    return frozenset(
        (name, value)
        for name, value in pairs.items()
        if isinstance(value, str)
        and name.lower() not in CREDENTIAL_HEADERS
        and not any(word in name.lower() for word in _SECRET_HEADER_WORDS)
    )


class _ConnectionMixin:
    """Counts opened and reused connections, keeps every phase inside the call's deadline,
    and marks the phases of the request it carries (see :mod:`._metrics`) where they happen.

    The socket is created here rather than in urllib3 so that the call can cut
    it (``invalidate_and_cancel``, ``total_timeout``) while it connects and
    during the TLS handshake, and every phase's socket timeout is capped at
    the time the call has left.
    """

    counters: ClassVar[Counters]
    metrics: ClassVar[SessionMetrics]
    preset_scheme: ClassVar[str]
    preset_connected_at: float = 0.0
    #: How a call cuts this connection while it connects (see _calls.AbortHandle).
    preset_abort_handle: AbortHandle | None = None
    #: The call holding this connection now, if any.
    preset_call: Call | None = None
    _preset_fresh: bool = False
    #: Where this connection's TLS sessions are cached and looked up; None: no resumption.
    tls_sessions: ClassVar[TLSSessionCache | None] = None
    #: The resumption cache key of this connection's origin and context, once connected over TLS.
    preset_tls_key: tuple[str, int, str, int] | None = None
    #: Whether this connection's TLS session has been offered to the cache.
    preset_tls_saved: bool = False
    #: The cache's epoch when this connection was made: a reset() since then keeps its session out.
    preset_tls_epoch: int = 0
    #: The request this connection carries now (metrics), until its body is released.
    _preset_tx: Transaction | None = None
    #: None (closed), "idle" or "active", for the open-connection gauges.
    _preset_state: str | None = None
    _preset_generation: int = 0
    #: Remote address, TLS version and cipher, read once when connected.
    _preset_peer: tuple[str | None, str | None, str | None] = (None, None, None)
    #: Whether the putheader this class inherits is urllib3's own (not vcrpy's, say): see putheader.
    _preset_plain_putheader: ClassVar[bool] = False
    #: http.client's seam for the response it parses: this one counts bytes_received, chunked bodies included.
    response_class: ClassVar[type[http.client.HTTPResponse]] = CountingHTTPResponse
    #: The header lines the preset itself sends on every request (see _static_header_lines).
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
                super().putheader(header, *values)  # type: ignore[misc]
                self.preset_header_lines[key] = header.encode("ascii") + b": " + values[0].encode("latin-1")
                return
        super().putheader(header, *values)  # type: ignore[misc]

    sock: Any
    timeout: Any
    host: str
    port: int
    _dns_host: str
    socket_options: Any
    source_address: tuple[str, int] | None

    def _new_conn(self) -> socket.socket:
        call = current_call()
        tx = None if call is None else call.tx
        if hasattr(self, "_socks_options") or not _upstream.hook_enabled("cuttable_connect"):
            # A SOCKS connection connects through its proxy (PySocks), and without
            # the hook urllib3 connects: its own code does that; the deadline still
            # caps the timeouts it is given (see request and getresponse).
            sock = super()._new_conn()  # type: ignore[misc]
            if tx is not None:
                tx.connect_done = _metrics._now()  # resolving and the proxy's handshake included
            return sock  # type: ignore[no-any-return]
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
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
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
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error  # type: ignore[arg-type]

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
        tx = None if call is None else call.tx
        if tx is not None:
            tx.connect_start = _metrics._now()
            tx.dns_done = tx.connect_done = tx.tls_done = None
        key = self._tls_session_key() if _upstream.hook_enabled("tls_resumption") else None
        token = None
        if key is not None:
            assert self.tls_sessions is not None
            if call is None:
                # Connected outside any call (urllib3 driven directly): a context for this handshake alone.
                call = Call(None)
                token = set_current_call(call)
            # Read before the lookup: a clear() from here on makes this connection's session stale.
            self.preset_tls_epoch = self.tls_sessions.epoch
            call.tls_offer = self.tls_sessions.get(key)
        try:
            super().connect()  # type: ignore[misc]
        except BaseException:
            if call is not None:
                call.stop_reason()  # a timeout capped at the deadline: mark the call past it
            raise
        finally:
            # Connected and, for HTTPS, handshaken: from now on the call cuts self.sock.
            self._preset_close_abort_handle()
            if call is not None:
                call.tls_offer = None
            if token is not None:
                reset_current_call(token)
        self.preset_connected_at = time.monotonic()
        self._preset_fresh = True
        self.counters.add("connections_opened")
        self.preset_tls_key = key
        self.preset_tls_saved = False
        if key is not None and getattr(self.sock, "session_reused", False):
            self.counters.add("connections_resumed")
        sock = self.sock
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
        if call is not None and call.reason is not None:
            shutdown_connection(self)

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
        sock = self.sock
        key = self.preset_tls_key
        if key is None or sock is None or self.tls_sessions is None:
            return
        self.preset_tls_saved = True
        session = getattr(sock, "session", None)
        # Without a ticket a TLS 1.3 session cannot be resumed.
        if session is None or not (session.has_ticket or sock.version() != "TLSv1.3"):
            return
        self.tls_sessions.put(key, session, sock.context, epoch=self.preset_tls_epoch)

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
        if not self._preset_fresh and self.sock is not None:
            self.counters.add("connections_reused")
        if call is not None:
            timeout = self.timeout
            self.timeout = call.cap(getdefaulttimeout() if timeout is _DEFAULT_TIMEOUT else timeout)
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._preset_fresh = False
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
        super().send(data)  # type: ignore[misc]

    def close(self) -> None:
        if not self.preset_tls_saved and self.preset_tls_key is not None:
            self._save_tls_session_before_close()
        try:
            super().close()  # type: ignore[misc]
        finally:
            if self._preset_state is not None:
                self.metrics.connection_state(self, None)

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

    def getresponse(self) -> Any:
        call = current_call()
        if call is None:
            response = super().getresponse()  # type: ignore[misc]
        else:
            timeout = self.timeout
            self.timeout = call.cap(getdefaulttimeout() if timeout is _DEFAULT_TIMEOUT else timeout)
            try:
                response = super().getresponse()  # type: ignore[misc]
            except TimeoutError:
                call.stop_reason()  # a read timeout capped at the deadline: mark the call past it
                raise
        tx = self._preset_tx
        if tx is not None:
            tx.response_start = _metrics._now()
            tx.status = response.status
            tx.raw = response
        return response


#: A pool_block waiter's states; each change happens under its pool's lock.
_WAITING: Final = "waiting"
_GRANTED: Final = "granted"
_LEFT: Final = "left"
_CLOSED: Final = "closed"


class _Waiter:
    """One call queued for a connection of a ``pool_block`` pool, in arrival order."""

    __slots__ = ("state", "woken")

    def __init__(self) -> None:
        # Held until a grant (or the pool's close) releases it: lighter than an
        # Event, which builds a Condition and a lock per wait.
        self.woken = threading.Lock()
        self.woken.acquire()
        #: _LEFT while not in line (before joining, and after leaving it or taking its grant).
        self.state: str = _LEFT


class _PoolMixin:
    """Hands the call its connection, and retires connections past max_connection_age.

    With ``block`` (the preset's ``pool_block``), calls beyond ``pool_maxsize``
    wait in line, first come first served. A connection given back while
    calls wait goes into urllib3's queue *granted* to the oldest waiter: newcomers
    leave granted items alone, and the waiter takes its item through urllib3's
    own ``_get_conn``, so a patched ``_get_conn`` or ``is_connection_dropped``
    (vcrpy) sees every connection handed out.
    """

    max_connection_age: ClassVar[float | None]
    #: How long a call waits for a free connection before it opens an extra one.
    wait_limit: ClassVar[float | None] = None
    block: bool
    pool: queue.LifoQueue[Any] | None
    #: Connections handed out and not yet returned, including those under a streamed body.
    checked_out: ClassVar[weakref.WeakSet[Any]]
    #: The insecure context of a verify=False preset: warned about once per session already.
    acknowledged_context: ClassVar[ssl.SSLContext | None] = None
    conn_kw: dict[str, Any]

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

    def _validate_conn(self, conn: Any) -> None:
        acknowledged = self.acknowledged_context
        if acknowledged is None or self.conn_kw.get("ssl_context") is not acknowledged:
            super()._validate_conn(conn)  # type: ignore[misc]
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
            conn = self._new_conn()  # type: ignore[attr-defined]
        elif self.block and _upstream.hook_enabled("pool_queue"):
            conn = self._wait_for_conn(call)
        elif self.block:
            conn = self._get_conn_from_urllib3(timeout)
        else:
            conn = super()._get_conn(timeout)  # type: ignore[misc]
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

    def _get_conn_from_urllib3(self, timeout: float | None) -> Any:
        """Without the pool_queue hook: urllib3's own blocking wait, bounded by wait_limit, then an extra connection."""
        limit = self.wait_limit if timeout is None else timeout
        try:
            return super()._get_conn(limit)  # type: ignore[misc]
        except EmptyPoolError:
            log.debug("no free connection after %.3g s; opening an extra one", limit or 0.0)
            return self._new_conn()  # type: ignore[attr-defined]

    def _take(self) -> Any:
        """Take an item from urllib3's queue without blocking (EmptyPoolError when there is none)."""
        return super()._get_conn(timeout=0)  # type: ignore[misc]

    def _wait_for_conn(self, call: Call | None) -> Any:
        """Take a pooled connection, waiting in line for one when all pool_maxsize are in use."""
        if not self._preset_waiters and not self._preset_granted:
            with contextlib.suppress(EmptyPoolError):
                return self._take()
        conn = self._wait_in_line(call)
        return self._new_conn() if conn is None else conn  # type: ignore[attr-defined]

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
                    if waiter.state == _WAITING:
                        self._preset_waiters.remove(waiter)
                        waiter.state = _LEFT
                if waiter.state != _GRANTED:
                    break
            elif waiter.state == _LEFT:
                if not self._join_line(waiter, front=front):
                    # A free item, granted to nobody: take it, or look again if it went meanwhile.
                    with contextlib.suppress(EmptyPoolError):
                        return self._take()
                continue
            elif not waiter.woken.acquire(timeout=min(left, _SLEEP_SLICE)):
                # Sliced: cancellation and the deadline only set call.reason.
                continue
            if waiter.state == _CLOSED:
                break
            # Granted: an item in the queue is this waiter's, unless the call was aborted meanwhile.
            reason = _abort_reason(call)
            if reason is not None:
                with self._preset_lock:
                    self._preset_granted -= 1
                    waiter.state = _LEFT
                    self._grant_locked()  # to the next in line
                break
            try:
                return self._take()
            except EmptyPoolError:
                front = True
            finally:
                with self._preset_lock:
                    self._preset_granted -= 1
                    waiter.state = _LEFT
        if waiter.state == _CLOSED:
            raise ClosedPoolError(self, "Pool was closed while waiting for a connection.")  # type: ignore[arg-type]
        if reason is not None:
            raise EmptyPoolError(self, f"call aborted while waiting for a connection: {reason}")  # type: ignore[arg-type]
        log.debug("no free connection after %.3g s; opening an extra one", self.wait_limit)
        return None

    def _join_line(self, waiter: _Waiter, *, front: bool) -> bool:
        """Put ``waiter`` in line, unless an item granted to nobody is in the queue (then False)."""
        with self._preset_lock:
            pool = self.pool
            if pool is None:
                raise ClosedPoolError(self, "Pool is closed.")  # type: ignore[arg-type]
            if pool.qsize() > self._preset_granted:
                return False
            waiter.state = _WAITING
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
            waiter.state = _GRANTED
            self._preset_granted += 1
            waiter.woken.release()

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
        if not self.block:
            super()._put_conn(conn)  # type: ignore[misc]
            return
        if not _upstream.hook_enabled("pool_queue"):
            with contextlib.suppress(FullPoolError):  # an extra connection: urllib3 has closed it
                super()._put_conn(conn)  # type: ignore[misc]
            return
        with self._preset_lock:
            try:
                super()._put_conn(conn)  # type: ignore[misc]
            except FullPoolError:
                # An extra connection opened after waiting (see _wait_in_line)
                # came back to a full pool; urllib3 has closed it.
                return
            if self._preset_waiters:
                self._grant_locked()

    def close(self) -> None:
        """Close the pool as urllib3 does, and wake every waiter with ClosedPoolError."""
        super().close()  # type: ignore[misc]
        with self._preset_lock:
            waiters, self._preset_waiters = self._preset_waiters, collections.deque()
            for waiter in waiters:
                waiter.state = _CLOSED
                waiter.woken.release()


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
                    built = (current, type(self._name, (_ConnectionMixin, current), dict(self._attrs)))
                    self._built = built
        return built[1]


class _AcknowledgedContext:
    """The insecure context a verify=False preset was warned about, looked up when a pool asks."""

    def __init__(self, trust: TrustConfig) -> None:
        self._trust = trust

    def __get__(self, pool: object, owner: type | None = None) -> ssl.SSLContext:
        return get_ssl_context(self._trust)


_classes_lock = _process.fork_safe_lock()


def _pool_classes(
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
        (_PoolMixin, HTTPConnectionPool),
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
    https_pool = type("PresetHTTPSConnectionPool", (_PoolMixin, HTTPSConnectionPool), https_attrs)
    return {"http": http_pool, "https": https_pool}


def _socks_pool_classes(
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
    http_conn = type("PresetSOCKSConnection", (_ConnectionMixin, SOCKSConnection), {**attrs, "preset_scheme": "http"})
    https_conn = type(
        "PresetSOCKSHTTPSConnection", (_ConnectionMixin, SOCKSHTTPSConnection), {**attrs, "preset_scheme": "https"}
    )
    pool_attrs = {
        "max_connection_age": max_age,
        "acknowledged_context": acknowledged,
        "checked_out": checked_out,
        "wait_limit": wait_limit,
    }
    http_pool = type(
        "PresetSOCKSHTTPConnectionPool",
        (_PoolMixin, SOCKSHTTPConnectionPool),
        {**pool_attrs, "ConnectionCls": http_conn},
    )
    https_pool = type(
        "PresetSOCKSHTTPSConnectionPool",
        (_PoolMixin, SOCKSHTTPSConnectionPool),
        {**pool_attrs, "ConnectionCls": https_conn},
    )
    return {"http": http_pool, "https": https_pool}


#: What a missing per-call verify=/cert= path error adds after requests' own text.
_PATH_ADVICE: Final = (
    "session_presets: verify= takes a PEM CA bundle file or directory (or a bool), cert= a PEM file or a "
    "(cert, key) pair; a CA bundle for every call belongs in the preset's ca_bundle"
)


def _path_error(text: str) -> OSError:
    # str() stays requests' exact text, which callers compare; the advice follows
    # it as a note (Python 3.11+), printed after it in a traceback.
    error = OSError(text)
    if hasattr(error, "add_note"):
        error.add_note(_PATH_ADVICE)
    return error


def _check_paths(verify: Any, cert: Any) -> None:
    """Raise requests' OSError for a per-call CA bundle or client certificate path that does not exist."""
    if isinstance(verify, str) and not os.path.exists(verify):
        raise _path_error(f"Could not find a suitable TLS CA certificate bundle, invalid path: {verify}")
    if cert is None:
        return
    cert_file, key_file = (cert[0], cert[1]) if isinstance(cert, (list, tuple)) else (cert, None)
    if not os.path.exists(cert_file):
        raise _path_error(f"Could not find the TLS certificate file, invalid path: {cert_file}")
    if key_file and not os.path.exists(key_file):
        raise _path_error(f"Could not find the TLS key file, invalid path: {key_file}")


def _trust(
    *,
    verify: bool,
    trust_store: str,
    ca_bundle: str | None,
    client_cert: str | tuple[str, str] | None,
    tls_min_version: str,
) -> TrustConfig:
    if not verify:
        # Trust anchors mean nothing without verification: one insecure context each.
        return TrustConfig(verify=False, client_cert=client_cert, tls_min_version=tls_min_version)
    return TrustConfig(
        verify=True,
        trust_store=trust_store,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        tls_min_version=tls_min_version,
    )


def _cert_reqs(context: ssl.SSLContext) -> str:
    return "CERT_NONE" if context.verify_mode == ssl.CERT_NONE else "CERT_REQUIRED"


def _tls_session_cache(config: PresetConfig) -> TLSSessionCache | None:
    if config.tls_session_cache == "off":
        return None
    return shared_cache(config.name) if config.tls_session_cache == "shared" else TLSSessionCache()


class PresetAdapter(HTTPAdapter):
    """An HTTPAdapter that applies a preset: timeouts, retries, cache headers, pools, TLS.

    - ``timeout=None`` (what requests passes when the caller gives none) or a
      :class:`PresetTimeout` becomes the preset's ``(connect_timeout,
      read_timeout)``, and a timeout is retried like other transient errors.
      Any other per-call timeout is the caller's: it applies to each attempt
      and its first expiry raises (no retry after a timeout).
    - Retries come from a urllib3 ``Retry`` built from the preset: idempotent
      methods only, ``retry_statuses``, Retry-After honoured, bounded by the
      call's ``total_timeout``. When status retries run out (by count, or because
      ``total_timeout`` leaves no time for another try) the last response is
      returned, as requests does with ``raise_on_status=False``; never RetryError.
    - ``cache_policy='reload'``: a PresetSession puts ``Cache-Control: no-cache``
      and ``Pragma: no-cache`` in its default headers; on any other session the
      adapter adds them, and the preset's ``headers``, to requests that lack
      them (see ``default_headers``).
    - Every HTTPS connection uses the shared context of its trust configuration,
      so no new connection reloads a CA bundle.
    - Connections older than ``max_connection_age`` are not reused.

    Mounted on a plain ``requests.Session`` (or a subclass such as
    ``OAuth2Session``), it still enforces ``total_timeout`` for each request it
    sends (each redirect hop, body included unless ``stream=True``), drops
    credentials that requests read from netrc (an ``Authorization`` equal to the
    netrc entry of the URL, unless ``store_credentials``), and, when the preset
    sets ``ca_bundle``, ignores a ``verify=`` equal to ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE``: that is requests handing over the environment's bundle.

    Subclasses may override ``build_connection_pool_key_attributes`` to add
    per-request pool settings (such as ``server_hostname``); pools are then
    looked up through requests on every call rather than memoised per origin.
    A subclass whose ``__init__`` takes other arguments overrides
    ``__getstate__``/``__setstate__`` too if it must pickle.

    Args:
        config: the preset to apply.
        counters: where connection and retry counts go; a new set if omitted.
        metrics: where request and connection aggregates go; a new set if omitted.
    """

    def __init__(
        self, config: PresetConfig, *, counters: Counters | None = None, metrics: SessionMetrics | None = None
    ) -> None:
        # The fast path is decided at first use (a bad SESSION_PRESETS_FAST_PATH is refused here).
        _upstream.gate()
        self.preset = config
        self.counters = counters if counters is not None else Counters()
        self.metrics = metrics if metrics is not None else SessionMetrics(config.name)
        self._timeout = PresetTimeout(connect=config.connect_timeout, read=config.read_timeout)
        self._trust = _trust(
            verify=config.verify,
            trust_store=config.trust_store,
            ca_bundle=config.ca_bundle,
            client_cert=config.client_cert,
            tls_min_version=config.tls_min_version,
        )
        _refuse_dropped_trust(self._trust)
        # Checked now, built on the first HTTPS connection (see tls).
        check_trust(self._trust)
        self._checked_out: weakref.WeakSet[Any] = weakref.WeakSet()
        self.tls_sessions = _tls_session_cache(config)
        self._no_cache = config.cache_policy == "reload"
        self._fallback_headers = tuple(self.default_headers.items())
        #: The preset's own header lines as http.client encoded them (see _ConnectionMixin.putheader).
        self._header_lines: dict[tuple[str, str], bytes] = {}
        self._pool_classes = _pool_classes(
            self.counters,
            config.max_connection_age,
            None if config.verify else self._trust,
            self._checked_out,
            self.metrics,
            self.tls_sessions,
            config.connect_timeout,
            _static_header_lines(config, self.default_headers),
            self._header_lines,
        )
        self._used_since_close = True
        #: Pools by origin and trust setting (see get_connection_with_tls_context).
        self._pool_cache = _upstream.LRUMemo(_POOL_CACHE_SIZE)
        #: requests' encoding by Content-Type value (see _encoding_of).
        self._encodings = _upstream.LRUMemo(_ENCODING_MEMO_SIZE)
        # A subclass that adds per-request pool settings must not get a pool memoised per origin.
        self._memo_pools = (
            type(self).build_connection_pool_key_attributes is PresetAdapter.build_connection_pool_key_attributes
        )
        self._socks_classes: dict[str, type[HTTPConnectionPool]] | None = None
        retry = build_retry(config, PresetRetry)
        retry.counters = self.counters
        #: Rate limit, max_in_flight and circuit breaker of the preset; None when all are off.
        self.guard = _resilience.guard_for(config)
        retry.guard = self.guard
        super().__init__(
            pool_connections=config.pool_connections,
            pool_maxsize=config.pool_maxsize,
            max_retries=retry,
            pool_block=config.pool_block,
        )

    #: Set on the adapter of a shared (registry) session: its pools and retries are not changed in place.
    shared_preset: bool = False
    #: Whether the send after PresetAdapter's in this class's method order is HTTPAdapter's (see send).
    _preset_plain_send: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        after = cls.__mro__[cls.__mro__.index(PresetAdapter) + 1 :]
        cls._preset_plain_send = next(klass for klass in after if "send" in vars(klass)) is HTTPAdapter
    _max_retries: Retry

    @property
    def max_retries(self) -> Retry:
        """The urllib3 ``Retry`` of every request, as on HTTPAdapter (built from the preset)."""
        return self._max_retries

    @max_retries.setter
    def max_retries(self, retry: Retry) -> None:
        # requests-futures' adapter_kwargs={"max_retries": ...} sets it on the adapters it finds.
        if self.shared_preset:
            raise shared_refusal(self.preset.name, "the retries (max_retries; set retries in the preset)")
        self._max_retries = retry

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

    def __getstate__(self) -> dict[str, Any]:
        # Pools, sockets, counters and contexts belong to this process: a
        # pickle carries the preset alone, as requests' adapters carry their settings.
        return {"preset": self.preset}

    def __setstate__(self, state: dict[str, Any]) -> None:
        PresetAdapter.__init__(self, state["preset"])

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if proxy.lower().startswith("socks"):
            # SOCKSProxyManager's pools build SOCKS connections; plain ones would be
            # handed _socks_options they do not know.
            if self._socks_classes is None:
                self._socks_classes = _socks_pool_classes(
                    self.counters,
                    self.metrics,
                    self.preset.max_connection_age,
                    None if self.preset.verify else self._context,
                    self._checked_out,
                    self.preset.connect_timeout,
                )
            manager.pool_classes_by_scheme = self._socks_classes
        else:
            manager.pool_classes_by_scheme = self._pool_classes
        return manager

    @property
    def _context(self) -> ssl.SSLContext:
        """The shared context of the preset's own trust configuration, built on first use.

        Raises:
            OSError: OpenSSL refused what the build-time check let through (a key
                that does not match its certificate); the call fails as requests
                fails one for a bad certificate, with the ConfigError chained.
        """
        try:
            return get_ssl_context(self._trust)
        except ConfigError as exc:
            raise OSError(f"cannot use the TLS configuration of preset {self.preset.name!r}: {exc}") from exc

    def context_for(self, verify: Any, cert: Any) -> ssl.SSLContext:
        """Return the shared SSLContext for a call's merged ``verify`` and ``cert``.

        Raises:
            OSError: ``verify`` or ``cert`` names a file that does not exist
                (requests' own message, then ours) or cannot be loaded.
        """
        if cert is None and verify is self.preset.verify:
            return self._context
        _check_paths(verify, cert)
        client = self._trust.client_cert
        if cert is not None:
            client = (str(cert[0]), str(cert[1])) if isinstance(cert, (list, tuple)) else str(cert)
        trust = _trust(
            verify=verify is not False,
            trust_store=self._trust.trust_store,
            ca_bundle=verify if isinstance(verify, str) else self._trust.ca_bundle,
            client_cert=client,
            tls_min_version=self._trust.tls_min_version,
        )
        if trust == self._trust:
            return self._context
        try:
            return get_ssl_context(trust)
        except ConfigError as exc:
            # A per-call verify= or cert= is not configuration: fail the call the
            # way requests does for a bad path, with an OSError naming it.
            raise OSError(f"cannot use verify={verify!r} / cert={cert!r} for this call: {exc}") from exc

    def _is_environment_bundle(self, verify: str) -> bool:
        """True when ``verify`` is the environment's CA bundle handed over by requests; ca_bundle beats it."""
        if self._trust.ca_bundle is None:
            return False
        return any(verify == os.environ.get(name) for name in _ENV_CA_BUNDLE_VARIABLES)

    def build_connection_pool_key_attributes(
        self, request: PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") == "https":
            if (
                isinstance(verify, str)
                # A PresetSession never reads the environment per call: its verify= is the caller's.
                and not getattr(request, "preset_session_prepared", False)
                and self._is_environment_bundle(verify)
            ):
                verify = self.preset.verify
            context = self.context_for(verify, cert)
            pool_kwargs = {"ssl_context": context, "cert_reqs": _cert_reqs(context)}
        return host_params, pool_kwargs

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

    def request_url(self, request: PreparedRequest, proxies: dict[str, str] | None) -> str:
        if proxies or not _upstream.ADAPTER_REQUEST_URL.live():
            url = super().request_url(request, proxies)
            if proxies:
                return url
        else:
            # requests' without a proxy to select: the path.
            url = request.path_url
        return "/" + url.lstrip("/") if url.startswith("//") else url

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # Deliberately empty: requests would set ca_certs on the pool here, and
        # urllib3 would then load that bundle on every new connection. The shared
        # context already holds the trust anchors and the client certificate.
        return None

    def build_response(self, req: PreparedRequest, resp: Any) -> Response:
        if _upstream.ADAPTER_BUILD_RESPONSE.live():
            response = _upstream.build_response(self, req, resp, MeteredResponse, self._encoding_of)
            if response is not None:
                return response
        return super().build_response(req, resp)

    def _encoding_of(self, content_type: str) -> str | None:
        """requests' encoding for a Content-Type value (get_encoding_from_headers), worked out once per value."""
        encoding: str | None = self._encodings.get(content_type)
        if encoding is not None:
            return encoding
        if content_type in self._encodings:
            return None
        if _upstream.ENCODING_FROM_HEADERS.live():
            encoding = get_encoding_from_headers(CaseInsensitiveDict({"Content-Type": content_type}))
            self._encodings.put(content_type, encoding)
            return encoding
        headers = CaseInsensitiveDict({"Content-Type": content_type})
        found: str | None = requests.adapters.get_encoding_from_headers(headers)  # type: ignore[attr-defined]
        return found

    @property
    def default_headers(self) -> dict[str, str]:
        """The headers the preset sends with every request: no-cache (``cache_policy='reload'``) and ``headers``.

        A PresetSession holds them in ``session.headers``. On any other session
        the adapter adds those a request lacks as it sends it, which is after
        requests-cache or a mock looked at the request:
        ``session.headers.update(adapter.default_headers)`` puts them where every
        layer sees them. (To send none of them there, use ``cache_policy='protocol'``.)
        """
        headers = {"Cache-Control": "no-cache", "Pragma": "no-cache"} if self._no_cache else {}
        headers.update(self.preset.headers)
        return headers

    def add_headers(self, request: PreparedRequest, **kwargs: Any) -> None:
        # A PresetSession keeps them in its default headers, where mocks, caches and
        # the caller (who may remove them) see them; any other session gets them here.
        if getattr(request, "preset_session_prepared", False):
            return
        for name, value in self._fallback_headers:
            request.headers.setdefault(name, value)

    def _drop_netrc_credentials(self, request: PreparedRequest) -> None:
        """Remove an Authorization header that requests took from netrc (plain sessions only)."""
        if self.preset.store_credentials or getattr(request, "preset_session_prepared", False):
            return
        header = request.headers.get("Authorization")
        if not isinstance(header, str) or not header.startswith("Basic "):
            return
        found = get_netrc_auth(request.url or "")
        if found and header == _basic_auth_str(*found):
            log.debug("dropped netrc credentials for %s (store_credentials=False)", safe_url(request.url))
            del request.headers["Authorization"]

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> Response:
        call = current_call()
        if call is None:
            return self._send_own_call(request, stream, timeout, verify, cert, proxies)
        guard = self.guard
        if guard is not None and call.origin is None:
            # Breaker, rate limit and max_in_flight around this hop (then _send_hop, with call.origin set).
            return guard.send(
                call, self._send_hop, request, stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
        return self._send_hop(call, request, stream, timeout, verify, cert, proxies)

    def _send_own_call(
        self, request: PreparedRequest, stream: bool, timeout: Any, verify: Any, cert: Any, proxies: Any
    ) -> Response:
        """Send ``request`` as a call of its own: sent by a plain Session (OAuth2Session...), not a PresetSession.

        The adapter then keeps the call's context, and its deadline: one per request it sends.
        """
        own = Call(self.preset.total_timeout)
        token = set_current_call(own)
        if own.deadline is not None:
            watchdog.add(own)
        try:
            # The hop itself, not self.send again: a subclass's send runs once per request.
            guard = self.guard
            if guard is not None:
                response = guard.send(
                    own, self._send_hop, request, stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
                )
            else:
                response = self._send_hop(own, request, stream, timeout, verify, cert, proxies)
            if own.deadline is not None and not stream and not response.is_redirect:
                # The body is part of the deadline, as on a PresetSession. A redirect's
                # body is left to requests, which forgives a bad one.
                response.content  # noqa: B018
            return response
        except Exception as exc:
            # A socket timeout capped at the deadline fires before the watchdog looks.
            if own.stop_reason() == DEADLINE and not isinstance(exc, TotalTimeoutError):
                raise own.timeout_error(request, self.preset.name) from exc
            raise
        finally:
            if own.deadline is not None:
                watchdog.discard(own)
            reset_current_call(token)

    def _send_hop(
        self, call: Call, request: PreparedRequest, stream: bool, timeout: Any, verify: Any, cert: Any, proxies: Any
    ) -> Response:
        """Send one hop of ``call`` (the call in flight), recording its metrics on the call's context."""
        if timeout is None:
            timeout = self._timeout
        call.check()
        self._used_since_close = True
        if not getattr(request, "preset_session_prepared", False):
            self._drop_netrc_credentials(request)
        # Saved and put back: code run inside a hop (a body generator, say) may send a hop of its own.
        outer_choice, outer_tx = call.caller_timeout, call.tx
        call.caller_timeout = not isinstance(timeout, PresetTimeout)
        self.counters.add("requests")
        tx: Transaction | None = None
        if _metrics.ENABLED:
            tx = call.tx = self.metrics.start(request.method or "", request.url or "")
            tx.resends_before = call.sent
        try:
            try:
                if self._preset_plain_send and _upstream.ADAPTER_SEND.live():
                    cls = type(self)
                    response = _upstream.adapter_send(
                        self, request, stream, timeout, verify, cert, proxies,
                        # PresetAdapter's cert_verify does nothing, and its add_headers adds
                        # nothing to what a PresetSession prepared.
                        check_cert=cls.cert_verify is not PresetAdapter.cert_verify,
                        add_headers=cls.add_headers is not PresetAdapter.add_headers
                        or not getattr(request, "preset_session_prepared", False),
                    )
                else:
                    response = super().send(
                        request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
                    )
            except BaseException as exc:
                if tx is not None:
                    tx.fail(exc)
                raise
            finally:
                if tx is not None:
                    call.sent += tx.attempts
            # What requests built, with a metrics property read from the recorder.
            if type(response) is not MeteredResponse:
                response.__class__ = MeteredResponse
            response._preset_tx = tx  # type: ignore[attr-defined]
            if stream and tx is not None and not tx.done:
                # A streamed body left unread and unclosed still ends its request.
                weakref.finalize(response, tx.abandon).atexit = False
            return response
        except Exception as exc:
            wrapped = exc.args[0] if exc.args else None
            # With retries, urllib3 wraps a final read timeout in MaxRetryError, which
            # requests reports as ConnectionError; callers rightly expect a Timeout.
            if (
                isinstance(exc, requests.ConnectionError)
                and isinstance(wrapped, MaxRetryError)
                and isinstance(wrapped.reason, ReadTimeoutError)
            ):
                raise requests.ReadTimeout(wrapped, request=request) from exc
            raise
        finally:
            # Again after the fact: a close() that ran during this send left its pool in use.
            self._used_since_close = True
            call.caller_timeout, call.tx = outer_choice, outer_tx

    def close(self) -> None:
        """Close every pool, as HTTPAdapter.close does.

        One adapter is usually mounted for both ``http://`` and ``https://``, and
        requests' Session.close closes each mount: a close with no request sent
        since the last one does nothing.
        """
        if not self._used_since_close:
            return
        self._used_since_close = False
        # urllib3 2 closes a dropped pool when nothing refers to it any more: the
        # memo must let go too, or the pool's idle sockets outlive the close.
        self._pool_cache.clear()
        self._encodings.clear()
        self._header_lines.clear()
        # A private cache dies with its session (a preset's shared one lives on):
        # the connections closing now need not keep their sessions.
        private = self.tls_sessions if self.tls_sessions is not None and not self.tls_sessions.shared else None
        if private is not None:
            private.discarding = True
        try:
            self._close_every_pool()
            super().close()
        finally:
            if private is not None:
                private.clear()
                private.discarding = False

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
            pools = getattr(manager, "pools", None)
            try:
                keys = list(pools.keys())  # type: ignore[union-attr]
            except (AttributeError, TypeError):
                # Not urllib3's manager (a test double in proxy_manager, as requests' own suite
                # puts there): it has no pools to close; clear() below still reaches it.
                continue
            for key in keys:
                pool = pools.get(key)  # type: ignore[union-attr]
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



#: Content-Type values whose encoding an adapter remembers (least recently used first out).
_ENCODING_MEMO_SIZE: Final = 64


def preset_adapter_class(base: type[HTTPAdapter]) -> type[PresetAdapter]:
    """Return a PresetAdapter subclass that is also a ``base``: its features over the preset's transport.

    For adapter classes of other libraries (CacheControl's ``CacheControlAdapter``,
    requests-toolbelt's ``SourceAddressAdapter``) that pass their extra keyword
    arguments on to ``HTTPAdapter.__init__``. The class built takes the
    ``base`` arguments plus PresetAdapter's ``config`` (and ``counters``,
    ``metrics``) as keywords; ``PresetSession.adapter_factory`` fills those in
    from a session. One class per ``base`` is built in a process.

    Args:
        base: an ``HTTPAdapter`` subclass; a PresetAdapter subclass is returned as it is.

    Returns:
        The class ``Preset<base name>``, whose method order puts ``base`` before PresetAdapter.

    Raises:
        TypeError: ``base`` is not an HTTPAdapter subclass.
    """
    if not (isinstance(base, type) and issubclass(base, HTTPAdapter)):
        raise TypeError(f"base must be a requests.adapters.HTTPAdapter subclass, got {base!r}")
    if issubclass(base, PresetAdapter):
        return base
    if issubclass(PresetAdapter, base):
        return PresetAdapter  # HTTPAdapter itself adds nothing to the preset

    def init_poolmanager(
        self: PresetAdapter, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        # ``base`` may build its PoolManager without calling super() (toolbelt's
        # SourceAddressAdapter does): the preset's pool classes are put in afterwards.
        previous = self._resizing(connections, maxsize, block, pool_kwargs)
        base.init_poolmanager(self, connections, maxsize, block, **pool_kwargs)
        self._adopt_pool_manager(previous)

    known = _PRESET_ADAPTER_CLASSES.get(base)
    if known is not None:
        return known
    namespace = {
        "__doc__": f"A {base.__name__} whose transport is a PresetAdapter's (built by preset_adapter_class).",
        "__module__": base.__module__,
        "init_poolmanager": init_poolmanager,
    }
    built = type(f"Preset{base.__name__}", (base, PresetAdapter), namespace)
    # setdefault: two threads building at once get the same class.
    return _PRESET_ADAPTER_CLASSES.setdefault(base, built)
