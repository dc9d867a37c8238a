"""Coordination through Redis: a preset's rate limits, breakers and pauses shared by every process.

Loaded only for a preset with a ``coordination_url`` (``import session_presets``
never imports it, nor redis). Each operation is one Lua script, run atomically
by the server on the server's clock (``TIME``), so processes on machines whose
clocks disagree still share one window:

- a rate limit is a moving window kept in a sorted set of call timestamps per
  origin and limit (the ``limits`` library's moving-window strategy, which keeps
  a list per key; a sorted set gives the wait for the next permit in one
  lookup);
- a breaker is a hash (state, reopening time, probes) and two sorted sets
  (calls and failures in the sampling window) per origin;
- a pause is a key holding the time until which the origin is paused.

When the server cannot be reached the preset falls back to its local backend:
a warning is logged once, ``coordination_failures`` counts each failure, and
the server is tried again after :data:`RETRY_SERVER_AFTER`. The URL's password
never appears in a message or a log.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Final

from ._config import BreakerSpec
from ._errors import ConfigError
from ._redact import safe_url

__all__ = ["RETRY_SERVER_AFTER", "RedisBackend"]

log = logging.getLogger(__name__)

#: After a failure, how long the local backend stands in before the server is tried again.
RETRY_SERVER_AFTER: Final = 5.0
#: Socket timeouts towards the coordination server: a call never waits long for a dead one.
_CONNECT_TIMEOUT: Final = 0.5
_SOCKET_TIMEOUT: Final = 1.0

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS: pause, sequence, then one window per limit; ARGV: permits and period (ms) of each limit.
_ACQUIRE: Final = (
    _NOW
    + """
local wait = 0
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
if paused > now then wait = paused - now end
local pausing = wait
for i = 3, #KEYS do
  local permits = tonumber(ARGV[2 * (i - 2) - 1])
  local period = tonumber(ARGV[2 * (i - 2)])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - period)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= permits then
    local oldest = redis.call('ZRANGE', KEYS[i], count - permits, count - permits, 'WITHSCORES')
    local w = tonumber(oldest[2]) + period - now
    if w > wait then wait = w end
  end
end
if wait > 0 then
  if wait == pausing then return {wait, 1} end
  return {wait, 0}
end
local id = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 86400000)
for i = 3, #KEYS do
  redis.call('ZADD', KEYS[i], now, now .. '-' .. id)
  redis.call('PEXPIRE', KEYS[i], ARGV[2 * (i - 2)])
end
return {0, 0}
"""
)

#: KEYS: pause; ARGV: milliseconds.
_PAUSE: Final = (
    _NOW
    + """
local untl = now + tonumber(ARGV[1])
if untl > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], untl, 'PX', ARGV[1])
end
return 0
"""
)

#: KEYS: breaker hash; ARGV: half_open_probes, break (ms).
_ENTER: Final = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'closed', 0} end
local untl = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if state == 'open' then
  if now < untl then return {'open', untl - now} end
  redis.call('HSET', KEYS[1], 'state', 'half-open', 'probes', 0, 'ok', 0, 'until', now + tonumber(ARGV[2]))
  state = 'half-open'
  untl = now + tonumber(ARGV[2])
end
if state == 'half-open' then
  local probes = tonumber(redis.call('HGET', KEYS[1], 'probes') or '0')
  if probes >= tonumber(ARGV[1]) then
    if now < untl then return {'half-open', 0} end
    -- probes taken by a process that never reported back: hand the slots out again
    redis.call('HSET', KEYS[1], 'probes', 0, 'until', now + tonumber(ARGV[2]))
  end
  redis.call('HINCRBY', KEYS[1], 'probes', 1)
  return {'probe', 0}
end
return {'closed', 0}
"""
)

#: KEYS: breaker hash, calls, failures, sequence;
#: ARGV: failed, probe, failure_ratio, window (ms), minimum_calls, break (ms), half_open_probes.
_RECORD: Final = (
    _NOW
    + """
local function open_breaker()
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + tonumber(ARGV[6]), 'probes', 0, 'ok', 0)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]) + tonumber(ARGV[4]) + 86400000)
  return 'open'
end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[2] == '1' then
  if state ~= 'half-open' then return '' end
  if ARGV[1] == '1' then return open_breaker() end
  local ok = redis.call('HINCRBY', KEYS[1], 'ok', 1)
  if ok >= tonumber(ARGV[7]) then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
    return 'closed'
  end
  return ''
end
if state ~= 'closed' then return '' end
local window = tonumber(ARGV[4])
local member = now .. '-' .. redis.call('INCR', KEYS[4])
redis.call('PEXPIRE', KEYS[4], 86400000)
redis.call('ZADD', KEYS[2], now, member)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('PEXPIRE', KEYS[2], window)
if ARGV[1] == '1' then
  redis.call('ZADD', KEYS[3], now, member)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
  redis.call('PEXPIRE', KEYS[3], window)
  local calls = redis.call('ZCARD', KEYS[2])
  local fails = redis.call('ZCARD', KEYS[3])
  if calls >= tonumber(ARGV[5]) and fails >= tonumber(ARGV[3]) * calls then return open_breaker() end
end
return ''
"""
)

#: KEYS: breaker hash; a probe that ended with no verdict gives its slot back.
_RELEASE: Final = """
if redis.call('HGET', KEYS[1], 'state') == 'half-open' then
  local probes = tonumber(redis.call('HGET', KEYS[1], 'probes') or '0')
  if probes > 0 then redis.call('HINCRBY', KEYS[1], 'probes', -1) end
end
return 0
"""


