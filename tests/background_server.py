"""A file route for the background tests: Range, ETag, Last-Modified, If-Range, faults, a log.

``FileRoute`` serves one byte string on a ``LoopbackServer`` route. Fault
injection is set on the object between or during requests:

- ``drops``: absolute offsets; each response that crosses the next one sends
  the bytes before it, then closes the connection (FIN), and that offset is used up.
- ``ignore_range``: answer every request with 200 and the whole file.
- ``shift_start``: the next that many 206 responses start 10 bytes early.
- ``statuses``: statuses answered (with ``Retry-After: 0``) before serving.
- ``delay``: seconds slept after every ``chunk`` bytes (a throttled server).
- ``honor_if_range``: False makes a server that answers a Range with 206 whatever If-Range says.
- ``lying_416``: the next that many Range requests get 416 ``bytes */<start>``.
- ``before_headers``: called once a request arrived, before the status is sent.
- ``on_response``: called after each response, e.g. to change the file.

``log`` holds one ``Hit`` per request: its Range and If-Range, the status sent
and the bytes of body sent.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .servers import Handler

__all__ = ["FileRoute", "Hit", "UploadRoute"]

_RANGE = re.compile(r"^bytes=(\d+)-$")


@dataclass
class Hit:
    """One request as the file route saw it."""

    range: str | None
    if_range: str | None
    status: int
    sent: int
    authorization: str | None


class FileRoute:
    """Serves ``data`` with Range/If-Range support and injectable faults."""

    def __init__(
        self,
        data: bytes,
        *,
        etag: str | None = '"v1"',
        last_modified: str | None = "Wed, 21 Oct 2015 07:28:00 GMT",
        chunk: int = 64 * 1024,
    ) -> None:
        self.data = data
        self.etag = etag
        self.last_modified = last_modified
        self.chunk = chunk
        self.drops: list[int] = []
        self.ignore_range = False
        self.shift_start = 0
        self.statuses: list[int] = []
        self.delay = 0.0
        self.require_auth: str | None = None
        self.honor_if_range = True
        self.lying_416 = 0
        self.before_headers: Callable[[], None] | None = None
        self.on_response: Callable[[FileRoute], None] | None = None
        self.log: list[Hit] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def set_file(self, data: bytes, *, etag: str | None, last_modified: str | None = None) -> None:
        """Replace the file (a new version)."""
        self.data = data
        self.etag = etag
        self.last_modified = last_modified

    @property
    def ranges(self) -> list[str | None]:
        """The Range header of every request, in order."""
        return [hit.range for hit in self.log]

    def _note(self, h: Handler, status: int, sent: int) -> None:
        with self._lock:
            self.log.append(
                Hit(h.headers.get("Range"), h.headers.get("If-Range"), status, sent, h.headers.get("Authorization"))
            )

    def _validators(self) -> dict[str, str]:
        headers = {}
        if self.etag is not None:
            headers["ETag"] = self.etag
        if self.last_modified is not None:
            headers["Last-Modified"] = self.last_modified
        return headers

    def __call__(self, h: Handler) -> None:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self._serve(h)
        finally:
            with self._lock:
                self.active -= 1
            if self.on_response is not None:
                self.on_response(self)

    def _serve(self, h: Handler) -> None:
        if self.before_headers is not None:
            self.before_headers()
        if self.require_auth is not None and h.headers.get("Authorization") != self.require_auth:
            self._note(h, 401, 0)
            h.reply(401, b"who are you")
            return
        if self.statuses:
            status = self.statuses.pop(0)
            self._note(h, status, 0)
            h.reply(status, b"try later", {"Retry-After": "0"})
            return
        data = self.data
        size = len(data)
        start = 0
        status = 200
        match = _RANGE.match(h.headers.get("Range", ""))
        if_range = h.headers.get("If-Range")
        fresh = if_range is None or if_range in (self.etag, self.last_modified) or not self.honor_if_range
        if match and not self.ignore_range and fresh:
            start = int(match.group(1))
            if self.lying_416:
                self.lying_416 -= 1
                self._note(h, 416, 0)
                h.reply(416, b"", {"Content-Range": f"bytes */{start}", **self._validators()})
                return
            if start >= size:
                self._note(h, 416, 0)
                h.reply(416, b"", {"Content-Range": f"bytes */{size}", **self._validators()})
                return
            status = 206
            if self.shift_start:
                self.shift_start -= 1
                start = max(0, start - 10)
        h.send_response(status)
        for key, value in self._validators().items():
            h.send_header(key, value)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(size - start))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        h.end_headers()
        drop = next((d for d in self.drops if start <= d < size), None)
        if drop is not None:
            self.drops.remove(drop)
        end = size if drop is None else drop
        sent = 0
        try:
            position = start
            while position < end:
                piece = data[position : min(end, position + self.chunk)]
                h.wfile.write(piece)
                h.wfile.flush()
                position += len(piece)
                sent += len(piece)
                if self.delay:
                    time.sleep(self.delay)
        except OSError:
            h.close_connection = True
        self._note(h, status, sent)
        if drop is not None:
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_WR)


class UploadRoute:
    """Accepts uploads; answers with a reset (no response) for the first ``failures`` requests."""

    def __init__(self, failures: int = 0, status: int = 201) -> None:
        self.failures = failures
        self.status = status
        self.bodies: list[bytes] = []
        self.methods: list[str] = []

    def __call__(self, h: Handler) -> None:
        from .servers import reset_connection

        self.bodies.append(h.seen.body)
        self.methods.append(h.command)
        if self.failures > 0:
            self.failures -= 1
            reset_connection(h)
            return
        h.reply(self.status, b"stored")
