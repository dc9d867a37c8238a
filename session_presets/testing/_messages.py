"""What MockServer exchanges: the faults it acts out, the requests it records and the responses it sends."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import KW_ONLY, dataclass, replace
from typing import Final

__all__ = ["Fault", "Headers", "MockResponse", "RecordedRequest"]


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
