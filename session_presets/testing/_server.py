"""MockServer: a real HTTP/1.1 server on loopback for tests, with TLS, queued responses, routes and faults.

The server runs on threads of this process (one per connection, started
through :func:`session_presets._process.start_thread`) and records every
request it reads, so a test asserts on what the server saw. Its anchors are
OkHttp's MockWebServer (``enqueue``, ``takeRequest``, socket policies),
pytest-httpserver (routes, ``check_assertions``) and urllib3's dummyserver.
"""

from __future__ import annotations

import collections
import contextlib
import email.errors
import enum
import io
import json
import os
import queue
import re
import shutil
import socket
import ssl
import struct
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import KW_ONLY, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qs, urlsplit

from .. import _process

__all__ = [
    "Exchange",
    "Fault",
    "FileRoute",
    "Headers",
    "MockResponse",
    "MockServer",
    "RecordedRequest",
]

#: How often the accept loop looks whether close() was called; bounds close() time.
_POLL_INTERVAL: Final = 0.05
#: Throttled bodies and heads are written in pieces this many times a second.
_THROTTLE_TICKS: Final = 20
#: The longest request line read; longer ones are answered 414 and recorded.
_MAX_REQUEST_LINE: Final = 65536
#: Hosts the TLS certificate is issued for.
_TLS_IDENTITIES: Final = ("127.0.0.1", "localhost", "::1")


class Fault(str, enum.Enum):
    """A misbehaviour a queued :class:`MockResponse` acts out instead of (or while) answering.

    The ``*_AT_START`` faults act when a connection is accepted, before any
    TLS handshake, if the response at the head of the queue carries them (as
    OkHttp's socket policies do); the others act on the request that takes
    the response.
    """

    #: Close the new connection at once, before the TLS handshake or reading anything.
    DISCONNECT_AT_START = "disconnect_at_start"
    #: Hold the new connection open, before the TLS handshake: what the client sends is
    #: read and dropped, nothing is answered, until the client or close() ends it.
    STALL_AT_START = "stall_at_start"
    #: Read the request, then reset the connection (RST) before any response byte.
    RESET_BEFORE_RESPONSE = "reset_before_response"
    #: Read the request, then answer nothing, holding the connection open until close().
    NO_RESPONSE = "no_response"
    #: Send the status line and headers (with the full Content-Length), then close (FIN).
    CLOSE_AFTER_HEADERS = "close_after_headers"


_AT_START: Final = frozenset({Fault.DISCONNECT_AT_START, Fault.STALL_AT_START})
#: Parser defects that mean a malformed header line (answered 400).
_HEADER_DEFECTS: Final = (
    email.errors.MissingHeaderBodySeparatorDefect,
    email.errors.FirstHeaderLineIsContinuationDefect,
)


class Headers(Mapping[str, str]):
    """Request headers as received: case-insensitive lookup, every field kept in order.

    ``headers[name]`` gives the last field of that name (as ``dict`` would);
    :meth:`get_all` gives every one.
    """

    __slots__ = ("_fields", "_last")

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields = tuple(fields)
        self._last: dict[str, tuple[str, str]] = {}
        for name, value in self._fields:
            self._last.pop(name.lower(), None)
            self._last[name.lower()] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._last[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._last

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._last.values())

    def __len__(self) -> int:
        return len(self._last)

    def __repr__(self) -> str:
        return f"Headers({list(self._fields)!r})"

    def get_all(self, name: str) -> list[str]:
        """Every value of the fields called ``name``, in the order received."""
        return [value for key, value in self._fields if key.lower() == name.lower()]

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """Every (name, value) pair as received, duplicates included."""
        return self._fields


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server read it.

    Attributes:
        method: The request method (``""`` if the request line was unreadable).
        target: The request target as sent: path and query, or the absolute URL a proxy gets.
        path: The target's path, without the query.
        query: The query parameters, the last value of each name.
        query_string: The raw query string, without the ``?``.
        headers: The header fields, case-insensitive.
        body: The body (de-chunked when it came chunked).
        connection_id: Which connection carried it: 1 for the first the server served (after any TLS handshake).
        sequence: Its place on that connection: 0 for the first request.
        index: Its place among every request the server read: 0 for the first.
        http_version: ``"HTTP/1.1"`` or ``"HTTP/1.0"``.
        malformed: Why the server refused it (with ``status``), or None for a well-formed request.
        status: The 4xx status a malformed request got, or None.
    """

    method: str
    target: str
    path: str
    query: dict[str, str]
    query_string: str
    headers: Headers
    body: bytes
    connection_id: int
    sequence: int
    index: int
    http_version: str
    malformed: str | None = None
    status: int | None = None

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (case-insensitive), or None."""
        return self.headers.get(name)


