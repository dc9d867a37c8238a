"""A download body's way from the connection to the ``.part``: a reader, a writer thread, a commit thread.

The download thread fills one of two buffers with :class:`BodyReader` while
:class:`Writer` writes the other to the ``.part`` on a thread of its own
(``O_DIRECT`` where it can), and :class:`Committer` makes written bytes
durable (fsync, then the journal's offset) on a third, so neither the disk
nor an fsync holds up the network.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import requests
import urllib3.exceptions

from .. import _process, _upstream
from ._files import O_DIRECT, O_NOFOLLOW, pwrite
from ._taskstate import TaskState

__all__ = [
    "BATCH_SECONDS",
    "BUFFER_SIZE",
    "DIRECT_ALIGN",
    "NETWORK_ERRORS",
    "READ_SIZE",
    "BodyReader",
    "Committer",
    "Writer",
]

log = logging.getLogger(__name__)

#: Size of each of a download's two buffers (one fills while the other is written). The bench
#: measured 4 MiB direct writes at 0.9-1.1x of a plain requests stream, 1 MiB ones at 0.75-1.0x.
BUFFER_SIZE: Final = 4 << 20

#: Bytes asked of the connection per read on the fast path (a few TLS records).
READ_SIZE: Final = 64 << 10

#: The largest TLS record: a read1 that returns one whole means the link is fast again.
_TLS_RECORD: Final = 16 << 10

#: The longest a batch of reads waits before it is written, so progress stays fresh.
BATCH_SECONDS: Final = 0.1

#: Alignment of direct writes: file offset, length and buffer address (the page size, a
#: multiple of every common logical block size).
DIRECT_ALIGN: Final = 4096

#: Network errors after which an attempt is retried (resumed, for a download).
NETWORK_ERRORS: Final = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


class BodyReader:
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
            except NETWORK_ERRORS as exc:
                self._pending = exc
                break
            if not count:
                break
            filled += count
            reads += 1
            if not reads % 8 and time.monotonic() >= until:
                break
        return filled


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


class Writer(_SlotWorker):
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
    thread calls ``written`` with its bytes (the download counts them there, so
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
            # Replaced since we opened it: never write there; the download refuses the rename.
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
                return pwrite(direct, buffer[index : index + size], offset)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
            log.debug("direct write refused by %r; writing through the page cache", self._part)
            self._close_direct()
            direct = None
        size = end - index
        if direct is not None:
            size = min(size, DIRECT_ALIGN - index % DIRECT_ALIGN)
        written = pwrite(self._fd, buffer[index : index + size], offset)
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


class Committer(_SlotWorker):
    """Makes written bytes durable off the download thread: fsync the .part, then commit the offset.

    The fsync runs on a thread of its own so the download keeps reading: the
    bench measured the inline fsyncs at a fifth of the download time. Only
    offsets written *before* an fsync started are committed after it.
    """

    def __init__(self, task: TaskState, commit: Callable[[int], None]) -> None:
        super().__init__(f"session-presets-commit-{task.record.id}")
        self._commit = commit

    def request(self, offset: int) -> None:
        """Commit ``offset`` soon; a newer request replaces one not yet started."""
        self._put(offset)

    def _run(self, job: int) -> None:
        self._commit(job)