class RedisBackend:
    """A preset's limits, breakers and pauses kept in Redis; the local backend stands in when it is down.

    Args:
        url: the coordination URL (``redis://``, ``rediss://`` or ``unix://``).
        preset: the preset's name, part of every key.
        fallback: the backend used while the server cannot be reached.

    Raises:
        ConfigError: redis-py is not installed (extra ``redis``).
    """

    def __init__(self, url: str, *, preset: str, fallback: Any) -> None:
        try:
            import redis
        except ImportError as exc:
            raise ConfigError(
                f"coordination_url={safe_url(url)!r} needs redis-py: pip install 'session-presets[redis]'",
                field="coordination_url",
                value=safe_url(url),
            ) from exc
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.shown_url = safe_url(url)
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=_CONNECT_TIMEOUT, socket_timeout=_SOCKET_TIMEOUT, decode_responses=True
        )
        self.prefix = f"session_presets:{preset}:"
        self.preset = preset
        self.fallback = fallback
        self.failures = 0
        self._down_until = 0.0
        self._warned = False
        self._lock = threading.Lock()
        self._acquire = self.client.register_script(_ACQUIRE)
        self._pause = self.client.register_script(_PAUSE)
        self._enter = self.client.register_script(_ENTER)
        self._record = self.client.register_script(_RECORD)
        self._release = self.client.register_script(_RELEASE)

    def available(self) -> bool:
        """False while the server is taken as down (after a failure, for RETRY_SERVER_AFTER)."""
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            self._down_until = time.monotonic() + RETRY_SERVER_AFTER
            warn = not self._warned
            self._warned = True
        if warn:
            # The class name only: a server's message may quote the URL it was given.
            log.warning(
                "coordination server %s cannot be reached (%s): preset %r applies its rate limits, "
                "breakers and pauses in this process only, and tries the server again every %gs",
                self.shown_url,
                type(exc).__name__,
                self.preset,
                RETRY_SERVER_AFTER,
            )
        else:
            log.debug("coordination server %s failed again (%s)", self.shown_url, type(exc).__name__)

    def _key(self, kind: str, origin: str) -> str:
        return f"{self.prefix}{kind}:{origin}"

    def try_acquire(self, origin: str, limits: tuple[tuple[int, float], ...]) -> tuple[float, bool]:
        keys = [self._key("pause", origin), self._key("seq", origin)]
        args: list[int] = []
        for permits, period in limits:
            keys.append(self._key(f"window:{permits}/{period:g}", origin))
            args += [permits, max(1, round(period * 1000))]
        try:
            wait, paused = self._acquire(keys=keys, args=args)
        except self._errors as exc:
            self._failed(exc)
            return self.fallback.try_acquire(origin, limits)  # type: ignore[no-any-return]
        return (float(wait) / 1000.0, bool(paused))

    def pause(self, origin: str, seconds: float) -> None:
        try:
            self._pause(keys=[self._key("pause", origin)], args=[max(1, round(seconds * 1000))])
        except self._errors as exc:
            self._failed(exc)
            self.fallback.pause(origin, seconds)

    def breaker_enter(self, origin: str, spec: BreakerSpec) -> tuple[str, float]:
        try:
            state, wait = self._enter(
                keys=[self._key("breaker", origin)],
                args=[spec.half_open_probes, max(1, round(spec.break_duration * 1000))],
            )
        except self._errors as exc:
            self._failed(exc)
            return self.fallback.breaker_enter(origin, spec)  # type: ignore[no-any-return]
        return (str(state), float(wait) / 1000.0)

    def breaker_record(self, origin: str, spec: BreakerSpec, failed: bool, probe: bool) -> str | None:
        keys = [
            self._key("breaker", origin),
            self._key("calls", origin),
            self._key("failures", origin),
            self._key("seq", origin),
        ]
        args = [
            int(failed),
            int(probe),
            spec.failure_ratio,
            max(1, round(spec.sampling_window * 1000)),
            spec.minimum_calls,
            max(1, round(spec.break_duration * 1000)),
            spec.half_open_probes,
        ]
        try:
            changed = self._record(keys=keys, args=args)
        except self._errors as exc:
            self._failed(exc)
            return self.fallback.breaker_record(origin, spec, failed, probe)  # type: ignore[no-any-return]
        return str(changed) or None

    def breaker_release_probe(self, origin: str) -> None:
        try:
            self._release(keys=[self._key("breaker", origin)])
        except self._errors as exc:
            self._failed(exc)
            self.fallback.breaker_release_probe(origin)

    def breakers(self, spec: BreakerSpec) -> list[tuple[str, str, int, int, float]]:
        marker = f"{self.prefix}breaker:"
        found: list[tuple[str, str, int, int, float]] = []
        try:
            now = time.time()
            for key in self.client.scan_iter(match=f"{marker}*", count=100):
                fields = self.client.hgetall(key)
                origin = key[len(marker) :]
                state = str(fields.get("state", "closed"))
                until = float(fields.get("until", 0)) / 1000.0
                if state == "open" and until <= now:
                    state = "half-open"
                calls = int(self.client.zcard(self._key("calls", origin)))
                failures = int(self.client.zcard(self._key("failures", origin)))
                found.append((origin, state, calls, failures, max(0.0, until - now) if state == "open" else 0.0))
        except self._errors as exc:
            self._failed(exc)
            return self.fallback.breakers(spec)  # type: ignore[no-any-return]
        return found

    def close(self) -> None:
        """Close the connections to the server."""
        try:
            self.client.close()
        except self._errors:  # pragma: no cover - closing a dead connection
            log.debug("closing the coordination client failed", exc_info=True)
