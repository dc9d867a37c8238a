"""The transfer loop of one task: attempts, resume with Range/If-Range, back-off, verification.

A download streams into ``dest + ".part"`` in chunks of at most
:data:`CHUNK_SIZE` bytes, so memory stays flat whatever the size. After a
connection error or a read timeout it asks for ``Range: bytes=N-`` with
``If-Range`` (the strong ETag, else Last-Modified):

- 206 whose Content-Range starts at N: the body is appended.
- 200: the server sent the whole (possibly changed) file, so it restarts at 0.
- 206 starting elsewhere, or 416 when the ``.part`` is short: the ``.part`` is
  emptied and the download starts again from zero, never spliced.
- 416 when the ``.part`` already holds the full length: verified and finished.

Only a complete file (length, and sha256 if given) is renamed to ``dest``.
Uploads are retried from the start. Retries back off exponentially with jitter
until ``total_timeout`` (or ``retries`` consecutive failures without progress).
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import hashlib
import http.client
import logging
import os
import random
import re
import threading
import time
from typing import IO, Any, Final

import requests
import urllib3.exceptions

from .._calls import CANCELLED, shutdown_connection
from .._redact import safe_url
from ..config import PresetConfig
from ..errors import SessionInvalidatedError, TransferError
from ..sessions import PresetSession
from .journal import Journal
from .task import DOWNLOAD, TransferTask

__all__ = ["CHUNK_SIZE", "DiskFullError", "Runner", "Stopped"]

log = logging.getLogger(__name__)

#: Largest piece of a body read or written at once.
CHUNK_SIZE: Final = 1 << 20

#: How often, in seconds, a running task's progress is written to the journal.
JOURNAL_INTERVAL: Final = 1.0

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


class DiskFullError(TransferError):
    """Writing a download failed for lack of space (ENOSPC, EFBIG, EDQUOT).

    The ``.part`` file and the journal are kept, so the next run resumes.
    """


class Stopped(Exception):
    """The task was cancelled, or the process is suspending its transfers."""


class _Retry(Exception):
    """One attempt failed in a way worth another try."""

    def __init__(
        self, reason: str, *, cause: BaseException | None = None, retry_after: float | None = None, progressed: bool
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause
        self.retry_after = retry_after
        self.progressed = progressed


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _validator(task: TransferTask) -> str | None:
    # If-Range needs a strong validator: a weak ETag would make the server send 200.
    if task.etag and not task.etag.startswith("W/"):
        return task.etag
    return task.last_modified


def _is_certificate_error(exc: BaseException) -> bool:
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text or "hostname" in text


def _file_error(task: TransferTask, path: str, exc: OSError) -> TransferError:
    if exc.errno in _DISK_FULL:
        return DiskFullError(
            f"disk full while writing {path!r} ({exc.strerror or exc}); the {task.bytes_done} bytes written "
            "so far are kept and the download resumes from there on the next run"
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


class _UploadBody:
    """A file-like body that counts what requests reads, and stops when asked."""

    def __init__(self, file: IO[bytes], size: int, task: TransferTask) -> None:
        self._file = file
        self._size = size
        self._task = task

    def __len__(self) -> int:
        return self._size

    def read(self, amount: int = -1) -> bytes:
        if self._task._stop.is_set():
            raise Stopped("upload stopped")
        amount = CHUNK_SIZE if amount is None or amount < 0 else min(amount, CHUNK_SIZE)
        data = self._file.read(amount)
        self._task._bytes_done += len(data)
        self._task._notify()
        return data


#: The longest a batch of reads waits before it is written, so progress stays fresh.
BATCH_SECONDS: Final = 0.1


def _read_batch(response: requests.Response) -> bytes:
    """Read up to CHUNK_SIZE bytes: whatever arrives within BATCH_SECONDS, at least one read.

    read1() returns one TLS record (16 KiB) at a time; writing, hashing and
    journaling each one separately cost a third of the throughput. A network
    error after some bytes arrived is raised on the next call, so those bytes
    are still written and a resume starts after them.
    """
    pending = getattr(response, "_preset_pending_error", None)
    if pending is not None:
        response._preset_pending_error = None  # type: ignore[attr-defined]
        raise pending
    read1 = response.raw.read1
    first: bytes = read1(CHUNK_SIZE, decode_content=False)
    if not first or len(first) >= CHUNK_SIZE:
        return first
    pieces = [first]
    size = len(first)
    until = time.monotonic() + BATCH_SECONDS
    reads = 0
    while size < CHUNK_SIZE:
        try:
            more = read1(CHUNK_SIZE - size, decode_content=False)
        except _NETWORK_ERRORS as exc:
            response._preset_pending_error = exc  # type: ignore[attr-defined]
            break
        if not more:
            break
        pieces.append(more)
        size += len(more)
        reads += 1
        if not reads % 8 and time.monotonic() >= until:
            break
    return b"".join(pieces)


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

    # -- journal -------------------------------------------------------------

    def save(self, task: TransferTask, **fields: Any) -> None:
        """Write ``fields`` of ``task`` to the journal; a failed write is logged, not raised.

        A journal that cannot be written (disk full) must not turn a good
        transfer into a failure: the ``.part`` file is the source of truth for
        the offset, and the next run reads the journal as it was last committed.
        """
        try:
            self.journal.update(task.id, **fields)
        except TransferError as exc:
            log.debug("journal update of task %d failed: %s", task.id, exc)

    def _save_progress(self, task: TransferTask) -> None:
        now = time.monotonic()
        if now - task._last_saved >= JOURNAL_INTERVAL:
            task._last_saved = now
            self.save(task, bytes_done=task.bytes_done)

    # -- control -------------------------------------------------------------

    def interrupt(self, task: TransferTask) -> None:
        """Wake the worker of ``task`` if it is blocked on the network."""
        response = task._response
        if response is not None:
            shutdown_connection(getattr(response.raw, "connection", None))
        # A request still waiting for its headers is aborted through its call.
        if task._worker is not None:
            self.http._abort_thread_calls(task._worker, CANCELLED)

    def _deadline(self, task: TransferTask) -> float | None:
        total = self.config.total_timeout
        return None if total is None else task.created_at + total

    def _check(self, task: TransferTask, deadline: float | None) -> None:
        if task._stop.is_set():
            raise Stopped("stopped")
        if deadline is not None and time.time() >= deadline:
            raise TransferError(
                f"{task.kind} of {safe_url(task.url)} gave up: total_timeout={self.config.total_timeout:g}s "
                f"reached after {task.attempts} attempt(s) and {task.bytes_done} bytes"
            )

    def backoff(self, failures: int, retry_after: float | None) -> float:
        """Seconds to wait before the next attempt: exponential, with jitter, Retry-After honoured."""
        base = min(self.config.backoff_max, self.config.backoff_factor * (2 ** min(failures - 1, 40)))
        delay: float = base / 2 + random.uniform(0, base / 2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def run(self, task: TransferTask) -> None:
        """Transfer ``task`` until it completes.

        Raises:
            Stopped: the task was cancelled or the process is suspending.
            TransferError: the task failed for good (DiskFullError when out of space).
        """
        task._worker = threading.get_ident()
        deadline = self._deadline(task)
        failures = 0
        while True:
            self._check(task, deadline)
            task.attempts += 1
            try:
                if task.kind == DOWNLOAD:
                    self._download_once(task, deadline)
                else:
                    self._upload_once(task)
                return
            except _Retry as retry:
                if task._stop.is_set():
                    raise Stopped("stopped") from None
                failures = 1 if retry.progressed else failures + 1
                what = f"{task.kind} of {safe_url(task.url)}"
                if self.config.retries is not None and failures > self.config.retries:
                    raise TransferError(
                        f"{what} failed after {task.attempts} attempt(s) "
                        f"(retries={self.config.retries}): {retry.reason}"
                    ) from retry.cause
                delay = self.backoff(failures, retry.retry_after)
                if deadline is not None and time.time() + delay >= deadline:
                    raise TransferError(
                        f"{what} gave up: total_timeout={self.config.total_timeout:g}s would pass before "
                        f"the next attempt; last error: {retry.reason}"
                    ) from retry.cause
                log.debug("task %d attempt %d: %s; retrying in %.2fs", task.id, task.attempts, retry.reason, delay)
                self.save(task, bytes_done=task.bytes_done)
                if task._stop.wait(delay):
                    raise Stopped("stopped") from None
            except (Stopped, TransferError):
                raise
            except Exception as exc:
                if task._stop.is_set():
                    raise Stopped("stopped") from exc
                raise

    # -- HTTP ----------------------------------------------------------------

    def _send(self, task: TransferTask, method: str, headers: dict[str, str], **kwargs: Any) -> requests.Response:
        has_auth = any(name.lower() == "authorization" for name in headers)
        try:
            return self.http.request(
                method, task.url, headers=headers, auth=None if has_auth else self.auth, **kwargs
            )
        except Stopped:
            raise
        except requests.exceptions.SSLError as exc:
            if _is_certificate_error(exc):
                raise TransferError(f"{task.kind} of {safe_url(task.url)} failed: {exc}") from exc
            raise _Retry(f"TLS error: {exc}", cause=exc, progressed=False) from exc
        except SessionInvalidatedError as exc:
            raise Stopped("the session was invalidated") from exc
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}", cause=exc, progressed=False) from exc
        except requests.RequestException as exc:
            raise TransferError(f"{task.kind} of {safe_url(task.url)} failed: {exc}") from exc

    def _status_error(self, task: TransferTask, response: requests.Response) -> Exception:
        status = response.status_code
        if status in self.config.retry_statuses:
            return _Retry(
                f"HTTP {status}",
                retry_after=_retry_after(response.headers.get("Retry-After")),
                progressed=False,
            )
        return TransferError(f"{task.kind} of {safe_url(task.url)} failed: HTTP {status} {response.reason}")

    # -- upload --------------------------------------------------------------

    def _upload_once(self, task: TransferTask) -> None:
        src = task.path
        try:
            file = open(src, "rb")  # noqa: SIM115 - closed below, after the request
        except OSError as exc:
            raise TransferError(f"cannot read {src!r} for upload: {exc}") from exc
        with file:
            size = os.fstat(file.fileno()).st_size
            task._bytes_total = size
            task._bytes_done = 0
            response = self._send(task, task.method, dict(task._headers), data=_UploadBody(file, size, task))
        response.close()
        if not 200 <= response.status_code < 300:
            raise self._status_error(task, response)
        task._bytes_done = size

    # -- download ------------------------------------------------------------

    def _download_once(self, task: TransferTask, deadline: float | None) -> None:
        part = task.path + ".part"
        offset = _file_size(part)
        headers = dict(task._headers)
        # Ranges count bytes of the representation as sent: keep it unencoded.
        headers["Accept-Encoding"] = "identity"
        if offset:
            headers["Range"] = f"bytes={offset}-"
            validator = _validator(task)
            if validator:
                headers["If-Range"] = validator
        response = self._send(task, "GET", headers, stream=True)
        task._response = response
        try:
            self._receive(task, response, part, offset, deadline)
        finally:
            task._response = None
            response.close()

    def _restart(self, task: TransferTask, part: str, reason: str) -> _Retry:
        try:
            with open(part, "wb"):
                pass
        except OSError as exc:
            raise _file_error(task, part, exc) from exc
        task._bytes_done = 0
        task._bytes_total = None
        task._hasher = None
        task._hashed = 0
        task._spliced = False
        task.etag = task.last_modified = None
        self.save(task, bytes_done=0, bytes_total=None, etag=None, last_modified=None)
        log.debug("task %d: %s; restarting from zero", task.id, reason)
        return _Retry(f"{reason}; restarting from zero", progressed=False)

    def _receive(
        self, task: TransferTask, response: requests.Response, part: str, offset: int, deadline: float | None
    ) -> None:
        status = response.status_code
        if status == 416 and offset:
            match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
            total = int(match.group(1)) if match else task.bytes_total
            if total == offset:
                # A previous run wrote every byte but stopped before the rename.
                try:
                    with open(part, "rb") as file:
                        os.fsync(file.fileno())
                except OSError as exc:
                    raise _file_error(task, part, exc) from exc
                self._finish(task, part, None)
                return
            raise self._restart(task, part, f"server answered 416 to bytes={offset}- (length {total})")
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            start = int(match.group(1)) if match else -1
            total = int(match.group(3)) if match and match.group(3) != "*" else None
            if start != offset or (total is not None and task.bytes_total is not None and total != task.bytes_total):
                shown = response.headers.get("Content-Range")
                raise self._restart(task, part, f"server sent Content-Range {shown!r} for bytes={offset}-")
            mode = "ab"
            task._spliced = task._spliced or offset > 0
            if task.etag is None and task.last_modified is None:
                task.etag = response.headers.get("ETag")
                task.last_modified = response.headers.get("Last-Modified")
        elif status == 200:
            if offset:
                log.debug("task %d: server sent the whole file for bytes=%d-; restarting from zero", task.id, offset)
            offset = 0
            mode = "wb"
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            task._hasher = None
            task._hashed = 0
            task._spliced = False
            task.etag = response.headers.get("ETag")
            task.last_modified = response.headers.get("Last-Modified")
        else:
            raise self._status_error(task, response)
        task._bytes_total = total
        task._bytes_done = offset
        self.save(task, bytes_done=offset, bytes_total=total, etag=task.etag, last_modified=task.last_modified)
        hasher = self._hasher_for(task, part, offset)
        self._stream(task, response, part, mode, hasher, deadline)
        self._finish(task, part, hasher)

    def _hasher_for(self, task: TransferTask, part: str, offset: int) -> Any:
        if task.sha256 is None:
            return None
        if task._hasher is not None and task._hashed == offset:
            return task._hasher
        hasher = hashlib.sha256()
        if offset:
            try:
                with open(part, "rb") as file:
                    left = offset
                    while left > 0:
                        data = file.read(min(CHUNK_SIZE, left))
                        if not data:  # pragma: no cover - the .part shrank under us
                            break
                        hasher.update(data)
                        left -= len(data)
            except OSError as exc:
                raise TransferError(f"cannot read {part!r} to resume: {exc}") from exc
        task._hasher = hasher
        task._hashed = offset
        return hasher

    def _stream(
        self, task: TransferTask, response: requests.Response, part: str, mode: str, hasher: Any, deadline: float | None
    ) -> None:
        received = 0
        try:
            file = open(part, mode, buffering=0)  # noqa: SIM115 - closed in the finally below
        except OSError as exc:
            raise _file_error(task, part, exc) from exc
        try:
            while True:
                self._check(task, deadline)
                try:
                    chunk = _read_batch(response)
                except Stopped:  # pragma: no cover - raised only by upload bodies
                    raise
                except _NETWORK_ERRORS as exc:
                    raise _Retry(
                        f"connection lost after {task.bytes_done} bytes: {type(exc).__name__}: {exc}",
                        cause=exc,
                        progressed=received > 0,
                    ) from exc
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    try:
                        written = file.write(view) or 0
                    except OSError as exc:
                        raise _file_error(task, part, exc) from exc
                    if hasher is not None:
                        hasher.update(view[:written])
                        task._hashed += written
                    task._bytes_done += written
                    received += written
                    view = view[written:]
                task._notify()
                self._save_progress(task)
            total = task.bytes_total
            if total is not None and task.bytes_done != total:
                if task.bytes_done > total:
                    raise self._restart(task, part, f"server sent {task.bytes_done} bytes of {total}")
                raise _Retry(
                    f"connection closed after {task.bytes_done} of {total} bytes", progressed=received > 0
                )
            try:
                os.fsync(file.fileno())
            except OSError as exc:
                raise _file_error(task, part, exc) from exc
        finally:
            file.close()

    def _finish(self, task: TransferTask, part: str, hasher: Any) -> None:
        dest = task.path
        size = _file_size(part)
        if task.sha256 is not None:
            if hasher is None or task._hashed != size:
                hasher = self._hasher_for(task, part, size)
            digest = hasher.hexdigest()
            if digest != task.sha256:
                if task._spliced:
                    # Two versions of the file may have been spliced: one clean try from zero.
                    raise self._restart(task, part, f"sha256 mismatch after a resumed download ({digest})")
                with contextlib.suppress(OSError):
                    os.unlink(part)
                self.save(task, bytes_done=0)
                task._bytes_done = 0
                raise TransferError(
                    f"sha256 mismatch for {dest!r}: expected {task.sha256}, got {digest} "
                    f"from {safe_url(task.url)}; the download was deleted and {dest!r} was not written"
                )
        try:
            os.replace(part, dest)
        except OSError as exc:
            raise TransferError(f"cannot rename {part!r} to {dest!r}: {exc}") from exc
        fsync_directory(os.path.dirname(dest) or ".")
        task._bytes_done = size
        task._bytes_total = size
