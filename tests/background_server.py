"""A file route for the background tests: MockServer's FileRoute with injectable faults and a log.

``FileRoute`` serves one byte string on a ``LoopbackServer`` route with
Range, If-Range, ETag and Last-Modified, all from
``session_presets.testing.FileRoute``. Fault injection is set on the object
between or during requests:

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

``log`` holds one ``Hit`` per request, in the order the requests arrived: its
Range and If-Range, the status sent and the bytes of body sent (filled in when
the response ends).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from session_presets import testing

from .servers import Handler, reset_connection

__all__ = ["FileRoute", "Hit", "UploadRoute"]


@dataclass
class Hit:
    """One request as the file route saw it."""

    range: str | None
    if_range: str | None
    status: int
    sent: int
    authorization: str | None


class FileRoute(testing.FileRoute):
    """Serves ``data`` with Range/If-Range support and injectable faults."""

    def __init__(
        self,
        data: bytes,
        *,
        etag: str | None = '"v1"',
        last_modified: str | None = "Wed, 21 Oct 2015 07:28:00 GMT",
        chunk: int = 64 * 1024,
    ) -> None:
        super().__init__(data, etag=etag, last_modified=last_modified, chunk=chunk)
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

    @property
    def ranges(self) -> list[str | None]:
        """The Range header of every request, in order."""
        return [hit.range for hit in self.log]

    def _note(self, h: Handler, status: int, sent: int) -> Hit:
        # Logged before the body goes out: a response cut off by the client may end
        # after the next request arrived, and the log keeps arrival order.
        hit = Hit(h.headers.get("Range"), h.headers.get("If-Range"), status, sent, h.headers.get("Authorization"))
        with self._lock:
            self.log.append(hit)
        return hit

    def __call__(self, h: testing.Exchange) -> None:
        assert isinstance(h, Handler)
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

    def if_range_holds(self, if_range: str | None) -> bool:
        return not self.honor_if_range or super().if_range_holds(if_range)

    def choose_range(self, exchange: testing.Exchange, size: int) -> tuple[int, int, int]:
        if self.ignore_range:
            return 200, 0, size
        return super().choose_range(exchange, size)

    def after_piece(self, exchange: testing.Exchange) -> None:
        if self.delay:
            time.sleep(self.delay)

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
        with self._lock:
            data = self.data
        status, start, stop = self.choose_range(h, len(data))
        if status != 200 and self.lying_416:
            self.lying_416 -= 1
            requested = h.headers.get("Range", "").removeprefix("bytes=").split("-")[0]
            self._note(h, 416, 0)
            h.reply(416, b"", {"Content-Range": f"bytes */{requested}", **self.validators()})
            return
        if status == 206 and self.shift_start:
            self.shift_start -= 1
            start = max(0, start - 10)
        hit = self._note(h, status, 0)
        hit.sent = self.serve(h, data, status, start, stop)


class UploadRoute:
    """Accepts uploads; answers with a reset (no response) for the first ``failures`` requests."""

    def __init__(self, failures: int = 0, status: int = 201) -> None:
        self.failures = failures
        self.status = status
        self.bodies: list[bytes] = []
        self.methods: list[str] = []

    def __call__(self, h: Handler) -> None:
        self.bodies.append(h.seen.body)
        self.methods.append(h.command)
        if self.failures > 0:
            self.failures -= 1
            reset_connection(h)
            return
        h.reply(self.status, b"stored")
