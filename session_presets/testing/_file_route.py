"""FileRoute: a MockServer route that serves one file with Range, If-Range and validators, like a real file server."""

from __future__ import annotations

import re
import threading

from ._server import Exchange

__all__ = ["FileRoute"]


class FileRoute:
    """A route serving one file: GET and HEAD, Range, If-Range, ETag and Last-Modified.

    Supports one range per request (``bytes=N-``, ``bytes=N-M``,
    ``bytes=-N``); an unsatisfiable one gets 416. ``If-Range`` keeps the
    range only if it equals the current strong ETag or Last-Modified. The
    file and its validators may be changed at any time with :meth:`set_file`
    (a new version, mid-test). ``drops`` holds absolute byte offsets: a
    response that crosses the next one sends the bytes before it, then closes
    the connection (FIN), and that offset is used up.

    Args:
        data: The file's bytes.
        etag: The ETag field value (with its quotes), or None for none.
        last_modified: The Last-Modified field value, or None for none.
        content_type: The Content-Type sent.
        chunk: The largest piece written at once.
        throttle: Body bytes per second, or None.
    """

    _RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

    def __init__(
        self,
        data: bytes,
        *,
        etag: str | None = '"1"',
        last_modified: str | None = None,
        content_type: str = "application/octet-stream",
        chunk: int = 64 * 1024,
        throttle: float | None = None,
    ) -> None:
        self.data = data
        self.etag = etag
        self.last_modified = last_modified
        self.content_type = content_type
        self.chunk = chunk
        self.throttle = throttle
        self.drops: list[int] = []
        self._lock = threading.Lock()

    def set_file(self, data: bytes, *, etag: str | None, last_modified: str | None = None) -> None:
        """Replace the file and its validators (a new version)."""
        with self._lock:
            self.data = data
            self.etag = etag
            self.last_modified = last_modified

    def validators(self) -> dict[str, str]:
        """The ETag and Last-Modified fields of the current version."""
        headers = {}
        if self.etag is not None:
            headers["ETag"] = self.etag
        if self.last_modified is not None:
            headers["Last-Modified"] = self.last_modified
        return headers

    def if_range_holds(self, if_range: str | None) -> bool:
        """Whether a Range may be honoured given this If-Range value (absent: yes)."""
        if if_range is None:
            return True
        strong_etag = self.etag is not None and not self.etag.startswith("W/") and if_range == self.etag
        return strong_etag or (self.last_modified is not None and if_range == self.last_modified)

    def choose_range(self, exchange: Exchange, size: int) -> tuple[int, int, int]:
        """Return (status, start, stop) for the request: 200 whole, 206 a range, 416 unsatisfiable."""
        match = self._RANGE.match(exchange.headers.get("Range", ""))
        if match is None or not self.if_range_holds(exchange.headers.get("If-Range")):
            return 200, 0, size
        first, last = match.groups()
        if not first:
            if not last or int(last) == 0:
                return 416, 0, 0
            return 206, max(0, size - int(last)), size
        start = int(first)
        stop = min(size, int(last) + 1) if last else size
        if start >= size or stop <= start:
            return 416, 0, 0
        return 206, start, stop

    def __call__(self, exchange: Exchange) -> None:
        with self._lock:
            data = self.data
        size = len(data)
        status, start, stop = self.choose_range(exchange, size)
        self.serve(exchange, data, status, start, stop)

    def serve(self, exchange: Exchange, data: bytes, status: int, start: int, stop: int) -> int:
        """Send ``data[start:stop]`` with ``status`` and the file's fields; return the body bytes sent."""
        size = len(data)
        if status == 416:
            exchange.reply(416, b"", {"Content-Range": f"bytes */{size}", **self.validators()})
            return 0
        exchange.send_response(status)
        for key, value in self.validators().items():
            exchange.send_header(key, value)
        exchange.send_header("Accept-Ranges", "bytes")
        exchange.send_header("Content-Type", self.content_type)
        exchange.send_header("Content-Length", str(stop - start))
        if status == 206:
            exchange.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        exchange.end_headers()
        if exchange.command == "HEAD":
            return 0
        with self._lock:
            drop = next((d for d in self.drops if start <= d < stop), None)
            if drop is not None:
                self.drops.remove(drop)
        end = stop if drop is None else drop
        sent = 0
        try:
            position = start
            while position < end:
                piece = data[position : min(end, position + self.chunk)]
                if not exchange.write_throttled(piece, self.throttle):
                    exchange.close_connection = True
                    return sent
                exchange.wfile.flush()
                position += len(piece)
                sent += len(piece)
                self.after_piece(exchange)
        except OSError:
            exchange.close_connection = True
            return sent
        if drop is not None:
            exchange.close_write()
        return sent

    def after_piece(self, exchange: Exchange) -> None:
        """Called after each piece of body is written (a hook for slow-link subclasses)."""
