"""MockServer records a request cut short as malformed, and it takes no enqueued response (issue 22 §7)."""

from __future__ import annotations

import socket

import pytest
import requests

from session_presets.testing import MockServer

pytestmark = pytest.mark.timeout(30)


def _send_then_eof(server: MockServer, data: bytes) -> bytes:
    """Send ``data`` on a new connection, end the sending side, and return all the server sent back."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"GET /x", "request line has no end"),
        (b"GET /x HTTP/1.1\r\nHost: a\r\n", "no blank line"),
        (b"GET /x HTTP/1.1\r\n", "no blank line"),
        (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345", "ends after 5 of 10 bytes"),
        (b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\na\r\n12345", "ends after 5 of 10 bytes"),
    ],
    ids=["request-line", "headers", "no-headers", "body", "chunk"],
)
def test_truncated_request_is_malformed_and_takes_no_response(data: bytes, why: str) -> None:
    """A request cut by EOF gets a 400, is recorded malformed, and the queued response waits for the next."""
    with MockServer() as server:
        server.enqueue(status=201, body=b"queued")
        answer = _send_then_eof(server, data)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"queued" not in answer
        [cut] = server.requests
        assert cut.status == 400
        assert cut.malformed is not None and why in cut.malformed
        assert server.queued == 1
        response = requests.get(server.url("/next"), timeout=10)
        assert (response.status_code, response.content) == (201, b"queued")
        assert server.requests[1].malformed is None and server.requests[1].path == "/next"


def test_complete_requests_are_untouched_by_the_checks() -> None:
    """A full request with a body, then EOF, is well-formed and takes the queued response."""
    with MockServer() as server:
        server.enqueue(status=201, body=b"queued")
        answer = _send_then_eof(server, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n12345")
        assert answer.startswith(b"HTTP/1.1 201 ")
        [seen] = server.requests
        assert seen.malformed is None and seen.body == b"12345"


def test_too_many_headers_get_431_and_a_bad_header_400() -> None:
    """The documented split: too many header fields get a 431, a malformed header line a 400."""
    with MockServer() as server:
        # 101 fields, one over http.server's limit; no more, so that nothing is left unread (no RST).
        many = b"".join(b"X-%d: v\r\n" % i for i in range(101))
        assert _send_then_eof(server, b"GET / HTTP/1.1\r\n" + many).startswith(b"HTTP/1.1 431 ")
        assert _send_then_eof(server, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert [r.status for r in server.requests] == [431, 400]
