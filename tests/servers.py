"""Real loopback HTTP/1.1 servers for the tests: threaded, optionally TLS, counting.

Every server counts the connections it accepts and records every request it
receives (method, path, headers, body, connection number), so tests assert on
what the server saw, never on what the client believes.

Built-in routes (query parameters in brackets):

- ``/ok`` [size]: 200 with ``size`` bytes (default b"ok").
- ``/echo``: 200 with a JSON description of the request (method, path, headers, body).
- ``/slow`` [delay]: waits ``delay`` seconds, then 200 b"slow".
- ``/trickle`` [bytes, interval]: Content-Length ``bytes``, one byte per ``interval`` s.
- ``/stall`` [after]: sends headers and ``after`` bytes of a longer body, then stalls.
- ``/status/<code>`` [retry_after]: that status, with Retry-After if given.
- ``/set-cookie`` [name, value]: sets a cookie.
- ``/redirect`` [to, code]: a redirect to ``to``.
- ``/close``: 200 with ``Connection: close``.
- ``/reset``: closes the socket with RST before any response.

Tests add their own routes with ``server.route(path, handler)``; a handler
gets the request handler object and returns nothing.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from session_presets import _process

Route = Callable[["Handler"], None]


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0
    requests: list[Seen] = field(default_factory=list)
    routes: dict[str, Route] = field(default_factory=dict)
    open_sockets: list[socket.socket] = field(default_factory=list)
    accepted: int = 0
    handshake_errors: list[str] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    """Serves the built-in and registered routes; HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.conn_number = self.server.count_connection(self.connection)

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _record(self) -> Seen:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        seen = Seen(self.command, self.path, dict(self.headers.items()), body, self.conn_number)
        with self.server.state.lock:
            self.server.state.requests.append(seen)
        return seen

    def _read_chunked(self) -> bytes:
        out = b""
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    def reply(self, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        self.seen = self._record()
        path = urlsplit(self.path).path
        route = self.server.state.routes.get(path)
        if route is not None:
            route(self)
            return
        builtin = _BUILTIN.get(path) or (_status if path.startswith("/status/") else None)
        if builtin is None:
            self.reply(404, b"not found")
            return
        builtin(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _dispatch


def _ok(h: Handler) -> None:
    size = h.query.get("size")
    h.reply(200, b"x" * int(size) if size else b"ok", {"Content-Type": "text/plain"})


def _echo(h: Handler) -> None:
    payload = {
        "method": h.command,
        "path": h.path,
        "headers": dict(h.headers.items()),
        "body": h.seen.body.decode("latin-1"),
        "connection": h.conn_number,
    }
    h.reply(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def _slow(h: Handler) -> None:
    time.sleep(float(h.query.get("delay", "1")))
    h.reply(200, b"slow")


def _trickle(h: Handler) -> None:
    count = int(h.query.get("bytes", "10"))
    interval = float(h.query.get("interval", "1"))
    h.send_response(200)
    h.send_header("Content-Length", str(count))
    h.end_headers()
    try:
        for _ in range(count):
            h.wfile.write(b"z")
            h.wfile.flush()
            time.sleep(interval)
    except OSError:
        pass


def _stall(h: Handler) -> None:
    after = int(h.query.get("after", "1"))
    h.send_response(200)
    h.send_header("Content-Length", str(after + 100))
    h.end_headers()
    h.wfile.write(b"s" * after)
    h.wfile.flush()
    time.sleep(float(h.query.get("for", "30")))
    h.close_connection = True


def _status(h: Handler) -> None:
    code = int(urlsplit(h.path).path.rsplit("/", 1)[1])
    headers = {}
    if "retry_after" in h.query:
        headers["Retry-After"] = h.query["retry_after"]
    h.reply(code, f"status {code}".encode(), headers)


def _set_cookie(h: Handler) -> None:
    name = h.query.get("name", "token")
    value = h.query.get("value", "abc")
    h.reply(200, b"cookie set", {"Set-Cookie": f"{name}={value}; Path=/"})


def _redirect(h: Handler) -> None:
    h.reply(int(h.query.get("code", "302")), b"", {"Location": h.query["to"]})


def _close(h: Handler) -> None:
    h.reply(200, b"closing", {"Connection": "close"})
    h.close_connection = True


def _reset(h: Handler) -> None:
    reset_connection(h)


def reset_connection(h: Handler) -> None:
    """Close the handler's socket with an RST, before any response byte."""
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.close_connection = True
    h.connection.close()


_BUILTIN: dict[str, Route] = {
    "/ok": _ok,
    "/echo": _echo,
    "/slow": _slow,
    "/trickle": _trickle,
    "/stall": _stall,
    "/set-cookie": _set_cookie,
    "/redirect": _redirect,
    "/close": _close,
    "/reset": _reset,
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, state: _State, context: ssl.SSLContext | None) -> None:
        self.state = state
        self.tls_context = context
        super().__init__(("127.0.0.1", 0), Handler)

    def count_connection(self, sock: socket.socket) -> int:
        with self.state.lock:
            self.state.connections += 1
            self.state.open_sockets.append(sock)
            return self.state.connections

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Headers and body go out in separate writes: without NODELAY, Nagle plus
        # the client's delayed ACK would add 40 ms to every response.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.state.lock:
            self.state.accepted += 1
        if self.tls_context is not None:
            try:
                request = self.tls_context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                with self.state.lock:
                    self.state.handshake_errors.append(str(exc))
                return
        try:
            super().finish_request(request, client_address)
        except (OSError, ssl.SSLError):
            pass

    def process_request(self, request: Any, client_address: Any) -> None:
        # One thread start at a time (see _process.start_thread): a handler thread
        # that dies in its bootstrap would leave the client waiting on a socket.
        _process.start_thread(self.process_request_thread, name="loopback-connection", args=(request, client_address))

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.1, with TLS when given a context."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.state = _State()
        self._server = _Server(self.state, context)
        self.port = self._server.server_address[1]
        self.scheme = "https" if context is not None else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self.state.lock:
            for sock in self.state.open_sockets:
                try:
                    sock.close()
                except OSError:
                    pass

    def url(self, path: str = "/ok") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def localhost_url(self, path: str = "/ok") -> str:
        return f"{self.scheme}://localhost:{self.port}{path}"

    def route(self, path: str, handler: Route) -> None:
        self.state.routes[path] = handler

    @property
    def connections(self) -> int:
        with self.state.lock:
            return self.state.connections

    @property
    def accepted(self) -> int:
        """TCP connections accepted, TLS handshake failures included (``connections`` counts only served ones)."""
        with self.state.lock:
            return self.state.accepted

    @property
    def handshake_errors(self) -> list[str]:
        """The server-side error of every failed TLS handshake, such as an alert from the client."""
        with self.state.lock:
            return list(self.state.handshake_errors)

    @property
    def requests(self) -> list[Seen]:
        with self.state.lock:
            return list(self.state.requests)

    def close_idle_connections(self) -> None:
        """Close every accepted socket from the server side (keep-alive closed while idle)."""
        with self.state.lock:
            sockets, self.state.open_sockets = self.state.open_sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
