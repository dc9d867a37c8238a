"""Fault-injecting routes and TLS server contexts for the reliability and security tests.

The routes run on ``LoopbackServer`` (a ``session_presets.testing.MockServer``)
and record server-side timestamps, so tests measure delays on the server
rather than with a client timer. The contexts are for ``LoopbackServer(context)``
when a test needs a certificate MockServer's ``tls=True`` does not issue
(expired, other hosts, capped TLS versions).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trustme

from .servers import Handler, reset_connection

__all__ = [
    "Arrivals",
    "flaky",
    "leaf_context",
    "request_id_route",
    "status_then_ok",
]


@dataclass
class Arrivals:
    """Server-side arrival times (time.monotonic) of the requests a route handled."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    times: list[float] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)

    def note(self, h: Handler) -> int:
        """Record one arrival and return how many came before it."""
        with self.lock:
            self.times.append(time.monotonic())
            self.methods.append(h.command)
            return len(self.times) - 1


def flaky(arrivals: Arrivals, failures: int) -> Callable[[Handler], None]:
    """A route that resets the connection (RST, no response) ``failures`` times, then says ok."""

    def route(h: Handler) -> None:
        if arrivals.note(h) < failures:
            reset_connection(h)
            return
        h.reply(200, b"recovered")

    return route


def status_then_ok(
    arrivals: Arrivals, status: int, retry_after: str | None, failures: int = 1
) -> Callable[[Handler], None]:
    """A route that answers ``status`` (with Retry-After) ``failures`` times, then 200."""

    def route(h: Handler) -> None:
        if arrivals.note(h) < failures:
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            h.reply(status, f"status {status}".encode(), headers)
            return
        h.reply(200, b"finally")

    return route


def request_id_route(h: Handler) -> None:
    """Echo the ``X-Request-Id`` header and the connection number: ``<id> <conn>``."""
    rid = h.headers.get("X-Request-Id", "")
    body = f"{rid} {h.conn_number}".encode()
    # One write for head and body: two small writes meet Nagle and delayed ACK (40 ms a call).
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    h.wfile.write(head + body)


def leaf_context(
    ca: trustme.CA,
    *identities: str,
    not_after: object = None,
    maximum_version: ssl.TLSVersion | None = None,
    minimum_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A server context with a leaf certificate from ``ca`` for ``identities``."""
    kwargs = {"not_after": not_after} if not_after is not None else {}
    cert = ca.issue_cert(*identities, **kwargs)  # type: ignore[arg-type]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if minimum_version is not None:
        context.minimum_version = minimum_version
    if maximum_version is not None:
        context.maximum_version = maximum_version
    cert.configure_cert(context)
    return context
