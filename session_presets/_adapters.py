"""PresetAdapter: an HTTPAdapter that applies a preset to every request it sends."""

from __future__ import annotations

import logging
import weakref
from typing import Any, ClassVar, Final

import requests
import requests.adapters
import requests.utils
from requests.adapters import HTTPAdapter
from requests.auth import _basic_auth_str
from requests.models import PreparedRequest, Response
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, get_netrc_auth
from urllib3 import HTTPConnectionPool
from urllib3.exceptions import MaxRetryError, ReadTimeoutError
from urllib3.util import Retry

from . import _metrics, _resilience, _upstream
from ._calls import DEADLINE, Call, current_call, reset_current_call, set_current_call, watchdog
from ._config import PresetConfig
from ._connection import static_header_lines
from ._counters import Counters
from ._errors import TotalTimeoutError
from ._metrics import MeteredResponse, SessionMetrics, Transaction
from ._pool import AdapterPools, pool_classes, socks_pool_classes
from ._readonly import shared_refusal
from ._redact import RedactingFilter, safe_url
from ._retry import IDEMPOTENT_METHODS, PresetRetry, PresetTimeout, build_retry
from ._tls import check_trust
from ._tls_sessions import TLSSessionCache, shared_cache
from ._trust import TrustMixin, refuse_dropped_trust, trust_config

__all__ = [
    "IDEMPOTENT_METHODS",
    "Counters",
    "PresetAdapter",
    "PresetTimeout",
    "preset_adapter_class",
]


log = logging.getLogger(__name__)

#: Origins whose pool lookup is remembered per adapter before the memo is emptied.
_POOL_CACHE_SIZE: Final = 64

#: The classes preset_adapter_class built, by base class: one per base in a process.
_PRESET_ADAPTER_CLASSES: dict[type[HTTPAdapter], type[PresetAdapter]] = {}


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


def _tls_session_cache(config: PresetConfig) -> TLSSessionCache | None:
    if config.tls_session_cache == "off":
        return None
    return shared_cache(config.name) if config.tls_session_cache == "shared" else TLSSessionCache()


class PresetAdapter(AdapterPools, TrustMixin, HTTPAdapter):
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

    The preset applied is ``adapter.preset``, the PresetConfig that a session
    calls ``session.config``: requests' HTTPAdapter already owns ``config`` (a
    dict it sets in ``__init__`` and lists in ``__attrs__``), and an adapter must
    stay usable wherever an HTTPAdapter is.

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
        self._trust = trust_config(
            verify=config.verify,
            trust_store=config.trust_store,
            ca_bundle=config.ca_bundle,
            client_cert=config.client_cert,
            tls_min_version=config.tls_min_version,
        )
        refuse_dropped_trust(self._trust)
        # Checked now, built on the first HTTPS connection (see tls).
        check_trust(self._trust)
        self._checked_out: weakref.WeakSet[Any] = weakref.WeakSet()
        self.tls_sessions = _tls_session_cache(config)
        self._no_cache = config.cache_policy == "reload"
        self._fallback_headers = tuple(self.default_headers.items())
        #: The preset's own header lines as http.client encoded them (see _connection._HeaderLineMemo.putheader).
        self._header_lines: dict[tuple[str, str], bytes] = {}
        self._pool_classes = pool_classes(
            self.counters,
            config.max_connection_age,
            None if config.verify else self._trust,
            self._checked_out,
            self.metrics,
            self.tls_sessions,
            config.connect_timeout,
            static_header_lines(config, self.default_headers),
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
                self._socks_classes = socks_pool_classes(
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

    def request_url(self, request: PreparedRequest, proxies: dict[str, str] | None) -> str:
        if proxies or not _upstream.ADAPTER_REQUEST_URL.live():
            url = super().request_url(request, proxies)
            if proxies:
                return url
        else:
            # requests' without a proxy to select: the path.
            url = request.path_url
        return "/" + url.lstrip("/") if url.startswith("//") else url

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
