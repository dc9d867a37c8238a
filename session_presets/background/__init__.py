"""Background sessions: resumable file transfers with a journal (docs/design.md, "Background transfers").

- ``engine``: BackgroundSession, its worker threads and lifecycle, and
  ``background_session``, which keeps one live object per identifier.
- ``transfer``: the runner, which takes one task from start to end. It runs a
  task with ``_download`` (Range/If-Range resume, verification; ``_bodyio``
  moves the body to disk) or ``_upload`` (plain, tus, the IETF draft), retries
  with ``_retrying``, sends with ``_sender``, journals with ``_journaling``,
  and writes files through ``_files``.
- ``journal``: the SQLite journal that lets a new process resume.
- ``lockfile``: the OS locks (one process per identifier, one writer per
  destination) and the state directory.
- ``task``: TransferTask (the read-only handle users hold) and TransferState.
- ``_taskstate``: what changes while a task runs, written by the runner alone.
- ``agent`` and ``_client``: detached sessions, run by a per-user agent process
  over a Unix domain socket (``_protocol`` is their wire format).
"""

from __future__ import annotations

from .._errors import DestinationInUseError
from ._client import DetachedSession, DetachedTask
from .engine import BackgroundSession, background_session
from .task import TransferState, TransferTask

__all__ = [
    "BackgroundSession",
    "DestinationInUseError",
    "DetachedSession",
    "DetachedTask",
    "TransferState",
    "TransferTask",
    "background_session",
]
