"""The suite's loopback HTTP/1.1 servers: ``session_presets.testing.MockServer`` with built-in routes.

``LoopbackServer`` is a MockServer (threaded, keep-alive, optionally TLS,
counting) that answers the built-in routes below, so tests assert on what the
server saw (method, path, headers, body, connection number), never on what
the client believes.

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
gets the request handler object (a :class:`session_presets.testing.Exchange`)
and returns nothing.
"""

from __future__ import annotations

import itertools
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from session_presets.testing import Exchange, MockResponse, MockServer, RecordedRequest

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


def _seen(recorded: RecordedRequest) -> Seen:
    return Seen(recorded.method, recorded.target, dict(recorded.headers.fields), recorded.body, recorded.connection_id)


class Handler(Exchange):
    """The request handler routes get: MockServer's Exchange with the suite's older names."""

    @property
    def seen(self) -> Seen:
        """The request being answered."""
        return _seen(self.recorded)

    @property
    def conn_number(self) -> int:
        """Which connection carries it: 1 for the first the server served."""
        return self.connection_id


def _ok(h: Handler) -> None:
    size = h.query.get("size")
    h.reply(200, b"x" * int(size) if size else b"ok", {"Content-Type": "text/plain"})


def _echo(h: Handler) -> None:
    payload = {
        "method": h.command,
        "path": h.path,
        "headers": dict(h.headers.items()),
        "body": h.recorded.body.decode("latin-1"),
        "connection": h.connection_id,
    }
    h.reply(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def _slow(h: Handler) -> None:
    if h.wait(float(h.query.get("delay", "1"))):
        h.close_connection = True
        return
    h.reply(200, b"slow")


def _trickle(h: Handler) -> None:
    count = int(h.query.get("bytes", "10"))
    interval = float(h.query.get("interval", "1"))
    h.send(MockResponse(200, body=b"z" * count, throttle=1 / interval if interval > 0 else None))


def _stall(h: Handler) -> None:
    after = int(h.query.get("after", "1"))
    h.send_response(200)
    h.send_header("Content-Length", str(after + 100))
    h.end_headers()
    h.wfile.write(b"s" * after)
    h.wfile.flush()
    h.wait(float(h.query.get("for", "30")))
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
    h.send(MockResponse(200, body=b"cookie set").with_cookie(name, value))


def _redirect(h: Handler) -> None:
    h.send(MockResponse.redirect(h.query["to"], status=int(h.query.get("code", "302"))))


def _close(h: Handler) -> None:
    h.reply(200, b"closing", {"Connection": "close"})
    h.close_connection = True


def _reset(h: Handler) -> None:
    reset_connection(h)


def hold_until_client_closes(h: Handler, bound: float = 20.0) -> None:
    """Answer nothing until the client closes (or cuts) the connection, for at most ``bound`` seconds."""
    h.connection.settimeout(0.05)
    ends = time.monotonic() + bound
    while time.monotonic() < ends:
        try:
            if h.connection.recv(1) == b"":
                break
        except TimeoutError:
            continue
        except OSError:
            break
    h.close_connection = True


def route_timeout_then_answer(server: LoopbackServer, own: str, preset: str) -> None:
    """Route ``own`` to hang until the client gives up, and ``preset`` to hang the first time, then answer.

    For two concurrent calls on one session, one with its own ``timeout=`` (to
    ``own``: not retried) and one with the preset's (to ``preset``: its read
    timeout is retried, and the retry gets b"second try").
    """
    tries = itertools.count()

    def second_try_answers(h: Handler) -> None:
        if next(tries) == 0:
            hold_until_client_closes(h)
        else:
            h.reply(200, b"second try")

    server.route(own, hold_until_client_closes)
    server.route(preset, second_try_answers)


def reset_connection(h: Handler) -> None:
    """Close the handler's socket with an RST, before any response byte."""
    h.reset()


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


def _builtin(h: Exchange) -> None:
    assert isinstance(h, Handler)
    path = urlsplit(h.path).path
    route = _BUILTIN.get(path) or (_status if path.startswith("/status/") else None)
    if route is None:
        h.reply(404, b"not found")
        return
    route(h)


class _State:
    """The server's counters and routes, under the names tests used before MockServer."""

    def __init__(self, mock: MockServer) -> None:
        self._mock = mock
        self.lock = threading.Lock()

    @property
    def connections(self) -> int:
        return self._mock.connections

    @property
    def accepted(self) -> int:
        return self._mock.accepted

    @property
    def requests(self) -> list[Seen]:
        return [_seen(r) for r in self._mock.requests if r.malformed is None]

    @property
    def handshake_errors(self) -> list[str]:
        return self._mock.handshake_errors

    @property
    def routes(self) -> dict[str, object]:
        return {path: route.respond for (_, path), route in self._mock._routes.items()}


class LoopbackServer:
    """A MockServer on 127.0.0.1 with the built-in routes, with TLS when given a context."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.mock = MockServer(ssl_context=context, exchange_class=Handler)
        self.mock.fallback = _builtin
        self.state = _State(self.mock)
        self.port = self.mock.port
        self.scheme = self.mock.scheme

    def __enter__(self) -> LoopbackServer:
        self.mock.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.mock.close()

    def url(self, path: str = "/ok") -> str:
        return self.mock.url(path)

    def localhost_url(self, path: str = "/ok") -> str:
        return self.mock.localhost_url(path)

    def route(self, path: str, handler: Route) -> None:
        self.mock.route(path, handler)  # type: ignore[arg-type]

    @property
    def connections(self) -> int:
        return self.mock.connections

    @property
    def accepted(self) -> int:
        """TCP connections accepted, TLS handshake failures included (``connections`` counts only served ones)."""
        return self.mock.accepted

    @property
    def handshake_errors(self) -> list[str]:
        """The server-side error of every failed TLS handshake, such as an alert from the client."""
        return self.mock.handshake_errors

    @property
    def full_handshakes(self) -> int:
        """TLS handshakes that did not resume a session, as the server saw them."""
        return self.mock.full_handshakes

    @property
    def resumed_handshakes(self) -> int:
        """TLS handshakes that resumed a session, as the server saw them."""
        return self.mock.resumed_handshakes

    @property
    def requests(self) -> list[Seen]:
        """Every well-formed request, in order (MockServer also records malformed ones)."""
        return self.state.requests

    def saw(self, path_prefix: str) -> int:
        """How many requests the server received whose path starts with ``path_prefix``."""
        return sum(1 for seen in self.requests if seen.path.startswith(path_prefix))

    def close_idle_connections(self) -> None:
        """Close every accepted socket from the server side (keep-alive closed while idle)."""
        self.mock.close_idle_connections()
