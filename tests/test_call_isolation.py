"""One call's deadline never cuts a connection another call holds (issue 9 §2)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from session_presets import default_session
from session_presets._errors import TotalTimeoutError

from .servers import Handler, LoopbackServer
from .threaded_call import run_in_thread as _run
from .waiting import wait_until

#: Bounded waits: far longer than anything here should take.
BOUND = 20.0


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
    a_hung_up = threading.Event()

    def hang(h: Handler) -> None:
        # Hold the response until the client closes the connection (A's deadline).
        h.connection.settimeout(0.05)
        ends = time.monotonic() + BOUND
        while time.monotonic() < ends:
            try:
                if h.connection.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        a_hung_up.set()
        h.close_connection = True

    def held(h: Handler) -> None:
        # B's request is answered only once A has hit its deadline.
        a_hung_up.wait(BOUND)
        h.reply(200, b"held")

    second_server.route("/hang", hang)
    http_server.route("/held", held)
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
