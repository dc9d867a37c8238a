"""PresetAdapter: an HTTPAdapter that applies a preset to every request it sends."""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
import weakref
from typing import Any, ClassVar, Final

import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest, Response
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationParseError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.util import Retry, Timeout
from urllib3.util.connection import allowed_gai_family

from ._calls import DEADLINE, AbortHandle, Call, current_call, shutdown_connection
from ._redact import RedactingFilter
from .config import PresetConfig
from .errors import ConfigError
from .tls import TrustConfig, get_ssl_context

__all__ = ["Counters", "PresetAdapter", "PresetRetry"]

log = logging.getLogger(__name__)

#: Methods retried after a read error or a retryable status: the idempotent ones.
IDEMPOTENT_METHODS: Final = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PUT", "TRACE"})

#: Origins whose pool lookup is remembered per adapter before the memo is emptied.
_POOL_CACHE_SIZE: Final = 64

#: How finely a retry back-off sleep checks for cancellation.
_SLEEP_SLICE: Final = 0.05

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


class Counters:
    """Live counters of one session, incremented where the events happen."""

    __slots__ = ("_lock", "connections_opened", "connections_reused", "errors", "requests", "retries")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.connections_opened = 0
        self.connections_reused = 0
        self.retries = 0
        self.errors = 0

    def add(self, name: str) -> None:
        """Add one to counter ``name``."""
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a dict, read consistently."""
        with self._lock:
            return {
                "requests": self.requests,
                "connections_opened": self.connections_opened,
                "connections_reused": self.connections_reused,
                "retries": self.retries,
                "errors": self.errors,
            }


class PresetRetry(Retry):
    """urllib3's Retry, bounded by the call's total deadline and interruptible by cancel."""

    counters: Counters | None = None

    def new(self, **kw: Any) -> PresetRetry:
        retry = super().new(**kw)
        retry.counters = self.counters
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
            call.raise_if_aborted()
        retry: PresetRetry = super().increment(
            method, url, response=response, error=error, _pool=_pool, _stacktrace=_stacktrace
        )
        if call is not None:
            remaining = call.remaining()
            pause = retry.get_backoff_time()
            if response is not None:
                pause = max(pause, retry.get_retry_after(response) or 0.0)
            if remaining is not None and pause >= remaining:
                call.reason = DEADLINE
                reason = error or ResponseError(
                    f"total_timeout reached before the next retry (last status {getattr(response, 'status', None)})"
                )
                raise MaxRetryError(_pool, url or "", reason)
        if self.counters is not None:
            self.counters.add("retries")
        return retry

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

    def sleep_for_retry(self, response: Any) -> bool:
        seconds = self.get_retry_after(response)
        if seconds:
            self._interruptible_sleep(seconds)
            return True
        return False


class _ConnectionMixin:
    """Counts opened and reused connections, and keeps every phase inside the call's deadline.

    The socket is created here rather than in urllib3 so that the call can cut
    it (``invalidate_and_cancel``, ``total_timeout``) while it connects and
    during the TLS handshake, and every phase's socket timeout is capped at
    the time the call has left.
    """

    counters: ClassVar[Counters]
    preset_connected_at: float = 0.0
    #: How a call cuts this connection while it connects (see _calls.AbortHandle).
    preset_abort_handle: AbortHandle | None = None
    #: The call holding this connection now, if any.
    preset_call: Call | None = None
    _preset_fresh: bool = False
    sock: Any
    timeout: Any
    host: str
    port: int
    _dns_host: str
    socket_options: Any
    source_address: tuple[str, int] | None

    def _new_conn(self) -> socket.socket:
        call = current_call()
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
        error = OSError("getaddrinfo returned no address")
        for family, kind, proto, _, address in addresses:
            try:
                return self._connect_to(call, family, kind, proto, address)
            except OSError as exc:
                error = exc
        if call is not None:
            call.expire_if_due()
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
            super().connect()  # type: ignore[misc]
        except BaseException:
            if call is not None:
                call.expire_if_due()
            raise
        finally:
            # Connected and, for HTTPS, handshaken: from now on the call cuts self.sock.
            self._preset_close_abort_handle()
        self.preset_connected_at = time.monotonic()
        self._preset_fresh = True
        self.counters.add("connections_opened")
        if call is not None and call.reason is not None:
            shutdown_connection(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        if not self._preset_fresh and self.sock is not None:
            self.counters.add("connections_reused")
        call = current_call()
        if call is not None:
            self.timeout = call.cap(Timeout.resolve_default_timeout(self.timeout))
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._preset_fresh = False

    def getresponse(self) -> Any:
        call = current_call()
        if call is None:
            return super().getresponse()  # type: ignore[misc]
        self.timeout = call.cap(Timeout.resolve_default_timeout(self.timeout))
        try:
            return super().getresponse()  # type: ignore[misc]
        except TimeoutError:
            call.expire_if_due()
            raise


class _PoolMixin:
    """Hands the call its connection, and retires connections past max_connection_age."""

    max_connection_age: ClassVar[float | None]
    #: Connections handed out and not yet returned, including those under a streamed body.
    checked_out: ClassVar[weakref.WeakSet[Any]]
    #: The insecure context of a verify=False preset: warned about once per session already.
    acknowledged_context: ClassVar[ssl.SSLContext | None] = None
    conn_kw: dict[str, Any]

    def _validate_conn(self, conn: Any) -> None:
        acknowledged = self.acknowledged_context
        if acknowledged is None or self.conn_kw.get("ssl_context") is not acknowledged:
            super()._validate_conn(conn)  # type: ignore[misc]
            return
        # urllib3 would warn on every request; the session warned once when built.
        if conn.is_closed:
            conn.connect()

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        age_limit = self.max_connection_age
        if (
            age_limit is not None
            and conn.sock is not None
            and time.monotonic() - conn.preset_connected_at > age_limit
        ):
            log.debug("closing a connection older than max_connection_age=%r", age_limit)
            conn.close()
        call = current_call()
        if call is not None:
            call.hold(conn)
        self.checked_out.add(conn)
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:  # urllib3 puts None back for a connection it dropped
            self.checked_out.discard(conn)
            # Before it is back in the pool, where another call may take it.
            holder = conn.preset_call
            if holder is not None:
                holder.release(conn)
        super()._put_conn(conn)  # type: ignore[misc]


def _pool_classes(
    counters: Counters,
    max_age: float | None,
    acknowledged: ssl.SSLContext | None,
    checked_out: weakref.WeakSet[Any],
) -> dict[str, type[HTTPConnectionPool]]:
    attrs = {"counters": counters}
    http_conn = type("PresetHTTPConnection", (_ConnectionMixin, HTTPConnection), attrs)
    https_conn = type("PresetHTTPSConnection", (_ConnectionMixin, HTTPSConnection), attrs)
    pool_attrs = {"max_connection_age": max_age, "acknowledged_context": acknowledged, "checked_out": checked_out}
    http_pool = type(
        "PresetHTTPConnectionPool", (_PoolMixin, HTTPConnectionPool), {**pool_attrs, "ConnectionCls": http_conn}
    )
    https_pool = type(
        "PresetHTTPSConnectionPool", (_PoolMixin, HTTPSConnectionPool), {**pool_attrs, "ConnectionCls": https_conn}
    )
    return {"http": http_pool, "https": https_pool}


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


class PresetAdapter(HTTPAdapter):
    """An HTTPAdapter that applies a preset: timeouts, retries, cache headers, pools, TLS.

    - ``timeout=None`` (what requests passes when the caller gives none) becomes
      the preset's ``(connect_timeout, read_timeout)``; a per-call timeout wins.
    - Retries come from a urllib3 ``Retry`` built from the preset: idempotent
      methods only, ``retry_statuses``, Retry-After honoured, bounded by the
      call's ``total_timeout``.
    - ``cache_policy='reload'`` adds ``Cache-Control: no-cache`` and ``Pragma: no-cache``.
    - Every HTTPS connection uses the shared context of its trust configuration,
      so no new connection reloads a CA bundle.
    - Connections older than ``max_connection_age`` are not reused.

    Args:
        config: the preset to apply.
        counters: where connection and retry counts go; a new set if omitted.
    """

    def __init__(self, config: PresetConfig, *, counters: Counters | None = None) -> None:
        self.preset = config
        self.counters = counters if counters is not None else Counters()
        self._timeout = Timeout(connect=config.connect_timeout, read=config.read_timeout)
        self._trust = _trust(
            verify=config.verify,
            trust_store=config.trust_store,
            ca_bundle=config.ca_bundle,
            client_cert=config.client_cert,
            tls_min_version=config.tls_min_version,
        )
        self._context = get_ssl_context(self._trust)
        self._cert_reqs = _cert_reqs(self._context)
        self._checked_out: weakref.WeakSet[Any] = weakref.WeakSet()
        self._pool_classes = _pool_classes(
            self.counters, config.max_connection_age, None if config.verify else self._context, self._checked_out
        )
        self._no_cache = config.cache_policy == "reload"
        self._pool_cache: dict[tuple[str, Any, Any], HTTPConnectionPool] = {}
        retry = PresetRetry(
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
            raise_on_status=True,
            raise_on_redirect=False,
            respect_retry_after_header=True,
        )
        retry.counters = self.counters
        super().__init__(
            pool_connections=config.pool_connections,
            pool_maxsize=config.pool_maxsize,
            max_retries=retry,
        )

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._pool_classes
        return manager

    def context_for(self, verify: Any, cert: Any) -> ssl.SSLContext:
        """Return the shared SSLContext for a call's merged ``verify`` and ``cert``."""
        if cert is None and verify is self.preset.verify:
            return self._context
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

    def build_connection_pool_key_attributes(
        self, request: PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") == "https":
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
        if proxies or not isinstance(url, str) or isinstance(cert, list):
            return super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
        slash = url.find("/", url.find("//") + 2)
        key = (url[:slash] if slash > 0 else url, verify, cert)
        pool = self._pool_cache.get(key)
        if pool is None or pool.pool is None:
            pool = super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
            if len(self._pool_cache) >= _POOL_CACHE_SIZE:
                self._pool_cache.clear()
            self._pool_cache[key] = pool
        return pool

    def request_url(self, request: PreparedRequest, proxies: dict[str, str] | None) -> str:
        if proxies:
            return super().request_url(request, proxies)
        path = request.path_url
        return "/" + path.lstrip("/") if path.startswith("//") else path

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # Deliberately empty: requests would set ca_certs on the pool here, and
        # urllib3 would then load that bundle on every new connection. The shared
        # context already holds the trust anchors and the client certificate.
        return None

    def build_response(self, req: PreparedRequest, resp: Any) -> Response:
        headers = getattr(resp, "headers", None)
        if headers is None or "set-cookie" in headers or "set-cookie2" in headers:
            return super().build_response(req, resp)
        # What requests builds, minus the cookie extraction that a response
        # without Set-Cookie headers cannot change (a sixth of this call).
        response = Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url.decode("utf-8") if isinstance(req.url, bytes) else (req.url or "")
        response.request = req
        response.connection = self
        return response

    def add_headers(self, request: PreparedRequest, **kwargs: Any) -> None:
        if self._no_cache:
            request.headers.setdefault("Cache-Control", "no-cache")
            request.headers.setdefault("Pragma", "no-cache")

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> Response:
        if timeout is None:
            timeout = self._timeout
        call: Call | None = current_call()
        if call is not None:
            remaining = call.remaining()
            if remaining is not None and remaining <= 0:
                call.reason = DEADLINE
                call.raise_if_aborted()
        self.counters.add("requests")
        try:
            return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
        except requests.ConnectionError as exc:
            # With retries, urllib3 wraps a final read timeout in MaxRetryError, which
            # requests reports as ConnectionError; callers rightly expect a Timeout.
            wrapped = exc.args[0] if exc.args else None
            if isinstance(wrapped, MaxRetryError) and isinstance(wrapped.reason, ReadTimeoutError):
                raise requests.ReadTimeout(wrapped, request=request) from exc
            raise

    def abort_checked_out(self) -> None:
        """Shut down the socket of every connection in use, streamed bodies included."""
        for conn in list(self._checked_out):
            shutdown_connection(conn)

    def close_idle(self) -> None:
        """Close every pooled connection; connections in use close when released."""
        self._pool_cache.clear()
        self.poolmanager.clear()
        for manager in list(self.proxy_manager.values()):
            manager.clear()

    def forget_pools_after_fork(self) -> None:
        """Drop every pool without touching its sockets (they belong to the parent)."""
        self.proxy_manager = {}
        self._pool_cache = {}
        # Those sockets are shared with the parent: shutting one down would cut its call.
        self._checked_out.clear()
        self.init_poolmanager(self._pool_connections, self._pool_maxsize, block=self._pool_block)

