"""Reliability under server faults: resets, retryable statuses, stalls, trickles, dropped keep-alives."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from urllib3.exceptions import ReadTimeoutError

import session_presets
from session_presets import BodyReadTimeoutError, InsecureRedirectError, TotalTimeoutError, ephemeral_session
from session_presets._adapters import PresetRetry

from .fault_servers import Arrivals, flaky, status_then_ok
from .servers import Handler, LoopbackServer
from .waiting import wait_until


@pytest.mark.timeout(20)
def test_reset_before_response_is_retried_for_get(http_server: LoopbackServer) -> None:
    """A GET whose connection is reset before any response byte is retried on a new connection."""
    arrivals = Arrivals()
    http_server.route("/flaky", flaky(arrivals, failures=1))
    with ephemeral_session(backoff_factor=0) as session:
        response = session.get(http_server.url("/flaky"))
        assert response.status_code == 200
        assert response.content == b"recovered"
        assert session.stats.retries == 1
    seen = [r for r in http_server.requests if r.path == "/flaky"]
    assert [r.method for r in seen] == ["GET", "GET"]
    assert seen[0].connection != seen[1].connection
    assert http_server.connections == 2


@pytest.mark.timeout(20)
def test_reset_before_response_is_never_retried_for_post(http_server: LoopbackServer) -> None:
    """A POST whose connection is reset is sent once only and fails with a clear ConnectionError."""
    arrivals = Arrivals()
    http_server.route("/flaky", flaky(arrivals, failures=5))
    with ephemeral_session(backoff_factor=0, retries=3) as session:
        with pytest.raises(requests.ConnectionError) as info:
            session.post(http_server.url("/flaky"), data=b"payload")
        assert session.stats.retries == 0
    seen = [r for r in http_server.requests if r.path == "/flaky"]
    assert [(r.method, r.body) for r in seen] == [("POST", b"payload")]
    message = str(info.value)
    assert "reset" in message.lower() or "aborted" in message.lower(), message
    notes = getattr(info.value, "__notes__", [])
    assert any("POST" in note and "not retried" in note and "/flaky" in note for note in notes), notes


@pytest.mark.timeout(20)
def test_503_retry_after_is_honoured(http_server: LoopbackServer) -> None:
    """A 503 with Retry-After: 1 is retried no sooner than 1 s later, measured on the server."""
    arrivals = Arrivals()
    http_server.route("/busy", status_then_ok(arrivals, 503, "1"))
    with ephemeral_session(backoff_factor=0) as session:
        response = session.get(http_server.url("/busy"))
    assert response.status_code == 200
    assert response.content == b"finally"
    assert len(arrivals.times) == 2
    gap = arrivals.times[1] - arrivals.times[0]
    assert 1.0 <= gap < 3.0, gap


@pytest.mark.timeout(20)
@pytest.mark.parametrize("value", ["soon", "-5", "Fri, 99 Foo 2026 25:61:61 GMT", ""])
def test_unreadable_retry_after_is_ignored(http_server: LoopbackServer, value: str) -> None:
    """A 503 whose Retry-After cannot be read is retried after the back-off, as if it had none."""
    arrivals = Arrivals()
    http_server.route("/busy", status_then_ok(arrivals, 503, value))
    with ephemeral_session(backoff_factor=0) as session:
        response = session.get(http_server.url("/busy"))
        assert session.stats.retries == 1
    assert (response.status_code, response.content) == (200, b"finally")
    assert len(arrivals.times) == 2  # the server saw the retry


@pytest.mark.timeout(20)
def test_retries_exhausted_return_the_last_response(http_server: LoopbackServer) -> None:
    """When retries run out on a retryable status, the last response comes back (never RetryError)."""
    with ephemeral_session(backoff_factor=0, retries=2) as session:
        response = session.get(http_server.url("/status/503"))
        assert response.status_code == 503
        assert response.content == b"status 503"
        with pytest.raises(requests.HTTPError):
            response.raise_for_status()
        assert session.stats.retries == 2
    assert [r.path for r in http_server.requests] == ["/status/503"] * 3


@pytest.mark.timeout(20)
def test_retries_exhausted_through_a_real_socket_for_every_retryable_status(http_server: LoopbackServer) -> None:
    """Each retryable status is tried 1 + retries times on the server, then returned to the caller."""
    with ephemeral_session(backoff_factor=0, retries=1) as session:
        for status in (429, 502, 504):
            assert session.get(http_server.url(f"/status/{status}")).status_code == status
    assert [r.path for r in http_server.requests] == [
        path for status in (429, 502, 504) for path in [f"/status/{status}"] * 2
    ]


@pytest.mark.timeout(20)
def test_retry_after_beyond_total_timeout_returns_the_response_without_sleeping(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Retry-After longer than the remaining total_timeout returns that response at once: one try."""
    arrivals = Arrivals()
    http_server.route("/later", status_then_ok(arrivals, 429, "30"))
    pauses: list[float] = []
    pause = PresetRetry._interruptible_sleep
    monkeypatch.setattr(
        PresetRetry, "_interruptible_sleep", lambda self, seconds: (pauses.append(seconds), pause(self, seconds))[1]
    )
    with ephemeral_session(backoff_factor=0, total_timeout=5) as session:
        response = session.get(http_server.url("/later"))
    assert pauses == []
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "30"
    assert len(arrivals.times) == 1


