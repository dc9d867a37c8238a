"""The runner of one task: it takes a task from start to end, and is the one writer of its state.

The engine asks :class:`Runner` for every change of a task (start, stop,
cancel, end) and never writes a :class:`~._taskstate.TaskState` itself. The
runner hands the transfer to the module of its kind and records how it
ended:

- ``_download``: Range/If-Range resume, validation, sha256, the final rename;
  ``_bodyio`` moves the body from the connection to the ``.part``.
- ``_upload``: plain uploads, and resumable ones (tus, the IETF draft).
- ``_retrying``: the attempts, spaced by the preset's urllib3 ``Retry``.
- ``_sender``: the requests, their credentials, and how their errors map.
- ``_journaling``: what a task writes to the journal, and how durably.
- ``_files``: files opened never through a link, errors that name them.
- ``_crashpoints``: where the tests make a process exit between two durable steps.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .._calls import CANCELLED, shutdown_connection
from .._config import PresetConfig
from .._errors import DiskFullError, TransferError
from .._redact import safe_url
from .._sessions import PresetSession
from ._attempt import Stopped
from ._download import Download
from ._files import remove_file
from ._journaling import TaskJournal
from ._sender import TaskSender, scrub
from ._taskstate import TaskState
from ._upload import Upload
from .journal import Journal
from .task import DOWNLOAD, FINISHED, TransferState

__all__ = ["Runner"]

log = logging.getLogger(__name__)


class Runner:
    """Runs one task to its end on the calling (worker) thread.

    Args:
        http: the session that sends every request; it must not retry by itself.
        config: the background preset: timeouts, back-off, retry statuses.
        auth: requests auth used when a task's headers hold no Authorization.
        journal: where progress and validators are recorded.
    """

    def __init__(self, http: PresetSession, config: PresetConfig, auth: Any, journal: Journal) -> None:
        self.sender = TaskSender(http, config, auth)
        self.journal = TaskJournal(journal)
        self._download = Download(self.sender, self.journal)
        self._upload = Upload(self.sender, self.journal)

    def save(self, task: TaskState, **fields: Any) -> None:
        """Write ``fields`` of ``task`` to the journal, not durably; a failed write is logged (TaskJournal.save)."""
        self.journal.save(task, **fields)

    # -- lifecycle (the engine asks; only the runner writes a TaskState) ----------

    def start(self, task: TaskState) -> None:
        """Mark a task taken from the queue as running (the journal hears of it in :meth:`execute`)."""
        with task.lock:
            task.state = TransferState.RUNNING

    def request_stop(self, task: TaskState, *, cancel: bool) -> bool:
        """Ask the worker of ``task`` to stop: for good when ``cancel``, else to suspend it.

        Returns:
            False when the task is already finished or a cancel is already asked for.
        """
        with task.lock:
            if cancel:
                if task.state in FINISHED or task.cancel_requested:
                    return False
                task.cancel_requested = True
            task.stop.set()
        return True

    def execute(self, task: TaskState) -> None:
        """Run ``task`` on this thread and record how it ended; never raises for the task's failure."""
        self.save(task, state=TransferState.RUNNING.value)
        try:
            self.run(task)
        except Stopped:
            if task.cancel_requested:
                self.end_cancelled(task)
            else:
                # The process is suspending: the journal keeps the task (and its committed offset).
                with task.lock:
                    task.state = TransferState.PENDING
                self.save(task, state=TransferState.PENDING.value)
                self.release_destination(task)
                task.finished.set()
            return
        except TransferError as exc:
            self.end(task, TransferState.FAILED, exc)
            return
        except Exception as exc:
            what = f"{task.record.kind} of {safe_url(task.url)}"
            log.debug("task %d failed unexpectedly: %s", task.record.id, scrub(repr(exc)))
            error = TransferError(f"{what} failed unexpectedly: {scrub(repr(exc))}")
            error.__cause__ = exc
            self.end(task, TransferState.FAILED, error)
            return
        self.end(task, TransferState.COMPLETED, None)

    def end(self, task: TaskState, state: TransferState, error: TransferError | None) -> None:
        """Finish ``task`` in ``state``: journal, destination lock, last progress call, waiters."""
        with task.lock:
            task.error = error
            task.state = state
        # bytes_done is not written here: only an fsync makes an offset true (see commit()).
        self.save(
            task,
            state=state.value,
            error=None if error is None else scrub(str(error)),
            resumable=int(isinstance(error, DiskFullError)),
        )
        self.release_destination(task)
        log.debug("task %d %s", task.record.id, state.value)
        task.notify(final=True)
        task.finished.set()

    def end_cancelled(self, task: TaskState) -> None:
        """Finish a cancelled task: its ``.part`` is deleted."""
        if task.record.kind == DOWNLOAD:
            remove_file(task.record.path + ".part")
        else:
            # The server may free what it holds of the upload: tus termination, the draft's DELETE.
            self._upload.terminate(task)
        self.end(task, TransferState.CANCELLED, None)

    @staticmethod
    def release_destination(task: TaskState) -> None:
        """Release the destination lock of ``task``, if it holds one; safe to call twice."""
        with task.lock:
            lock, task.dest_lock = task.dest_lock, None
        if lock is not None:
            lock.release()

    # -- control -------------------------------------------------------------

    def interrupt(self, task: TaskState) -> None:
        """Wake the worker of ``task`` if it is blocked on the network."""
        response = task.response
        if response is not None:
            shutdown_connection(getattr(response.raw, "connection", None))
        # A request still waiting for its headers is aborted through its call.
        if task.worker is not None:
            self.sender.http._abort_thread_calls(task.worker, CANCELLED)

    def run(self, task: TaskState) -> None:
        """Transfer ``task`` until it completes.

        Raises:
            Stopped: the task was cancelled or the process is suspending.
            TransferError: the task failed for good (DiskFullError when out of space).
        """
        task.worker = threading.get_ident()
        if task.record.kind == DOWNLOAD:
            self._download.run(task)
        else:
            self._upload.run(task)
