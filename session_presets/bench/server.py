"""The bench's loopback HTTP/1.1 server, run in a process of its own.

The client and the server must not share a GIL, or the figures would measure
their contention rather than the client. That is why the bench does not use
``session_presets.testing.MockServer``, the loopback server of the tests,
examples and users: MockServer runs on threads of the calling process, and it
records and inspects every request, time the bench would charge to the client.
This module is a standard-library-only server that does as little as it can
per request. It is both a script (``python server.py --port 0 [--cert C --key K]``)
and the parent-side handle, :class:`ServerProcess`, that starts it and talks
to it.

Routes:

- ``/ok``: 200 with the body ``ok``.
- ``/blob/<size>`` [rate]: ``size`` bytes of a fixed pattern (byte ``i`` is
  ``i % 256``), with an ETag, ``Accept-Ranges`` and ``Range``/``If-Range``
  support (206 and ``Content-Range``). ``rate`` limits it to that many bytes
  per second, for interrupt tests.
- ``/items/<n>`` (GET, or POST with a JSON body): the ``api_client`` traffic.
  The server checks each request before it answers 200 (GET) or 201 (POST):
  a numeric ``<n>``; a query of exactly ``page`` (a whole number from 1) and a
  non-empty ``q``; an ``X-Request-Id``; ``Authorization: Bearer <token>``; a
  ``Host`` naming the listener the request came in on; and for a POST, a
  ``Content-Type: application/json`` body that parses as an object whose
  ``id`` is ``<n>`` and whose ``request_id`` is the header's. Anything else is
  answered 400 and counted as rejected, with the first reason kept.
- anything else: 404.

With ``--listeners 2`` the server listens on two ports, two origins for the
clients; connections are counted over both.

Control goes over the process's stdin and stdout, one line each way, so that
reading the counters never opens a connection the counters would see:
``count`` answers the connections accepted since the last ``reset``;
``resumed`` how many of their TLS handshakes resumed a session (as the server saw them);
``sent`` the blob body bytes sent since then; ``starts`` the first byte
offset of each blob response since then; ``api`` one JSON object describing
the ``/items/`` traffic since then (see :meth:`ServerProcess.api_traffic`);
``reset`` answers ``ok``; ``quit`` (or end of input) stops the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import IO, Any, Final
from urllib.parse import parse_qs, urlsplit

__all__ = ["ServerAddress", "ServerProcess", "blob_bytes", "main"]

#: One period of the blob pattern, repeated: byte ``i`` of a blob is ``i % 256``.
_PERIOD: Final = 256
#: The largest piece of blob written with one ``sendall``.
_CHUNK: Final = 1 << 20
_PATTERN: Final = bytes(range(_PERIOD)) * (_CHUNK // _PERIOD + 1)
#: A request head larger than this closes the connection.
_MAX_HEAD: Final = 64 * 1024
#: How long the parent waits for the server to report its port.
_START_TIMEOUT: Final = 20.0

_REASONS: Final = {200: "OK", 201: "Created", 206: "Partial Content", 404: "Not Found",
                   416: "Range Not Satisfiable", 400: "Bad Request", 501: "Not Implemented"}
#: The most listening ports (origins) the server opens.
MAX_LISTENERS: Final = 4


def blob_bytes(start: int, end: int) -> bytes:
    """Return bytes ``start``..``end`` (exclusive) of any blob: what the server sends there."""
    out = bytearray()
    offset = start
    while offset < end:
        phase = offset % _PERIOD
        take = min(end - offset, _CHUNK)
        out += _PATTERN[phase : phase + take]
        offset += take
    return bytes(out)


# -- server side (runs in the child process) -----------------------------------


class _Counter:
    """Connections accepted, resumed TLS handshakes, and blob bytes sent, since the last reset."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value = 0
        self.resumed = 0
        self.sent = 0
        self.starts: list[int] = []

    def add(self) -> None:
        with self.lock:
            self.value += 1

    def add_resumed(self) -> None:
        with self.lock:
            self.resumed += 1

    def add_sent(self, count: int) -> None:
        with self.lock:
            self.sent += count

    def add_start(self, offset: int) -> None:
        with self.lock:
            self.starts.append(offset)

    def take(self, *, reset: bool) -> tuple[int, int, list[int]]:
        with self.lock:
            value, sent, starts = self.value, self.sent, list(self.starts)
            if reset:
                self.value = self.sent = self.resumed = 0
                self.starts.clear()
            return value, sent, starts


