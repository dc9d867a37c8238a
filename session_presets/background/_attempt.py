"""How one attempt of a background transfer ends early: stopped, or failed in a way worth another try.

Shared by the runner (``transfer``) and the upload protocols (``_upload``), which raise them.
"""

from __future__ import annotations

from urllib3.response import BaseHTTPResponse

__all__ = ["AttemptFailed", "Stopped"]


class Stopped(Exception):
    """The task was cancelled, or the process is suspending its transfers."""


class AttemptFailed(Exception):
    """One attempt failed in a way worth another try.

    Args:
        reason: what went wrong, for the log and the final error.
        cause: the exception behind it, if any.
        response: the urllib3 response of a retryable status (its Retry-After counts).
        progressed: bytes arrived during the attempt, so the failures before it no longer count.
    """

    def __init__(
        self,
        reason: str,
        *,
        cause: BaseException | None = None,
        response: BaseHTTPResponse | None = None,
        progressed: bool,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause
        self.response = response
        self.progressed = progressed
