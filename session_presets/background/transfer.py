"""The transfer loop of one task: attempts, resume with Range/If-Range, back-off, verification.

A download streams into ``dest + ".part"``. The journal is the source of truth
for how many of those bytes are good: its ``bytes_done`` is the *committed*
offset, written only after an fsync of the ``.part`` (every
:data:`COMMIT_BYTES` or :data:`COMMIT_SECONDS`, and when a task stops). A new
process truncates the ``.part`` to that offset before it resumes, so bytes the
journal never committed (a tail lost to a power cut, garbage appended) are
never kept.

Every change of version is a write-ahead step: the journal says "0 bytes of
version V" *before* the ``.part`` is emptied, so a kill between any two steps
leaves a state the next run resumes correctly. After a connection error or a
read timeout the download asks for ``Range: bytes=N-`` with ``If-Range`` (the
strong ETag, else Last-Modified):

- 206 starting at N, of the known total, whose ETag/Last-Modified equals the
  stored validator: the body is appended.
- 200: the server sent the whole (possibly changed) file, so it restarts at 0.
- any other 206 (new validator, other start or total): restart from zero.
- 416 naming the total the journal already knows, when the ``.part`` holds
  exactly that many bytes: verified and finished. Any other 416 restarts.

Only a complete file (length, and sha256 if given) is renamed to ``dest``.
Every file is opened with ``O_NOFOLLOW``, and created with ``O_EXCL``.
An upload with ``protocol="none"`` is retried from the start; a resumable one
(tus, the IETF draft) resumes from the offset the server confirms (see
``_upload``). Retries follow the preset's urllib3
``Retry`` (``_retry.build_retry``, as the adapter's): its back-off and
Retry-After, until ``total_timeout`` (or ``retries`` consecutive failures
without progress). The pause is waited on the task's stop event, never in
``Retry.sleep``, so that a cancel or a suspension ends it at once.

The runner is the one writer of a task's :class:`~._taskstate.TaskState`.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import logging
import mmap
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Final

import requests
import urllib3.exceptions
from urllib3.exceptions import MaxRetryError
from urllib3.response import BaseHTTPResponse
from urllib3.util import Retry

from .. import _process, _upstream
from .._calls import CANCELLED, shutdown_connection
from .._config import PresetConfig
from .._errors import DiskFullError, SessionInvalidatedError, TransferError
from .._redact import redact_text, safe_url
from .._retry import build_retry, readable_retry_after
from .._sessions import PresetSession
from . import _upload
from ._attempt import AttemptFailed as _AttemptFailed
from ._attempt import Stopped
from ._taskstate import TaskState
from .journal import Journal
from .task import DOWNLOAD, FINISHED, TransferState

__all__ = [
    "BUFFER_SIZE",
    "CHUNK_SIZE",
    "COMMIT_BYTES",
    "COMMIT_SECONDS",
    "CRASH_EXIT",
    "RETRY_AFTER_MAX",
    "DiskFullError",
    "Runner",
    "Stopped",
    "remove_file",
    "scrub",
    "set_crash_point",
]

log = logging.getLogger(__name__)

#: Largest piece of a file read at once (hashing a .part, an upload).
CHUNK_SIZE: Final = 1 << 20

#: Size of each of a download's two buffers (one fills while the other is written). The bench
#: measured 4 MiB direct writes at 0.9-1.1x of a plain requests stream, 1 MiB ones at 0.75-1.0x.
BUFFER_SIZE: Final = 4 << 20

#: Bytes written between two commits of the offset (fsync of the .part, then the journal).
COMMIT_BYTES = 16 << 20

#: Seconds between two commits of the offset, whatever the rate.
COMMIT_SECONDS = 2.0

#: Bytes asked of the connection per read on the fast path (a few TLS records).
READ_SIZE: Final = 64 << 10

#: The largest TLS record: a read1 that returns one whole means the link is fast again.
_TLS_RECORD: Final = 16 << 10

#: The longest a batch of reads waits before it is written, so progress stays fresh.
BATCH_SECONDS: Final = 0.1

#: Flags of every file the library opens: never through a symbolic link.
O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_OPEN_FLAGS: Final = os.O_RDWR | O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)

#: errno values that mean "no room to write": the task can resume once there is.
_DISK_FULL: Final = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)

#: Network errors after which an attempt is retried (resumed, for a download).
_NETWORK_ERRORS: Final = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)

# -- fault injection -----------------------------------------------------------

#: Exit status of a process stopped at a crash point.
CRASH_EXIT: Final = 86

_crash_at: tuple[str, int] | None = None
_crash_seen: dict[str, int] = {}


def set_crash_point(name: str | None, nth: int = 1) -> None:
    """Make the process ``os._exit(CRASH_EXIT)`` the ``nth`` time it reaches crash point ``name`` (tests only).

    The points, in the order a download meets them: ``fresh:journaled``,
    ``fresh:truncated`` (a 200 replaced what the .part held), ``restart:journaled``,
    ``restart:truncated`` (a restart from zero), ``commit:fsynced``,
    ``commit:done``, ``finish:verified``, ``finish:renamed``.
    """
    global _crash_at
    _crash_at = None if name is None else (name, nth)
    _crash_seen.clear()


def _crash_point(name: str) -> None:
    if _crash_at is None or _crash_at[0] != name:
        return
    _crash_seen[name] = _crash_seen.get(name, 0) + 1
    if _crash_seen[name] >= _crash_at[1]:
        os._exit(CRASH_EXIT)


# -- redaction -------------------------------------------------------------------

def scrub(text: str) -> str:
    """Return ``text`` with every URL in it shown without credentials, query string or fragment."""
    return redact_text(text)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {scrub(str(exc))}"


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


def _validator(task: TaskState) -> str | None:
    # If-Range needs a strong validator: a weak ETag would make the server send 200.
    if task.etag and not task.etag.startswith("W/"):
        return task.etag
    return task.last_modified


def _same_version(task: TaskState, response: requests.Response) -> bool:
    """True when ``response`` carries the validator stored for ``task`` (or none was stored)."""
    if task.etag is not None:
        return response.headers.get("ETag") == task.etag
    if task.last_modified is not None:
        return response.headers.get("Last-Modified") == task.last_modified
    return True


def _is_certificate_error(exc: BaseException) -> bool:
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text or "hostname" in text


def _file_error(task: TaskState, path: str, exc: OSError) -> TransferError:
    if exc.errno in _DISK_FULL:
        return DiskFullError(
            f"disk full while writing {path!r} ({exc.strerror or exc}); the {task.bytes_done} bytes written "
            "so far are kept and the download resumes from there on the next run"
        )
    if exc.errno == errno.ELOOP:
        return TransferError(
            f"refusing to write {path!r}: it is a symbolic link, which this library never follows "
            "(someone with write access to the directory planted it). Nothing was written through it."
        )
    if exc.errno == errno.EEXIST:
        return TransferError(
            f"refusing to write {path!r}: it appeared while the task was starting, and this library did not "
            "create it (a planted file or link?). It was left untouched."
        )
    return TransferError(f"cannot write {path!r}: {exc}")


def fsync_directory(path: str) -> None:
    """Make a rename in ``path`` durable, where the platform allows it."""
    if os.name != "posix":  # pragma: no cover - Windows has no directory fsync
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - the directory we just renamed in is readable
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse directory fsync
        pass
    finally:
        os.close(fd)


def remove_file(path: str) -> None:
    """Unlink ``path`` (a planted link is removed, never followed); a missing file is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # pragma: no cover - we created the file in a directory we write to
        log.debug("cannot remove %r: %s", path, exc)


