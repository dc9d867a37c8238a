"""Resilience per preset: rate limits, max_in_flight, circuit breakers and Retry-After pauses.

One :class:`Guard` sits on each PresetAdapter whose preset turns any of this on
(``rate_limit``, ``max_in_flight``, ``circuit_breaker``, or ``coordination_url``);
with all of them off the adapter holds ``None`` and pays one attribute check.

- ``max_in_flight`` belongs to one session (its adapter): a first come, first
  served line of slots.
- Rate limits, breakers and pauses belong to the preset and are kept per origin
  (``scheme://host:port``) in one :class:`PresetState`, shared by every session of
  the preset in the process; with a ``coordination_url``, by every process that
  names the same server (see ``_coordination``).

The state machines follow resilience4j and Polly: a breaker counts calls and
failures over a sliding time window (one bucket per second); when at least
``minimum_calls`` were made and ``failure_ratio`` of them failed it opens;
after ``break_duration`` it turns half-open and lets ``half_open_probes`` calls
through; all of them succeeding closes it, any failing opens it again.

A rate limit is a moving window (the ``limits`` library's moving-window
strategy): at most N calls in any span of the period, so no edge of a fixed
window lets 2N through.

Process state has one owner: the shared states live in ``_states``, dropped in
a forked child and on ``reset()``, so a child starts with fresh local state.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import requests
from urllib3.exceptions import HTTPError

from . import _process
from ._calls import CANCELLED, Call
from ._config import BreakerSpec, PresetConfig, parse_rate_limit, show_rate
from ._errors import CircuitOpenError, RateLimitedError
from ._redact import safe_url, without_userinfo

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "BreakerSnapshot",
    "Guard",
    "PresetState",
    "breaker_states",
    "guard_for",
    "origin_of",
]

log = logging.getLogger(__name__)

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half-open"

#: Statuses whose Retry-After pauses the origin for every caller of the preset.
PAUSE_STATUSES: Final = frozenset({429, 503})
#: The longest pause a Retry-After may impose on an origin (a day): a bad header cannot park it for years.
MAX_PAUSE: Final = 86400.0
#: How finely a wait for a permit or a slot looks for cancellation.
_WAIT_SLICE: Final = 0.05
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def origin_of(url: str | bytes | None) -> str:
    """Return ``scheme://host:port`` of ``url``: the unit a limit, breaker or pause applies to."""
    text = url.decode("utf-8", "replace") if isinstance(url, bytes) else (url or "")
    if "@" in text:
        # Userinfo never becomes part of an origin (nor of a key in Redis or in the memo below);
        # _redact finds where it ends, whatever '/', '?' or '#' its password holds.
        text = without_userinfo(text)
    parts = text.split("/", 3)
    if len(parts) < 3 or parts[1] or not parts[0].endswith(":"):
        return safe_url(text)
    key = parts[0] + parts[2]
    found = _origins.get(key)
    if found is None:
        if len(_origins) >= _ORIGINS_SIZE:
            _origins.clear()
        found = _origins[key] = _origin_of(parts[0][:-1], parts[2])
    return found


def _origin_of(scheme: str, authority: str) -> str:
    scheme = scheme.lower()
    for stop in "?#":
        authority = authority.split(stop, 1)[0]
    authority = authority.lower()
    if not authority.endswith("]") and ":" in authority.rsplit("]", 1)[-1]:
        return f"{scheme}://{authority}"
    return f"{scheme}://{authority}:{_DEFAULT_PORTS.get(scheme, 0)}"


#: Origins by the scheme and authority of a URL, remembered (up to _ORIGINS_SIZE) as pool keys are.
_origins: dict[str, str] = {}
_ORIGINS_SIZE: Final = 1024


