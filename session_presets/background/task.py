"""TransferTask and TransferState: one download or upload of a background session."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .._redact import safe_url
from ._taskstate import DOWNLOAD, FINISHED, UPLOAD, TaskState, TransferState

log = logging.getLogger(__name__)

__all__ = ["DOWNLOAD", "FINISHED", "UPLOAD", "ProgressCallback", "TransferState", "TransferTask"]

ProgressCallback = Callable[["TransferTask"], object]


class TransferTask:
    """One download or upload run by a :class:`BackgroundSession` on a worker thread.

    Tasks are made by ``BackgroundSession.download`` and ``upload``, or
    reattached from the journal by a new process; never build one directly.

    The task is a read-only view: every attribute reads the state the
    session's runner keeps for the transfer (see ``_taskstate``), and only
    ``progress`` can be set.

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

    __slots__ = ("__weakref__", "_cancel_hook", "_last_progress", "_progress", "_task")

    def __init__(
        self, task: TaskState, cancel: Callable[[TaskState], None], progress: ProgressCallback | None
    ) -> None:
        self._task = task
        # A callback, not the session: the task knows nothing of the engine that runs it.
        self._cancel_hook = cancel
        self._progress = progress
        self._last_progress = 0.0
        task.listen(self._notify)

    @property
    def id(self) -> int:
        """The task's number in the session's journal, unique per identifier."""
        return self._task.record.id

    @property
    def kind(self) -> str:
        """``"download"`` or ``"upload"``."""
        return self._task.record.kind

    @property
    def url(self) -> str:
        """The URL transferred from or to."""
        return self._task.url

    @property
    def method(self) -> str:
        """The HTTP method (``GET`` for downloads)."""
        return self._task.record.method

    @property
    def sha256(self) -> str | None:
        """The expected hex digest of a download, if one was given."""
        return self._task.record.sha256

    @property
    def created_at(self) -> float:
        """When the task was first recorded, in seconds since the epoch."""
        return self._task.record.created_at

    @property
    def dest(self) -> str | None:
        """The file a download ends in (None for an upload)."""
        return self._task.record.path if self._task.record.kind == DOWNLOAD else None

    @property
    def src(self) -> str | None:
        """The file an upload sends (None for a download)."""
        return self._task.record.path if self._task.record.kind == UPLOAD else None

    @property
    def path(self) -> str:
        """The local file of the task: ``dest`` for a download, ``src`` for an upload."""
        return self._task.record.path

    @property
    def resumed_from(self) -> int:
        """The byte this process took the task up at: what an earlier run had committed."""
        return self._task.resumed_from

    @property
    def attempts(self) -> int:
        """How many HTTP attempts this process has made for the task."""
        return self._task.attempts

    @property
    def protocol(self) -> str:
        """An upload's resume protocol: "tus", "ietf", "none", or "auto" until the server was asked."""
        return self._task.protocol

    @property
    def upload_url(self) -> str | None:
        """The upload resource a resumable upload appends to, once the server created it (else None)."""
        return self._task.upload_url

    @property
    def source_identity(self) -> str | None:
        """An upload's ``"st_dev:st_ino:st_size:st_mtime_ns"`` when it first read its source (else None)."""
        return self._task.source_identity

    @property
    def etag(self) -> str | None:
        """The ETag of the version being downloaded, once known."""
        return self._task.etag

    @property
    def last_modified(self) -> str | None:
        """The Last-Modified of the version being downloaded, once known."""
        return self._task.last_modified

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
        return self._task.state

    @property
    def bytes_done(self) -> int:
        """Bytes transferred so far (for a resumed download, including the ``.part`` file)."""
        return self._task.bytes_done

    @property
    def bytes_total(self) -> int | None:
        """The full size in bytes, once known; None until then or without Content-Length."""
        return self._task.bytes_total

    @property
    def error(self) -> Exception | None:
        """Why the task failed (a TransferError), or None."""
        return self._task.error

    @property
    def done(self) -> bool:
        """True once the task is completed, failed or cancelled."""
        return self._task.finished.is_set()

    def wait(self, timeout: float | None = None) -> TransferTask:
        """Block until the task is finished or ``timeout`` seconds have passed.

        It never raises for a failed task: read ``state`` and ``error``.

        Args:
            timeout: seconds to wait; None waits until the task finishes.

        Returns:
            The task itself, so ``bg.download(...).wait().state`` reads naturally.
        """
        self._task.finished.wait(timeout)
        return self

    def cancel(self) -> None:
        """Stop the task and delete its ``.part`` file; a finished task is left as it is.

        A pending task is cancelled at once; a running one within about a second.
        """
        self._cancel_hook(self._task)

    def _notify(self, final: bool) -> None:
        """Call the progress callback, at most about 10 times a second unless ``final``.

        The runner calls this (through ``TaskState.notify``) from the task's worker thread, or its
        writer thread once bytes are on file.
        """
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
        state, done, total = self._task.snapshot()
        shown = "?" if total is None else str(total)
        return f"<TransferTask {self.id} {self.kind} {safe_url(self.url)} state={state.value} {done}/{shown}>"