def check_own_file(fd: int, path: str) -> os.stat_result:
    """Return ``fstat(fd)`` if it is a regular file of ours, else raise TransferError naming ``path``."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise TransferError(f"refusing to use {path!r}: it is not a regular file")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise TransferError(
            f"refusing to use {path!r}: it is owned by another user (uid {info.st_uid}); it was left untouched"
        )
    return info


class _UploadBody:
    """A file-like body that counts what requests reads, and stops when asked."""

    def __init__(self, file: IO[bytes], size: int, task: TaskState) -> None:
        self._file = file
        self._size = size
        self._task = task

    def __len__(self) -> int:
        return self._size

    def read(self, amount: int = -1) -> bytes:
        if self._task.stop.is_set():
            raise Stopped("upload stopped")
        amount = CHUNK_SIZE if amount is None or amount < 0 else min(amount, CHUNK_SIZE)
        data = self._file.read(amount)
        self._task.bytes_done += len(data)
        self._task.notify()
        return data


class _BodyReader:
    """Reads a response body into a caller's buffer: whatever arrives within BATCH_SECONDS, at least one read.

    A body of known length that is not chunked is read with the standard
    library's ``HTTPResponse.readinto``, straight into the buffer in pieces of
    :data:`READ_SIZE`. Going through urllib3's ``read1`` once per 16 KiB TLS
    record cost a third of the throughput (profiled: stream layers, context
    managers and a bytes object per record). ``readinto`` waits for its whole
    piece, so when one takes longer than BATCH_SECONDS (a slow link) the reader
    switches to ``read1``, one system call at a time, until a full TLS record
    arrives at once again: progress, cancel and deadlines stay prompt.
    Any other body goes through urllib3.

    A network error after some bytes arrived is raised on the next call, so
    those bytes are still written and a resume starts exactly after them.
    """

    def __init__(self, response: requests.Response, length: int | None) -> None:
        raw = response.raw
        self._raw = raw
        # The standard library's response under urllib3's (hook body_readinto, see docs/fast-path.md).
        inner = _upstream.readinto_target(raw)
        fast = length is not None and not getattr(raw, "chunked", True) and inner is not None
        self._inner: http.client.HTTPResponse | None = inner if fast else None
        self._slow = False
        self._pending: BaseException | None = None

    def _read_once(self, view: memoryview) -> int:
        inner = self._inner
        if inner is None:
            data: bytes = self._raw.read1(len(view), decode_content=False)
            view[: len(data)] = data
            return len(data)
        if self._slow:
            data = inner.read1(min(len(view), READ_SIZE))
            view[: len(data)] = data
            self._slow = len(data) < _TLS_RECORD
            return len(data)
        started = time.monotonic()
        count = inner.readinto(view[:READ_SIZE])
        self._slow = time.monotonic() - started > BATCH_SECONDS
        if inner.isclosed():
            # Every byte was read: the connection goes back to the pool, as urllib3 itself does.
            self._raw.release_conn()
        return count

    def fill(self, buffer: memoryview) -> int:
        """Read into ``buffer``; return the count, 0 at the end of the body."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            raise pending
        size = len(buffer)
        filled = self._read_once(buffer)
        until = time.monotonic() + BATCH_SECONDS
        reads = 0
        while filled and filled < size:
            try:
                count = self._read_once(buffer[filled:])
            except _NETWORK_ERRORS as exc:
                self._pending = exc
                break
            if not count:
                break
            filled += count
            reads += 1
            if not reads % 8 and time.monotonic() >= until:
                break
        return filled