def _when(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return time.strftime("%H:%M:%S", time.localtime(time.time() + seconds)) + f" (in {seconds:.3g}s)"


# -- the shared state of a preset: rate limits, breakers, pauses ----------------------------


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """The state of one origin's breaker, as ``doctor`` and ``session.stats`` show it.

    Attributes:
        preset: the preset the breaker belongs to.
        origin: ``scheme://host:port``.
        state: ``"closed"``, ``"open"`` or ``"half-open"``.
        calls: calls counted in the sampling window (closed state).
        failures: failures among them.
        reopens_in: seconds until an open breaker lets probes through; 0 otherwise.
    """

    preset: str
    origin: str
    state: str
    calls: int
    failures: int
    reopens_in: float


class _Breaker:
    """One origin's breaker (local): a sliding time window of one-second buckets."""

    __slots__ = ("buckets", "calls", "failures", "opened_until", "probes", "state", "successes")

    def __init__(self) -> None:
        self.state = CLOSED
        self.buckets: collections.deque[list[int]] = collections.deque()  # [second, calls, failures]
        self.calls = 0
        self.failures = 0
        self.opened_until = 0.0
        self.probes = 0
        self.successes = 0

    def _trim(self, now: float, window: float) -> None:
        oldest = int(now - window)
        buckets = self.buckets
        while buckets and buckets[0][0] <= oldest:
            _, calls, failures = buckets.popleft()
            self.calls -= calls
            self.failures -= failures

    def _open(self, now: float, spec: BreakerSpec) -> None:
        self.state = OPEN
        self.opened_until = now + spec.break_duration
        self.buckets.clear()
        self.calls = self.failures = self.probes = self.successes = 0


class Backend(Protocol):
    """Where a preset's limits, breakers and pauses are kept: this process, or a coordination server."""

    def try_acquire(self, origin: str, limits: tuple[tuple[int, float], ...]) -> tuple[float, bool]:
        """Take a permit of every limit (and respect a pause) at once.

        Returns:
            (0.0 if taken, else the seconds to wait; whether a pause is what holds the call).
        """

    def pause(self, origin: str, seconds: float) -> None:
        """Let no call to ``origin`` through for ``seconds`` (a Retry-After)."""

    def breaker_enter(self, origin: str, spec: BreakerSpec) -> tuple[str, float]:
        """Before a call: ``(CLOSED, 0)``, ``("probe", 0)``, or ``(OPEN or HALF_OPEN, seconds to reopen)``."""

    def breaker_record(self, origin: str, spec: BreakerSpec, failed: bool, probe: bool) -> str | None:
        """After a call: record its outcome; return the new state on a transition, else None."""

    def breaker_release_probe(self, origin: str) -> None:
        """A probe ended with no verdict (cancelled): free its slot."""

    def breakers(self, spec: BreakerSpec) -> list[tuple[str, str, int, int, float]]:
        """Every origin's breaker: (origin, state, calls, failures, seconds to reopen)."""


class LocalBackend:
    """The in-process backend: one lock, a deque of timestamps per limit and origin."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamps: dict[tuple[str, int, float], collections.deque[float]] = {}
        self._paused: dict[str, float] = {}
        self._breakers: dict[str, _Breaker] = {}

    def try_acquire(self, origin: str, limits: tuple[tuple[int, float], ...]) -> tuple[float, bool]:
        now = time.monotonic()
        if not limits and self._paused.get(origin, 0.0) <= now:
            return (0.0, False)  # no limit and no pause: a dict lookup needs no lock
        with self._lock:
            wait = self._paused.get(origin, 0.0) - now
            paused = wait > 0
            windows = []
            for permits, period in limits:
                stamps = self._stamps.get((origin, permits, period))
                if stamps is None:
                    stamps = self._stamps[(origin, permits, period)] = collections.deque()
                while stamps and stamps[0] <= now - period:
                    stamps.popleft()
                if len(stamps) >= permits:
                    # The permit frees when the call N back leaves the window.
                    wait = max(wait, stamps[len(stamps) - permits] + period - now)
                windows.append(stamps)
            if wait > 0:
                return (wait, paused)
            for stamps in windows:
                stamps.append(now)
            return (0.0, False)

    def pause(self, origin: str, seconds: float) -> None:
        until = time.monotonic() + seconds
        with self._lock:
            if until > self._paused.get(origin, 0.0):
                self._paused[origin] = until

    def breaker_enter(self, origin: str, spec: BreakerSpec) -> tuple[str, float]:
        if origin not in self._breakers:
            return (CLOSED, 0.0)  # an origin that never failed (a dict lookup needs no lock)
        now = time.monotonic()
        with self._lock:
            breaker = self._breakers.get(origin)
            if breaker is None:
                return (CLOSED, 0.0)
            if breaker.state == OPEN:
                if now < breaker.opened_until:
                    return (OPEN, breaker.opened_until - now)
                breaker.state = HALF_OPEN
                breaker.probes = breaker.successes = 0
            if breaker.state == HALF_OPEN:
                if breaker.probes >= spec.half_open_probes:
                    return (HALF_OPEN, 0.0)
                breaker.probes += 1
                return ("probe", 0.0)
            return (CLOSED, 0.0)

    def breaker_record(self, origin: str, spec: BreakerSpec, failed: bool, probe: bool) -> str | None:
        if not failed and origin not in self._breakers:
            return None  # a success on an origin that never failed: nothing to keep
        now = time.monotonic()
        with self._lock:
            breaker = self._breakers.get(origin)
            if breaker is None:
                if not failed:
                    return None  # a success on an origin that never failed: nothing to keep
                breaker = self._breakers[origin] = _Breaker()
            if probe:
                if breaker.state != HALF_OPEN:
                    return None
                if failed:
                    breaker._open(now, spec)
                    return OPEN
                breaker.successes += 1
                if breaker.successes >= spec.half_open_probes:
                    breaker.state = CLOSED
                    breaker.probes = breaker.successes = 0
                    return CLOSED
                return None
            if breaker.state != CLOSED:
                return None  # a call let through before the breaker opened
            breaker._trim(now, spec.sampling_window)
            second = int(now)
            if breaker.buckets and breaker.buckets[-1][0] == second:
                bucket = breaker.buckets[-1]
            else:
                bucket = [second, 0, 0]
                breaker.buckets.append(bucket)
            bucket[1] += 1
            breaker.calls += 1
            if failed:
                bucket[2] += 1
                breaker.failures += 1
                if breaker.calls >= spec.minimum_calls and breaker.failures >= spec.failure_ratio * breaker.calls:
                    breaker._open(now, spec)
                    return OPEN
            return None

    def breaker_release_probe(self, origin: str) -> None:
        with self._lock:
            breaker = self._breakers.get(origin)
            if breaker is not None and breaker.state == HALF_OPEN and breaker.probes > 0:
                breaker.probes -= 1

    def breakers(self, spec: BreakerSpec) -> list[tuple[str, str, int, int, float]]:
        now = time.monotonic()
        with self._lock:
            found = []
            for origin, breaker in self._breakers.items():
                if breaker.state == CLOSED:
                    breaker._trim(now, spec.sampling_window)
                state = breaker.state
                if state == OPEN and now >= breaker.opened_until:
                    state = HALF_OPEN  # the next call will be a probe
                found.append((origin, state, breaker.calls, breaker.failures, max(0.0, breaker.opened_until - now)))
            return found


class PresetState:
    """A preset's rate limits, breakers and pauses, shared by its sessions (and, coordinated, its processes).

    With a ``coordination_url`` the coordination server is asked first; when it
    cannot be reached the state falls back to the local backend (warned once,
    counted in ``coordination_failures``) and tries the server again later.
    """

    def __init__(self, config: PresetConfig) -> None:
        self.preset = config.name
        self.limits = parse_rate_limit(config.rate_limit) if config.rate_limit else ()
        self.limit_text = config.rate_limit or ""
        self.breaker = config.circuit_breaker
        self.local = LocalBackend()
        self.remote: Any = None
        if config.coordination_url is not None:
            from ._coordination import RedisBackend  # only a coordinated preset loads redis

            self.remote = RedisBackend(config.coordination_url, preset=config.name, fallback=self.local)

    def backend(self) -> Backend:
        remote = self.remote
        if remote is not None and remote.available():
            return remote  # type: ignore[no-any-return]
        return self.local


_states_lock = _process.fork_safe_lock()
_states: dict[tuple[str, str | None, BreakerSpec | None, str | None], PresetState] = {}


def _state_for(config: PresetConfig) -> PresetState:
    key = (config.name, config.rate_limit, config.circuit_breaker, config.coordination_url)
    state = _states.get(key)
    if state is None:
        with _states_lock:
            state = _states.get(key)
            if state is None:
                state = _states[key] = PresetState(config)
    return state


def _reset_states() -> None:
    """Reset hook (the public ``session_presets.testing.reset()``): drop each state, close its Redis client."""
    with _states_lock:
        states = list(_states.values())
        _states.clear()
    for state in states:
        if state.remote is not None:
            state.remote.close()


def _states_after_fork() -> None:
    """The after-fork hook of a child process: start with no state, limiter or breaker of the parent's."""
    # The parent's Redis connections are the parent's: a child drops them unclosed.
    _states.clear()
    _totals.clear()
    for guard in list(_guards):
        guard._after_fork()


# -- the per-session guard --------------------------------------------------------------


class _Slots:
    """max_in_flight: a first come, first served line of ``size`` slots."""

    __slots__ = ("_free", "_line", "_lock", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._lock = threading.Lock()
        self._line: collections.deque[threading.Lock] = collections.deque()

    @property
    def in_use(self) -> int:
        return self.size - self._free

    def acquire(self, call: Call | None) -> bool:
        with self._lock:
            if self._free > 0 and not self._line:
                self._free -= 1
                return True
            turn = threading.Lock()
            turn.acquire()
            self._line.append(turn)
        while True:
            left = None if call is None else call.remaining()
            gone = call is not None and call.reason is not None
            if gone or (left is not None and left <= 0):
                with self._lock:
                    try:
                        self._line.remove(turn)
                    except ValueError:  # handed a slot in the meantime: give it on
                        self._release_locked()
                    return False
            if turn.acquire(timeout=_WAIT_SLICE if left is None else min(_WAIT_SLICE, left)):
                return True  # release() handed this slot over: _free was not given back

    def release(self) -> None:
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        if self._line:
            self._line.popleft().release()
        else:
            self._free += 1


class Guard:
    """The resilience of one session: its slots, and its preset's shared limits and breakers.

    ``send(adapter_send, request, ...)`` wraps one hop of PresetAdapter.send:
    breaker, pause and rate limit first (refusing with nothing sent), then a
    slot, then the hop; its outcome is recorded on the way out.
    """

    def __init__(self, config: PresetConfig) -> None:
        self.config = config
        self.preset = config.name
        self.shared = _state_for(config)
        self.slots = _Slots(config.max_in_flight) if config.max_in_flight is not None else None
        self._count_lock = threading.Lock()
        self._zero()
        _guards.add(self)

    @property
    def in_flight(self) -> int:
        """Requests holding a max_in_flight slot now."""
        return 0 if self.slots is None else self.slots.in_use

    def _zero(self) -> None:
        self.transitions = 0
        self.rejected = 0
        self.rate_limit_waits = 0
        self.rate_limit_wait_time = 0.0
        self.pauses = 0

    def _after_fork(self) -> None:
        self._count_lock = threading.Lock()
        self._zero()
        self.shared = _state_for(self.config)
        if self.slots is not None:
            self.slots = _Slots(self.slots.size)

    def _count(self, name: str, amount: float = 1) -> None:
        with self._count_lock:
            setattr(self, name, getattr(self, name) + amount)
        key = (self.preset, name)
        with _totals_lock:
            _totals[key] = _totals.get(key, 0) + amount

    # -- before a hop or an attempt ------------------------------------------------------

    def admit(self, origin: str, call: Call | None) -> tuple[bool, float]:
        """Pass the breaker, any pause and the rate limit for one attempt to ``origin``.

        Returns:
            (whether this attempt is a half-open probe, seconds waited for a permit).

        Raises:
            CircuitOpenError: the origin's breaker is open (or its probes are taken).
            RateLimitedError: the wait for a permit (or a pause) does not fit in the deadline.
        """
        shared = self.shared
        probe = False
        spec = shared.breaker
        if spec is not None:
            verdict, reopens_in = shared.backend().breaker_enter(origin, spec)
            if verdict == "probe":
                probe = True
            elif verdict != CLOSED:
                self._count("rejected")
                raise CircuitOpenError(
                    f"circuit breaker for {origin} is {verdict} (preset {self.preset!r}); "
                    + (
                        f"it lets a probe through at {_when(reopens_in)}"
                        if verdict == OPEN
                        else "its probes are in flight; it closes when they succeed"
                    ),
                    origin=origin,
                    preset=self.preset,
                    state=verdict,
                    retry_at=time.time() + reopens_in,
                )
        try:
            waited = self._permit(origin, call)
        except BaseException:
            if probe:
                shared.backend().breaker_release_probe(origin)
            raise
        return probe, waited

    def _permit(self, origin: str, call: Call | None) -> float:
        shared = self.shared
        started = 0.0
        while True:
            wait, paused = shared.backend().try_acquire(origin, shared.limits)
            if wait <= 0:
                if started:
                    waited = time.monotonic() - started
                    self._count("rate_limit_waits")
                    self._count("rate_limit_wait_time", waited)
                    return waited
                return 0.0
            left = None if call is None else call.remaining()
            if left is not None and wait > left:
                self._count("rejected")
                what = "a Retry-After pause" if paused else f"rate limit {shared.limit_text}"
                raise RateLimitedError(
                    f"no permit for {origin} within the deadline (preset {self.preset!r}): {what} "
                    f"lets the next call through at {_when(wait)}, after the {left:.3g}s left; nothing was sent",
                    origin=origin,
                    preset=self.preset,
                    state=what,
                    retry_at=time.time() + wait,
                )
            if not started:
                started = time.monotonic()
            self._sleep(min(wait, _WAIT_SLICE * 4), call)

    @staticmethod
    def _sleep(seconds: float, call: Call | None) -> None:
        until = time.monotonic() + seconds
        while True:
            if call is not None:
                call.raise_if_aborted()
            left = until - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _WAIT_SLICE))

    # -- after an attempt -----------------------------------------------------------------

    def failed_attempt(
        self, call: Call, origin: str, response: Any, error: BaseException | None, probe: bool
    ) -> None:
        """An attempt of ``call`` that will be retried ended: record it, and pause the origin on a Retry-After."""
        if response is not None:
            self._maybe_pause(origin, getattr(response, "status", None), response.headers.get("Retry-After"))
        self._record(origin, self._failed(call, getattr(response, "status", None), error), probe)

    def _failed(self, call: Call, status: int | None, error: BaseException | None) -> bool | None:
        """True for a failure, False for a success, None for no verdict (cancelled, refused, not the origin's)."""
        if error is not None:
            if call.reason == CANCELLED or isinstance(
                error, (CircuitOpenError, RateLimitedError)
            ):
                return None
            # Connection errors and timeouts, as requests or urllib3 (inside a retry) raise them.
            return True if isinstance(error, (requests.ConnectionError, requests.Timeout, HTTPError, OSError)) else None
        spec = self.shared.breaker
        return spec is not None and status in spec.failure_statuses

    def _record(self, origin: str, failed: bool | None, probe: bool) -> None:
        shared = self.shared
        spec = shared.breaker
        if spec is None:
            return
        backend = shared.backend()
        if failed is None:
            if probe:
                backend.breaker_release_probe(origin)
            return
        changed = backend.breaker_record(origin, spec, failed, probe)
        if changed is not None:
            self._count("transitions")
            log.debug("circuit breaker for %s (preset %r) is now %s", origin, self.preset, changed)

    def _maybe_pause(self, origin: str, status: int | None, retry_after: str | None) -> None:
        if status not in PAUSE_STATUSES or not retry_after:
            return
        seconds = _retry_after_seconds(retry_after)
        if seconds is None or seconds <= 0:
            return
        self.shared.backend().pause(origin, min(seconds, MAX_PAUSE))
        self._count("pauses")

    # -- one hop ----------------------------------------------------------------------------

    def send(
        self, call: Call, send: Callable[..., requests.Response], request: Any, stream: bool, **kwargs: Any
    ) -> requests.Response:
        """Send one hop of ``call`` through ``send(call, request, stream=..., ...)`` (the adapter's own), guarded.

        The hop's origin and probe travel on the call's context (``call.origin``,
        ``call.probe``), where a retry inside urllib3 finds them (see before_retry).
        """
        origin = origin_of(request.url)
        probe, waited = self.admit(origin, call)
        slots = self.slots
        if slots is not None:
            started = time.monotonic()
            if not slots.acquire(call):
                if probe:
                    self.shared.backend().breaker_release_probe(origin)
                if call.reason == CANCELLED:
                    call.raise_if_aborted()
                self._count("rejected")
                # No slot can be promised ahead (unlike a permit), so the line is left at the deadline.
                raise call.timeout_error(
                    request,
                    self.preset,
                    f" waiting for a max_in_flight slot: {slots.size} requests of this session are in flight; "
                    "nothing was sent",
                )
            waited += time.monotonic() - started
        call.origin = origin
        call.probe = probe
        try:
            try:
                response = send(call, request, stream=stream, **kwargs)
                if slots is not None and not stream and not response.is_redirect:
                    # The body is part of the call in flight (the slot is held until it is read).
                    response.content  # noqa: B018
            except requests.ConnectionError as exc:
                inner = exc.args[0] if exc.args else None
                if isinstance(inner, (CircuitOpenError, RateLimitedError)):
                    # A retry refused by the breaker or the limit, raised inside urllib3: re-raise it as is.
                    raise inner from None
                self._record(origin, self._failed(call, None, exc), call.probe)
                raise
            except Exception as exc:
                self._record(origin, self._failed(call, None, exc), call.probe)
                raise
            status = response.status_code
            if status in PAUSE_STATUSES:
                self._maybe_pause(origin, status, response.headers.get("Retry-After"))
            self._record(origin, self._failed(call, status, None), call.probe)
            tx = getattr(response, "_preset_tx", None)
            if tx is not None and waited:
                tx.queued += waited
            if slots is not None and stream:
                _hold_until_released(response, slots)
                slots = None
            return response
        finally:
            call.origin = None
            call.probe = False
            if slots is not None:
                slots.release()

    # -- a retry inside urllib3 (PresetRetry) ---------------------------------------------

    def before_retry(self, call: Call) -> float:
        """Admit the next attempt of ``call``'s hop in flight; return the seconds waited for a permit."""
        origin = call.origin
        if origin is None:
            return 0.0
        probe, waited = self.admit(origin, call)
        call.probe = probe
        return waited

    def after_failed_attempt(self, call: Call, response: Any, error: BaseException | None) -> None:
        """The attempt of ``call``'s hop in flight failed and will be retried."""
        origin = call.origin
        if origin is not None:
            self.failed_attempt(call, origin, response, error, call.probe)
            call.probe = False

    # -- figures --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The figures of SessionStats: breaker states per origin and the counts."""
        states: dict[str, str] = {}
        if self.shared.breaker is not None:
            states = {origin: state for origin, state, *_ in self.shared.backend().breakers(self.shared.breaker)}
        remote = self.shared.remote
        return {
            "breaker_states": states,
            "breaker_transitions": self.transitions,
            "rejected_calls": self.rejected,
            "rate_limit_waits": self.rate_limit_waits,
            "rate_limit_wait_time": self.rate_limit_wait_time,
            "in_flight": self.in_flight,
            "coordination_failures": 0 if remote is None else remote.failures,
        }


