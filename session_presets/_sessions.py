"""PresetSession: a requests.Session with a preset, no hidden state and a URLSession lifecycle."""

from __future__ import annotations

import collections
import contextlib
import copy
import logging
import os
import sys
import threading
import time
import types
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import requests
import requests.sessions
from requests.models import PreparedRequest, Response
from requests.structures import CaseInsensitiveDict
from requests.utils import get_netrc_auth, resolve_proxies
from urllib3.exceptions import ResponseError

from . import _process, _upstream, _warn
from ._adapters import IDEMPOTENT_METHODS, Counters, PresetAdapter, PresetTimeout
from ._calls import (
    CANCELLED,
    DEADLINE,
    Call,
    as_redirect_hops,
    current_call,
    reset_current_call,
    set_current_call,
    watchdog,
)
from ._config import PresetConfig
from ._cookies import build_cookie_jar, save_cookie_file
from ._env import STRICT_REUSE_VARIABLE, parse_bool
from ._errors import (
    ConfigError,
    InsecureRedirectError,
    InsecureSessionWarning,
    InvalidationTimeoutError,
    SessionInvalidatedError,
    SessionReuseError,
    SessionReuseWarning,
    add_note,
)
from ._lifecycle import SessionLifecycle, SessionState
from ._metrics import (
    CONNECTION_DURATION_BUCKETS,
    REQUEST_DURATION_BUCKETS,
    Histogram,
    HistogramSnapshot,
    SessionMetrics,
)
from ._mounts import AdapterMounts
from ._presets import resolve
from ._proxies import ProxySnapshot, proxy_secrets
from ._readonly import SharedReadOnly
from ._redact import redact_exception, safe_url

__all__ = [
    "InvalidationTimeoutError",
    "PresetSession",
    "SessionReuseError",
    "SessionState",
    "SessionStats",
    "default_session",
    "ephemeral_session",
]

log = logging.getLogger(__name__)

#: More caller-owned sessions of one preset than this within REUSE_WINDOW warn.
REUSE_LIMIT: Final = 32
#: The window, in seconds, over which caller-owned sessions are counted.
REUSE_WINDOW: Final = 60.0
#: How long invalidate_and_cancel waits for aborted calls to unwind.
CANCEL_GRACE: Final = 1.0


#: SessionState.ACTIVE, read per request (an enum member lookup costs several attribute reads on 3.11).
_ACTIVE: Final = SessionState.ACTIVE

_EMPTY_REQUESTS: Final = Histogram(REQUEST_DURATION_BUCKETS).snapshot()
_EMPTY_CONNECTIONS: Final = Histogram(CONNECTION_DURATION_BUCKETS).snapshot()
_NO_BREAKERS: Final[Mapping[str, str]] = types.MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SessionStats:
    """A snapshot of a session's counters and its OpenTelemetry-convention aggregates.

    For plain calls, ``requests == connections_opened + connections_reused``.

    Attributes:
        requests, connections_opened, connections_reused, retries, errors: counts.
        connections_resumed: TLS sessions resumed (0 until TLS resumption exists).
        open_connections: connections open now, idle or in use (http.client.open_connections).
        active_requests: requests in flight now, bodies being read included
            (http.client.active_requests).
        request_duration: the histogram of request durations, start to end of body
            (http.client.request.duration, OTel default buckets).
        connection_duration: the histogram of how long closed connections were open
            (http.client.connection.duration).
        breaker_states: the circuit breaker of each origin the preset's breakers know:
            "closed", "open" or "half-open" (empty without ``circuit_breaker``).
        breaker_transitions: breaker state changes this session's calls caused.
        rejected_calls: calls refused with CircuitOpenError or RateLimitedError (nothing sent).
        rate_limit_waits, rate_limit_wait_time: calls that waited for a rate-limit permit
            or a Retry-After pause, and the seconds they waited in all.
        in_flight: requests holding a ``max_in_flight`` slot now.
        coordination_failures: times the coordination server (``coordination_url``)
            could not be reached and local limits applied instead.
    """

    requests: int = 0
    connections_opened: int = 0
    connections_reused: int = 0
    retries: int = 0
    errors: int = 0
    connections_resumed: int = 0
    open_connections: int = 0
    active_requests: int = 0
    request_duration: HistogramSnapshot = _EMPTY_REQUESTS
    connection_duration: HistogramSnapshot = _EMPTY_CONNECTIONS
    breaker_states: Mapping[str, str] = field(default_factory=lambda: _NO_BREAKERS, hash=False)
    breaker_transitions: int = 0
    rejected_calls: int = 0
    rate_limit_waits: int = 0
    rate_limit_wait_time: float = 0.0
    in_flight: int = 0
    coordination_failures: int = 0

    @property
    def p50(self) -> float | None:
        """The median request duration in seconds (None before the first request)."""
        return self.request_duration.p50

    @property
    def p90(self) -> float | None:
        """The 90th percentile of request duration in seconds."""
        return self.request_duration.p90

    @property
    def p99(self) -> float | None:
        """The 99th percentile of request duration in seconds."""
        return self.request_duration.p99