#: Alignment of direct writes: file offset, length and buffer address (the page size, a
#: multiple of every common logical block size).
DIRECT_ALIGN: Final = 4096

#: Whether positioned reads and writes exist (not on Windows).
_HAS_PWRITE: Final = hasattr(os, "pwrite") and hasattr(os, "pread")

#: ``O_DIRECT`` where the platform has it (Linux); 0 elsewhere, where every write is buffered.
O_DIRECT: Final = getattr(os, "O_DIRECT", 0)


def _pwrite(fd: int, data: memoryview, offset: int) -> int:
    """``os.pwrite``; on Windows, which has none, a seek and a write (one thread writes a .part)."""
    if _HAS_PWRITE:
        return os.pwrite(fd, data, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.write(fd, data)


def _pread(fd: int, size: int, offset: int) -> bytes:
    """``os.pread``; on Windows, which has none, a seek and a read."""
    if _HAS_PWRITE:
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


class _SlotWorker:
    """A thread of a task's own that runs jobs from a slot of one, started at the first job.

    :meth:`_put` fills the slot (replacing a job not yet started) and marks the
    worker busy until the job has run; :meth:`close` drops a job not yet
    started and waits for the running one. Subclasses run a job in :meth:`_run`.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._slot: Any = None
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def _put(self, job: Any) -> None:
        with self._cond:
            self._slot = job
            self._busy = True
            self._cond.notify()
            if self._thread is None:
                self._thread = _process.start_thread(self._loop, name=self._name)

    def _run(self, job: Any) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._slot is None and not self._closed:
                    self._cond.wait()
                if self._slot is None:
                    return
                job, self._slot = self._slot, None
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._busy = self._slot is not None
                    self._cond.notify_all()

    def close(self) -> None:
        """Drop a job not yet started and wait for the running one: the task's descriptors may close after this."""
        with self._cond:
            self._closed = True
            self._slot = None
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()


class _Writer(_SlotWorker):
    """Writes a download's buffers to the .part on a thread of its own, with ``O_DIRECT`` where it can.

    Why a thread: while one buffer is written, the download thread fills the
    other, so the download runs at the pace of the slower of the network and
    the disk instead of their sum.

    Why ``O_DIRECT``: a finished download must be on disk before it is
    COMPLETED, so every byte is written back before the task ends anyway.
    Through the page cache that costs a copy into the cache, then writeback
    competing with the download for the CPU, then waiting for it in the final
    fsync (profiled: the whole gap to a plain ``requests`` stream that never
    syncs). Written directly, the bytes go from the buffer to the device while
    the next buffer fills, and the fsyncs have only metadata left to do.

    Direct writes need the buffer address, the file offset and the length
    aligned to :data:`DIRECT_ALIGN`. The buffers come from ``mmap`` (page
    aligned), and each fill starts at the buffer index congruent to its file
    offset, so only the unaligned head and tail of a fill (a resume at an odd
    offset, a short read at the end or on a slow link) go through the page
    cache, on the ordinary descriptor. Where the file system refuses
    ``O_DIRECT`` (at open, or ``EINVAL`` on a write) every write is buffered.

    The download thread submits one buffer at a time and waits for it before
    it submits the next one (:meth:`wait`). Once a buffer is on file the writer
    thread calls ``written`` with its bytes (the runner counts them there, so
    progress is told as soon as they are written); a write error reaches the
    download thread as the ``OSError`` itself.
    """

    def __init__(self, task: TaskState, fd: int, part: str, written: Callable[[memoryview], None]) -> None:
        super().__init__(f"session-presets-write-{task.record.id}")
        self._fd = fd
        self._part = part
        self._written = written
        self._direct = self._open_direct(fd, part)
        self._error: BaseException | None = None

    @staticmethod
    def _open_direct(fd: int, part: str) -> int | None:
        """A second descriptor of the same .part with ``O_DIRECT``, or None where there is none."""
        if not O_DIRECT:  # pragma: no cover - Linux has O_DIRECT
            return None
        # O_NONBLOCK: a FIFO planted at the path since the .part was opened fails at once (ENXIO)
        # instead of blocking this open until someone reads it.
        flags = os.O_WRONLY | O_DIRECT | O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            direct = os.open(part, flags)
        except OSError as exc:
            log.debug("no direct writes to %r: %s", part, exc)
            return None
        mine, there = os.fstat(fd), os.fstat(direct)
        if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
            # Replaced since we opened it: never write there; _finish refuses the rename.
            log.debug("%r was replaced since it was opened; no direct writes", part)
            os.close(direct)
            return None
        os.set_blocking(direct, True)
        return direct

    @property
    def direct(self) -> bool:
        """True while aligned pieces are written with ``O_DIRECT``."""
        return self._direct is not None

    def lead(self, position: int) -> int:
        """Where in a buffer a fill for file offset ``position`` starts (0 when writes are buffered)."""
        return position % DIRECT_ALIGN if self._direct is not None else 0

    def submit(self, buffer: memoryview, lead: int, count: int, position: int) -> None:
        """Write ``buffer[lead:lead + count]`` at file offset ``position``, on the writer thread."""
        self._put((buffer, lead, count, position))

    def wait(self) -> None:
        """Wait until the buffer submitted last, if any, is written and counted.

        Raises:
            OSError: the write failed (the bytes before the failure may be on file, uncounted).
        """
        with self._cond:
            while self._busy:
                self._cond.wait()
            error, self._error = self._error, None
        if error is not None:
            raise error

    def _run(self, job: tuple[memoryview, int, int, int]) -> None:
        try:
            self._write(*job)
        except BaseException as exc:  # handed to the download thread, which raises it
            with self._cond:
                self._error = exc

    def _write(self, buffer: memoryview, lead: int, count: int, position: int) -> None:
        """Write the job, then count it; after a failure, count what was written before raising."""
        index, end = lead, lead + count
        try:
            while index < end:
                index += self._write_piece(buffer, index, end, position + index - lead)
        finally:
            if index > lead:
                self._written(buffer[lead:index])

    def _write_piece(self, buffer: memoryview, index: int, end: int, offset: int) -> int:
        """Write from ``buffer[index]`` at file ``offset``: the aligned run directly, else up to the next boundary."""
        direct = self._direct
        if direct is not None and not index % DIRECT_ALIGN and end - index >= DIRECT_ALIGN:
            size = (end - index) // DIRECT_ALIGN * DIRECT_ALIGN
            try:
                return _pwrite(direct, buffer[index : index + size], offset)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
            log.debug("direct write refused by %r; writing through the page cache", self._part)
            self._close_direct()
            direct = None
        size = end - index
        if direct is not None:
            size = min(size, DIRECT_ALIGN - index % DIRECT_ALIGN)
        written = _pwrite(self._fd, buffer[index : index + size], offset)
        if not written:  # pragma: no cover - a regular file never takes 0 of a non-empty write
            raise OSError(errno.EIO, "the file took none of the bytes written")
        return written

    def _close_direct(self) -> None:
        if self._direct is not None:
            os.close(self._direct)
            self._direct = None

    def close(self) -> None:
        """Wait for a write in progress and end the thread, then close the direct descriptor."""
        super().close()
        self._close_direct()


class _Committer(_SlotWorker):
    """Makes written bytes durable off the download thread: fsync the .part, then commit the offset.

    The fsync runs on a thread of its own so the download keeps reading: the
    bench measured the inline fsyncs at a fifth of the download time. Only
    offsets written *before* an fsync started are committed after it.
    """

    def __init__(self, runner: Runner, task: TaskState, fd: int) -> None:
        super().__init__(f"session-presets-commit-{task.record.id}")
        self._runner = runner
        self._task = task
        self._fd = fd

    def request(self, offset: int) -> None:
        """Commit ``offset`` soon; a newer request replaces one not yet started."""
        self._put(offset)

    def _run(self, job: int) -> None:
        self._runner.commit(self._task, self._fd, job)


class Runner:
    """Runs one task to its end on the calling (worker) thread.

    Args:
        http: the session that sends every request; it must not retry by itself.
        config: the background preset: timeouts, back-off, retry statuses.
        auth: requests auth used when a task's headers hold no Authorization.
        journal: where progress and validators are recorded.
    """

    def __init__(self, http: PresetSession, config: PresetConfig, auth: Any, journal: Journal) -> None:
        self.http = http
        self.config = config
        self.auth = auth
        self.journal = journal
        #: The retry policy of every task: the preset's, built as the adapter builds it, except that
        #: any method is retried (an upload is sent again from the start of its file).
        self.policy: Retry = build_retry(config, Retry).new(allowed_methods=None)

    # -- journal -------------------------------------------------------------

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
        _crash_point("commit:fsynced")
        try:
            self.journal.update(task.record.id, bytes_done=offset)
        except TransferError as exc:
            log.debug("journal commit of task %d failed: %s", task.record.id, exc)
            return
        task.committed = offset
        _crash_point("commit:done")

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
            _upload.terminate(self, task)
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
            self.http._abort_thread_calls(task.worker, CANCELLED)

    def _deadline(self, task: TaskState) -> float | None:
        total = self.config.total_timeout
        return None if total is None else task.record.created_at + total

    def _check(self, task: TaskState, deadline: float | None) -> None:
        if task.stop.is_set():
            raise Stopped("stopped")
        if deadline is not None and time.time() >= deadline:
            raise TransferError(
                f"{task.record.kind} of {safe_url(task.url)} gave up: total_timeout={self.config.total_timeout:g}s "
                f"reached after {task.attempts} attempt(s) and {task.bytes_done} bytes"
            )

    def run(self, task: TaskState) -> None:
        """Transfer ``task`` until it completes.

        Raises:
            Stopped: the task was cancelled or the process is suspending.
            TransferError: the task failed for good (DiskFullError when out of space).
        """
        task.worker = threading.get_ident()
        if task.record.kind != DOWNLOAD:
            self._attempts(task, None)
            return
        fd = self._open_part(task)
        try:
            self._attempts(task, fd)
        except (Stopped, DiskFullError):
            # What was written is made durable, so the next run resumes after it.
            if not task.cancel_requested:
                self.commit(task, fd, task.bytes_done)
            empty = task.bytes_done == 0 and os.fstat(fd).st_size == 0
            os.close(fd)
            if empty:
                # Nothing arrived (an unreachable host): leave no empty .part behind.
                remove_file(task.record.path + ".part")
            raise
        except BaseException:
            # A task that failed for good is never resumed: its .part is of no use.
            os.close(fd)
            remove_file(task.record.path + ".part")
            raise
        os.close(fd)

    def _attempts(self, task: TaskState, fd: int | None) -> None:
        deadline = self._deadline(task)
        retry = self.policy
        while True:
            self._check(task, deadline)
            task.attempts += 1
            try:
                if fd is not None:
                    self._download_once(task, fd, deadline)
                else:
                    self._upload_once(task)
                return
            except _AttemptFailed as failure:
                if task.stop.is_set():
                    raise Stopped("stopped") from None
                if failure.progressed:
                    # Bytes arrived: the back-off and the retries count again from the first failure.
                    retry = self.policy
                retry = self._increment(task, retry, failure)
                delay = retry.get_backoff_time()
                if failure.response is not None:
                    delay = max(delay, _retry_after(retry, failure.response) or 0.0)
                if deadline is not None and time.time() + delay >= deadline:
                    raise TransferError(
                        f"{task.record.kind} of {safe_url(task.url)} gave up: total_timeout="
                        f"{self.config.total_timeout:g}s would pass before the next attempt; "
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

    def _increment(self, task: TaskState, retry: Retry, failure: _AttemptFailed) -> Retry:
        """``retry`` after one more failure, or TransferError when the preset's retries are spent."""
        try:
            # The error itself stays out of the Retry: its history would keep every traceback
            # (and the frames' buffers) alive for as long as failures go on without progress.
            return retry.increment(task.record.method, safe_url(task.url), response=failure.response)
        except MaxRetryError:
            raise TransferError(
                f"{task.record.kind} of {safe_url(task.url)} failed after {task.attempts} attempt(s) "
                f"(retries={self.config.retries}): {failure.reason}"
            ) from failure.cause

    # -- HTTP ----------------------------------------------------------------

    def _send(
        self,
        task: TaskState,
        method: str,
        headers: dict[str, str],
        *,
        url: str | None = None,
        credentials: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        has_auth = any(name.lower() == "authorization" for name in headers)
        try:
            return self.http.request(
                method, task.url if url is None else url, headers=headers,
                auth=None if has_auth or not credentials else self.auth, **kwargs,
            )
        except Stopped:
            raise
        except requests.exceptions.SSLError as exc:
            if _is_certificate_error(exc):
                raise TransferError(f"{task.record.kind} of {safe_url(task.url)} failed: {_describe(exc)}") from exc
            raise _AttemptFailed(f"TLS error: {_describe(exc)}", cause=exc, progressed=False) from exc
        except SessionInvalidatedError as exc:
            raise Stopped("the session was invalidated") from exc
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise _AttemptFailed(_describe(exc), cause=exc, progressed=False) from exc
        except requests.RequestException as exc:
            raise TransferError(f"{task.record.kind} of {safe_url(task.url)} failed: {_describe(exc)}") from exc

    def _status_error(self, task: TaskState, response: requests.Response) -> Exception:
        status = response.status_code
        if self.policy.is_retry(task.record.method, status, has_retry_after="Retry-After" in response.headers):
            return _AttemptFailed(f"HTTP {status}", response=response.raw, progressed=False)
        return TransferError(f"{task.record.kind} of {safe_url(task.url)} failed: HTTP {status} {response.reason}")

    # -- upload --------------------------------------------------------------

    def _upload_once(self, task: TaskState) -> None:
        if task.protocol != "none":
            _upload.attempt(self, task, self._upload_plain)
            return
        self._upload_plain(task)

    def _upload_plain(self, task: TaskState) -> None:
        """Send the whole file in one request of the task's method (``protocol="none"``)."""
        src = task.record.path
        try:
            # The caller names the file to send: a symbolic link there is theirs to follow.
            file = open(src, "rb")  # noqa: SIM115 - closed below, after the request
        except OSError as exc:
            raise TransferError(f"cannot read {src!r} for upload: {exc}") from exc
        with file:
            size = os.fstat(file.fileno()).st_size
            with task.lock:
                task.bytes_total = size
                task.bytes_done = 0
            response = self._send(task, task.record.method, dict(task.headers), data=_UploadBody(file, size, task))
        response.close()
        if not 200 <= response.status_code < 300:
            raise self._status_error(task, response)
        task.bytes_done = size

    # -- download ------------------------------------------------------------

    def _open_part(self, task: TaskState) -> int:
        """Open the .part of ``task``, cut to the committed offset, or create it; return its descriptor.

        A .part shorter than the committed offset cannot be trusted: the
        journal first says "0 bytes", then the file is emptied (write-ahead).
        """
        part = task.record.path + ".part"
        committed = task.committed
        try:
            fd = os.open(part, _OPEN_FLAGS)
        except FileNotFoundError:
            fd = None
        except OSError as exc:
            raise _file_error(task, part, exc) from exc
        if fd is None:
            if committed or task.etag is not None or task.last_modified is not None:
                self.write_ahead(task, bytes_done=0, bytes_total=None, etag=None, last_modified=None)
                with task.lock:
                    task.etag = task.last_modified = None
                    task.bytes_total = None
            try:
                fd = os.open(part, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as exc:
                raise _file_error(task, part, exc) from exc
            task.bytes_done = 0
            return fd
        try:
            size = check_own_file(fd, part).st_size
            if size < committed:
                log.debug(
                    "task %d: %r holds %d bytes, fewer than the %d committed", task.record.id, part, size, committed
                )
                self._empty(task, fd, "restart")
            elif size > committed:
                # Bytes past the committed offset were never made durable: never keep them.
                os.ftruncate(fd, committed)
            task.bytes_done = task.committed
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _empty(self, task: TaskState, fd: int, step: str, **new: Any) -> None:
        """Write-ahead restart: the journal says 0 bytes (of the ``new`` version), then the .part is emptied."""
        fields: dict[str, Any] = {"bytes_done": 0, "bytes_total": None, "etag": None, "last_modified": None, **new}
        self.write_ahead(task, **fields)
        with task.lock:
            task.etag, task.last_modified = fields["etag"], fields["last_modified"]
            task.bytes_total = fields["bytes_total"]
        _crash_point(f"{step}:journaled")
        try:
            os.ftruncate(fd, 0)
        except OSError as exc:  # pragma: no cover - shrinking a file we own does not fail
            raise _file_error(task, task.record.path + ".part", exc) from exc
        _crash_point(f"{step}:truncated")
        with task.lock:
            task.bytes_done = 0
            task.hasher = None
            task.hashed = 0
            task.spliced = False

    def _restart(self, task: TaskState, fd: int, reason: str) -> _AttemptFailed:
        self._empty(task, fd, "restart")
        log.debug("task %d: %s; restarting from zero", task.record.id, reason)
        return _AttemptFailed(f"{reason}; restarting from zero", progressed=False)

    def _download_once(self, task: TaskState, fd: int, deadline: float | None) -> None:
        offset = task.bytes_done
        headers = dict(task.headers)
        # Ranges count bytes of the representation as sent: keep it unencoded.
        headers["Accept-Encoding"] = "identity"
        if offset:
            headers["Range"] = f"bytes={offset}-"
            validator = _validator(task)
            if validator:
                headers["If-Range"] = validator
        response = self._send(task, "GET", headers, stream=True)
        task.response = response
        try:
            self._receive(task, response, fd, offset, deadline)
        finally:
            task.response = None
            response.close()

    def _receive(
        self, task: TaskState, response: requests.Response, fd: int, offset: int, deadline: float | None
    ) -> None:
        status = response.status_code
        if status == 416 and offset:
            match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
            total = int(match.group(1)) if match else None
            # Complete only if the server states the total we already knew, for the same version,
            # and the .part holds exactly that: a lying 416 must not finish a short file.
            if (
                total is not None
                and total == task.bytes_total == offset == os.fstat(fd).st_size
                and _same_version(task, response)
            ):
                self._finish(task, fd, None)
                return
            shown = response.headers.get("Content-Range")
            raise self._restart(
                task, fd, f"server answered 416 with Content-Range {shown!r} to bytes={offset}- "
                f"(known total {task.bytes_total})"
            )
        length_header = response.headers.get("Content-Length", "")
        length = int(length_header) if length_header.isdigit() else None
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            start = int(match.group(1)) if match else -1
            total = int(match.group(3)) if match and match.group(3) != "*" else None
            if start != offset or (total is not None and task.bytes_total is not None and total != task.bytes_total):
                shown = response.headers.get("Content-Range")
                raise self._restart(task, fd, f"server sent Content-Range {shown!r} for bytes={offset}-")
            if offset and not _same_version(task, response):
                # A server that ignores If-Range sends a 206 of another version: never splice the two.
                raise self._restart(
                    task, fd, f"server sent a 206 of another version (ETag {response.headers.get('ETag')!r}, "
                    f"Last-Modified {response.headers.get('Last-Modified')!r})"
                )
            task.spliced = task.spliced or offset > 0
            learned: dict[str, Any] = {}
            if task.etag is None and task.last_modified is None:
                learned["etag"] = task.etag = response.headers.get("ETag")
                learned["last_modified"] = task.last_modified = response.headers.get("Last-Modified")
            if total is not None and task.bytes_total is None:
                learned["bytes_total"] = task.bytes_total = total
            if learned:
                self.write_ahead(task, **learned)
        elif status == 200:
            new: dict[str, Any] = {
                "bytes_total": length,
                "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
            }
            if offset or os.fstat(fd).st_size:
                log.debug(
                    "task %d: server sent the whole file for bytes=%d-; restarting from zero", task.record.id, offset
                )
                self._empty(task, fd, "fresh", **new)
            else:
                # The journal already says 0 bytes: losing this only loses the validators.
                self.write_ahead(task, durable=False, bytes_done=0, **new)
                with task.lock:
                    task.etag, task.last_modified = new["etag"], new["last_modified"]
                    task.bytes_total = length
                    task.hasher = None
                    task.hashed = 0
            offset = 0
        else:
            raise self._status_error(task, response)
        hasher = self._hasher_for(task, fd, offset)
        self._stream(task, response, fd, offset, length, hasher, deadline)
        self._finish(task, fd, hasher)

    def _hasher_for(self, task: TaskState, fd: int, offset: int) -> Any:
        if task.record.sha256 is None:
            return None
        if task.hasher is not None and task.hashed == offset:
            return task.hasher
        hasher = hashlib.sha256()
        position = 0
        try:
            while position < offset:
                data = _pread(fd, min(CHUNK_SIZE, offset - position), position)
                if not data:  # pragma: no cover - the .part shrank under us
                    break
                hasher.update(data)
                position += len(data)
        except OSError as exc:  # pragma: no cover - reading a file we hold open does not fail
            raise TransferError(f"cannot read {task.record.path + '.part'!r} to resume: {exc}") from exc
        task.hasher = hasher
        task.hashed = offset
        return hasher

    def _stream(
        self,
        task: TaskState,
        response: requests.Response,
        fd: int,
        offset: int,
        length: int | None,
        hasher: Any,
        deadline: float | None,
    ) -> None:
        part = task.record.path + ".part"
        # Two page-aligned buffers: one is filled while the other is written (see _Writer).
        buffers = [memoryview(mmap.mmap(-1, BUFFER_SIZE)) for _ in range(2)]
        reader = _BodyReader(response, length)
        committer = _Committer(self, task, fd)
        last_commit = [offset, time.monotonic()]
        received = [0]

        def written(data: memoryview) -> None:
            # On the writer thread, once ``data`` is on file; the download thread waits for it
            # before it submits the next buffer, so these writes never overlap.
            if hasher is not None:
                hasher.update(data)
                task.hashed += len(data)
            task.bytes_done += len(data)
            received[0] += len(data)
            task.notify()
            now = time.monotonic()
            if task.bytes_done - last_commit[0] >= COMMIT_BYTES or now - last_commit[1] >= COMMIT_SECONDS:
                committer.request(task.bytes_done)
                last_commit[:] = [task.bytes_done, now]

        writer = _Writer(task, fd, part, written)
        position = offset  # where the next byte received goes
        failure: BaseException | None = None
        try:
            while True:
                self._check(task, deadline)
                buffer = buffers[0]
                lead = writer.lead(position)
                count = 0
                try:
                    count = reader.fill(buffer[lead:])
                except _NETWORK_ERRORS as exc:
                    failure = exc
                try:
                    writer.wait()
                except OSError as exc:
                    raise _file_error(task, part, exc) from exc
                if failure is not None:
                    raise _AttemptFailed(
                        f"connection lost after {task.bytes_done} bytes: {_describe(failure)}",
                        cause=failure,
                        progressed=received[0] > 0,
                    ) from failure
                if not count:
                    if task.stop.is_set():
                        # Told while the last buffer was written (a progress callback cancelling, say).
                        raise Stopped("stopped")
                    break
                writer.submit(buffer, lead, count, position)
                position += count
                buffers.reverse()
        finally:
            writer.close()
            committer.close()
        total = task.bytes_total
        if total is not None and task.bytes_done != total:
            if task.bytes_done > total:
                raise self._restart(task, fd, f"server sent {task.bytes_done} bytes of {total}")
            raise _AttemptFailed(
                f"connection closed after {task.bytes_done} of {total} bytes", progressed=received[0] > 0
            )

    def _finish(self, task: TaskState, fd: int, hasher: Any) -> None:
        dest = task.record.path
        part = dest + ".part"
        size = os.fstat(fd).st_size
        if task.bytes_total is not None and size != task.bytes_total:
            raise self._restart(task, fd, f"{part!r} holds {size} bytes, not the {task.bytes_total} announced")
        if task.record.sha256 is not None:
            if hasher is None or task.hashed != size:
                hasher = self._hasher_for(task, fd, size)
            digest = hasher.hexdigest()
            if digest != task.record.sha256:
                if task.spliced:
                    # Two versions of the file may have been spliced: one clean try from zero.
                    raise self._restart(task, fd, f"sha256 mismatch after a resumed download ({digest})")
                self._empty(task, fd, "restart")
                raise TransferError(
                    f"sha256 mismatch for {dest!r}: expected {task.record.sha256}, got {digest} "
                    f"from {safe_url(task.url)}; the download was deleted and {dest!r} was not written"
                )
        try:
            os.fsync(fd)
        except OSError as exc:
            raise _file_error(task, part, exc) from exc
        # Not durable: lost to a power cut, the next run fetches the tail again.
        self.write_ahead(task, durable=False, bytes_done=size, bytes_total=size)
        _crash_point("finish:verified")
        self._check_still_ours(fd, part)
        try:
            os.replace(part, dest)
        except OSError as exc:
            raise TransferError(f"cannot rename {part!r} to {dest!r}: {exc}") from exc
        fsync_directory(os.path.dirname(dest) or ".")
        _crash_point("finish:renamed")
        with task.lock:
            task.bytes_done = size
            task.bytes_total = size

    @staticmethod
    def _check_still_ours(fd: int, part: str) -> None:
        """Refuse to rename a .part that is no longer the file we wrote (replaced, or a planted link)."""
        mine = os.fstat(fd)
        try:
            there = os.lstat(part)
        except OSError as exc:
            raise TransferError(f"{part!r} disappeared before the final rename: {exc}") from exc
        if (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino):
            kind = "a symbolic link" if stat.S_ISLNK(there.st_mode) else "another file"
            raise TransferError(
                f"refusing to finish: {part!r} was replaced by {kind} while downloading; "
                "nothing was written through it and the destination was not touched"
            )
