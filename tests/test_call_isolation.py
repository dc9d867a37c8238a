"""Each call has its own context: one call's deadline never cuts a connection another call holds
(issue 9 §2), and concurrent or nested calls never share a deadline, a timeout choice or a metrics
record (issue 24 §2)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from session_presets import PresetAdapter, default_session, get_preset
from session_presets._errors import TotalTimeoutError

from .servers import Handler, LoopbackServer, Route, hold_until_client_closes, route_timeout_then_answer
from .threaded_call import run_in_thread as _run
from .waiting import wait_until

#: Bounded waits: far longer than anything here should take.
BOUND = 20.0


def _hold_then_signal(cut: threading.Event, *, delay: float = 0.0, half_body: bytes = b"") -> Route:
    """A route that (after ``delay`` s, and half a body if given) holds until the client cuts it, then sets ``cut``."""

    def route(h: Handler) -> None:
        if delay:
            h.wait(delay)
        if half_body:
            h.send_response(200)
            h.send_header("Content-Length", str(2 * len(half_body)))
            h.end_headers()
            h.wfile.write(half_body)
            h.wfile.flush()
        hold_until_client_closes(h, BOUND)
        cut.set()

    return route


def _answer_once_set(cut: threading.Event, body: bytes) -> Route:
    """A route that answers ``body`` only once ``cut`` is set (bounded)."""

    def route(h: Handler) -> None:
        cut.wait(BOUND)
        h.reply(200, body)

    return route


@pytest.fixture
def second_server() -> Iterator[LoopbackServer]:
    """Another plain HTTP loopback server (another origin)."""
    with LoopbackServer() as server:
        yield server


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_deadline_of_one_call_spares_the_connection_it_gave_back(
    http_server: LoopbackServer, second_server: LoopbackServer, method: str
) -> None:
    """A's deadline after a redirect does not cut A's first connection, now carrying B's request."""
    # A's response is held until its deadline cuts the connection; B's is answered only then.
    a_hung_up = threading.Event()
    second_server.route("/hang", _hold_then_signal(a_hung_up))
    http_server.route("/held", _answer_once_set(a_hung_up, b"held"))
    first = default_session(total_timeout=2)
    # B has no deadline of its own, on the same pools as A.
    second = default_session(total_timeout=None)
    second.mount("http://", first.adapter)
    try:
        a = _run(lambda: first.get(http_server.url(f"/redirect?to={second_server.url('/hang')}")))
        wait_until(lambda: second_server.saw("/hang"), BOUND, "the second server to see /hang")
        body = b"payload" if method == "POST" else None
        b = _run(lambda: second.request(method, http_server.url("/held"), data=body))
        wait_until(lambda: http_server.saw("/held"), BOUND, "the server to see /held")
        assert a.done.wait(BOUND)
        assert isinstance(a.error, TotalTimeoutError), a.error
        assert b.done.wait(BOUND)
        assert b.error is None, b.error
        assert b.result.text == "held"
    finally:
        second.close()
        first.close()
    seen = [(request.method, request.path, request.connection) for request in http_server.requests]
    hop = next(conn for verb, path, conn in seen if path.startswith("/redirect"))
    # B was served on A's first connection, exactly once.
    assert [(verb, conn) for verb, path, conn in seen if path == "/held"] == [(method, hop)]


def test_streamed_body_released_leaves_the_call(http_server: LoopbackServer) -> None:
    """A streamed body read to its end hands its connection back: the next call reuses it, uncut."""
    with default_session() as session:
        response = session.get(http_server.url("/ok?size=50000"), stream=True)
        conn = response.raw.connection
        assert conn.preset_call is not None
        assert len(response.content) == 50000
        assert conn.preset_call is None
        assert session.get(http_server.url()).text == "ok"
    assert http_server.connections == 1


@pytest.mark.timeout(60)
def test_two_threads_on_one_session_keep_their_own_timeout_choice(http_server: LoopbackServer) -> None:
    """Two threads on one session: a call with its own timeout= is not retried while another's preset timeout is."""
    route_timeout_then_answer(http_server, "/own-timeout", "/preset-timeout")
    with default_session(read_timeout=4, retries=1, backoff_factor=0, total_timeout=None) as session:
        # A's own read timeout fires while B's call is in flight, B having started after A.
        a = _run(lambda: session.get(http_server.url("/own-timeout"), timeout=(5, 1.5)))
        wait_until(lambda: http_server.saw("/own-timeout"), BOUND, "the server to see A's request")
        b = _run(lambda: session.get(http_server.url("/preset-timeout")))
        assert a.done.wait(BOUND)
        assert b.done.wait(BOUND)
    assert isinstance(a.error, requests.ReadTimeout), a.error
    assert b.error is None, b.error
    assert b.result.text == "second try"
    assert b.result.metrics.attempts == 2
    # What the server saw: A's request once (a caller's timeout= is not retried), B's twice.
    assert http_server.saw("/own-timeout") == 1
    assert http_server.saw("/preset-timeout") == 2


@pytest.mark.timeout(60)
def test_a_call_made_from_a_response_hook_has_its_own_deadline(http_server: LoopbackServer) -> None:
    """A call made from a response hook on the same session runs to its own deadline, not the outer call's."""
    # Most of the outer call's 2 s go by before it gets half of its body; its connection is cut at
    # its deadline. The nested call is answered only then: 1.2 s into its own 2 s.
    outer_cut = threading.Event()
    http_server.route("/outer", _hold_then_signal(outer_cut, delay=1.2, half_body=b"outer"))
    http_server.route("/nested", _answer_once_set(outer_cut, b"nested"))
    seen: dict[str, Any] = {}
    with default_session(total_timeout=2, retries=0) as session:

        def hook(response: requests.Response, **kwargs: Any) -> None:
            try:
                seen["nested"] = session.get(http_server.url("/nested"))
            except Exception as exc:
                seen["nested"] = exc

        with pytest.raises(TotalTimeoutError, match="/outer"):
            session.get(http_server.url("/outer"), hooks={"response": [hook]})
    nested_response = seen["nested"]
    assert isinstance(nested_response, requests.Response), nested_response
    assert nested_response.text == "nested"
    assert nested_response.metrics.attempts == 1
    assert outer_cut.is_set()
    # What the server saw: each path once, on a connection of its own.
    assert [request.path for request in http_server.requests] == ["/outer", "/nested"]
    assert http_server.connections == 2


@pytest.mark.parametrize("guarded", [False, True], ids=["plain", "guarded"])
def test_a_subclass_send_runs_once_per_request_on_a_plain_session(http_server: LoopbackServer, guarded: bool) -> None:
    """On a plain Session, the adapter makes the call's context without running a subclass's send twice."""

    class Stamping(PresetAdapter):
        sends = 0

        def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
            type(self).sends += 1
            request.headers["X-Sends"] = str(self.sends)
            return super().send(request, *args, **kwargs)

    config = get_preset("default").replace(total_timeout=5, max_in_flight=4 if guarded else None)
    with requests.Session() as session:
        session.mount("http://", Stamping(config))
        assert session.get(http_server.url("/ok")).text == "ok"
    assert Stamping.sends == 1
    assert [request.header("X-Sends") for request in http_server.requests] == ["1"]
