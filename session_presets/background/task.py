"""TransferTask and TransferState: one download or upload of a background session."""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from .._redact import safe_url

log = logging.getLogger(__name__)

__all__ = ["DOWNLOAD", "FINISHED", "UPLOAD", "ProgressCallback", "TransferState", "TransferTask"]

#: Kind of a task that fetches ``url`` into ``dest``.
DOWNLOAD: Final = "download"
#: Kind of a task that sends ``src`` to ``url``.
UPLOAD: Final = "upload"

ProgressCallback = Callable[["TransferTask"], object]


class TransferState(str, enum.Enum):
    """State of a background transfer."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: States a task never leaves.
FINISHED: Final = frozenset({TransferState.COMPLETED, TransferState.FAILED, TransferState.CANCELLED})


class TransferTask:
    """One download or upload run by a :class:`BackgroundSession` on a worker thread.

    Tasks are made by ``BackgroundSession.download`` and ``upload``, or
    reattached from the journal by a new process; never build one directly.

    Attributes:
        id: the task's number in the session's journal, unique per identifier.
        kind: ``"download"`` or ``"upload"``.
        url: the URL transferred from or to.
        dest: the file a download ends in (None for an upload).
        src: the file an upload sends (None for a download).
        method: the HTTP method (``GET`` for downloads).
        sha256: the expected hex digest of a download, if one was given.
        attempts: how many HTTP attempts this process has made for the task.
    """

    def __init__(
        self,
        cancel: Callable[[TransferTask], None],
        *,
        task_id: int,
        kind: str,
        url: str,
        path: str,
        method: str,
        headers: dict[str, str],
        sha256: str | None,
        progress: ProgressCallback | None,
        created_at: float,
        state: TransferState = TransferState.PENDING,
        bytes_done: int = 0,
        bytes_total: int | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        error: Exception | None = None,
    ) -> None:
        self.id = task_id
        self.kind = kind
        self.url = url
        self.dest = path if kind == DOWNLOAD else None
        self.src = path if kind == UPLOAD else None
        self.method = method
        self.sha256 = sha256
        self.attempts = 0
        self.created_at = created_at
        #: The byte this process took the task up at: what an earlier run had committed.
        self.resumed_from = bytes_done
        # A callback, not the session: the task knows nothing of the engine that runs it.
        self._cancel_hook = cancel
        self._headers = headers
        self._progress = progress
        self._state = state
        self._bytes_done = bytes_done
        self._bytes_total = bytes_total
        self._error = error
        self.etag = etag
        self.last_modified = last_modified
        self._done = threading.Event()
        if state in FINISHED:
            self._done.set()
        # Set to stop the worker: on cancel(), or when the process suspends its transfers.
        self._stop = threading.Event()
        self._cancel_requested = False
        self._worker: int | None = None
        self._response: Any = None
        self._last_progress = 0.0
        # The offset the journal holds as durable; bytes_done may run ahead of it.
        self._committed = bytes_done
        # The one-writer-per-destination lock, held while the task may write (a DestinationLock).
        self._dest_lock: Any = None
        # Running sha256 of the .part file, and how many of its bytes it covers.
        self._hasher: Any = None
        self._hashed = 0
        # True when the .part may hold bytes from two responses (a resume happened).
        self._spliced = bytes_done > 0

    @property
    def path(self) -> str:
        """The local file of the task: ``dest`` for a download, ``src`` for an upload."""
        return self.dest if self.dest is not None else str(self.src)

    @property
    def progress(self) -> ProgressCallback | None:
        """The progress callback; set it to watch a task reattached from the journal."""
        return self._progress

    @progress.setter
    def progress(self, callback: ProgressCallback | None) -> None:
        self._progress = callback

    @property
    def state(self) -> TransferState:
        """Where the task is: pending, running, completed, failed or cancelled."""
        return self._state

    @property
    def bytes_done(self) -> int:
        """Bytes transferred so far (for a resumed download, including the ``.part`` file)."""
        return self._bytes_done

    @property
    def bytes_total(self) -> int | None:
        """The full size in bytes, once known; None until then or without Content-Length."""
        return self._bytes_total

    @property
    def error(self) -> Exception | None:
        """Why the task failed (a TransferError), or None."""
        return self._error

    @property
    def done(self) -> bool:
        """True once the task is completed, failed or cancelled."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> TransferTask:
        """Block until the task is finished or ``timeout`` seconds have passed.

        It never raises for a failed task: read ``state`` and ``error``.

        Args:
            timeout: seconds to wait; None waits until the task finishes.

        Returns:
            The task itself, so ``bg.download(...).wait().state`` reads naturally.
        """
        self._done.wait(timeout)
        return self

    def cancel(self) -> None:
        """Stop the task and delete its ``.part`` file; a finished task is left as it is.

        A pending task is cancelled at once; a running one within about a second.
        """
        self._cancel_hook(self)

    def _notify(self, *, final: bool = False) -> None:
        """Call the progress callback, at most about 10 times a second unless ``final``."""
        callback = self._progress
        if callback is None:
            return
        now = time.monotonic()
        if not final and now - self._last_progress < 0.1:
            return
        self._last_progress = now
        try:
            callback(self)
        except Exception:
            # The callback is the caller's code: a bug there must not break the transfer.
            log.warning(
                "progress callback of task %d raised; it is not called again", self.id, exc_info=True
            )
            self._progress = None

    def __repr__(self) -> str:
        total = "?" if self._bytes_total is None else str(self._bytes_total)
        return (
            f"<TransferTask {self.id} {self.kind} {safe_url(self.url)} state={self._state.value} "
            f"{self._bytes_done}/{total}>"
        )
