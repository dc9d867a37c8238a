"""The mutable state of one background transfer, written by the runner alone.

A task has three faces, each with one job:

- ``journal.TaskRecord``: the frozen row the journal stores and a new process
  reads back. Its fields are the one list of what a task records.
- :class:`TaskState` (here): what changes while the task runs. Its one writer
  is the runner (``transfer.Runner`` and the modules it runs a task with);
  the engine asks the runner for every change (start, end, cancel, suspend)
  and never writes a field itself.
- ``task.TransferTask``: the read-only handle users hold. It reads a
  TaskState, listens to it for progress, and cancels through a callback
  into the engine.

A single field is read without the lock (reading one attribute is atomic);
:meth:`TaskState.snapshot` reads the fields a reader wants together.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import Any, Final

from .._errors import TransferError
from .journal import TaskRecord
from .lockfile import DestinationLock

__all__ = ["DOWNLOAD", "FINISHED", "UPLOAD", "TaskState", "TransferState"]

#: Kind of a task that fetches ``url`` into ``dest``.
DOWNLOAD: Final = "download"
#: Kind of a task that sends ``src`` to ``url``.
UPLOAD: Final = "upload"


class TransferState(str, enum.Enum):
    """State of a background transfer."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: States a task never leaves.
FINISHED: Final = frozenset({TransferState.COMPLETED, TransferState.FAILED, TransferState.CANCELLED})


class TaskState:
    """Everything about one task that changes while it runs.

    Args:
        record: the task as the journal holds it.
        url: the URL requests go to; unlike ``record.url`` it keeps any userinfo.
        headers: every request header of the task; the journal keeps only a few.
        resume: take an unfinished task of an earlier run up again (it is
            pending, whatever state the journal recorded); else the task
            starts in the journal's state, with its error.
        dest_lock: the one-writer-per-destination lock the task holds, if any.

    Attributes:
        record: the task as the journal held it when this process took it up.
        state: where the task is.
        bytes_done: bytes transferred; for a download, may run ahead of ``committed``.
        bytes_total: the full size, once known.
        etag, last_modified: the validators of the version being downloaded.
        error: why the task failed.
        attempts: HTTP attempts made by this process.
        resumed_from: the committed offset this process took the task up at.
        committed: the offset the journal holds as durable.
        finished: set once the task is completed, failed or cancelled (or suspended).
        stop: set to stop the worker: on cancel, or when the process suspends its transfers.
        cancel_requested: the stop is a cancel (the ``.part`` goes), not a suspension.
        worker: the thread id running the task, once it runs.
        response: the response whose body is being read, so that a stop can cut it.
        dest_lock: the destination lock, until the task ends.
        hasher, hashed: the running sha256 of the ``.part`` and how many bytes it covers.
        spliced: the ``.part`` may hold bytes of two responses (a resume happened).
        lock: held by the writer while it changes fields that belong together.
        protocol: an upload's resume protocol ("auto" until discovery chose one).
        upload_url: the upload resource a resumable upload appends to, once created.
        source_identity: the upload source's "dev:ino:size:mtime_ns" when first read.
        upload_sent: the most bytes of the source handed to a connection for ``upload_url``.
        upload_complete: the server confirmed an IETF upload complete.
        restarts: how often this process started an upload over (its resource was lost).
    """

    __slots__ = (
        "attempts",
        "bytes_done",
        "bytes_total",
        "cancel_requested",
        "committed",
        "dest_lock",
        "error",
        "etag",
        "finished",
        "hashed",
        "hasher",
        "headers",
        "last_modified",
        "listener",
        "lock",
        "protocol",
        "record",
        "response",
        "restarts",
        "resumed_from",
        "source_identity",
        "spliced",
        "state",
        "stop",
        "upload_complete",
        "upload_sent",
        "upload_url",
        "url",
        "worker",
    )

    def __init__(
        self,
        record: TaskRecord,
        *,
        url: str,
        headers: dict[str, str],
        resume: bool,
        dest_lock: DestinationLock | None,
    ) -> None:
        self.record = record
        self.url = url
        self.headers = headers
        self.state = TransferState.PENDING if resume else TransferState(record.state)
        self.bytes_done = record.bytes_done
        self.bytes_total = record.bytes_total
        self.etag = record.etag
        self.last_modified = record.last_modified
        self.error: Exception | None = None
        if not resume and record.error is not None:
            self.error = TransferError(record.error)
        self.attempts = 0
        self.resumed_from = record.bytes_done
        self.committed = record.bytes_done
        self.finished = threading.Event()
        if self.state in FINISHED:
            self.finished.set()
        self.stop = threading.Event()
        self.cancel_requested = False
        self.worker: int | None = None
        self.response: Any = None
        self.dest_lock = dest_lock
        self.hasher: Any = None
        self.hashed = 0
        self.spliced = record.bytes_done > 0
        self.lock = threading.Lock()
        self.listener: Callable[[bool], None] | None = None
        self.protocol = record.protocol
        self.upload_url = record.upload_url
        self.source_identity = record.source_identity
        self.upload_sent = record.upload_sent
        self.upload_complete = False
        self.restarts = 0

    def listen(self, listener: Callable[[bool], None]) -> None:
        """Have ``listener(final)`` called on progress: the handle's progress callback, throttled."""
        self.listener = listener

    def notify(self, *, final: bool = False) -> None:
        """Tell the listener, if any, that the task moved (``final``: it ended)."""
        listener = self.listener
        if listener is not None:
            listener(final)

    def snapshot(self) -> tuple[TransferState, int, int | None]:
        """``(state, bytes_done, bytes_total)``, read together."""
        with self.lock:
            return self.state, self.bytes_done, self.bytes_total