_counter = _Counter()


class _ApiTraffic:
    """What the ``/items/`` route received since the last reset, checked request by request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        self.requests = self.posts = self.body_bytes = self.rejected = self.duplicate_request_ids = 0
        self.first_rejection = ""
        self.paths: set[str] = set()
        self.request_ids: set[bytes] = set()
        self.queries: set[str] = set()
        self.tokens: Counter[str] = Counter()
        self.ports: Counter[int] = Counter()

    def reject(self, reason: str) -> None:
        with self.lock:
            self.rejected += 1
            if not self.first_rejection:
                self.first_rejection = reason

    def accept(self, *, path: str, query: str, request_id: bytes, token: str, port: int, body: int) -> None:
        with self.lock:
            self.requests += 1
            self.posts += body > 0
            self.body_bytes += body
            self.paths.add(path)
            self.queries.add(query)
            if request_id in self.request_ids:
                self.duplicate_request_ids += 1
            self.request_ids.add(request_id)
            self.tokens[token] += 1
            self.ports[port] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "posts": self.posts,
                "body_bytes": self.body_bytes,
                "unique_paths": len(self.paths),
                "unique_queries": len(self.queries),
                "unique_request_ids": len(self.request_ids),
                "duplicate_request_ids": self.duplicate_request_ids,
                "tokens": dict(self.tokens),
                "by_port": {str(port): count for port, count in self.ports.items()},
                "rejected": self.rejected,
                "first_rejection": self.first_rejection,
            }


_api = _ApiTraffic()


def _items(sock: socket.socket, method: bytes, path: str, query: str, headers: dict[bytes, bytes],
           body: bytes, port: int, keep_alive: bool) -> None:
    """Check one ``/items/<n>`` request against what the api_client scenario promises, and answer it."""
    reason = _items_problem(method, path, query, headers, body, port)
    if reason:
        _api.reject(reason)
        text = reason.encode()
        sock.sendall(_head(400, [("Content-Length", str(len(text)))], keep_alive=keep_alive) + text)
        return
    token = headers[b"authorization"][7:].decode("latin-1")
    _api.accept(path=path, query=query, request_id=headers[b"x-request-id"], token=token, port=port,
                body=len(body))
    item = path[7:]
    answer = (f'{{"id":{item},"created":true}}' if body else f'{{"id":{item},"name":"item {item}"}}').encode()
    fields = [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    sock.sendall(_head(201 if body else 200, fields, keep_alive=keep_alive) + answer)


def _items_problem(method: bytes, path: str, query: str, headers: dict[bytes, bytes], body: bytes,
                   port: int) -> str:
    """Return why an ``/items/`` request breaks the api_client contract, or "" when it keeps it."""
    item = path[7:]
    if not item.isdigit():
        return f"path {path!r} is not /items/<n>"
    params = parse_qs(query, keep_blank_values=True)
    if sorted(params) != ["page", "q"] or len(params["page"]) != 1 or len(params["q"]) != 1:
        return f"query {query!r} is not exactly page and q"
    if not params["page"][0].isdigit() or int(params["page"][0]) < 1 or not params["q"][0]:
        return f"query {query!r} has a bad page or an empty q"
    if not headers.get(b"x-request-id"):
        return "no X-Request-Id"
    authorization = headers.get(b"authorization", b"")
    if not authorization.startswith(b"Bearer ") or len(authorization) < 8:
        return "no bearer token"
    if headers.get(b"host") != f"127.0.0.1:{port}".encode():
        return f"Host {headers.get(b'host')!r} is not this listener's 127.0.0.1:{port}"
    if method == b"GET":
        return "a GET with a body" if body else ""
    if method != b"POST":
        return f"method {method.decode('latin-1')} is neither GET nor POST"
    if headers.get(b"content-type", b"").split(b";")[0].strip() != b"application/json":
        return f"POST Content-Type {headers.get(b'content-type')!r} is not application/json"
    try:
        document = json.loads(body)
    except ValueError:
        return "POST body is not JSON"
    if not isinstance(document, dict):
        return "POST body is not a JSON object"
    if str(document.get("id")) != item:
        return f"POST body id {document.get('id')!r} is not the path's {item}"
    if document.get("request_id") != headers[b"x-request-id"].decode("latin-1"):
        return "POST body request_id differs from X-Request-Id"
    return ""


def _head(status: int, headers: list[tuple[str, str]], *, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _send_blob(sock: socket.socket, start: int, end: int, rate: float | None) -> None:
    offset = start
    step = _CHUNK if rate is None else max(1, min(_CHUNK, int(rate / 10)))
    view = memoryview(_PATTERN)
    began = time.monotonic()
    while offset < end:
        phase = offset % _PERIOD
        take = min(end - offset, step)
        sock.sendall(view[phase : phase + take])
        _counter.add_sent(take)
        offset += take
        if rate is not None:
            due = began + (offset - start) / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)


def _blob(sock: socket.socket, method: bytes, path: str, query: str, headers: dict[bytes, bytes],
          keep_alive: bool) -> None:
    try:
        size = int(path.rsplit("/", 1)[1])
    except ValueError:
        sock.sendall(_head(400, [("Content-Length", "0")], keep_alive=keep_alive))
        return
    params = parse_qs(query)
    rate = float(params["rate"][-1]) if "rate" in params else None
    etag = f'"blob-{size}"'
    start, end, status = 0, size, 200
    wanted = headers.get(b"range", b"").decode("latin-1")
    if_range = headers.get(b"if-range")
    if wanted.startswith("bytes=") and (if_range is None or if_range.decode("latin-1") == etag):
        first, _, last = wanted[6:].partition("-")
        try:
            start = int(first)
            end = int(last) + 1 if last else size
        except ValueError:
            start, end = 0, size
        else:
            if start >= size or end > size or start >= end:
                sock.sendall(_head(416, [("Content-Range", f"bytes */{size}"), ("Content-Length", "0")],
                                   keep_alive=keep_alive))
                return
            status = 206
    fields = [("Content-Type", "application/octet-stream"), ("Content-Length", str(end - start)),
              ("ETag", etag), ("Accept-Ranges", "bytes")]
    if status == 206:
        fields.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
    _counter.add_start(start)
    sock.sendall(_head(status, fields, keep_alive=keep_alive))
    if method != b"HEAD":
        _send_blob(sock, start, end, rate)


def _serve_connection(sock: socket.socket, context: ssl.SSLContext | None, port: int) -> None:
    try:
        if context is not None:
            sock = context.wrap_socket(sock, server_side=True)
            if sock.session_reused:
                _counter.add_resumed()
        _serve_requests(sock, port)
    except (OSError, ssl.SSLError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.close()


_OK_FIELDS: Final = [("Content-Type", "text/plain"), ("Content-Length", "2")]
_OK_KEEP: Final = _head(200, _OK_FIELDS, keep_alive=True) + b"ok"
_OK_CLOSE: Final = _head(200, _OK_FIELDS, keep_alive=False) + b"ok"


def _serve_requests(sock: socket.socket, port: int) -> None:
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            data = sock.recv(65536)
            if not data or len(buffer) > _MAX_HEAD:
                return
            buffer += data
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        method, target, version = lines[0].split(b" ", 2)
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            sock.sendall(_head(501, [("Content-Length", "0")], keep_alive=False))
            return
        length = int(headers.get(b"content-length", b"0"))
        while len(buffer) < length:
            data = sock.recv(65536)
            if not data:
                return
            buffer += data
        body, buffer = buffer[:length], buffer[length:]
        keep_alive = version == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
        parts = urlsplit(target.decode("latin-1"))
        if parts.path == "/ok":
            sock.sendall(_OK_KEEP if keep_alive else _OK_CLOSE)
        elif parts.path.startswith("/blob/"):
            _blob(sock, method, parts.path, parts.query, headers, keep_alive)
        elif parts.path.startswith("/items/"):
            _items(sock, method, parts.path, parts.query, headers, body, port, keep_alive)
        else:
            sock.sendall(_head(404, [("Content-Length", "9")], keep_alive=keep_alive) + b"not found")
        if not keep_alive:
            return


def _accept_forever(listener: socket.socket, context: ssl.SSLContext | None) -> None:
    port = listener.getsockname()[1]
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        _counter.add()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Wait until each connection thread runs before starting the next: two
        # threads in their bootstrap at once can kill one under a tracer such as
        # coverage (CPython issue 98257). The package's _process.start_thread
        # does the same; this script stays standard-library only.
        running = threading.Event()
        thread = threading.Thread(target=_serve_started, args=(running, sock, context, port), daemon=True)
        thread.start()
        while not running.wait(0.05) and thread.is_alive():
            pass


def _serve_started(running: threading.Event, sock: socket.socket, context: ssl.SSLContext | None,
                   port: int) -> None:
    running.set()
    _serve_connection(sock, context, port)


def main(argv: list[str] | None = None) -> int:
    """Run the server until ``quit`` or end of input on stdin.

    Args:
        argv: ``--port N`` (0 picks a free one; with several listeners, the first one's),
            ``--listeners N`` (ports to listen on, each a separate origin), and
            ``--cert``/``--key`` PEM files for TLS.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description="session-presets bench server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--listeners", type=int, default=1, choices=range(1, MAX_LISTENERS + 1))
    args = parser.parse_args(argv)
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    listeners = []
    for index in range(args.listeners):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", args.port if index == 0 else 0))
        listener.listen(512)
        listeners.append(listener)
    for listener in listeners:
        threading.Thread(target=_accept_forever, args=(listener, context), daemon=True).start()
    out = sys.stdout
    out.write("port " + " ".join(str(listener.getsockname()[1]) for listener in listeners) + "\n")
    out.flush()
    for line in sys.stdin:
        command = line.strip()
        if command == "count":
            out.write(f"{_counter.take(reset=False)[0]}\n")
        elif command == "resumed":
            with _counter.lock:
                out.write(f"{_counter.resumed}\n")
        elif command == "sent":
            out.write(f"{_counter.take(reset=False)[1]}\n")
        elif command == "starts":
            out.write("starts " + ",".join(str(n) for n in _counter.take(reset=False)[2]) + "\n")
        elif command == "api":
            out.write(json.dumps(_api.snapshot()) + "\n")
        elif command == "reset":
            _counter.take(reset=True)
            with _api.lock:
                _api.clear()
            out.write("ok\n")
        elif command == "quit":
            break
        else:
            out.write(f"error unknown command {command!r}\n")
        out.flush()
    for listener in listeners:
        listener.close()
    return 0


