"""A download: resume with Range/If-Range, validation of what the server sent, verification, the final rename.

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
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import re
import time
from typing import Any

import requests

from .._errors import DiskFullError, TransferError
from .._redact import safe_url
from ._attempt import AttemptFailed, Stopped
from ._bodyio import BUFFER_SIZE, NETWORK_ERRORS, BodyReader, Committer, Writer
from ._crashpoints import crash_point
from ._files import (
    CHUNK_SIZE,
    OPEN_FLAGS,
    check_own_file,
    check_still_ours,
    file_error,
    fsync_directory,
    pread,
    remove_file,
)
from ._retrying import Attempts, run_attempts
from ._sender import describe
from ._taskstate import TaskState

__all__ = ["COMMIT_BYTES", "COMMIT_SECONDS", "Download"]

log = logging.getLogger(__name__)

#: Bytes written between two commits of the offset (fsync of the .part, then the journal).
COMMIT_BYTES = 16 << 20

#: Seconds between two commits of the offset, whatever the rate.
COMMIT_SECONDS = 2.0

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


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



class Download(Attempts):
    """Runs download tasks: one ``.part`` per task, resumed where the journal says."""

    def run(self, task: TaskState) -> None:
        """Download ``task`` until it completes: attempts, retried as the preset says.

        Raises:
            Stopped: the task was cancelled or the process is suspending.
            TransferError: the task failed for good (DiskFullError when out of space).
        """
        fd = self._open_part(task)
        try:
            run_attempts(self._sender, task, lambda deadline: self._once(task, fd, deadline))
        except (Stopped, DiskFullError):
            # What was written is made durable, so the next run resumes after it.
            if not task.cancel_requested:
                self._journal.commit(task, fd, task.bytes_done)
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

    def _open_part(self, task: TaskState) -> int:
        """Open the .part of ``task``, cut to the committed offset, or create it; return its descriptor.

        A .part shorter than the committed offset cannot be trusted: the
        journal first says "0 bytes", then the file is emptied (write-ahead).
        """
        part = task.record.path + ".part"
        committed = task.committed
        try:
            fd = os.open(part, OPEN_FLAGS)
        except FileNotFoundError:
            fd = None
        except OSError as exc:
            raise file_error(task, part, exc) from exc
        if fd is None:
            if committed or task.etag is not None or task.last_modified is not None:
                self._journal.write_ahead(task, bytes_done=0, bytes_total=None, etag=None, last_modified=None)
                with task.lock:
                    task.etag = task.last_modified = None
                    task.bytes_total = None
            try:
                fd = os.open(part, OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as exc:
                raise file_error(task, part, exc) from exc
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
        self._journal.write_ahead(task, **fields)
        with task.lock:
            task.etag, task.last_modified = fields["etag"], fields["last_modified"]
            task.bytes_total = fields["bytes_total"]
        crash_point(f"{step}:journaled")
        try:
            os.ftruncate(fd, 0)
        except OSError as exc:  # pragma: no cover - shrinking a file we own does not fail
            raise file_error(task, task.record.path + ".part", exc) from exc
        crash_point(f"{step}:truncated")
        with task.lock:
            task.bytes_done = 0
            task.hasher = None
            task.hashed = 0
            task.spliced = False

    def _restart(self, task: TaskState, fd: int, reason: str) -> AttemptFailed:
        self._empty(task, fd, "restart")
        log.debug("task %d: %s; restarting from zero", task.record.id, reason)
        return AttemptFailed(f"{reason}; restarting from zero", progressed=False)

    def _once(self, task: TaskState, fd: int, deadline: float | None) -> None:
        offset = task.bytes_done
        headers = dict(task.headers)
        # Ranges count bytes of the representation as sent: keep it unencoded.
        headers["Accept-Encoding"] = "identity"
        if offset:
            headers["Range"] = f"bytes={offset}-"
            validator = _validator(task)
            if validator:
                headers["If-Range"] = validator
        response = self._sender.send(task, "GET", headers, stream=True)
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
                self._journal.write_ahead(task, **learned)
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
                self._journal.write_ahead(task, durable=False, bytes_done=0, **new)
                with task.lock:
                    task.etag, task.last_modified = new["etag"], new["last_modified"]
                    task.bytes_total = length
                    task.hasher = None
                    task.hashed = 0
            offset = 0
        else:
            raise self._sender.status_error(task, response)
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
                data = pread(fd, min(CHUNK_SIZE, offset - position), position)
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
        # Two page-aligned buffers: one is filled while the other is written (see Writer).
        buffers = [memoryview(mmap.mmap(-1, BUFFER_SIZE)) for _ in range(2)]
        reader = BodyReader(response, length)
        committer = Committer(task, lambda offset: self._journal.commit(task, fd, offset))
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

        writer = Writer(task, fd, part, written)
        position = offset  # where the next byte received goes
        failure: BaseException | None = None
        try:
            while True:
                self._sender.check(task, deadline)
                buffer = buffers[0]
                lead = writer.lead(position)
                count = 0
                try:
                    count = reader.fill(buffer[lead:])
                except NETWORK_ERRORS as exc:
                    failure = exc
                try:
                    writer.wait()
                except OSError as exc:
                    raise file_error(task, part, exc) from exc
                if failure is not None:
                    raise AttemptFailed(
                        f"connection lost after {task.bytes_done} bytes: {describe(failure)}",
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
            raise AttemptFailed(
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
            raise file_error(task, part, exc) from exc
        # Not durable: lost to a power cut, the next run fetches the tail again.
        self._journal.write_ahead(task, durable=False, bytes_done=size, bytes_total=size)
        crash_point("finish:verified")
        check_still_ours(fd, part)
        try:
            os.replace(part, dest)
        except OSError as exc:
            raise TransferError(f"cannot rename {part!r} to {dest!r}: {exc}") from exc
        fsync_directory(os.path.dirname(dest) or ".")
        crash_point("finish:renamed")
        with task.lock:
            task.bytes_done = size
            task.bytes_total = size
