"""When a task tries again: the preset's urllib3 ``Retry`` counts failures and spaces the attempts.

Retries follow the preset's ``Retry`` (built as the adapter builds it): its
back-off and Retry-After, until ``total_timeout`` or ``retries`` consecutive
failures without progress (an attempt that moved bytes starts the count
again). The pause is waited on the task's stop event, never in
``Retry.sleep``, so that a cancel or a suspension ends it at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from urllib3.exceptions import MaxRetryError
from urllib3.response import BaseHTTPResponse
from urllib3.util import Retry

from .._errors import TransferError
from .._redact import safe_url
from .._retry import readable_retry_after
from ._attempt import AttemptFailed, Stopped
from ._journaling import TaskJournal
from ._sender import TaskSender
from ._taskstate import TaskState

__all__ = ["RETRY_AFTER_MAX", "Attempts", "run_attempts"]

log = logging.getLogger(__name__)

#: The longest Retry-After honoured, in seconds: urllib3's own cap (6 hours), kept on urllib3
#: versions that have none. A longer one is waited this long, within ``total_timeout``.
RETRY_AFTER_MAX: Final[float] = float(getattr(Retry, "DEFAULT_RETRY_AFTER_MAX", 6 * 3600))


def _retry_after(policy: Retry, response: BaseHTTPResponse) -> float | None:
    """Seconds the Retry-After of ``response`` asks for, as ``policy`` reads it, capped at RETRY_AFTER_MAX.

    None when the header is missing or the policy does not respect it, and when
    it is unreadable: the back-off applies, as in a session.
    """
    if not policy.respect_retry_after_header:
        return None
    seconds = readable_retry_after(policy, response)
    return None if seconds is None else min(float(seconds), RETRY_AFTER_MAX)


def run_attempts(sender: TaskSender, task: TaskState, attempt: Callable[[float | None], None]) -> None:
    """Call ``attempt(deadline)`` until it returns, retrying each ``AttemptFailed`` as the preset says.

    Raises:
        Stopped: the task was told to stop (also during a pause between attempts).
        TransferError: the retries or the total_timeout are spent, or the attempt failed for good.
    """
    deadline = sender.deadline(task)
    retry = sender.policy
    while True:
        sender.check(task, deadline)
        task.attempts += 1
        try:
            attempt(deadline)
            return
        except AttemptFailed as failure:
            if task.stop.is_set():
                raise Stopped("stopped") from None
            if failure.progressed:
                # Bytes arrived: the back-off and the retries count again from the first failure.
                retry = sender.policy
            retry = _increment(sender, task, retry, failure)
            delay = retry.get_backoff_time()
            if failure.response is not None:
                delay = max(delay, _retry_after(retry, failure.response) or 0.0)
            if deadline is not None and time.time() + delay >= deadline:
                raise TransferError(
                    f"{task.record.kind} of {safe_url(task.url)} gave up: total_timeout="
                    f"{sender.config.total_timeout:g}s would pass before the next attempt; "
                    f"last error: {failure.reason}"
                ) from failure.cause
            log.debug(
                "task %d attempt %d: %s; retrying in %.2fs", task.record.id, task.attempts, failure.reason, delay
            )
            # Not Retry.sleep(): a cancel or a suspension must end the wait at once.
            if task.stop.wait(delay):
                raise Stopped("stopped") from None
        except (Stopped, TransferError):
            raise
        except Exception as exc:
            if task.stop.is_set():
                raise Stopped("stopped") from exc
            raise


class Attempts:
    """Base of what runs one kind of task (a download, an upload): attempts, retried by :func:`run_attempts`.

    Args:
        sender: sends the requests and holds the retry policy and the deadline.
        journal: where the task's progress is recorded.
    """

    def __init__(self, sender: TaskSender, journal: TaskJournal) -> None:
        self._sender = sender
        self._journal = journal

    def run(self, task: TaskState) -> None:
        """Transfer ``task`` until it completes.

        Raises:
            Stopped: the task was cancelled or the process is suspending.
            TransferError: the task failed for good.
        """
        raise NotImplementedError


def _increment(sender: TaskSender, task: TaskState, retry: Retry, failure: AttemptFailed) -> Retry:
    """``retry`` after one more failure, or TransferError when the preset's retries are spent."""
    try:
        # The error itself stays out of the Retry: its history would keep every traceback
        # (and the frames' buffers) alive for as long as failures go on without progress.
        return retry.increment(task.record.method, safe_url(task.url), response=failure.response)
    except MaxRetryError:
        raise TransferError(
            f"{task.record.kind} of {safe_url(task.url)} failed after {task.attempts} attempt(s) "
            f"(retries={sender.config.retries}): {failure.reason}"
        ) from failure.cause
