"""What a running task writes to the journal, and how durably.

Three kinds of write, one method each: :meth:`TaskJournal.save` for fields
whose loss to a power cut is harmless (state, error); :meth:`TaskJournal.write_ahead`
for a step that must be recorded before the file changes; and
:meth:`TaskJournal.commit`, which makes written bytes durable (fsync of the
``.part``) before the offset is recorded as good.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .._errors import TransferError
from ._crashpoints import crash_point
from ._taskstate import TaskState
from .journal import Journal

__all__ = ["TaskJournal"]

log = logging.getLogger(__name__)


class TaskJournal:
    """The journal as the runner writes it for one task at a time.

    Args:
        journal: where progress and validators are recorded.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def save(self, task: TaskState, **fields: Any) -> None:
        """Write ``fields`` of ``task`` to the journal, not durably; a failed write is logged, not raised.

        Only for fields whose loss to a power cut is harmless (state, error);
        write-ahead steps use :meth:`write_ahead`, which raises.
        """
        try:
            self.journal.update(task.record.id, durable=False, **fields)
        except TransferError as exc:
            log.debug("journal update of task %d failed: %s", task.record.id, exc)

    def write_ahead(self, task: TaskState, *, durable: bool = True, **fields: Any) -> None:
        """Write ``fields`` before the file changes; the change must not happen if this fails.

        ``durable=False`` is for steps whose loss to a power cut only costs a
        download again (the journal then says less than is true, never more).

        Raises:
            TransferError: the journal cannot be written.
        """
        self.journal.update(task.record.id, durable=durable, **fields)
        if "bytes_done" in fields:
            task.committed = fields["bytes_done"]

    def commit(self, task: TaskState, fd: int, offset: int) -> None:
        """fsync the .part, then record ``offset`` as good; a failure keeps the older offset."""
        try:
            os.fsync(fd)
        except OSError as exc:
            log.debug("fsync of task %d failed: %s", task.record.id, exc)
            return
        crash_point("commit:fsynced")
        try:
            self.journal.update(task.record.id, bytes_done=offset)
        except TransferError as exc:
            log.debug("journal commit of task %d failed: %s", task.record.id, exc)
            return
        task.committed = offset
        crash_point("commit:done")