# -- parent side ----------------------------------------------------------------


class ServerAddress:
    """Where the bench server listens: enough to build its URLs, in any process.

    Args:
        scheme: ``"https"`` or ``"http"``.
        ports: the listening ports on 127.0.0.1, one per origin.
    """

    def __init__(self, scheme: str, ports: tuple[int, ...]) -> None:
        self.scheme = scheme
        self.ports = ports

    @property
    def port(self) -> int:
        """The first listener's port."""
        return self.ports[0]

    def url(self, path: str = "/ok", *, origin: int = 0) -> str:
        """Return the URL of ``path`` on listener number ``origin`` (0 is the first)."""
        return f"{self.scheme}://127.0.0.1:{self.ports[origin]}{path}"


class ServerProcess(ServerAddress):
    """A handle on the bench server running in a child process.

    Use it as a context manager. ``connections()`` reads the count of
    connections accepted since the last ``reset()``, over the control pipe.

    Args:
        cert: server certificate PEM path, for HTTPS; plain HTTP if omitted.
        key: the certificate's private key PEM path.
        listeners: how many ports to listen on, each a separate origin (1 to 4).

    Raises:
        RuntimeError: the server did not start; the message has its stderr.
        ValueError: ``listeners`` is out of range.
    """

    def __init__(self, *, cert: str | None = None, key: str | None = None, listeners: int = 1) -> None:
        if not 1 <= listeners <= MAX_LISTENERS:
            raise ValueError(f"listeners must be 1 to {MAX_LISTENERS}, not {listeners!r}")
        command = [sys.executable, os.path.abspath(__file__), "--port", "0", "--listeners", str(listeners)]
        if cert:
            command += ["--cert", cert, "--key", key or cert]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()
        try:
            ports = self._read_ports()
        except BaseException:
            self.close()
            raise
        super().__init__("https" if cert else "http", ports)

    def _read_ports(self) -> tuple[int, ...]:
        timer = threading.Timer(_START_TIMEOUT, self._process.kill)
        timer.start()
        try:
            line = self._stdout.readline()
        finally:
            timer.cancel()
        if not line.startswith("port "):
            self._process.wait(5)
            self._stderr.seek(0)
            detail = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError("bench server did not start: " + (detail[-1] if detail else "no output"))
        return tuple(int(port) for port in line.split()[1:])

    @property
    def _stdout(self) -> IO[str]:
        assert self._process.stdout is not None
        return self._process.stdout

    def _ask(self, command: str) -> str:
        stdin = self._process.stdin
        assert stdin is not None
        with self._lock:
            stdin.write(command + "\n")
            stdin.flush()
            answer = self._stdout.readline().strip()
        if not answer or answer.startswith("error"):
            raise RuntimeError(f"bench server answered {answer!r} to {command!r}")
        return answer

    def connections(self) -> int:
        """Return how many connections the server accepted since the last reset."""
        return int(self._ask("count"))

    def resumed_handshakes(self) -> int:
        """Return how many TLS handshakes since the last reset resumed a session, as the server saw them."""
        return int(self._ask("resumed"))

    def bytes_sent(self) -> int:
        """Return how many blob body bytes the server sent since the last reset."""
        return int(self._ask("sent"))

    def blob_starts(self) -> list[int]:
        """Return the first byte offset of each blob response since the last reset (206 resumes > 0)."""
        text = self._ask("starts").split(" ", 1)
        return [int(item) for item in text[1].split(",")] if len(text) > 1 and text[1] else []

    def api_traffic(self) -> dict[str, Any]:
        """Return what the ``/items/`` route received since the last reset, as the server checked it.

        Keys: requests and posts (accepted ones), body_bytes, unique_paths,
        unique_queries, unique_request_ids, duplicate_request_ids, tokens
        (requests per bearer token), by_port (requests per listening port, as
        strings), rejected and first_rejection (the first reason a request was
        answered 400).
        """
        answer: dict[str, Any] = json.loads(self._ask("api"))
        return answer

    def reset(self) -> None:
        """Set the connection, resumption and byte counts and the ``/items/`` record back to zero."""
        self._ask("reset")

    def close(self) -> None:
        """Stop the server process and release its pipes; safe to call twice."""
        process = self._process
        if process.returncode is None:
            try:
                if process.stdin is not None:
                    process.stdin.write("quit\n")
                    process.stdin.flush()
            except (OSError, ValueError):
                pass
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._stderr.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