@dataclass(frozen=True)
class MockResponse:
    """A canned response: status, headers and body, and how to deliver them.

    Args:
        status: The status code, 100 to 599.
        headers: Header fields, as a mapping or as (name, value) pairs (for repeated names).
        body: The body; text is sent as UTF-8.
        delay: Seconds to wait before the status line.
        throttle: Body bytes per second, or None for as fast as the socket takes them.
        header_throttle: Bytes per second for the status line and headers (a trickled head).
        chunked: Send the body with ``Transfer-Encoding: chunked`` instead of Content-Length.
        fault: A misbehaviour to act out (see :class:`Fault`).
        reason: The reason phrase; the standard one when None.

    Raises:
        ValueError: a field is out of range; the message names it and the accepted form.
    """

    status: int = 200
    _: KW_ONLY
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = ()
    body: bytes | str = b""
    delay: float = 0.0
    throttle: float | None = None
    header_throttle: float | None = None
    chunked: bool = False
    fault: Fault | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.status, bool) or not isinstance(self.status, int) or not 100 <= self.status <= 599:
            raise ValueError(f"MockResponse status={self.status!r}: expected an int from 100 to 599")
        pairs = tuple(self.headers.items()) if isinstance(self.headers, Mapping) else tuple(self.headers)
        for pair in pairs:
            if len(pair) != 2 or not all(isinstance(part, str) for part in pair):
                raise ValueError(f"MockResponse headers entry {pair!r}: expected a (name, value) pair of str")
            if any(ch in part for part in pair for ch in "\r\n"):
                raise ValueError(f"MockResponse headers entry {pair!r}: CR and LF are not allowed")
        object.__setattr__(self, "headers", pairs)
        if isinstance(self.body, str):
            object.__setattr__(self, "body", self.body.encode())
        if self.delay < 0:
            raise ValueError(f"MockResponse delay={self.delay!r}: expected seconds >= 0")
        for name in ("throttle", "header_throttle"):
            rate = getattr(self, name)
            if rate is not None and not rate > 0:
                raise ValueError(f"MockResponse {name}={rate!r}: expected bytes per second > 0, or None")
        if self.fault is not None:
            object.__setattr__(self, "fault", Fault(self.fault))

    @property
    def header_pairs(self) -> tuple[tuple[str, str], ...]:
        """The header fields as (name, value) pairs."""
        return self.headers  # type: ignore[return-value]  # normalised in __post_init__

    @property
    def content(self) -> bytes:
        """The body as bytes."""
        return self.body  # type: ignore[return-value]  # normalised in __post_init__

    @classmethod
    def json(cls, value: object, *, status: int = 200, headers: Mapping[str, str] | None = None) -> MockResponse:
        """A response whose body is ``value`` as JSON, with ``Content-Type: application/json``."""
        return cls(
            status,
            headers={"Content-Type": "application/json", **(headers or {})},
            body=json.dumps(value).encode(),
        )

    @classmethod
    def redirect(cls, location: str, *, status: int = 302) -> MockResponse:
        """A redirect to ``location`` (301, 302, 303, 307 or 308)."""
        if status not in (301, 302, 303, 307, 308):
            raise ValueError(f"MockResponse.redirect status={status!r}: expected 301, 302, 303, 307 or 308")
        return cls(status, headers={"Location": location})

    def with_header(self, name: str, value: str) -> MockResponse:
        """A copy with one more header field (repeats allowed)."""
        return replace(self, headers=(*self.header_pairs, (name, value)))

    def with_cookie(
        self,
        name: str,
        value: str,
        *,
        path: str | None = "/",
        domain: str | None = None,
        max_age: int | None = None,
        secure: bool = False,
        http_only: bool = False,
        same_site: str | None = None,
    ) -> MockResponse:
        """A copy that also sets cookie ``name`` with a ``Set-Cookie`` field."""
        if not name or any(ch in name for ch in "=;, \t\r\n"):
            raise ValueError(f"cookie name={name!r}: expected a token without '=', ';', ',' or whitespace")
        parts = [f"{name}={value}"]
        if path is not None:
            parts.append(f"Path={path}")
        if domain is not None:
            parts.append(f"Domain={domain}")
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if secure:
            parts.append("Secure")
        if http_only:
            parts.append("HttpOnly")
        if same_site is not None:
            parts.append(f"SameSite={same_site}")
        return self.with_header("Set-Cookie", "; ".join(parts))


