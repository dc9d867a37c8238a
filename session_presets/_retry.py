"""PresetRetry and build_retry: which failures a preset retries, how long it waits, and the call's timeouts."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Final, TypeVar

from urllib3.exceptions import (
    ConnectTimeoutError,
    InvalidHeader,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.util import Retry, Timeout

from . import _metrics, _resilience
from ._calls import DEADLINE, current_call
from ._config import PresetConfig
from ._counters import Counters

__all__ = ["IDEMPOTENT_METHODS", "PresetRetry", "PresetTimeout", "build_retry", "readable_retry_after"]

log = logging.getLogger(__name__)


#: Methods retried after a read error or a retryable status: the idempotent ones.
IDEMPOTENT_METHODS: Final = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PUT", "TRACE"})

#: How finely a retry back-off sleep checks for cancellation.
_SLEEP_SLICE: Final = 0.05


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