#: PresetSession.request's ``timeout`` when the caller gives none: the preset's connect and read timeouts.
_PRESET_TIMEOUTS: Final[Any] = object()


_reuse_lock = _process.fork_safe_lock()
_reuse_times: dict[str, collections.deque[float]] = {}
_reuse_warned: set[str] = set()
_live_sessions: weakref.WeakSet[PresetSession] = weakref.WeakSet()


def _note_caller_owned(preset: str) -> None:
    now = time.monotonic()
    with _reuse_lock:
        times = _reuse_times.setdefault(preset, collections.deque())
        times.append(now)
        while times and now - times[0] > REUSE_WINDOW:
            times.popleft()
        if len(times) <= REUSE_LIMIT or preset in _reuse_warned:
            return
        _reuse_warned.add(preset)
    message = (
        f"more than {REUSE_LIMIT} sessions of preset {preset!r} were created within "
        f"{REUSE_WINDOW:g} s; each pays a new connection and TLS handshake. "
        f"Use session_presets.get_session({preset!r}) to share one."
    )
    strict = os.environ.get(STRICT_REUSE_VARIABLE, "")
    try:
        is_strict = bool(strict) and parse_bool(strict)
    except ValueError:
        raise ConfigError(
            f"{STRICT_REUSE_VARIABLE}={strict!r} is invalid: expected a boolean: 1/0/true/false/yes/no/on/off"
        ) from None
    if is_strict:
        raise SessionReuseError(message)
    _warn.warn(message, SessionReuseWarning)


def _clear_reuse_counts() -> None:
    with _reuse_lock:
        _reuse_times.clear()
        _reuse_warned.clear()


_process.on_reset(_clear_reuse_counts, order=_process.ORDER_SESSIONS)