def _hold_until_released(response: requests.Response, slots: _Slots) -> None:
    """A streamed body keeps its max_in_flight slot until it is read, closed or collected."""
    raw = response.raw
    original = getattr(raw, "release_conn", None)
    freed = threading.Lock()

    def free() -> None:
        if freed.acquire(blocking=False):
            slots.release()

    if original is None:
        free()
        return

    def release_conn() -> None:
        try:
            original()
        finally:
            free()

    raw.release_conn = release_conn
    weakref.finalize(response, free).atexit = False


_guards: weakref.WeakSet[Guard] = weakref.WeakSet()
#: Process-wide counts by (preset, figure), for the OpenTelemetry export: they never go down.
_totals: dict[tuple[str, str], float] = {}
_totals_lock = _process.fork_safe_lock()


def totals(figure: str) -> dict[str, float]:
    """The count of ``figure`` (``transitions``, ``rejected``, ...) by preset, since start, fork or reset."""
    with _totals_lock:
        return {preset: value for (preset, name), value in _totals.items() if name == figure}


def _clear_totals() -> None:
    with _totals_lock:
        _totals.clear()


def _retry_after_seconds(value: str) -> float | None:
    text = value.strip()
    if text.isdigit():
        return float(text)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() - time.time()


def guard_for(config: PresetConfig) -> Guard | None:
    """The guard of a session of ``config``, or None when the preset turns no resilience on."""
    if (
        config.rate_limit is None
        and config.max_in_flight is None
        and config.circuit_breaker is None
        and config.coordination_url is None
    ):
        return None
    return Guard(config)


def breaker_states() -> list[BreakerSnapshot]:
    """Every circuit breaker of this process (coordinated ones as the server holds them), for ``doctor``."""
    with _states_lock:
        states = list(_states.values())
    found: list[BreakerSnapshot] = []
    for state in states:
        if state.breaker is None:
            continue
        for origin, status, calls, failures, reopens_in in state.backend().breakers(state.breaker):
            found.append(BreakerSnapshot(state.preset, origin, status, calls, failures, reopens_in))
    return sorted(found, key=lambda snap: (snap.preset, snap.origin))


def live_guards() -> list[Guard]:
    """The guards of every live session (for the OpenTelemetry export)."""
    return list(_guards)


def rate_text(limits: tuple[tuple[int, float], ...]) -> str:
    """The canonical text of parsed rate limits."""
    return ";".join(show_rate(permits, period) for permits, period in limits)


_process.on_fork_child(_states_after_fork, order=_process.ORDER_CALLS)
_process.on_reset(_reset_states, order=_process.ORDER_PRESETS)
_process.on_reset(_clear_totals, order=_process.ORDER_PRESETS)
