"""session_presets.testing: MockServer's responses, faults and records, FileRoute, reset() and the pytest plugin."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme

from session_presets import (
    TransferState,
    background_session,
    default_session,
    ephemeral_session,
    get_session,
    preset_names,
    register_preset,
)
from session_presets.testing import Exchange, Fault, FileRoute, Headers, MockResponse, MockServer, reset

from .waiting import wait_until

TESTING_PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


@pytest.fixture
def server() -> Iterator[MockServer]:
    """A plain-HTTP MockServer, closed after the test."""
    with MockServer() as mock:
        yield mock


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[MockServer]:
    """An HTTPS MockServer with a certificate from the suite's CA."""
    with MockServer(tls=True, ca=ca) as mock:
        yield mock


def _exchange(mock: MockServer, data: bytes) -> bytes:
    """Send raw bytes on a new connection and return everything the server sends until it closes."""
    with socket.create_connection((mock.host, mock.port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    received = b""
    while marker not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


# -- responses ----------------------------------------------------------------------------


def test_enqueued_responses_are_served_in_order_on_one_keep_alive_connection(server: MockServer) -> None:
    """Enqueued responses go out first in, first out; take_request gives each request with its connection sequence."""
    server.enqueue(MockResponse(201, headers={"X-One": "1"}, body="first"))
    server.enqueue(status=202, body=b"second")
    server.enqueue(MockResponse(203, body=b"third"))
    with default_session(**server.preset_overrides) as session:
        first = session.post(server.url("/a?x=1&x=2&y=z"), data=b"payload", headers={"X-Probe": "p"})
        second = session.get(server.url("/b"))
        third = session.delete(server.url("/c"))
    assert [(first.status_code, first.text, first.headers["X-One"]), (second.status_code, second.text)] == [
        (201, "first", "1"),
        (202, "second"),
    ]
    assert third.status_code == 203
    taken = [server.take_request(timeout=5) for _ in range(3)]
    assert [(r.method, r.path, r.sequence, r.index, r.connection_id) for r in taken] == [
        ("POST", "/a", 0, 0, 1),
        ("GET", "/b", 1, 1, 1),
        ("DELETE", "/c", 2, 2, 1),
    ]
    assert taken[0].query == {"x": "2", "y": "z"}
    assert taken[0].query_string == "x=1&x=2&y=z"
    assert taken[0].target == "/a?x=1&x=2&y=z"
    assert taken[0].body == b"payload"
    assert taken[0].headers["x-probe"] == "p"
    assert taken[0].header("X-PROBE") == "p"
    assert taken[0].http_version == "HTTP/1.1"
    assert (server.accepted, server.connections, server.request_count) == (1, 1, 3)
    assert server.requests_per_connection == {1: 3}
    assert server.queued == 0
    server.check_assertions()


def test_routes_match_method_and_path_with_canned_responses_and_handlers(server: MockServer) -> None:
    """A route answers its path (any method, or one method); a handler sees the request and returns a response."""
    server.route("/item", MockResponse(200, body=b"any method"))
    server.route("/item", lambda exchange: MockResponse(201, body=exchange.recorded.body[::-1]), method="post")
    with default_session(**server.preset_overrides) as session:
        assert session.get(server.url("/item?q=1")).text == "any method"
        assert session.post(server.url("/item"), data=b"abc").text == "cba"
        missing = session.get(server.url("/nowhere"))
    assert missing.status_code == 404
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/item"), ("POST", "/item"), ("GET", "/nowhere")]


def test_enqueued_response_takes_precedence_over_a_route(server: MockServer) -> None:
    """A queued response answers the next request whatever its path; the route answers once the queue is empty."""
    server.route("/r", MockResponse(200, body=b"route"))
    server.enqueue(MockResponse(418, body=b"queued"))
    with default_session(retries=0, **server.preset_overrides) as session:
        assert [session.get(server.url("/r")).text for _ in range(2)] == ["queued", "route"]


def test_handler_that_raises_gets_500_and_is_reported(server: MockServer) -> None:
    """A handler exception answers 500 with Connection: close and makes check_assertions fail naming it."""

    def broken(exchange: object) -> None:
        raise LookupError("no such thing")

    server.route("/broken", broken)
    with default_session(retries=0, **server.preset_overrides) as session:
        response = session.get(server.url("/broken"))
    assert response.status_code == 500
    assert response.headers["Connection"] == "close"
    with pytest.raises(AssertionError, match=r"GET /broken: handler raised LookupError\('no such thing'\)"):
        server.check_assertions()


def test_unconsumed_enqueued_response_is_reported(server: MockServer) -> None:
    """An enqueued response no request took makes check_assertions fail, naming how many and their statuses."""
    server.enqueue(MockResponse(200))
    server.enqueue(MockResponse(418))
    with default_session(**server.preset_overrides) as session:
        session.get(server.url("/"))
    with pytest.raises(AssertionError, match=r"1 enqueued response\(s\) never served \(statuses 418\)"):
        server.check_assertions()


def test_route_with_times_is_a_one_shot_expectation(server: MockServer) -> None:
    """A route with times=N answers N requests then goes away; unmet counts and unrouted requests are reported."""
    server.route("/once", MockResponse(200, body=b"first"), method="GET", times=1)
    server.route("/twice", MockResponse(200), times=2)
    with default_session(**server.preset_overrides) as session:
        assert session.get(server.url("/once")).text == "first"
        assert session.get(server.url("/once?again=1")).status_code == 404
        session.get(server.url("/twice"))
    message = (
        r"no route for GET /once\?again=1 \(answered 404\); "
        r"route any method /twice expected 1 more request\(s\)"
    )
    with pytest.raises(AssertionError, match=message):
        server.check_assertions()
    with pytest.raises(ValueError, match="route times=0: expected a count >= 1"):
        server.route("/never", MockResponse(), times=0)


def test_a_fallback_of_your_own_answers_unrouted_requests_unreported(server: MockServer) -> None:
    """Setting fallback answers every unrouted request with it, and check_assertions no longer reports them."""
    server.fallback = MockResponse(200, body=b"catch-all")
    with default_session(**server.preset_overrides) as session:
        assert session.get(server.url("/anything")).text == "catch-all"
    assert server.fallback == MockResponse(200, body=b"catch-all")
    server.check_assertions()


def test_enqueue_after_close_raises() -> None:
    """enqueue on a closed server raises RuntimeError naming the server; close twice is harmless."""
    mock = MockServer().start()
    mock.close()
    mock.close()
    assert mock.closed
    with pytest.raises(RuntimeError, match=r"enqueue on MockServer at http://127\.0\.0\.1:\d+/ after close\(\)"):
        mock.enqueue(MockResponse(200))
    with pytest.raises(RuntimeError, match="is closed"):
        mock.start()


def test_chunked_response_is_framed_in_chunks(server: MockServer) -> None:
    """chunked=True sends Transfer-Encoding: chunked with hex-sized chunks and no Content-Length."""
    server.enqueue(MockResponse(200, body=b"hello world", chunked=True, headers={"Connection": "close"}))
    raw = _exchange(server, b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert b"Content-Length" not in head
    assert body == b"b\r\nhello world\r\n0\r\n\r\n"


def test_chunked_and_throttled_response_reaches_a_client_whole(server: MockServer) -> None:
    """A chunked body sent at a throttled rate arrives whole and de-chunked through requests."""
    server.enqueue(MockResponse(200, body=b"0123456789" * 4, chunked=True, throttle=4000))
    with default_session(**server.preset_overrides) as session:
        assert session.get(server.url("/")).content == b"0123456789" * 4


def test_head_gets_headers_and_no_body(server: MockServer) -> None:
    """A response to HEAD carries the body's Content-Length but no body; 204 carries neither."""
    server.enqueue(MockResponse(200, body=b"12345"))
    server.enqueue(MockResponse(204))
    raw = _exchange(server, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw.count(b"HTTP/1.1 ") == 2
    first, second = raw.split(b"HTTP/1.1 204")
    assert first.endswith(b"Content-Length: 5\r\n\r\n")
    assert b"Content-Length" not in second


def test_throttled_body_is_cut_by_close(server: MockServer) -> None:
    """A 1 byte/s body is still mid-way when close() cuts it: the client holds a partial body, close returns."""
    server.enqueue(MockResponse(200, body=b"x" * 100, throttle=1))
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = _read_until(sock, b"\r\n\r\nx")
        server.close()
        while chunk := sock.recv(65536):
            received += chunk
    assert b"Content-Length: 100" in received
    assert 1 <= len(received.partition(b"\r\n\r\n")[2]) < 100


def test_trickled_headers_are_cut_by_close(server: MockServer) -> None:
    """header_throttle sends the status line and headers a byte at a time: close() leaves the head unfinished."""
    server.enqueue(MockResponse(200, body=b"ok", header_throttle=1))
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = sock.recv(65536)
        server.close()
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"H")
    assert b"\r\n\r\n" not in received


def test_trickled_headers_arrive_whole() -> None:
    """A head trickled at 2000 bytes/s still parses: requests gets the status, headers and body."""
    with MockServer() as mock, default_session(**mock.preset_overrides) as session:
        mock.enqueue(MockResponse(200, headers={"X-Slow": "yes"}, body=b"ok", header_throttle=2000, throttle=2000))
        response = session.get(mock.url("/"))
    assert (response.status_code, response.headers["X-Slow"], response.text) == (200, "yes", "ok")


def test_delay_is_cut_by_close(server: MockServer) -> None:
    """A response delayed a minute is abandoned by close(): the client sees the connection close, no response."""
    server.enqueue(MockResponse(200, delay=60))
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        server.take_request(timeout=10)
        server.close()
        assert sock.recv(65536) == b""


# -- faults -----------------------------------------------------------------------------------


def test_reset_before_response(server: MockServer) -> None:
    """Fault.RESET_BEFORE_RESPONSE reads the request, then resets: the client gets a ConnectionError."""
    server.enqueue(MockResponse(fault=Fault.RESET_BEFORE_RESPONSE))
    with default_session(retries=0, **server.preset_overrides) as session, pytest.raises(requests.ConnectionError):
        session.get(server.url("/r"))
    assert [r.path for r in server.requests] == ["/r"]


def test_close_after_headers(server: MockServer) -> None:
    """Fault.CLOSE_AFTER_HEADERS sends the head with the full Content-Length, then closes: the body is cut short."""
    server.enqueue(MockResponse(200, body=b"x" * 50, fault=Fault.CLOSE_AFTER_HEADERS))
    raw = _exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.endswith(b"Content-Length: 50\r\n\r\n")


def test_disconnect_at_start(server: MockServer) -> None:
    """Fault.DISCONNECT_AT_START closes the next connection before reading: nothing recorded, the fault is used up."""
    server.enqueue(MockResponse(fault="disconnect_at_start"))  # type: ignore[arg-type]
    assert _exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    assert (server.accepted, server.requests, server.queued) == (1, [], 0)
    with default_session(**server.preset_overrides) as session:
        assert session.get(server.url("/")).status_code == 404


def test_stall_at_start_and_no_response_hold_the_connection(server: MockServer) -> None:
    """STALL_AT_START never reads the request; NO_RESPONSE reads it and never answers: both end in a read timeout."""
    server.enqueue(MockResponse(fault=Fault.STALL_AT_START))
    with default_session(retries=0, read_timeout=0.3, **server.preset_overrides) as session:
        with pytest.raises(requests.ReadTimeout):
            session.get(server.url("/stalled"))
        assert server.requests == []
        server.enqueue(MockResponse(fault=Fault.NO_RESPONSE))
        with pytest.raises(requests.ReadTimeout):
            session.get(server.url("/unanswered"))
    assert server.take_request(5).path == "/unanswered"


def test_stall_at_start_comes_before_the_tls_handshake(tls_server: MockServer) -> None:
    """On HTTPS, STALL_AT_START never answers the ClientHello: the client times out, no handshake is counted."""
    tls_server.enqueue(MockResponse(fault=Fault.STALL_AT_START))
    with default_session(retries=0, connect_timeout=0.3, read_timeout=0.3, **tls_server.preset_overrides) as session:
        with pytest.raises(requests.exceptions.Timeout):
            session.get(tls_server.url("/"))
        assert (tls_server.accepted, tls_server.connections, tls_server.handshake_errors) == (1, 0, [])
        assert session.get(tls_server.url("/after")).status_code == 404
    assert [r.path for r in tls_server.requests] == ["/after"]


def test_tls_below_minimum_version_is_refused(ca: trustme.CA, ca_bundle: str) -> None:
    """tls_min_version refuses an older client's handshake (recorded), and serves a new enough client."""
    with MockServer(tls=True, ca=ca, tls_min_version=ssl.TLSVersion.TLSv1_3) as mock:
        context = ssl.create_default_context(cafile=ca_bundle)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection((mock.host, mock.port), timeout=10) as sock, pytest.raises(ssl.SSLError):
            context.wrap_socket(sock, server_hostname="127.0.0.1")
        with default_session(**mock.preset_overrides) as session:
            assert session.get(mock.url("/")).status_code == 404
        wait_until(lambda: len(mock.handshake_errors) == 1, 10.0, "one handshake error recorded")
        assert "unsupported protocol" in mock.handshake_errors[0]
        assert (mock.accepted, mock.connections) == (2, 1)


# -- bad input ----------------------------------------------------------------------------------


def test_malformed_request_line_gets_400_and_is_recorded(server: MockServer) -> None:
    """A request line that is not HTTP gets 400 and is recorded with the reason."""
    raw = _exchange(server, b"GARBAGE\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ")
    [recorded] = server.requests
    assert recorded.status == 400
    assert "GARBAGE" in (recorded.malformed or "")
    assert server.take_request(5) is recorded


def test_malformed_header_gets_400_and_is_recorded(server: MockServer) -> None:
    """A header line without a colon gets 400 and is recorded as malformed."""
    raw = _exchange(server, b"GET /h HTTP/1.1\r\nHost: x\r\nno colon here\r\nX-After: 1\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ")
    [recorded] = server.requests
    assert (recorded.status, recorded.method) == (400, "GET")
    assert "Malformed header" in (recorded.malformed or "")


def test_multipart_request_is_not_mistaken_for_a_malformed_one(server: MockServer) -> None:
    """A multipart/form-data upload is recorded whole, not refused: only header-line defects get a 400."""
    with default_session(**server.preset_overrides) as session:
        response = session.post(server.url("/form"), files={"file": ("a.txt", b"payload")})
    [recorded] = server.requests
    assert response.status_code == 404
    assert recorded.malformed is None
    assert b"payload" in recorded.body
    assert (recorded.header("Content-Type") or "").startswith("multipart/form-data; boundary=")


def test_overlong_request_line_and_bad_content_length_are_recorded(server: MockServer) -> None:
    """A request line over 64 KiB gets 414; a non-numeric Content-Length gets 400; both recorded."""
    assert _exchange(server, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 414 ")
    assert _exchange(server, b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert [r.status for r in server.requests] == [414, 400]


def test_mock_response_validates_its_fields() -> None:
    """Out-of-range MockResponse fields raise ValueError naming the field and the accepted form."""
    with pytest.raises(ValueError, match=r"status=99: expected an int from 100 to 599"):
        MockResponse(99)
    with pytest.raises(ValueError, match=r"delay=-1: expected seconds >= 0"):
        MockResponse(delay=-1)
    with pytest.raises(ValueError, match=r"throttle=0: expected bytes per second > 0"):
        MockResponse(throttle=0)
    with pytest.raises(ValueError, match="CR and LF are not allowed"):
        MockResponse(headers={"X": "a\r\nb"})
    with pytest.raises(ValueError, match="expected a \\(name, value\\) pair of str"):
        MockResponse(headers=[("X", 1)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="redirect status=200"):
        MockResponse.redirect("/x", status=200)
    with pytest.raises(ValueError, match="cookie name='a=b'"):
        MockResponse().with_cookie("a=b", "c")
    with pytest.raises(ValueError, match="host='10.0.0.1': expected '127.0.0.1' or '::1'"):
        MockServer(host="10.0.0.1")
    with pytest.raises(ValueError, match="either ssl_context=, or tls=True"):
        MockServer(tls=True, ssl_context=ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
    with MockServer() as mock:
        with pytest.raises(ValueError, match="route path='x'"):
            mock.route("x", MockResponse())
        with pytest.raises(TypeError, match="not both"):
            mock.enqueue(MockResponse(), status=200)


def test_plain_server_has_no_ca_bundle(server: MockServer) -> None:
    """ca_bundle on a plain-HTTP server raises RuntimeError saying how to get one; its overrides only bypass proxies."""
    with pytest.raises(RuntimeError, match="create it with tls=True"):
        server.ca_bundle  # noqa: B018
    assert server.preset_overrides == {"proxies": "none"}
    assert server.environ == {"SESSION_PRESETS_PROXIES": "none"}


def test_take_request_times_out_naming_the_server(server: MockServer) -> None:
    """take_request with no request coming raises TimeoutError naming the server and the count."""
    with pytest.raises(TimeoutError, match=r"no request reached MockServer at http://127\.0\.0\.1:\d+/ within 0\.1 s"):
        server.take_request(timeout=0.1)


# -- helpers and observation -------------------------------------------------------------------------


def test_redirect_and_cookie_helpers(server: MockServer) -> None:
    """MockResponse.redirect is followed; with_cookie sets a cookie the session sends back."""
    server.enqueue(MockResponse.redirect("/landing", status=303).with_cookie("sid", "42", max_age=60, http_only=True))
    server.enqueue(MockResponse.json({"ok": True}))
    with default_session(**server.preset_overrides) as session:
        response = session.post(server.url("/login"), data=b"x")
    assert response.json() == {"ok": True}
    login, landing = server.requests
    assert (login.method, landing.method, landing.path) == ("POST", "GET", "/landing")
    assert landing.header("Cookie") == "sid=42"


def test_set_cookie_attributes_are_written(server: MockServer) -> None:
    """with_cookie writes every attribute asked for, and repeated Set-Cookie fields stay separate."""
    response = (
        MockResponse(200)
        .with_cookie("a", "1", path=None, domain="example.test", secure=True, same_site="Strict")
        .with_cookie("b", "2")
    )
    server.enqueue(response.with_header("Connection", "close"))
    raw = _exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"Set-Cookie: a=1; Domain=example.test; Secure; SameSite=Strict\r\n" in raw
    assert b"Set-Cookie: b=2; Path=/\r\n" in raw


def test_requests_per_connection_after_server_side_close(server: MockServer) -> None:
    """close_idle_connections makes the client open a new connection; the counts say which carried what."""
    with default_session(**server.preset_overrides) as session:
        session.get(server.url("/1"))
        session.get(server.url("/2"))
        server.close_idle_connections()
        session.get(server.url("/3"))
    assert server.requests_per_connection == {1: 2, 2: 1}
    assert [(r.connection_id, r.sequence) for r in server.requests] == [(1, 0), (1, 1), (2, 0)]


def test_chunked_request_body_is_recorded_de_chunked(server: MockServer) -> None:
    """A chunked upload is recorded as its plain bytes."""
    with default_session(**server.preset_overrides) as session:
        session.put(server.url("/up"), data=iter([b"ab", b"cd", b"e"]))
    [recorded] = server.requests
    assert recorded.header("Transfer-Encoding") == "chunked"
    assert recorded.body == b"abcde"


def test_headers_mapping_keeps_every_field() -> None:
    """Headers looks names up case-insensitively, gives the last value, and keeps repeats and order."""
    headers = Headers([("Accept", "a"), ("X-Dup", "1"), ("x-dup", "2")])
    assert (headers["ACCEPT"], headers["X-DUP"], headers.get("missing")) == ("a", "2", None)
    assert headers.get_all("X-Dup") == ["1", "2"]
    assert list(headers) == ["Accept", "x-dup"]
    assert len(headers) == 2
    assert "accept" in headers
    assert 3 not in headers
    assert headers.fields == (("Accept", "a"), ("X-Dup", "1"), ("x-dup", "2"))
    assert "X-Dup" in repr(headers)


def test_ipv6_loopback_on_request() -> None:
    """host='::1' serves on the IPv6 loopback, with a bracketed URL."""
    try:
        mock = MockServer(host="::1")
    except OSError as exc:  # pragma: no cover - a machine without IPv6
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with mock, default_session(**mock.preset_overrides) as session:
        mock.enqueue(MockResponse(200, body=b"six"))
        assert mock.url("/v6").startswith("http://[::1]:")
        assert session.get(mock.url("/v6")).text == "six"
    assert mock.requests[0].path == "/v6"


def test_close_wakes_stalled_connections_and_never_started_servers_close() -> None:
    """close() returns with connections stalled and handlers blocked; a server never started closes too."""
    MockServer().close()
    release = threading.Event()
    mock = MockServer().start()
    mock.enqueue(MockResponse(fault=Fault.STALL_AT_START))
    mock.route("/blocked", lambda exchange: MockResponse(200) if release.wait(30) else None)
    stalled = socket.create_connection((mock.host, mock.port), timeout=10)
    wait_until(lambda: mock.queued == 0, 10.0, "the queue to drain")  # the stall went to this connection, not the next
    blocked = socket.create_connection((mock.host, mock.port), timeout=10)
    try:
        blocked.sendall(b"GET /blocked HTTP/1.1\r\nHost: x\r\n\r\n")
        mock.take_request(timeout=10)
        mock.close()
        assert stalled.recv(1) == b""
    finally:
        release.set()
        stalled.close()
        blocked.close()


# -- file route ----------------------------------------------------------------------------------


def test_file_route_ranges_and_validators(server: MockServer) -> None:
    """FileRoute serves 200, 206 for N-, N-M and -N ranges, 416 past the end, and HEAD without a body."""
    data = bytes(range(256)) * 4
    server.route("/f", FileRoute(data, etag='"a"', last_modified="Wed, 21 Oct 2015 07:28:00 GMT"))
    with default_session(**server.preset_overrides) as session:
        whole = session.get(server.url("/f"))
        tail = session.get(server.url("/f"), headers={"Range": "bytes=1000-"})
        middle = session.get(server.url("/f"), headers={"Range": "bytes=10-19"})
        suffix = session.get(server.url("/f"), headers={"Range": "bytes=-4"})
        past = session.get(server.url("/f"), headers={"Range": "bytes=5000-"})
        head = session.head(server.url("/f"))
    assert (whole.status_code, whole.content, whole.headers["ETag"]) == (200, data, '"a"')
    assert whole.headers["Last-Modified"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert (tail.status_code, tail.content, tail.headers["Content-Range"]) == (206, data[1000:], "bytes 1000-1023/1024")
    assert (middle.status_code, middle.content) == (206, data[10:20])
    assert (suffix.status_code, suffix.content) == (206, data[-4:])
    assert (past.status_code, past.headers["Content-Range"]) == (416, "bytes */1024")
    assert (head.status_code, head.headers["Content-Length"], head.content) == (200, "1024", b"")
    assert [r.header("Range") for r in server.requests] == [None, "bytes=1000-", "bytes=10-19", "bytes=-4",
                                                            "bytes=5000-", None]


def test_file_route_if_range_follows_validators_changed_mid_test(server: MockServer) -> None:
    """If-Range keeps the range while the ETag or date matches; after set_file the whole new file comes back."""
    route = FileRoute(b"version one", etag='"1"', last_modified="Wed, 21 Oct 2015 07:28:00 GMT")
    server.route("/f", route)
    with default_session(**server.preset_overrides) as session:
        by_etag = session.get(server.url("/f"), headers={"Range": "bytes=8-", "If-Range": '"1"'})
        by_date = session.get(server.url("/f"), headers={"Range": "bytes=8-", "If-Range": route.last_modified or ""})
        route.set_file(b"version two!", etag='W/"2"')
        weak = session.get(server.url("/f"), headers={"Range": "bytes=8-", "If-Range": 'W/"2"'})
        stale = session.get(server.url("/f"), headers={"Range": "bytes=8-", "If-Range": '"1"'})
    assert (by_etag.status_code, by_etag.content) == (206, b"one")
    assert (by_date.status_code, by_date.content) == (206, b"one")
    assert (weak.status_code, weak.content) == (200, b"version two!")
    assert (stale.status_code, stale.content, stale.headers["ETag"]) == (200, b"version two!", 'W/"2"')
    assert "Last-Modified" not in stale.headers


def test_file_route_drop_and_throttle(server: MockServer) -> None:
    """A drop offset closes the connection there once; a throttled file still arrives whole afterwards."""
    route = FileRoute(b"0123456789" * 10, throttle=100_000, chunk=7)
    route.drops.append(35)
    server.route("/f", route)
    with default_session(retries=0, **server.preset_overrides) as session:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            session.get(server.url("/f"))
        assert session.get(server.url("/f")).content == b"0123456789" * 10
    assert route.drops == []
    assert server.connections == 2


def test_file_route_range_without_validator_when_none(server: MockServer) -> None:
    """With no validators, If-Range never matches: the whole file comes back."""
    server.route("/f", FileRoute(b"abcdef", etag=None))
    with default_session(**server.preset_overrides) as session:
        response = session.get(server.url("/f"), headers={"Range": "bytes=2-", "If-Range": '"x"'})
    assert (response.status_code, response.content) == (200, b"abcdef")
    assert "ETag" not in response.headers


# -- TLS and sessions ------------------------------------------------------------------------------


def test_tls_server_is_trusted_through_preset_overrides_and_environ(
    tls_server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """preset_overrides make a caller-owned session trust the server; environ does the same for shared sessions."""
    with ephemeral_session(**tls_server.preset_overrides) as session:
        assert session.get(tls_server.url("/e")).status_code == 404
    for name, value in tls_server.environ.items():
        monkeypatch.setenv(name, value)
    assert get_session().get(tls_server.localhost_url("/shared")).status_code == 404
    assert [r.path for r in tls_server.requests] == ["/e", "/shared"]
    assert Path(tls_server.ca_bundle).read_text().startswith("-----BEGIN CERTIFICATE-----")
    bundle = tls_server.ca_bundle
    tls_server.close()
    assert not Path(bundle).exists()


def test_tls_server_with_its_own_ca(ca_bundle: str) -> None:
    """tls=True without ca= makes a CA of its own, which a session trusting another CA refuses."""
    with MockServer(tls=True) as mock:
        with default_session(ca_bundle=ca_bundle, retries=0) as session, pytest.raises(requests.exceptions.SSLError):
            session.get(mock.url("/"))
        with default_session(**mock.preset_overrides) as session:
            assert session.get(mock.url("/")).status_code == 404


# -- reset and isolation ---------------------------------------------------------------------------


def test_reset_forgets_presets_and_shared_sessions(server: MockServer) -> None:
    """reset() drops registered presets and invalidates shared sessions: the next get_session is a new object."""
    register_preset("reset-probe", base="ephemeral")
    before = get_session()
    before.get(server.url("/"))
    reset()
    assert "reset-probe" not in preset_names()
    assert before.state.value == "invalidated"
    assert get_session() is not before


def test_reset_cancels_busy_shared_session_after_grace(server: MockServer) -> None:
    """A shared session still busy after reset's grace is cancelled, and reset returns."""
    entered = threading.Event()

    def hang(exchange: Exchange) -> None:
        entered.set()
        exchange.wait(30)

    server.route("/hang", hang)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            get_session().get(server.url("/hang"))
        except BaseException as exc:
            errors.append(exc)

    session = get_session()
    worker = threading.Thread(target=call)
    worker.start()
    assert entered.wait(10)
    reset(timeout=0.2)
    worker.join(10)
    assert session.state.value == "invalidated"
    assert [type(e).__name__ for e in errors] == ["SessionInvalidatedError"]


def test_reset_cancels_running_background_transfers(server: MockServer, tmp_path: Path) -> None:
    """reset() cancels a background session's running download; the server saw it start."""
    route = FileRoute(b"x" * 4096, throttle=64, chunk=16)
    server.route("/slow.bin", route)
    bg = background_session("reset-probe", state_dir=str(tmp_path))
    task = bg.download(server.url("/slow.bin"), tmp_path / "out.bin")
    server.take_request(timeout=10)
    reset()
    assert task.wait(10).state is TransferState.CANCELLED
    assert bg.state.value == "invalidated"


def test_import_session_presets_does_not_import_testing() -> None:
    """import session_presets loads neither session_presets.testing nor trustme nor pytest."""
    code = (
        "import sys, session_presets; "
        "print(sorted(m for m in ('session_presets.testing', 'trustme', 'pytest') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def _docs_example() -> str:
    """The first python example of the 'Testing your code' page."""
    match = re.search(r"```python\n(.*?)```", TESTING_PAGE.read_text(encoding="utf-8"), re.S)
    assert match is not None, "docs/testing.md has no python example"
    return match.group(1)


def test_docs_testing_example_passes_under_the_plugin(tmp_path: Path) -> None:
    """The 'Testing your code' page's example passes in a fresh pytest run that finds the plugin by itself."""
    (tmp_path / "test_docs_example.py").write_text(_docs_example())
    (tmp_path / "test_isolation.py").write_text(
        "import pytest\n"
        "from session_presets import preset_names, register_preset\n"
        "pytestmark = pytest.mark.usefixtures('session_presets_isolation')\n"
        "def test_a():\n    register_preset('only-here', base='default')\n"
        "def test_b():\n    assert 'only-here' not in preset_names()\n"
        "def test_leftover(mock_server):\n    mock_server.enqueue(status=200)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "-o", "addopts="],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert "4 passed, 1 error" in result.stdout, result.stdout + result.stderr
    assert "enqueued response(s) never served (statuses 200)" in result.stdout
