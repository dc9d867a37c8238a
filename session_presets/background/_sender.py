"""How a task's requests go out: through the background session, with its credentials, errors mapped.

Every request of a transfer, download or upload, is sent by :class:`TaskSender`:
it picks the credentials (a task's own ``Authorization`` header wins over the
session's auth, and an upload resource on another origin gets none), and
turns what requests raises into what the runner acts on: ``AttemptFailed``
(worth another try), ``Stopped`` or ``TransferError`` (failed for good). It
also holds the task's deadline (``total_timeout`` counts from the task's
creation, across processes).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import requests
from urllib3.util import Retry

from .._config import PresetConfig
from .._errors import SessionInvalidatedError, TransferError
from .._redact import redact_text, safe_url
from .._retry import build_retry
from .._sessions import PresetSession
from ._attempt import AttemptFailed, Stopped
from ._taskstate import TaskState

__all__ = ["TaskSender", "describe", "scrub"]


def scrub(text: str) -> str:
    """Return ``text`` with every URL in it shown without credentials, query string or fragment."""
    return redact_text(text)


def describe(exc: BaseException) -> str:
    """``"ErrorType: message"`` for ``exc``, with every URL in the message scrubbed."""
    return f"{type(exc).__name__}: {scrub(str(exc))}"


def _is_certificate_error(exc: BaseException) -> bool:
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text or "hostname" in text


class TaskSender:
    """Sends the requests of every task of one background session.

    Args:
        http: the session that sends every request; it must not retry by itself.
        config: the background preset: timeouts, back-off, retry statuses.
        auth: requests auth used when a task's headers hold no Authorization.
    """

    def __init__(self, http: PresetSession, config: PresetConfig, auth: Any) -> None:
        self.http = http
        self.config = config
        self.auth = auth
        #: The retry policy of every task: the preset's, built as the adapter builds it, except that
        #: any method is retried (an upload is sent again from the start of its file).
        self.policy: Retry = build_retry(config, Retry).new(allowed_methods=None)

    def auth_for(self, headers: Mapping[str, str], *, credentials: bool = True) -> Any:
        """The auth to send with ``headers``: none when they carry Authorization or ``credentials`` is False."""
        has_auth = any(name.lower() == "authorization" for name in headers)
        return None if has_auth or not credentials else self.auth

    def send(
        self,
        task: TaskState,
        method: str,
        headers: dict[str, str],
        *,
        url: str | None = None,
        credentials: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request of ``task`` (to ``url``, else the task's URL) and return its response.

        Raises:
            AttemptFailed: a network error, or a TLS error other than a certificate refusal.
            Stopped: the task was stopped, or the session invalidated.
            TransferError: any other request error (a refused certificate, an invalid URL...).
        """
        try:
            return self.http.request(
                method, task.url if url is None else url, headers=headers,
                auth=self.auth_for(headers, credentials=credentials), **kwargs,
            )
        except Stopped:
            raise
        except requests.exceptions.SSLError as exc:
            if _is_certificate_error(exc):
                raise TransferError(f"{task.record.kind} of {safe_url(task.url)} failed: {describe(exc)}") from exc
            raise AttemptFailed(f"TLS error: {describe(exc)}", cause=exc, progressed=False) from exc
        except SessionInvalidatedError as exc:
            raise Stopped("the session was invalidated") from exc
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise AttemptFailed(describe(exc), cause=exc, progressed=False) from exc
        except requests.RequestException as exc:
            raise TransferError(f"{task.record.kind} of {safe_url(task.url)} failed: {describe(exc)}") from exc

    def status_error(self, task: TaskState, response: requests.Response) -> Exception:
        """What an unexpected status means: AttemptFailed if the policy retries it, else TransferError."""
        status = response.status_code
        if self.policy.is_retry(task.record.method, status, has_retry_after="Retry-After" in response.headers):
            return AttemptFailed(f"HTTP {status}", response=response.raw, progressed=False)
        return TransferError(f"{task.record.kind} of {safe_url(task.url)} failed: HTTP {status} {response.reason}")

    def deadline(self, task: TaskState) -> float | None:
        """When ``task`` gives up (``time.time()`` seconds): its creation plus total_timeout, or None."""
        total = self.config.total_timeout
        return None if total is None else task.record.created_at + total

    def check(self, task: TaskState, deadline: float | None) -> None:
        """Raise Stopped if ``task`` was told to stop, TransferError if ``deadline`` has passed."""
        if task.stop.is_set():
            raise Stopped("stopped")
        if deadline is not None and time.time() >= deadline:
            raise TransferError(
                f"{task.record.kind} of {safe_url(task.url)} gave up: total_timeout={self.config.total_timeout:g}s "
                f"reached after {task.attempts} attempt(s) and {task.bytes_done} bytes"
            )
