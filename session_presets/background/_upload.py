"""Uploads: whole (``protocol="none"``), or resumed with tus 1.0 or the IETF resumable-upload draft.

The runner (``transfer.Runner``) hands every upload to :meth:`Upload.run`. One
whose protocol is ``"none"`` is sent whole, from the start of the file, at
every attempt. A resumable one (tus, the IETF draft) raises ``AttemptFailed``
on a network failure, and the preset's retry policy (``_retrying``) decides
when the next attempt runs. Every attempt starts from what the *server* says:

1. The source file is opened and its identity (device, inode, size,
   mtime_ns) compared with the one the journal recorded when the upload
   first read it. Any difference fails the task, naming the file and what
   changed, and the upload resource is terminated: a body spliced from two
   versions of a file is never completed.
2. ``protocol="auto"`` sends OPTIONS once: ``Tus-Version`` naming 1.0.0
   chooses tus, an ``Accept-Patch`` naming ``application/partial-upload``
   chooses the IETF draft, anything else falls back to a plain upload (with
   a log line). The choice is journaled.
3. Without an upload resource, one is created (tus: POST with
   ``Upload-Length``; IETF: POST with ``Upload-Complete: ?0``, an empty body
   and ``Upload-Length``) and its URL journaled durably before a byte of the
   file is sent. With one, HEAD asks for its offset: a 404 or 410 means the
   server lost it, and the upload starts again from zero with a new resource
   (logged). An offset beyond the end of what this task ever handed to the
   connection is refused: the task fails rather than trust it.
4. PATCH sends the file from that offset to its end. The offset the server
   confirms in its answer is journaled; a 409 (offset mismatch) reads the
   offset again with HEAD.

About 104 (Upload Resumption Supported): ``http.client`` (up to at least
Python 3.13) skips only ``100 Continue``; any other 1xx status is read as the
*final* response, with no body, and the real final response is left unread
on the connection. The IETF path therefore never depends on the 104: it
creates the resource with an empty ``Upload-Complete: ?0`` request, whose
final 201 carries ``Location``. If a server sends a 104 anyway, its
``Location`` is used, the connection (holding the unread final response) is
shut down rather than reused, and the offset is read with HEAD.

What "sent" means: the body reader counts every byte it hands to the
connection, and journals (not durably) a bound ahead of that count every
:data:`SENT_STEP` bytes *before* handing them over, so a process that was
killed still knows the most the server can have received.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import IO, Final, Protocol
from urllib.parse import urljoin, urlsplit

import requests

from .._calls import shutdown_connection
from .._errors import TransferError
from .._redact import CREDENTIAL_HEADERS, safe_url
from ._attempt import AttemptFailed, Stopped
from ._files import CHUNK_SIZE
from ._retrying import Attempts, run_attempts
from ._taskstate import TaskState

__all__ = [
    "IETF_INTEROP_VERSION",
    "PROTOCOLS",
    "SENT_STEP",
    "TUS_VERSION",
    "Upload",
    "source_identity",
]

log = logging.getLogger(__name__)

#: The protocols an upload may ask for.
PROTOCOLS: Final = frozenset({"auto", "tus", "ietf", "none"})

#: The tus protocol version spoken, sent as ``Tus-Resumable`` on every tus request.
TUS_VERSION: Final = "1.0.0"

#: ``Upload-Draft-Interop-Version`` sent on every IETF request: the interop version of
#: draft-ietf-httpbis-resumable-upload-09.
IETF_INTEROP_VERSION: Final = "8"

#: The media type of an IETF append.
PARTIAL_UPLOAD: Final = "application/partial-upload"

#: The media type of a tus PATCH.
TUS_PATCH_TYPE: Final = "application/offset+octet-stream"

#: How far ahead of the bytes handed to the connection the journal's bound is kept.
SENT_STEP = 4 << 20

#: Statuses of HEAD or PATCH meaning the server no longer has the upload resource.
_LOST: Final = frozenset({404, 410})

#: How many 409 answers one attempt follows with a HEAD before it counts as a failure.
_MISMATCHES_PER_ATTEMPT: Final = 3


def source_identity(info: os.stat_result) -> str:
    """``"st_dev:st_ino:st_size:st_mtime_ns"``: what must not change while a file is uploaded."""
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"


def _what_changed(before: str, after: str) -> str:
    names = ("device", "inode", "size", "mtime_ns")
    changes = [
        f"{name} {old} -> {new}"
        for name, old, new in zip(names, before.split(":"), after.split(":"), strict=True)
        if old != new
    ]
    if changes[:1] and changes[0].startswith(("device", "inode")):
        changes.insert(0, "the file was replaced")
    return ", ".join(changes)


class _SourceChanged(Exception):
    """Raised from inside a request body; not an OSError, so urllib3 passes it through unwrapped."""


def _changed_error(task: TaskState, now: str) -> TransferError:
    assert task.source_identity is not None
    return TransferError(
        f"upload of {task.record.path!r} to {safe_url(task.url)} failed: the source file changed during the "
        f"upload ({_what_changed(task.source_identity, now)}); the partial upload was abandoned so the server "
        "never holds a body spliced from two versions. Start a new upload once the file is final."
    )


def _bool_field(value: str | None) -> bool | None:
    """A Structured Fields boolean (``?1``/``?0``), or None for anything else."""
    return {"?1": True, "?0": False}.get((value or "").strip())


def _int_field(value: str | None) -> int | None:
    text = (value or "").strip()
    return int(text) if text.isdigit() and len(text) <= 15 else None


class _Body:
    """The file from ``offset`` to its end as a request body: counts, checks the file, stops when asked."""

    def __init__(
        self, file: IO[bytes], offset: int, size: int, task: TaskState, on_sent: Callable[[int], None]
    ) -> None:
        self._file = file
        self._size = size - offset
        self._task = task
        self._position = offset
        self._on_sent = on_sent
        file.seek(offset)

    def __len__(self) -> int:
        return self._size

    def read(self, amount: int = -1) -> bytes:
        task = self._task
        if task.stop.is_set():
            raise Stopped("upload stopped")
        now = source_identity(os.fstat(self._file.fileno()))
        if now != task.source_identity:
            raise _SourceChanged(now)
        # A whole piece whatever ``amount`` says: urllib3 asks for 16 KiB blocks and sends each
        # block it is given with one sendall, so 1 MiB pieces make 64 times fewer system calls
        # (and file checks) than the blocks it asks for.
        data = self._file.read(CHUNK_SIZE)
        if data:
            self._on_sent(self._position + len(data))
            self._position += len(data)
            task.bytes_done = self._position
            task.notify()
        return data


class _Protocol(Protocol):
    """What differs between tus and the IETF draft: the header fields of each request."""

    name: str

    def common(self) -> dict[str, str]: ...

    def create_headers(self, size: int) -> dict[str, str]: ...

    def append_headers(self, offset: int) -> dict[str, str]: ...


class _Tus:
    name = "tus"

    def common(self) -> dict[str, str]:
        return {"Tus-Resumable": TUS_VERSION}

    def create_headers(self, size: int) -> dict[str, str]:
        return {"Upload-Length": str(size)}

    def append_headers(self, offset: int) -> dict[str, str]:
        return {"Upload-Offset": str(offset), "Content-Type": TUS_PATCH_TYPE}


class _Ietf:
    name = "ietf"

    def common(self) -> dict[str, str]:
        return {"Upload-Draft-Interop-Version": IETF_INTEROP_VERSION}

    def create_headers(self, size: int) -> dict[str, str]:
        # Incomplete and empty: the final 201 names the resource, no 104 needed (module docstring).
        return {"Upload-Complete": "?1" if size == 0 else "?0", "Upload-Length": str(size)}

    def append_headers(self, offset: int) -> dict[str, str]:
        return {"Upload-Offset": str(offset), "Upload-Complete": "?1", "Content-Type": PARTIAL_UPLOAD}


_BY_NAME: Final[dict[str, _Protocol]] = {"tus": _Tus(), "ietf": _Ietf()}


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


def _same_origin(task: TaskState) -> bool:
    """True when the upload resource is on the origin the caller named (credentials may go there)."""
    return task.upload_url is None or _origin(task.upload_url) == _origin(task.url)


def _headers(task: TaskState, protocol: _Protocol, extra: dict[str, str], *, user: bool) -> dict[str, str]:
    # The caller's headers go on every request (credentials, API keys); those describing the
    # content (Content-Type...) only on the creation request, which names the representation.
    # An upload resource on another origin (a storage host, a pre-signed URL) gets no
    # credentials, as requests does for a redirect to another host.
    same = user or _same_origin(task)
    headers = {
        name: value
        for name, value in task.headers.items()
        if (user or not name.lower().startswith("content-")) and (same or name.lower() not in CREDENTIAL_HEADERS)
    }
    headers.update(protocol.common())
    headers.update(extra)
    return headers


def _check_offset(task: TaskState, offset: int, size: int) -> int:
    if offset > size or offset > task.upload_sent:
        raise TransferError(
            f"upload of {task.record.path!r} to {safe_url(task.url)} refused: the server reports offset {offset}, "
            f"but this task has handed at most {task.upload_sent} of {size} bytes to the connection. A server "
            "that confirms bytes it never received would complete a corrupt file; the upload resource "
            f"{safe_url(task.upload_url or '')} was left as it is."
        )
    return offset


class _PlainBody:
    """The whole file as a request body (``protocol="none"``): counts what requests reads, stops when asked."""

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


def _open_source(task: TaskState) -> IO[bytes]:
    """Open the file ``task`` uploads, or raise TransferError naming it."""
    src = task.record.path
    try:
        # The caller names the file to send: a symbolic link there is theirs to follow.
        return open(src, "rb")
    except OSError as exc:
        raise TransferError(f"cannot read {src!r} for upload: {exc}") from exc


class Upload(Attempts):
    """Runs upload tasks: whole (``protocol="none"``), or resumed with tus or the IETF draft."""

    def run(self, task: TaskState) -> None:
        """Upload ``task`` until it completes: attempts, retried as the preset says.

        Raises:
            Stopped: the task was cancelled or the process is suspending.
            TransferError: the task failed for good.
        """
        run_attempts(self._sender, task, lambda _deadline: self._once(task))

    def _once(self, task: TaskState) -> None:
        if task.protocol != "none":
            self._attempt(task)
            return
        self._plain(task)

    def _plain(self, task: TaskState) -> None:
        """Send the whole file in one request of the task's method (``protocol="none"``)."""
        with _open_source(task) as file:
            size = os.fstat(file.fileno()).st_size
            with task.lock:
                task.bytes_total = size
                task.bytes_done = 0
            response = self._sender.send(
                task, task.record.method, dict(task.headers), data=_PlainBody(file, size, task)
            )
        response.close()
        if not 200 <= response.status_code < 300:
            raise self._sender.status_error(task, response)
        task.bytes_done = size

    def _discover(self, task: TaskState) -> str:
        """Ask the server (OPTIONS) which protocol it speaks: ``"tus"``, ``"ietf"`` or ``"none"``."""
        response = self._sender.send(task, "OPTIONS", dict(task.headers), url=task.url)
        response.close()
        retry_after = "Retry-After" in response.headers
        if self._sender.policy.is_retry("OPTIONS", response.status_code, has_retry_after=retry_after):
            # A busy server (503, 429) has not said it speaks neither protocol: ask again later.
            raise self._sender.status_error(task, response)
        versions = [part.strip() for part in response.headers.get("Tus-Version", "").split(",")]
        accept_patch = [
            part.split(";")[0].strip().lower() for part in response.headers.get("Accept-Patch", "").split(",")
        ]
        if response.ok and TUS_VERSION in versions:
            return "tus"
        if response.ok and PARTIAL_UPLOAD in accept_patch:
            return "ietf"
        log.debug(
            "task %d: %s offers no resumable upload (OPTIONS answered %d, Tus-Version %r, Accept-Patch %r); "
            "uploading without resume",
            task.record.id, safe_url(task.url), response.status_code,
            response.headers.get("Tus-Version"), response.headers.get("Accept-Patch"),
        )
        return "none"

    def _attempt(self, task: TaskState) -> None:
        """Run one attempt of a resumable upload (a plain one when discovery finds no protocol).

        Raises:
            TransferError: the upload failed for good (source changed, offset refused, an error status).
            AttemptFailed: a network error or a retryable status: the runner tries again.
            Stopped: the task was cancelled or the process is suspending.
        """
        with _open_source(task) as file:
            now = source_identity(os.fstat(file.fileno()))
            size = os.fstat(file.fileno()).st_size
            if task.source_identity is None:
                # Journaled with the upload resource (one fsync), before the first byte is sent.
                with task.lock:
                    task.source_identity = now
                    task.bytes_total = size
            elif now != task.source_identity:
                self.terminate(task)
                raise _changed_error(task, now)
            task.bytes_total = size
            if task.protocol == "auto":
                chosen = self._discover(task)
                self._journal.write_ahead(task, durable=False, protocol=chosen)
                task.protocol = chosen
            if task.protocol == "none":
                self._plain(task)
                return
            protocol = _BY_NAME[task.protocol]
            try:
                self._resume(task, protocol, file, size)
            except _SourceChanged as changed:
                self.terminate(task)
                raise _changed_error(task, str(changed)) from None

    def _resume(self, task: TaskState, protocol: _Protocol, file: IO[bytes], size: int) -> None:
        offset = self._create(task, protocol, size) if task.upload_url is None else self._offset(task, protocol, size)
        if offset is None:
            log.debug(
                "task %d: the server lost upload resource %s (404 on HEAD); starting again from zero with a new one",
                task.record.id, safe_url(task.upload_url or ""),
            )
            self._journal.write_ahead(task, upload_url=None, bytes_done=0, upload_sent=0)
            with task.lock:
                task.upload_url = None
                task.upload_sent = 0
                task.bytes_done = 0
                task.restarts += 1
            offset = self._create(task, protocol, size)
            if offset is None:  # pragma: no cover - _create returns an offset or raises
                raise TransferError("the upload resource could not be created")
        mismatches = 0
        while True:
            if offset >= size and task.upload_complete:
                return
            if offset >= size and protocol.name == "tus":
                return
            # Each append is one request within the preset's timeouts; between them, the total_timeout.
            self._sender.check(task, self._sender.deadline(task))
            response = self._append(task, protocol, file, offset, size)
            status = response.status_code
            if status == 409 and mismatches < _MISMATCHES_PER_ATTEMPT:
                mismatches += 1
                log.debug("task %d: offset mismatch (409) at %d; asking the server again", task.record.id, offset)
                fresh = self._offset(task, protocol, size)
                if fresh is None:
                    raise AttemptFailed("the server lost the upload resource during an append", progressed=False)
                offset = fresh
                continue
            if status in _LOST:
                raise AttemptFailed(f"the upload resource answered {status} to PATCH", progressed=False)
            if not 200 <= status < 300:
                raise self._sender.status_error(task, response)
            confirmed = _int_field(response.headers.get("Upload-Offset"))
            if protocol.name == "ietf":
                # A 2xx to an append with Upload-Complete: ?1 is the target resource's final answer.
                self._confirm(task, size, size)
                task.upload_complete = True
                return
            if confirmed is None:
                raise TransferError(
                    f"upload of {task.record.path!r}: the tus server answered {status} to PATCH without Upload-Offset"
                )
            offset = self._confirm(task, confirmed, size)

    def _confirm(self, task: TaskState, offset: int, size: int) -> int:
        """Journal ``offset`` as the server's confirmed offset, after checking it; return it."""
        _check_offset(task, offset, size)
        # Not durable: a journal that says less than the server holds only costs a HEAD, never a byte.
        self._journal.write_ahead(task, durable=False, bytes_done=offset)
        task.bytes_done = offset
        task.notify()
        return offset

    def _create(self, task: TaskState, protocol: _Protocol, size: int) -> int:
        headers = _headers(task, protocol, protocol.create_headers(size), user=True)
        response = self._sender.send(task, "POST", headers, url=task.url, data=b"")
        status = response.status_code
        location = response.headers.get("Location")
        if 100 <= status < 200:
            # http.client read an interim 104 as the final response: the real one is still on the
            # connection, which must not be reused.
            shutdown_connection(getattr(response.raw, "connection", None) or getattr(response.raw, "_connection", None))
        response.close()
        if not (100 <= status < 300) or not location:
            if not 100 <= status < 300:
                raise self._sender.status_error(task, response)
            raise TransferError(
                f"upload of {task.record.path!r}: the server answered {status} to the {protocol.name} creation "
                f"POST to {safe_url(task.url)} without a Location"
            )
        upload_url = urljoin(response.url or task.url, location)
        if _origin(task.url)[0] == "https" and _origin(upload_url)[0] != "https":
            raise TransferError(
                f"upload of {task.record.path!r} refused: the server at {safe_url(task.url)} named the upload "
                f"resource {safe_url(upload_url)}, which is not https; the file is not sent in the clear"
            )
        self._journal.write_ahead(
            task, upload_url=upload_url, bytes_done=0, upload_sent=0, source_identity=task.source_identity,
            bytes_total=size,
        )
        with task.lock:
            task.upload_url = upload_url
            task.upload_sent = 0
        log.debug("task %d: %s upload resource %s created", task.record.id, protocol.name, safe_url(upload_url))
        if protocol.name == "ietf" and size == 0 and 200 <= status < 300:
            task.upload_complete = True
        if 100 <= status < 200:
            fresh = self._offset(task, protocol, size)
            return 0 if fresh is None else fresh
        return 0

    def _offset(self, task: TaskState, protocol: _Protocol, size: int) -> int | None:
        """The server's offset of the upload resource (HEAD), or None if it lost the resource."""
        assert task.upload_url is not None
        response = self._sender.send(
            task, "HEAD", _headers(task, protocol, {}, user=False), url=task.upload_url, credentials=_same_origin(task)
        )
        response.close()
        status = response.status_code
        if status in _LOST:
            return None
        if not 200 <= status < 300:
            raise self._sender.status_error(task, response)
        offset = _int_field(response.headers.get("Upload-Offset"))
        if offset is None:
            raise TransferError(
                f"upload of {task.record.path!r}: HEAD {safe_url(task.upload_url)} answered {status} without a "
                "valid Upload-Offset"
            )
        length = _int_field(response.headers.get("Upload-Length"))
        if length is not None and length != size:
            raise TransferError(
                f"upload of {task.record.path!r}: the upload resource {safe_url(task.upload_url)} has length {length}, "
                f"the file {size} bytes"
            )
        if offset < task.committed:
            raise TransferError(
                f"upload of {task.record.path!r}: the server's offset went back from {task.committed} (confirmed "
                f"earlier) to {offset}; the upload resource {safe_url(task.upload_url)} cannot be trusted"
            )
        self._confirm(task, offset, size)
        if protocol.name == "ietf" and _bool_field(response.headers.get("Upload-Complete")) and offset == size:
            task.upload_complete = True
        return offset

    def _append(
        self, task: TaskState, protocol: _Protocol, file: IO[bytes], offset: int, size: int
    ) -> requests.Response:
        assert task.upload_url is not None
        journaled = [task.upload_sent]

        def on_sent(end: int) -> None:
            # Write-ahead: the journal's bound covers a byte before the connection gets it.
            if end > journaled[0]:
                bound = min(size, end + SENT_STEP)
                self._journal.write_ahead(task, durable=False, upload_sent=bound)
                journaled[0] = bound
            task.upload_sent = max(task.upload_sent, end)

        headers = _headers(task, protocol, protocol.append_headers(offset), user=False)
        body = _Body(file, offset, size, task, on_sent)
        start = task.upload_sent
        try:
            response = self._sender.send(
                task, "PATCH", headers, url=task.upload_url, credentials=_same_origin(task), data=body
            )
        except AttemptFailed as failure:
            failure.progressed = task.upload_sent > start
            raise
        response.close()
        if task.upload_sent < size and offset < size:
            # A server that answered before reading the body: the connection holds unsent bytes.
            shutdown_connection(getattr(response.raw, "connection", None))
        return response

    def terminate(self, task: TaskState) -> None:
        """Send the protocol's termination (DELETE) for the task's upload resource, if it has one; never raises."""
        if task.upload_url is None or task.protocol not in _BY_NAME:
            return
        protocol = _BY_NAME[task.protocol]
        try:
            headers = _headers(task, protocol, {}, user=False)
            # Not sender.send(): a termination is best effort, whatever it raises.
            response = self._sender.http.request(
                "DELETE",
                task.upload_url,
                headers=headers,
                auth=self._sender.auth_for(headers, credentials=_same_origin(task)),
            )
            response.close()
            log.debug("task %d: DELETE %s answered %d", task.record.id, safe_url(task.upload_url), response.status_code)
        except Exception as exc:  # best effort: the task ends either way
            log.debug("task %d: terminating %s failed: %r", task.record.id, safe_url(task.upload_url), exc)