#: What a route answers with: a canned response, or a callable that answers
#: (returning a response to send, or None once it has written its own).
Handler: TypeAlias = Callable[["Exchange"], MockResponse | None]
Responder: TypeAlias = MockResponse | Handler


class _LastLine:
    """A request stream that remembers the last line read: did the header block end with its blank line?"""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self.raw = raw
        self.last: bytes | None = None

    def readline(self, limit: int = -1) -> bytes:
        line: bytes = self.raw.readline(limit)
        self.last = line
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def _read_exactly(stream: Any, size: int) -> bytes:
    """Read ``size`` bytes of a body; a connection that ends first is a truncated request (ValueError)."""
    data: bytes = stream.read(size)
    if len(data) < size:
        raise ValueError(f"the body ends after {len(data)} of {size} bytes (truncated request)")
    return data


class Exchange(BaseHTTPRequestHandler):
    """One connection of a :class:`MockServer`, handed to route handlers for each request it carries.

    A handler reads :attr:`recorded` (the request) and either returns a
    :class:`MockResponse`, calls :meth:`send` or :meth:`reply`, or writes by
    hand with the ``BaseHTTPRequestHandler`` API (``send_response``,
    ``send_header``, ``end_headers``, ``wfile``).
    """

    protocol_version = "HTTP/1.1"
    # Errors to unparsable request lines get a status line (HTTP/0.9 has none).
    default_request_version = "HTTP/1.1"
    server: _HTTPServer
    #: The request being answered.
    recorded: RecordedRequest
    #: Which connection this is: 1 for the first the server served (after any TLS handshake).
    connection_id: int

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.mock._connection_opened()
        self._sequence = 0
        self._error: tuple[int, str] | None = None

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: the server's record is the log."""

    @property
    def mock(self) -> MockServer:
        """The server this connection belongs to."""
        return self.server.mock

    @property
    def query(self) -> dict[str, str]:
        """The current request's query parameters (last value of each)."""
        return self.recorded.query

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less if the server closes; True if it is closing."""
        return self.server.mock._closing.wait(seconds)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self._error = (code, message or self.responses.get(code, ("error",))[0])
        super().send_error(code, message, explain)

    def handle_one_request(self) -> None:
        self._error = None
        self.command = ""
        self.path = ""
        self.request_version = "HTTP/1.1"
        try:
            self.raw_requestline = self.rfile.readline(_MAX_REQUEST_LINE + 1)
        except OSError:
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if len(self.raw_requestline) > _MAX_REQUEST_LINE:
            self.requestline = ""
            self.send_error(414, "Request line too long")
            self._record_malformed()
            return
        if not self.raw_requestline.endswith(b"\n"):
            # The connection ended inside the request line ("GET /x", then EOF).
            self.requestline = ""
            self.send_error(400, "Truncated request: the request line has no end")
            self._record_malformed()
            return
        reader = _LastLine(self.rfile)
        self.rfile = reader  # type: ignore[assignment]  # read only by parse_request, through readline
        try:
            parsed = self.parse_request()
        finally:
            self.rfile = reader.raw
        if not parsed:
            self._record_malformed()
            return
        if reader.last is not None and reader.last not in (b"\r\n", b"\n"):
            # The header block ended at EOF, not at its blank line.
            self.send_error(400, "Truncated request: the header block has no blank line")
            self._record_malformed()
            return
        # Only defects of the header block itself: a Content-Type of multipart/* makes the
        # parser look for boundaries in the (unread, empty) body and note defects there too.
        broken = [defect for defect in self.headers.defects if isinstance(defect, _HEADER_DEFECTS)]
        if broken:
            self.send_error(400, f"Malformed header: {broken[0]!r}")
            self._record_malformed()
            return
        try:
            body = self._read_body()
        except ValueError as exc:
            self.send_error(400, f"Malformed body framing: {exc}")
            self._record_malformed()
            return
        self.recorded = self.server.mock._record(self, body)
        self._sequence += 1
        self.server.mock._answer(self)
        with contextlib.suppress(OSError):
            self.wfile.flush()

    def _read_body(self) -> bytes:
        if self.mock._route_reads_body(self.command, urlsplit(self.path).path):
            return b""  # the route reads the body from rfile itself (ResumableUploadRoute)
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                size = int(line.strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                        pass  # trailer fields are not recorded
                    return bytes(out)
                out += _read_exactly(self.rfile, size)
                self.rfile.readline(1024)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.strip().isdigit():
            raise ValueError(f"Content-Length {length!r} is not a number")
        return _read_exactly(self.rfile, int(length)) if int(length) else b""

    def _record_malformed(self) -> None:
        code, reason = self._error or (400, "Bad request")
        line = self.raw_requestline[:200].decode("latin-1").rstrip("\r\n")
        self.recorded = self.server.mock._record(self, b"", malformed=f"{reason}: {line!r}", status=code)
        self._sequence += 1
        self.close_connection = True

    # -- answering ------------------------------------------------------------------

    def reply(self, status: int = 200, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        """Send ``status`` with ``headers``, a Content-Length and ``body`` (no body to HEAD)."""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reset(self) -> None:
        """Close the connection with an RST (no response byte)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def close_write(self) -> None:
        """Flush, then close the sending half (FIN); the connection is not reused."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)

    def write_throttled(self, data: bytes, rate: float | None) -> bool:
        """Write ``data`` at ``rate`` bytes per second (all at once when None); False if the server closed."""
        if rate is None:
            self.wfile.write(data)
            return True
        piece = max(1, int(rate / _THROTTLE_TICKS))
        for offset in range(0, len(data), piece):
            self.wfile.write(data[offset : offset + piece])
            self.wfile.flush()
            if offset + piece < len(data) and self.wait(piece / rate):
                return False
        return True

    def send(self, response: MockResponse) -> None:
        """Deliver ``response``, acting out its delay, throttles and fault."""
        if response.delay and self.wait(response.delay):
            self.close_connection = True
            return
        if response.fault is Fault.RESET_BEFORE_RESPONSE:
            self.reset()
            return
        if response.fault is Fault.NO_RESPONSE:
            self.server.mock._closing.wait()
            self.close_connection = True
            return
        body = response.content
        names = {name.lower() for name, _ in response.header_pairs}
        bodiless = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        reason = response.reason if response.reason is not None else self.responses.get(response.status, ("",))[0]
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        lines += [f"{name}: {value}" for name, value in response.header_pairs]
        if response.chunked and not bodiless:
            lines.append("Transfer-Encoding: chunked")
        elif "content-length" not in names and response.status >= 200 and response.status not in (204, 304):
            lines.append(f"Content-Length: {len(body)}")
        if any(name.lower() == "connection" and value.lower() == "close" for name, value in response.header_pairs):
            self.close_connection = True
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if response.header_throttle is not None:
            if not self.write_throttled(head, response.header_throttle):
                self.close_connection = True
                return
        elif bodiless or response.fault is not None or response.throttle is not None or response.chunked:
            self.wfile.write(head)
        else:
            # Head and body in one write: two small writes meet Nagle and delayed ACK.
            self.wfile.write(head + body)
            return
        if response.fault is Fault.CLOSE_AFTER_HEADERS:
            self.close_write()
            return
        if bodiless:
            return
        if response.chunked:
            piece = max(1, int(response.throttle / _THROTTLE_TICKS)) if response.throttle else 64 * 1024
            for offset in range(0, len(body), piece):
                chunk = body[offset : offset + piece]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                if response.throttle and offset + piece < len(body) and self.wait(len(chunk) / response.throttle):
                    self.close_connection = True
                    return
            self.wfile.write(b"0\r\n\r\n")
            return
        if not self.write_throttled(body, response.throttle):
            self.close_connection = True


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


@dataclass
class _Route:
    respond: Responder
    remaining: int | None


#: The default fallback; a request it answers is reported by check_assertions.
_NO_ROUTE: Final = MockResponse(404, body=b"no route\n")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, mock: MockServer, address: tuple[str, int], handler: type[Exchange]) -> None:
        self.mock = mock
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.mock._connection_accepted(request)
        # One thread start at a time (see _process.start_thread): a handler thread
        # that dies in its bootstrap would leave the client waiting on a socket.
        _process.start_thread(
            self.process_request_thread, name="mock-server-connection", args=(request, client_address)
        )

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Heads and bodies may go out in separate writes: without NODELAY, Nagle plus
        # the client's delayed ACK would add 40 ms to such responses.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = request
        try:
            fault = self.mock._fault_at_start()
            if fault is Fault.STALL_AT_START:
                # Read and drop what the client sends (a request, a ClientHello) until it
                # gives up or close() shuts the socket down; never answer.
                with contextlib.suppress(OSError):
                    while request.recv(65536):
                        pass
                return
            if fault is Fault.DISCONNECT_AT_START:
                return
            if self.mock._ssl_context is not None:
                try:
                    connection = self.mock._ssl_context.wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    self.mock._handshake_failed(request, exc)
                    return
                self.mock._replace_socket(request, connection, resumed=bool(connection.session_reused))
            with contextlib.suppress(OSError, ssl.SSLError):
                self.RequestHandlerClass(connection, client_address, self)  # type: ignore[arg-type]
        finally:
            self.mock._connection_closed(connection)
            if connection is not request:
                with contextlib.suppress(OSError):
                    connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection errors are the client's business; handler errors are recorded by MockServer."""


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class MockServer:
    """A threaded HTTP/1.1 server with keep-alive on loopback, for tests; HTTPS through trustme.

    Answers each request with the next :meth:`enqueue`-d response if any,
    else the matching :meth:`route`, else :attr:`fallback` (404). Records
    every request for :meth:`take_request` and :attr:`requests`, and counts
    connections. Use it as a context manager; :meth:`close` returns within
    about a second whatever the connections are doing.

    A request it cannot take whole is answered with an error status, recorded
    with ``malformed`` set, and takes no queued response: 400 for bad syntax or
    framing and for a request cut short (a request line or header block ended
    by EOF, a body shorter than its Content-Length or last chunk), 414 for a
    request line over 64 KiB, 431 for more than 100 header fields or a header
    line over 64 KiB.

    Args:
        tls: Serve HTTPS with a certificate for 127.0.0.1, localhost and ::1 from a trustme CA.
        ca: The ``trustme.CA`` to issue that certificate from (a new one when None).
        ssl_context: A server-side SSLContext of your own instead (then :attr:`ca_bundle` is unknown).
        tls_min_version: Refuse handshakes below this TLS version.
        host: ``"127.0.0.1"`` or ``"::1"`` (IPv6).
        exchange_class: A subclass of :class:`Exchange` to serve with (for extra helpers).

    Raises:
        ValueError: ``host`` is not a loopback address, or TLS arguments conflict.
        ImportError: TLS was asked for and trustme is missing (install ``session-presets[testing]``).
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        ca: Any = None,
        ssl_context: ssl.SSLContext | None = None,
        tls_min_version: ssl.TLSVersion | None = None,
        host: str = "127.0.0.1",
        exchange_class: type[Exchange] = Exchange,
    ) -> None:
        if host not in ("127.0.0.1", "::1"):
            raise ValueError(f"MockServer host={host!r}: expected '127.0.0.1' or '::1' (loopback only)")
        if ssl_context is not None and (tls or ca is not None):
            raise ValueError("MockServer: pass either ssl_context=, or tls=True (with an optional ca=), not both")
        self.host = host
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._state = "new"
        self._queue: collections.deque[MockResponse] = collections.deque()
        self._routes: dict[tuple[str | None, str], _Route] = {}
        self._fallback: Responder = _NO_ROUTE
        self._unmatched: list[str] = []
        self._recorded: list[RecordedRequest] = []
        self._taken: queue.Queue[RecordedRequest] = queue.Queue()
        self._per_connection: dict[int, int] = {}
        self._accepted = 0
        self._connections = 0
        self._sockets: list[socket.socket] = []
        self._handshake_errors: list[str] = []
        self._handshakes: list[bool] = []
        self._errors: list[str] = []
        self._tmpdir: str | None = None
        self._ca_bundle: str | None = None
        server_class = _HTTPServer6 if host == "::1" else _HTTPServer
        # Bound (and listening) from here on: the port is known before start().
        self._httpd = server_class(self, (host, 0), exchange_class)
        self.port: int = self._httpd.server_address[1]
        try:
            if tls or ca is not None:
                ssl_context = self._trustme_context(ca)
            if ssl_context is not None and tls_min_version is not None:
                ssl_context.minimum_version = tls_min_version
        except BaseException:
            self._httpd.server_close()
            raise
        self._ssl_context = ssl_context
        self.scheme = "https" if ssl_context is not None else "http"

    def _trustme_context(self, ca: Any) -> ssl.SSLContext:
        try:
            import trustme
        except ImportError as exc:  # pragma: no cover - trustme is in the test extra
            raise ImportError("MockServer(tls=True) needs trustme: pip install 'session-presets[testing]'") from exc
        if ca is None:
            ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*_TLS_IDENTITIES).configure_cert(context)
        self._tmpdir = tempfile.mkdtemp(prefix="session-presets-mock-")
        self._ca_bundle = os.path.join(self._tmpdir, "ca.pem")
        ca.cert_pem.write_to_path(self._ca_bundle)
        return context

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> MockServer:
        """Start serving (idempotent); the port is bound from construction.

        Raises:
            RuntimeError: the server was closed.
        """
        with self._lock:
            if self._state == "closed":
                raise RuntimeError(f"MockServer at {self.url('/')} is closed; start a new one")
            if self._state == "serving":
                return self
            self._state = "serving"
        _process.start_thread(self._httpd.serve_forever, name="mock-server", args=(_POLL_INTERVAL,))
        return self

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, cut every connection and wake every stalled response; safe to call twice."""
        with self._lock:
            state, self._state = self._state, "closed"
            sockets, self._sockets = self._sockets, []
        if state == "closed":
            return
        self._closing.set()
        if state == "serving":
            self._httpd.shutdown()
        self._httpd.server_close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._state == "closed"

    @property
    def fallback(self) -> Responder:
        """What answers a request no queued response or route takes: 404 unless set.

        While it is the default, each such request is reported by :meth:`check_assertions`.
        """
        return self._fallback

    @fallback.setter
    def fallback(self, respond: Responder) -> None:
        self._fallback = respond

    @property
    def _default_fallback(self) -> bool:
        return self._fallback is _NO_ROUTE

    # -- addresses and trust -----------------------------------------------------------

    def url(self, path: str = "/") -> str:
        """The URL of ``path`` (which starts with ``/``, and may carry a query) on this server."""
        host = "[::1]" if self.host == "::1" else self.host
        return f"{self.scheme}://{host}:{self.port}{path}"

    def localhost_url(self, path: str = "/") -> str:
        """The URL of ``path`` with the host name ``localhost``."""
        return f"{self.scheme}://localhost:{self.port}{path}"

    @property
    def ca_bundle(self) -> str:
        """Path of a PEM file holding the CA that signed this server's certificate.

        Raises:
            RuntimeError: the server is plain HTTP, or was given its own ssl_context.
        """
        if self._ca_bundle is None:
            raise RuntimeError(f"MockServer at {self.url('/')} has no CA bundle: create it with tls=True")
        return self._ca_bundle

    @property
    def preset_overrides(self) -> dict[str, Any]:
        """Keyword overrides that make a session reach and trust this server.

        Pass them to a factory: ``default_session(**server.preset_overrides)``.
        They bypass proxies, and for HTTPS trust :attr:`ca_bundle`.
        """
        overrides: dict[str, Any] = {"proxies": "none"}
        if self._ca_bundle is not None:
            overrides["ca_bundle"] = self._ca_bundle
        return overrides

    @property
    def environ(self) -> dict[str, str]:
        """Environment variables with the same effect, for shared sessions (``get_session``)."""
        env = {"SESSION_PRESETS_PROXIES": "none"}
        if self._ca_bundle is not None:
            env["SESSION_PRESETS_CA_BUNDLE"] = self._ca_bundle
        return env

    # -- responses -----------------------------------------------------------------------

    def enqueue(self, response: MockResponse | None = None, /, **fields: Any) -> MockResponse:
        """Queue a response for the next request (first in, first out), whatever its path.

        Pass a :class:`MockResponse`, or its fields as keywords.

        Returns:
            The response queued.

        Raises:
            RuntimeError: the server is closed.
        """
        if response is None:
            response = MockResponse(**fields)
        elif fields:
            raise TypeError("enqueue: pass a MockResponse or its fields as keywords, not both")
        with self._lock:
            if self._state == "closed":
                raise RuntimeError(f"enqueue on MockServer at {self.url('/')} after close(): start a new server")
            self._queue.append(response)
        return response

    def route(self, path: str, respond: Responder, *, method: str | None = None, times: int | None = None) -> None:
        """Answer requests for ``path`` (exact, query ignored) with a canned response or a handler.

        A later route for the same method and path replaces the earlier one.

        Args:
            path: The path, starting with ``/``.
            respond: A :class:`MockResponse`, or a callable taking the :class:`Exchange` and
                returning a response (or None once it has replied itself).
            method: Only this method (``"GET"``...); any method when None.
            times: Answer this many requests, then go away (an expectation that
                :meth:`check_assertions` reports if not met); every request when None.

        Raises:
            ValueError: ``path`` does not start with ``/``, or ``times`` is below 1.
        """
        if not path.startswith("/"):
            raise ValueError(f"route path={path!r}: expected a path starting with '/'")
        if times is not None and (isinstance(times, bool) or times < 1):
            raise ValueError(f"route times={times!r}: expected a count >= 1, or None for every request")
        with self._lock:
            self._routes[(method.upper() if method else None, path)] = _Route(respond, times)

    def _take_route(self, recorded: RecordedRequest) -> Responder | None:
        """The route answering ``recorded``, counting down a limited one (hold ``_lock``)."""
        for key in ((recorded.method, recorded.path), (None, recorded.path)):
            route = self._routes.get(key)
            if route is None:
                continue
            if route.remaining is not None:
                route.remaining -= 1
                if route.remaining == 0:
                    del self._routes[key]
            return route.respond
        return None

    def _route_reads_body(self, method: str, path: str) -> bool:
        """True when the route that will answer reads the request body itself (``reads_body = True``)."""
        with self._lock:
            if self._queue:
                return False
            for key in ((method, path), (None, path)):
                route = self._routes.get(key)
                if route is not None:
                    return bool(getattr(route.respond, "reads_body", False))
        return False

    def _fault_at_start(self) -> Fault | None:
        with self._lock:
            if self._queue and self._queue[0].fault in _AT_START:
                return self._queue.popleft().fault
        return None

    def _answer(self, exchange: Exchange) -> None:
        recorded = exchange.recorded
        with self._lock:
            responder = self._queue.popleft() if self._queue else self._take_route(recorded)
            if responder is None:
                responder = self.fallback
                if self._default_fallback:
                    self._unmatched.append(f"{recorded.method} {recorded.target}")
        if isinstance(responder, MockResponse):
            exchange.send(responder)
            return
        try:
            response = responder(exchange)
            if response is not None:
                exchange.send(response)
        except OSError:
            exchange.close_connection = True
        except Exception as exc:
            with self._lock:
                self._errors.append(f"{recorded.method} {recorded.target}: handler raised {exc!r}")
            exchange.close_connection = True
            with contextlib.suppress(OSError):
                exchange.reply(500, f"handler raised {exc!r}".encode(), {"Connection": "close"})

    # -- observation ---------------------------------------------------------------------

    def take_request(self, timeout: float = 10.0) -> RecordedRequest:
        """Return the oldest request not taken yet, waiting up to ``timeout`` seconds for one.

        Raises:
            TimeoutError: no request came in time.
        """
        try:
            return self._taken.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"no request reached MockServer at {self.url('/')} within {timeout} s "
                f"({self.request_count} received in all)"
            ) from None

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request read so far, in order (malformed ones included, with ``malformed`` set)."""
        with self._lock:
            return list(self._recorded)

    @property
    def request_count(self) -> int:
        """How many requests the server has read."""
        with self._lock:
            return len(self._recorded)

    @property
    def requests_per_connection(self) -> dict[int, int]:
        """Requests read on each connection, by connection id."""
        with self._lock:
            return dict(self._per_connection)

    @property
    def accepted(self) -> int:
        """TCP connections accepted, failed TLS handshakes included."""
        with self._lock:
            return self._accepted

    @property
    def connections(self) -> int:
        """Connections served (TLS handshake done, for HTTPS)."""
        with self._lock:
            return self._connections

    @property
    def handshake_errors(self) -> list[str]:
        """The server-side error of every failed TLS handshake, such as an alert from the client."""
        with self._lock:
            return list(self._handshake_errors)

    @property
    def full_handshakes(self) -> int:
        """Completed TLS handshakes that did not resume a session."""
        with self._lock:
            return self._handshakes.count(False)

    @property
    def resumed_handshakes(self) -> int:
        """Completed TLS handshakes that resumed a session (a ticket the client offered and the server took)."""
        with self._lock:
            return self._handshakes.count(True)

    @property
    def queued(self) -> int:
        """How many enqueued responses no request has taken yet."""
        with self._lock:
            return len(self._queue)

    def check_assertions(self) -> None:
        """Fail if a handler raised, a request found no route, or an expected request never came.

        Reported: handler exceptions, requests answered by the default 404
        fallback, routes with ``times`` left, and enqueued responses never served.

        Raises:
            AssertionError: naming each problem.
        """
        with self._lock:
            problems = [f"handler error: {error}" for error in self._errors]
            problems += [f"no route for {request} (answered 404)" for request in self._unmatched]
            for (method, path), route in self._routes.items():
                if route.remaining is not None:
                    problems.append(f"route {method or 'any method'} {path} expected {route.remaining} more request(s)")
            if self._queue:
                statuses = ", ".join(str(response.status) for response in self._queue)
                problems.append(f"{len(self._queue)} enqueued response(s) never served (statuses {statuses})")
        if problems:
            raise AssertionError(f"MockServer at {self.url('/')}: " + "; ".join(problems))

    def close_idle_connections(self) -> None:
        """Shut down every open connection from the server side (keep-alive closed while idle)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- bookkeeping from the connection threads -------------------------------------------

    def _connection_accepted(self, sock: socket.socket) -> None:
        with self._lock:
            self._accepted += 1
            self._sockets.append(sock)

    def _replace_socket(self, old: socket.socket, new: socket.socket, *, resumed: bool) -> None:
        with self._lock:
            self._sockets = [new if sock is old else sock for sock in self._sockets]
            self._handshakes.append(resumed)

    def _handshake_failed(self, sock: socket.socket, exc: BaseException) -> None:
        with self._lock:
            self._handshake_errors.append(str(exc))
            self._sockets = [s for s in self._sockets if s is not sock]

    def _connection_opened(self) -> int:
        with self._lock:
            self._connections += 1
            self._per_connection[self._connections] = 0
            return self._connections

    def _connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets = [s for s in self._sockets if s is not sock]

    def _record(
        self, exchange: Exchange, body: bytes, *, malformed: str | None = None, status: int | None = None
    ) -> RecordedRequest:
        target = exchange.path
        parts = urlsplit(target)
        headers = Headers(exchange.headers.items() if malformed is None and hasattr(exchange, "headers") else ())
        with self._lock:
            recorded = RecordedRequest(
                method=exchange.command or "",
                target=target,
                path=parts.path,
                query={key: values[-1] for key, values in parse_qs(parts.query).items()},
                query_string=parts.query,
                headers=headers,
                body=body,
                connection_id=exchange.connection_id,
                sequence=exchange._sequence,
                index=len(self._recorded),
                http_version=exchange.request_version or "HTTP/1.1",
                malformed=malformed,
                status=status,
            )
            self._recorded.append(recorded)
            self._per_connection[exchange.connection_id] = self._per_connection.get(exchange.connection_id, 0) + 1
        self._taken.put(recorded)
        return recorded
