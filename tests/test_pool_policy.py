"""pool_block: calls beyond pool_maxsize wait for a free connection instead of opening throw-away ones."""

from __future__ import annotations

import threading

import pytest
import requests

import session_presets as sp

from .servers import Handler, LoopbackServer


def _pairs_route(server: LoopbackServer) -> list[int]:
    """Route /pair answers once two requests are inside the handler at the same time (or after 2 s)."""
    gate = threading.Barrier(2)
    in_flight: list[int] = []
    peak = [0]
    lock = threading.Lock()

    def pair(h: Handler) -> None:
        with lock:
            in_flight.append(1)
            peak[0] = max(peak[0], len(in_flight))
        try:
            gate.wait(2)
        except threading.BrokenBarrierError:
            gate.reset()
        with lock:
            in_flight.pop()
        h.reply(200, b"ok")

    server.route("/pair", pair)
    return peak


def test_threads_beyond_pool_maxsize_wait_instead_of_opening_connections(http_server: LoopbackServer) -> None:
    """8 threads x 5 calls on pool_maxsize=2: the server sees 2 connections and at most 2 requests at once."""
    peak = _pairs_route(http_server)
    statuses: list[int] = []
    with sp.default_session(pool_maxsize=2, pool_connections=1) as session:

        def work() -> None:
            for _ in range(5):
                statuses.append(session.get(http_server.url("/pair")).status_code)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert statuses == [200] * 40
    assert http_server.connections == 2
    assert peak[0] == 2
    assert len(http_server.requests) == 40


def test_a_waiting_call_ends_at_its_total_timeout(http_server: LoopbackServer) -> None:
    """With the only connection held by a streamed response, a call waits and ends at total_timeout."""
    with sp.default_session(pool_maxsize=1, pool_connections=1, total_timeout=1, connect_timeout=30) as session:
        held = session.get(http_server.url(), stream=True)
        with pytest.raises(sp.TotalTimeoutError):
            session.get(http_server.url())
        assert held.content == b"ok"  # read to the end: the connection goes back to the pool
        assert session.get(http_server.url()).status_code == 200
    assert http_server.connections == 1


def test_a_waiting_call_is_cancelled_by_invalidate_and_cancel(http_server: LoopbackServer) -> None:
    """A call waiting for a free connection raises SessionInvalidatedError when the session is cancelled."""
    errors: list[BaseException] = []
    session = sp.default_session(pool_maxsize=1, pool_connections=1, connect_timeout=30)
    held = session.get(http_server.url(), stream=True)
    waiting = threading.Event()

    def wait_for_connection() -> None:
        waiting.set()
        try:
            session.get(http_server.url())
        except requests.RequestException as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait_for_connection)
    thread.start()
    waiting.wait(5)
    session.invalidate_and_cancel()
    thread.join(10)
    held.close()
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], sp.SessionInvalidatedError)
    assert http_server.connections == 1


def test_after_connect_timeout_an_extra_connection_is_opened(http_server: LoopbackServer) -> None:
    """A leaked streamed response never starves the pool: past connect_timeout the call opens another connection."""
    with sp.default_session(pool_maxsize=1, pool_connections=1, connect_timeout=0.3) as session:
        held = session.get(http_server.url(), stream=True)
        assert session.get(http_server.url()).status_code == 200
        held.close()
    assert http_server.connections == 2
