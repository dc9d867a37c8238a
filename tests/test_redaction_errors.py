"""Exceptions leaving a PresetSession call, and DEBUG logs, carry no query string or userinfo (issue 9 §5, §6)."""

from __future__ import annotations

import logging
import socket
import traceback

import pytest
import requests

from session_presets import TotalTimeoutError, default_session
from session_presets._redact import redact_text

from .fault_servers import Arrivals, flaky
from .servers import LoopbackServer

SECRET = "s3cr3t-T0KEN"
PASSWORD = "pa55-W0RD"


def _full_text(exc: BaseException) -> str:
    """Everything a traceback of ``exc`` shows: every message and note of its chain."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """DEBUG records of session_presets, urllib3 and requests."""
    for name in ("session_presets", "urllib3", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _assert_clean(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    text = _full_text(exc) + "\n".join(record.getMessage() for record in caplog.records)
    assert SECRET not in text, text
    assert PASSWORD not in text, text


def _closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


def test_connection_refused_error_has_no_query(debug_logs: pytest.LogCaptureFixture) -> None:
    """A refused connection: ConnectionError without the query, the full URL still on exc.request."""
    url = f"http://127.0.0.1:{_closed_port()}/f?token={SECRET}"
    with default_session(retries=1, backoff_factor=0) as session, pytest.raises(requests.ConnectionError) as info:
        session.get(url)
    assert type(info.value) is requests.ConnectionError
    assert "Max retries exceeded with url: /f " in str(info.value)
    assert info.value.request.url == url
    _assert_clean(info.value, debug_logs)


@pytest.mark.timeout(30)
def test_read_timeout_error_has_no_query(http_server: LoopbackServer, debug_logs: pytest.LogCaptureFixture) -> None:
    """A read timeout: requests' ReadTimeout without the query; the server got the query."""
    with default_session(read_timeout=0.3, retries=0) as session, pytest.raises(requests.ReadTimeout) as info:
        session.get(http_server.url(f"/slow?delay=3&token={SECRET}"))
    assert f"token={SECRET}" in http_server.requests[0].path
    _assert_clean(info.value, debug_logs)


@pytest.mark.timeout(30)
def test_exhausted_retries_error_has_no_query(
    http_server: LoopbackServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    """Retries exhausted on resets: the MaxRetryError text and urllib3's retry logs lose the query."""
    http_server.route("/flaky", flaky(Arrivals(), failures=10))
    with default_session(retries=2, backoff_factor=0) as session, pytest.raises(requests.ConnectionError) as info:
        session.get(http_server.url(f"/flaky?token={SECRET}"))
    assert len(http_server.requests) == 3
    assert any("Retrying" in record.getMessage() for record in debug_logs.records)
    _assert_clean(info.value, debug_logs)


@pytest.mark.timeout(30)
def test_total_timeout_error_and_its_cause_have_no_query(
    http_server: LoopbackServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    """total_timeout: TotalTimeoutError and the error it was raised from carry no query."""
    with default_session(total_timeout=1) as session, pytest.raises(TotalTimeoutError) as info:
        session.get(http_server.url(f"/trickle?bytes=30&interval=0.2&token={SECRET}"))
    assert info.value.__cause__ is not None
    _assert_clean(info.value, debug_logs)


def test_invalid_url_error_has_no_userinfo_or_query(debug_logs: pytest.LogCaptureFixture) -> None:
    """A URL requests cannot parse: the error names it without password or query."""
    with default_session() as session, pytest.raises(requests.exceptions.InvalidURL) as info:
        session.get(f"http://user:{PASSWORD}@127.0.0.1:notaport/f?token={SECRET}")
    _assert_clean(info.value, debug_logs)
    with default_session() as session, pytest.raises(requests.exceptions.MissingSchema) as missing:
        session.get(f"example/f?token={SECRET}")
    _assert_clean(missing.value, debug_logs)


@pytest.mark.parametrize(("status", "kind"), [(404, "Client Error"), (503, "Server Error")])
def test_raise_for_status_message_has_no_query(status: int, kind: str) -> None:
    """raise_for_status() on a preset session's response: requests' message, the URL without query or password."""
    from session_presets.testing import MockServer

    with MockServer() as server, default_session(retries=0) as session:
        server.enqueue(status=status, body=b"no")
        url = server.url(f"/f?token={SECRET}").replace("http://", f"http://user:{PASSWORD}@")
        response = session.get(url)
        with pytest.raises(requests.HTTPError) as info:
            response.raise_for_status()
        assert server.take_request().target == f"/f?token={SECRET}"  # the server got the whole URL
    assert str(info.value) == f"{status} {kind}: {response.reason} for url: {server.url('/f')}"
    assert info.value.response is response and SECRET in response.url
    assert SECRET not in _full_text(info.value) and PASSWORD not in _full_text(info.value)


def test_raise_for_status_success_and_plain_urls_are_requests_own() -> None:
    """A 200 raises nothing; a URL with nothing to hide keeps requests' message byte for byte."""
    from session_presets.testing import MockServer

    with MockServer() as server, default_session() as session:
        server.enqueue(status=200, body=b"ok")
        server.enqueue(status=404, body=b"no")
        session.get(server.url("/")).raise_for_status()
        response = session.get(server.url("/missing"))
    with pytest.raises(requests.HTTPError) as info:
        response.raise_for_status()
    with pytest.raises(requests.HTTPError) as plain:
        requests.Response.raise_for_status(response)
    assert str(info.value) == str(plain.value)


@pytest.mark.timeout(20)
def test_post_not_retried_note_shows_in_the_traceback(http_server: LoopbackServer) -> None:
    """The 'not retried' note on a reset POST shows in its traceback on every Python (3.10: in the message)."""
    http_server.route("/flaky", flaky(Arrivals(), failures=5))
    with default_session(retries=3) as session, pytest.raises(requests.ConnectionError) as info:
        session.post(http_server.url(f"/flaky?token={SECRET}"), data=b"payload")
    assert [seen.method for seen in http_server.requests] == ["POST"]
    text = _full_text(info.value)
    assert "POST" in text and "was not retried" in text and "/flaky" in text, text
    assert SECRET not in text
    assert any("not retried" in note for note in info.value.__notes__)


def test_logs_of_other_urllib3_users_are_untouched(
    http_server: LoopbackServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    """Only records of our own calls are redacted: a plain urllib3 call logs its URL as it always did."""
    import urllib3

    with urllib3.PoolManager() as manager:
        assert manager.request("GET", http_server.url("/ok?plain=1")).status == 200
    assert any("/ok?plain=1" in record.getMessage() for record in debug_logs.records)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Max retries exceeded with url: /f?token=x (Caused by X)", "Max retries exceeded with url: /f (Caused by X)"),
        ("Invalid URL 'http://u:p@h:x/f?t=1': bad", "Invalid URL 'http://h:x/f': bad"),
        ("Incremented Retry for (url='/f?t=1'): Retry(total=1)", "Incremented Retry for (url='/f'): Retry(total=1)"),
        ('"GET /f?t=1#frag HTTP/1.1" 200 2', '"GET /f HTTP/1.1" 200 2'),
        ("Invalid URL 'f?t=1': No scheme supplied.", "Invalid URL 'f': No scheme supplied."),
        ("is the server up? yes", "is the server up? yes"),
        ("mail user@example.com", "mail user@example.com"),
    ],
)
def test_redact_text(text: str, shown: str) -> None:
    """redact_text drops userinfo, query strings and fragments, and leaves other text alone."""
    assert redact_text(text) == shown