def _stall_chunked(h: Handler) -> None:
    """A chunked body that sends one chunk, then nothing until the server closes."""
    h.send_response(200)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    h.wfile.write(b"a\r\n" + b"c" * 10 + b"\r\n")
    h.wfile.flush()
    h.wait(30)
    h.close_connection = True


_STALLED_BODY_READS: dict[str, Callable[[requests.Response], object]] = {
    "content": lambda response: response.content,
    "text": lambda response: response.text,
    "iter_content": lambda response: b"".join(response.iter_content(4)),
    "iter_content-decoded": lambda response: list(response.iter_content(4, decode_unicode=True)),
    "iter_lines": lambda response: list(response.iter_lines()),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("path", ["/stall?after=10&for=30", "/stall-chunked"], ids=["content-length", "chunked"])
@pytest.mark.parametrize("read", sorted(_STALLED_BODY_READS))
@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
def test_stalled_body_raises_read_timeout(http_server: LoopbackServer, path: str, read: str, stream: bool) -> None:
    """A body that stops arriving after the headers raises BodyReadTimeoutError, a ReadTimeout, on every read."""
    http_server.route("/stall-chunked", _stall_chunked)
    with (
        ephemeral_session(read_timeout=0.5, total_timeout=None, retries=0) as session,
        pytest.raises(requests.ReadTimeout) as info,
        session.get(http_server.url(path), stream=stream) as response,
    ):
        _STALLED_BODY_READS[read](response)
    assert type(info.value) is BodyReadTimeoutError
    # Still the ConnectionError that requests raises here, for code written against requests.
    assert isinstance(info.value, requests.ConnectionError)
    assert "Read timed out" in str(info.value), str(info.value)
    assert [r.path for r in http_server.requests] == [path]


@pytest.mark.timeout(30)
def test_stalled_body_on_raw_is_urllib3s_read_timeout(http_server: LoopbackServer) -> None:
    """response.raw stays urllib3's: a stalled raw.read() raises urllib3's ReadTimeoutError, as with requests."""
    with (
        ephemeral_session(read_timeout=0.5, total_timeout=None, retries=0) as session,
        session.get(http_server.url("/stall?after=10&for=30"), stream=True) as response,
        pytest.raises(ReadTimeoutError, match="Read timed out"),
    ):
        response.raw.read()
    assert [r.path for r in http_server.requests] == ["/stall?after=10&for=30"]


@pytest.mark.timeout(30)
def test_stalled_body_on_plain_requests_is_a_bare_connection_error(http_server: LoopbackServer) -> None:
    """The difference BodyReadTimeoutError makes: plain requests raises a ConnectionError that is no Timeout."""
    with requests.Session() as plain, pytest.raises(requests.ConnectionError) as info:
        plain.get(http_server.url("/stall?after=10&for=30"), timeout=0.5)
    assert not isinstance(info.value, requests.Timeout)
    assert "Read timed out" in str(info.value)
    assert [r.path for r in http_server.requests] == ["/stall?after=10&for=30"]


@pytest.mark.timeout(20)
def test_trickling_body_hits_total_timeout(http_server: LoopbackServer) -> None:
    """A server trickling 1 byte/s (never idle for read_timeout) trips total_timeout long before its 60 s body ends."""
    with (
        ephemeral_session(read_timeout=5, total_timeout=1.5, retries=0) as session,
        pytest.raises(TotalTimeoutError) as info,
    ):
        session.get(http_server.url("/trickle?bytes=60&interval=1"))
    assert isinstance(info.value, requests.Timeout)
    assert "total_timeout" in str(info.value)
    assert len(http_server.requests) == 1


@pytest.mark.timeout(20)
def test_idle_keepalive_closed_by_server_is_replaced(http_server: LoopbackServer) -> None:
    """A pooled connection the server closed while idle is replaced transparently for GET."""
    with ephemeral_session(retries=0) as session:
        assert session.get(http_server.url("/ok")).content == b"ok"
        http_server.close_idle_connections()
        wait_until(lambda: http_server.mock.open_connections == 0, 10.0, "the server to close its idle connection")
        assert session.get(http_server.url("/ok")).content == b"ok"
    assert http_server.connections == 2
    assert [r.connection for r in http_server.requests] == [1, 2]


@pytest.mark.timeout(20)
def test_https_to_http_redirect_is_refused(
    https_server: LoopbackServer, http_server: LoopbackServer, ca_bundle: str
) -> None:
    """An https→http redirect raises InsecureRedirectError and the http server sees nothing."""
    target = http_server.url("/echo")
    with ephemeral_session(ca_bundle=ca_bundle) as session, pytest.raises(InsecureRedirectError) as info:
        session.get(https_server.url(f"/redirect?to={target}"))
    assert isinstance(info.value, session_presets.SessionPresetsError)
    assert "allow_insecure_redirects" in str(info.value)
    assert len(https_server.requests) == 1
    assert http_server.requests == []


@pytest.mark.timeout(20)
def test_https_to_http_redirect_allowed_when_configured(
    https_server: LoopbackServer, http_server: LoopbackServer, ca_bundle: str
) -> None:
    """With allow_insecure_redirects=True the https→http redirect is followed."""
    target = http_server.url("/echo")
    with ephemeral_session(ca_bundle=ca_bundle, allow_insecure_redirects=True) as session:
        response = session.get(https_server.url(f"/redirect?to={target}"))
    assert response.status_code == 200
    assert response.json()["path"] == "/echo"
    assert [r.path for r in http_server.requests] == ["/echo"]