class PresetSession(SharedReadOnly, AdapterMounts, SessionLifecycle, requests.Session):
    """A requests.Session built from a PresetConfig, with URLSession semantics.

    - The environment is read once, when the session is built: proxies,
      ``REQUESTS_CA_BUNDLE``. netrc is never read unless ``store_credentials``.
    - ``state`` runs active → invalidating → invalidated; an invalidated
      session refuses every request with SessionInvalidatedError.
    - Use it as a context manager, or get a shared one with ``get_session``.
    - A shared (registry) session is read-only: changing its configuration
      (see SHARED_READ_ONLY) or calling ``mount()`` raises SharedSessionError,
      and ``close()``/``with`` leave it working for the other modules.
    - ``mount()`` of an HTTPAdapter that is not a PresetAdapter warns
      ForeignAdapterWarning once: it misses the preset's retries,
      total_timeout, TLS context and stats. ``adapter_factory`` builds one
      that keeps them.
    - Per-call ``timeout=``: omitted, the preset's connect and read timeouts
      apply and a timeout is retried; ``None`` lifts the read timeout (the
      connect timeout stays); a number, pair or urllib3 Timeout applies to
      each attempt and its first expiry raises at once. ``total_timeout``
      bounds the whole call in every case.
    - It pickles like a requests.Session: the configuration, headers, auth,
      cookies and mounted adapters travel; the copy is a new, active,
      caller-owned session with its own pools, locks and counters.

    Args:
        config: the preset to apply; the effective ``default`` preset if omitted.

    Raises:
        ConfigError: the configuration cannot be applied (bad CA bundle,
            client certificate, cookie file).
    """

    _WORK = "requests"

    def __init__(
        self, config: PresetConfig | None = None, *, _registry_owned: bool = False, _shared: bool = False
    ) -> None:
        if config is None:
            config = resolve("default")
        if not _registry_owned:
            _note_caller_owned(config.name)
        super().__init__()
        self.config = config
        self._registry_owned = _registry_owned
        # Not active until fully built, so a failed build is never reported as a leak.
        self._init_lifecycle(SessionState.INVALIDATED)
        self._calls: set[Call] = set()
        # Run once, when the session stops accepting requests (under _lock).
        self._on_invalidating: list[Callable[[PresetSession], None]] = []
        # Set by a registry: where a request goes that reaches this shared session
        # after a graceful invalidation began (its caller fetched it just before).
        self._successor: Callable[[], PresetSession] | None = None
        self._counters = Counters()
        self._metrics = SessionMetrics(config.name)

        self.trust_env = False
        self.max_redirects = config.max_redirects
        self.headers["User-Agent"] = config.user_agent
        if config.cache_policy == "reload":
            # In the default headers, where mocks, caches and the caller see them.
            self.headers["Cache-Control"] = "no-cache"
            self.headers["Pragma"] = "no-cache"
        self.headers.update(config.headers)
        self.verify = config.verify
        self._proxy_snapshot = ProxySnapshot(config.proxies)
        self.proxies = dict(self._proxy_snapshot.proxies)
        for adapter in self.adapters.values():
            adapter.close()
        self.adapters.clear()
        self.cookies = build_cookie_jar(config)
        self.adapter = PresetAdapter(config, counters=self._counters, metrics=self._metrics)
        self.mount("https://", self.adapter)
        self.mount("http://", self.adapter)
        self._default_timeout = PresetTimeout(connect=config.connect_timeout, read=config.read_timeout)
        self._no_read_timeout = PresetTimeout(connect=config.connect_timeout, read=None)
        self._warned_adapters: set[int] = set()
        if _shared:
            self._freeze()
        self._state = SessionState.ACTIVE
        _live_sessions.add(self)
        if not config.verify:
            _warn.warn(
                f"preset {config.name!r} has verify=False: TLS certificates are not checked for this session",
                InsecureSessionWarning,
            )
        log.debug("built session for preset %r", config.name)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "config": self.config,
            # None travels as None: requests accepts it for each of these (see merge_environment_settings).
            "headers": None if self.headers is None else CaseInsensitiveDict(self.headers),
            "auth": self.auth,
            "proxies": None if self.proxies is None else dict(self.proxies),
            "params": None if self.params is None else dict(self.params),
            "hooks": None if self.hooks is None else {
                # requests takes one callable, a list of them or None per event.
                event: funcs if funcs is None or callable(funcs) else list(funcs)
                for event, funcs in self.hooks.items()
            },
            "stream": self.stream,
            "verify": self.verify,
            "cert": self.cert,
            "max_redirects": self.max_redirects,
            "trust_env": self.trust_env,
            "cookies": self.cookies,
            "mounts": [(prefix, adapter) for prefix, adapter in self.adapters.items() if adapter is not self.adapter],
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A new caller-owned session (shared ones too: the registry of the
        # unpickling process has its own), then the state requests would restore.
        state = dict(state)
        PresetSession.__init__(self, state.pop("config"))
        mounts = state.pop("mounts")
        for name, value in state.items():
            setattr(self, name, value)
        for prefix, adapter in mounts:
            # Warned when first mounted; the copy keeps the same mounts quietly.
            self._warned_adapters.add(id(adapter))
            self.mount(prefix, adapter)

    # -- state -------------------------------------------------------------

    @property
    def stats(self) -> SessionStats:
        """A snapshot of this session's counts and aggregates (see SessionStats)."""
        counts: dict[str, Any] = self._counters.snapshot()
        guard = self.adapter.guard
        if guard is not None:
            counts.update(guard.snapshot())
            counts["breaker_states"] = types.MappingProxyType(counts["breaker_states"])
        return SessionStats(**counts, **self._metrics.snapshot())

    def __repr__(self) -> str:
        return f"<PresetSession preset={self.config.name!r} state={self._state.value}>"

    # -- requests hooks ----------------------------------------------------

    def request(
        self,
        method: Any,
        url: Any,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = _PRESET_TIMEOUTS,
        allow_redirects: bool = True,
        proxies: Any = None,
        hooks: Any = None,
        stream: Any = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> Response:
        """Send a request as requests.Session.request does; see the class docstring for ``timeout=``.

        An exception it raises shows no query string or userinfo in its text;
        ``exc.request`` keeps the full URL.
        """
        # requests passes None both when the caller said None and when it said
        # nothing; the adapter must tell "the preset's timeouts" from "no read timeout".
        if timeout is _PRESET_TIMEOUTS:
            timeout = self._default_timeout
        elif timeout is None:
            timeout = self._no_read_timeout
        # Which copies of upstream code run is decided once for the whole call.
        live = _upstream.begin_call()
        try:
            if not _upstream.SESSION_REQUEST.live():
                # Patched (an instrumentation), or the fast path is off: requests' own runs.
                upstream: Response = super().request(
                    method, url, params, data, headers, cookies, files, auth, timeout,
                    allow_redirects, proxies, hooks, stream, verify, cert, json,
                )
                return upstream
            fields = {
                "params": params, "data": data, "headers": headers, "cookies": cookies,
                "files": files, "auth": auth, "hooks": hooks, "json": json,
            }
            send_kwargs = {
                "timeout": timeout, "allow_redirects": allow_redirects, "proxies": proxies,
                "stream": stream, "verify": verify, "cert": cert,
            }
            response: Response = _upstream.session_request(self, method, url, fields, send_kwargs)
            return response
        except Exception as exc:
            # Preparing the URL fails before send(), with the URL in the message;
            # whatever leaves shows no query string or userinfo.
            redact_exception(exc, secrets=proxy_secrets(self.proxies, proxies))
            raise
        finally:
            _upstream.end_call(live)

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        # The environment was read when the session was built; nothing is read here.
        # requests' merge_setting is avoided on purpose: its runtime Protocol
        # checks cost more than the rest of this method.
        merged: dict[str, Any] = dict(self._session_proxies())
        if merged and not proxies and self._proxy_snapshot.bypass(url):
            merged = {}
        if proxies:
            merged.update(proxies)
            merged = {key: value for key, value in merged.items() if value is not None}
        return {
            "proxies": merged,
            "stream": self.stream if stream is None else stream,
            "verify": self.verify if verify is None else verify,
            "cert": self.cert if cert is None else cert,
        }

    def _session_proxies(self) -> dict[str, str]:
        """``self.proxies``, or the environment's as read at build time when set to None.

        requests takes ``session.proxies = None`` as "no session proxies": the
        environment's still apply (trust_env). Here the environment was read
        when the session was built, so that snapshot applies.
        """
        proxies: dict[str, str] | None = self.proxies
        return self._proxy_snapshot.proxies if proxies is None else proxies

    def prepare_request(self, request: requests.Request) -> PreparedRequest:
        if not _upstream.SESSION_PREPARE_REQUEST.live():
            return self._prepare_as_requests(request)
        return _upstream.session_prepare(
            self, request.method, request.url, request.headers, request.files, request.data,
            request.json, request.params, request.auth, request.cookies, request.hooks,
        )

    def preset_prepares_itself(self) -> bool:
        """Whether prepare_request is this class's own (a subclass may override it)."""
        return type(self).prepare_request is PresetSession.prepare_request

    def _prepare_as_requests(self, request: requests.Request) -> PreparedRequest:
        """requests' own prepare_request (patched or not), reading netrc only with store_credentials."""
        netrc = None if request.auth or self.auth else self._netrc_auth(request.url)
        if netrc is not None:
            request = copy.copy(request)
            request.auth = netrc
        prepared = super().prepare_request(request)
        if type(prepared) is PreparedRequest:
            # The adapter adds nothing to what a PresetSession prepared (see PresetAdapter.add_headers).
            prepared.__class__ = _upstream.PresetPreparedRequest
        return prepared

    def _netrc_auth(self, url: Any) -> tuple[str, str] | None:
        """What netrc holds for ``url``; None without ``store_credentials``, which never reads netrc."""
        if not self.config.store_credentials or not url:
            return None
        return get_netrc_auth(url)

    def preset_plain_redirects(self) -> bool:
        """Whether redirects are resolved by requests' own code (no subclass overrides them)."""
        return (
            type(self).resolve_redirects is PresetSession.resolve_redirects
            and type(self).get_redirect_target is _upstream.SESSION_REDIRECT_TARGET.original
        )

    def resolve_redirects(self, resp: Response, req: PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        if _upstream.SESSION_RESOLVE_REDIRECTS.live() and self.get_redirect_target(resp) is None:
            # Most responses are not redirects; requests would still parse the URL.
            return iter(())
        return as_redirect_hops(current_call(), super().resolve_redirects(resp, req, *args, **kwargs))

    def rebuild_auth(self, prepared_request: PreparedRequest, response: Response) -> None:
        if not self.config.allow_insecure_redirects:
            old = (response.request.url or "") if response.request is not None else ""
            new = prepared_request.url or ""
            if old.lower().startswith("https://") and new.lower().startswith("http://"):
                raise InsecureRedirectError(
                    f"refused redirect from {safe_url(old)} to {safe_url(new)}: it would drop TLS "
                    "(set allow_insecure_redirects=True to allow it)",
                    response=response,
                )
        super().rebuild_auth(prepared_request, response)

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        outer = current_call()
        if outer is not None and outer.redirecting and outer in self._calls:
            # A redirect hop of the call in flight; a call made from a hook is a call of its own.
            outer.redirecting = False
            if self._state is not _ACTIVE and outer.reason is not None:
                raise self._aborted_error(outer, request, None)
            return self._send_fast_or_upstream(request, kwargs)
        call = Call(self.config.total_timeout)
        with self._lock:
            refused = self._state is not _ACTIVE
            if not refused:
                self._calls.add(call)
            successor = self._successor if refused else None
        if refused:
            # A shared session invalidated gracefully hands a request that reaches
            # it late (its caller fetched it just before) to its replacement.
            replacement = successor() if successor is not None else None
            if replacement is None or replacement is self:
                raise self._refusal(request=request)
            log.debug("preset %r session is %s; sending through its replacement", self.config.name, self._state.value)
            return replacement.send(request, **kwargs)
        token = set_current_call(call)
        if call.deadline is not None:
            watchdog.add(call)
        try:
            return self._send_fast_or_upstream(request, kwargs)
        except Exception as exc:
            # urllib3 writes the path and its query into its messages, and shows a
            # proxy's mangled userinfo as a bad host; the request object
            # (exc.request) keeps the full URL for code that needs it.
            redact_exception(exc, secrets=proxy_secrets(kwargs.get("proxies")))
            if call.reason is not None:
                raise self._aborted_error(call, request, exc) from exc
            self._counters.add("errors")
            if isinstance(exc, requests.ConnectionError) and (request.method or "").upper() not in IDEMPOTENT_METHODS:
                add_note(
                    exc,
                    f"session_presets: {request.method} {safe_url(request.url)} was not retried: "
                    "the method is not idempotent, so the server may have acted on it",
                )
            raise
        finally:
            reset_current_call(token)
            watchdog.discard(call)
            with self._lock:
                self._calls.discard(call)
                # Only an invalidation waits on _cond, and it marks the session
                # non-active under this lock first: an active one has no waiter to wake.
                if not self._calls and self._state is not _ACTIVE:
                    self._cond.notify_all()

    def _send_fast_or_upstream(self, request: PreparedRequest, kwargs: dict[str, Any]) -> Response:
        """requests.Session.send: the fast path's copy while it is live, else requests' own (patch included)."""
        if not _upstream.SESSION_SEND.live():
            if self.proxies is None and "proxies" not in kwargs:
                # requests' send would take None as "no proxies" (the environment is not read
                # again here): the environment's proxies as read at build time apply, as above.
                kwargs["proxies"] = resolve_proxies(request, self._session_proxies(), self.trust_env)
            return super().send(request, **kwargs)
        response: Response = _upstream.session_send(self, request, kwargs)
        return response

    def _aborted_error(self, call: Call, request: PreparedRequest, exc: Exception | None) -> Exception:
        self._counters.add("errors")
        if call.reason == CANCELLED:
            return SessionInvalidatedError(
                f"request to {safe_url(request.url)} was cancelled: the session for preset "
                f"{self.config.name!r} was invalidated",
                request=request,
            )
        assert call.reason == DEADLINE
        # A retry given up for lack of time: say which status the server last sent.
        last = getattr(exc.args[0], "reason", None) if exc is not None and exc.args else None
        detail = f"; gave up: {last}" if isinstance(last, ResponseError) else ""
        return call.timeout_error(request, self.config.name, detail)

    # -- lifecycle (the steps are SessionLifecycle's) ------------------------

    def _describe(self) -> str:
        return f"session for preset {self.config.name!r}"

    def _unfinished(self) -> str:
        return f"{len(self._calls)} request(s) still in flight"

    def _drained(self) -> bool:
        # A hook or a streamed body's caller may invalidate from inside its own call.
        me = threading.get_ident()
        return all(call.thread_id == me for call in self._calls)

    def _on_stop_accepting(self, *, cancel: bool, first: bool) -> None:
        # The first time, the ``_on_invalidating`` callbacks run: a registry hands
        # out a replacement from this moment, not once the session is drained.
        # After a cancel, nothing is handed to the replacement (see ``send``).
        if first:
            log.debug("invalidating session for preset %r", self.config.name)
        if cancel:
            self._successor = None
        # Under the lock, so that no request sees the session refusing while
        # its registry still hands it out (the callbacks take no session lock).
        callbacks, self._on_invalidating = self._on_invalidating, []
        for callback in callbacks:
            callback(self)

    def _cancel_work(self) -> None:
        # Aborted requests raise SessionInvalidatedError in their own threads within about a second.
        me = threading.get_ident()
        with self._lock:
            calls = [call for call in self._calls if call.thread_id != me]
        log.debug("cancelling %d request(s) of preset %r", len(calls), self.config.name)
        for call in calls:
            call.abort(CANCELLED)
        # Bodies streamed with stream=True hold their connection after send() returned.
        for adapter in self.adapters.values():
            if isinstance(adapter, PresetAdapter):
                adapter.abort_checked_out()
        with self._cond:
            self._cond.wait_for(self._drained, CANCEL_GRACE)

    def _abort_thread_calls(self, thread_id: int, reason: str) -> None:
        """Abort the calls that thread ``thread_id`` has in flight (for background transfers)."""
        with self._lock:
            calls = [call for call in self._calls if call.thread_id == thread_id]
        for call in calls:
            call.abort(reason)

    def _release(self) -> None:
        try:
            self._save_cookies()
        finally:
            for adapter in self._distinct_adapters():
                adapter.close()
            log.debug("session for preset %r invalidated", self.config.name)

    def flush(self) -> None:
        """Write cookies to ``cookie_file`` (if any) and close idle connections.

        The next request opens a new connection. Requests in flight are not disturbed.
        """
        self._save_cookies()
        for adapter in self.adapters.values():
            if isinstance(adapter, PresetAdapter):
                adapter.close_idle()
        log.debug("flushed session for preset %r", self.config.name)

    def reset(self) -> None:
        """Empty cookies (memory and file), credentials and connections; then work afresh."""
        self.cookies.clear()
        if self.auth is not None:  # a shared session has none and refuses the assignment
            self.auth = None
        if self.config.cookie_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.cookie_file)
        for adapter in self.adapters.values():
            if isinstance(adapter, PresetAdapter):
                adapter.close_idle()
                if adapter.tls_sessions is not None:
                    adapter.tls_sessions.clear()
        log.debug("reset session for preset %r", self.config.name)

    def _save_cookies(self) -> None:
        if self.config.cookies == "file" and self.config.cookie_file is not None:
            save_cookie_file(self.config.cookie_file, self.cookies)

    def _after_fork_in_child(self) -> None:
        self._init_lifecycle(self._state)
        self._calls = set()
        self._counters.after_fork()
        for adapter in self.adapters.values():
            if isinstance(adapter, PresetAdapter):
                adapter.forget_pools_after_fork()

    def __del__(self) -> None:
        if getattr(self, "_state", None) is not SessionState.ACTIVE or sys.is_finalizing():
            return
        if not getattr(self, "_registry_owned", True):
            warnings.warn(
                f"unclosed session for preset {self.config.name!r}: use 'with' or call close(), "
                "or share one with session_presets.get_session()",
                ResourceWarning,
                stacklevel=2,
            )
        for adapter in {id(a): a for a in getattr(self, "adapters", {}).values()}.values():
            adapter.close()


def _after_fork_in_child() -> None:
    for session in list(_live_sessions):
        session._after_fork_in_child()


_process.on_fork_child(_after_fork_in_child, order=_process.ORDER_SESSIONS)


def default_session(*, auth: Any = None, **overrides: Any) -> PresetSession:
    """Return a new caller-owned session of the ``default`` preset; close it when done.

    Args:
        auth: a requests auth (such as a ``(user, password)`` pair) for every
            request of the session; credentials never live in a preset.
        **overrides: PresetConfig fields.

    Raises:
        ConfigError: an override or environment variable is invalid.
    """
    return _with_auth(PresetSession(resolve("default", overrides)), auth)


def ephemeral_session(*, auth: Any = None, **overrides: Any) -> PresetSession:
    """Return a new caller-owned session with private cookies, connections and pools.

    Args:
        auth: a requests auth for every request of the session.
        **overrides: PresetConfig fields.

    Raises:
        ConfigError: an override or environment variable is invalid.
    """
    return _with_auth(PresetSession(resolve("ephemeral", overrides)), auth)


def _with_auth(session: PresetSession, auth: Any) -> PresetSession:
    if auth is not None:
        session.auth = auth
    return session
