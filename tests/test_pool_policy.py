"""pool_block: calls beyond pool_maxsize wait for a free connection instead of opening throw-away ones."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
from urllib3.exceptions import EmptyPoolError

import session_presets as sp
from session_presets._calls import CANCELLED, Call, set_current_call

from .servers import Handler, LoopbackServer, reset_connection
from .threaded_call import Outcome, run_in_thread
from .waiting import wait_until

#: The longest a test waits for another thread to reach a point (never reached when the code is right).
_BOUND = 20.0


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
    pool = _pool(session, http_server.url())

    def wait_for_connection() -> None:
        try:
            session.get(http_server.url())
        except requests.RequestException as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait_for_connection)
    thread.start()
    # Cancelled while really in the pool's line, not before it asked (which a closed session refuses anyway).
    wait_until(lambda: pool.preset_waiting == 1, _BOUND, "the second call to wait for the held connection")
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


def _pool(session: sp.PresetSession, url: str) -> Any:
    """The connection pool that ``session`` uses for ``url``."""
    # As the session looks it up: PoolManager.connection_from_url would make (and evict for) a pool of its own.
    return session.get_adapter(url).get_connection_with_tls_context(requests.Request("GET", url).prepare(), True)


def _queue_calls(session: sp.PresetSession, pool: Any, urls: list[str]) -> list[Outcome]:
    """Start one GET per URL, each once the previous one is waiting in the pool's line."""
    outcomes = []
    for url in urls:
        outcomes.append(run_in_thread(lambda url=url: session.get(url).status_code))
        queued = len(outcomes)
        wait_until(lambda: pool.preset_waiting == queued, _BOUND, f"{queued} calls wait")  # noqa: B023
    return outcomes


def _finish(outcomes: list[Outcome]) -> list[Any]:
    """Wait (bounded) for every outcome and return the results, raising the first error."""
    for outcome in outcomes:
        assert outcome.done.wait(_BOUND)
        if outcome.error is not None:
            raise outcome.error
    return [outcome.result for outcome in outcomes]


def test_32_threads_on_pool_maxsize_10_open_at_most_10_connections(http_server: LoopbackServer) -> None:
    """32 threads x 10 calls sharing one session with pool_maxsize=10: the server accepts at most 10 connections."""
    with sp.default_session(pool_maxsize=10, connect_timeout=30) as session:

        def work() -> list[int]:
            return [session.get(http_server.url()).status_code for _ in range(10)]

        outcomes = [run_in_thread(work) for _ in range(32)]
        assert _finish(outcomes) == [[200] * 10] * 32
    assert len(http_server.requests) == 320
    assert 1 <= http_server.connections <= 10


def test_waiters_get_the_connection_in_arrival_order(http_server: LoopbackServer) -> None:
    """With one connection held, six queued calls reach the server in the order they started waiting."""
    with sp.default_session(pool_maxsize=1, pool_connections=1, connect_timeout=30) as session:
        held = session.get(http_server.url(), stream=True)
        pool = _pool(session, http_server.url())
        outcomes = _queue_calls(session, pool, [http_server.url(f"/ok?size={i}") for i in range(1, 7)])
        assert held.content == b"ok"  # read to its end: the connection goes back to the pool
        assert _finish(outcomes) == [200] * 6
        assert pool.preset_waiting == 0
    assert [seen.path for seen in http_server.requests] == ["/ok"] + [f"/ok?size={i}" for i in range(1, 7)]
    assert http_server.connections == 1


def _wait_on_pool(pool: Any, call: Call) -> Outcome:
    """Start a GET straight on ``pool`` as part of ``call`` (so that the test can abort that call alone)."""

    def get() -> int:
        set_current_call(call)
        try:
            return int(pool.urlopen("GET", "/ok?caller=aborted").status)
        finally:
            set_current_call(None)

    return run_in_thread(get)


def test_a_cancelled_waiter_passes_the_connection_on(http_server: LoopbackServer) -> None:
    """A waiter cancelled as the connection comes back leaves it to the next in line: no extra connection."""
    with sp.default_session(pool_maxsize=1, pool_connections=1, connect_timeout=30) as session:
        held = session.get(http_server.url(), stream=True)
        pool = _pool(session, http_server.url())
        call = Call(None)
        first = _wait_on_pool(pool, call)
        wait_until(lambda: pool.preset_waiting == 1, _BOUND, "the first call waits")
        second = run_in_thread(lambda: session.get(http_server.url()).status_code)
        wait_until(lambda: pool.preset_waiting == 2, _BOUND, "the second call waits")
        # Aborted without waking it: the connection is most likely handed to it before it notices.
        call.reason = CANCELLED
        assert held.content == b"ok"
        assert second.done.wait(_BOUND)
        assert first.done.wait(_BOUND)
        assert isinstance(first.error, EmptyPoolError)
        assert second.error is None and second.result == 200
        assert session.get(http_server.url()).status_code == 200
        assert pool.pool.qsize() == 1
    assert http_server.connections == 1
    assert "/ok?caller=aborted" not in [seen.path for seen in http_server.requests]


def test_a_waiter_past_its_deadline_leaves_the_line(http_server: LoopbackServer) -> None:
    """A waiter past its deadline leaves the line; the call behind it gets the connection, no extra one is opened."""
    with sp.default_session(pool_maxsize=1, pool_connections=1, connect_timeout=30) as session:
        held = session.get(http_server.url(), stream=True)
        pool = _pool(session, http_server.url())
        first = _wait_on_pool(pool, Call(0.2))
        wait_until(lambda: pool.preset_waiting == 1, _BOUND, "the first call waits")
        second = run_in_thread(lambda: session.get(http_server.url()).status_code)
        assert first.done.wait(_BOUND)
        assert isinstance(first.error, EmptyPoolError)
        wait_until(lambda: pool.preset_waiting == 1, _BOUND, "only the second call waits")
        assert held.content == b"ok"
        assert _finish([second]) == [200]
        assert pool.pool.qsize() == 1
    assert http_server.connections == 1


def test_closing_the_pool_wakes_its_waiters(http_server: LoopbackServer) -> None:
    """Calls waiting for a connection fail with ConnectionError when the pool is closed, instead of waiting on."""
    with sp.default_session(pool_maxsize=1, pool_connections=1, connect_timeout=30) as session:
        held = session.get(http_server.url(), stream=True)
        pool = _pool(session, http_server.url())
        outcomes = [run_in_thread(lambda: session.get(http_server.url())) for _ in range(2)]
        wait_until(lambda: pool.preset_waiting == 2, _BOUND, "two calls wait")
        pool.close()
        for outcome in outcomes:
            assert outcome.done.wait(_BOUND)
            assert isinstance(outcome.error, requests.ConnectionError)
            assert "closed" in str(outcome.error)
        held.close()
        session.get_adapter(http_server.url()).close_idle()  # forgets the closed pool
        assert session.get(http_server.url()).status_code == 200
    assert len(http_server.requests) == 2


def test_a_dropped_connection_hands_its_slot_to_the_next_waiter(http_server: LoopbackServer) -> None:
    """When the held connection breaks, urllib3's empty slot goes to the waiter, which connects anew."""
    entered = threading.Event()
    gate = threading.Event()

    def reset_later(h: Handler) -> None:
        entered.set()
        gate.wait(_BOUND)
        reset_connection(h)

    http_server.route("/reset-later", reset_later)
    with sp.default_session(pool_maxsize=1, pool_connections=1, connect_timeout=30) as session:
        breaking = run_in_thread(lambda: session.post(http_server.url("/reset-later")))  # POST: not retried
        assert entered.wait(_BOUND)
        pool = _pool(session, http_server.url())
        waiting = run_in_thread(lambda: session.get(http_server.url()).status_code)
        wait_until(lambda: pool.preset_waiting == 1, _BOUND, "a call waits")
        gate.set()
        assert breaking.done.wait(_BOUND)
        assert isinstance(breaking.error, requests.ConnectionError)
        assert _finish([waiting]) == [200]
    assert http_server.connections == 2


def test_a_waiter_whose_grant_is_taken_in_a_race_keeps_its_place(http_server: LoopbackServer) -> None:
    """A connection granted to the first waiter but taken by a racing call first: that waiter stays first in line."""
    with sp.default_session(pool_maxsize=1, pool_connections=1, connect_timeout=30) as session:
        session.get(http_server.url()).close()
        pool = _pool(session, http_server.url())
        conn = pool._get_conn()  # the only slot, held by the test
        outcomes = _queue_calls(session, pool, [http_server.url("/ok?size=1"), http_server.url("/ok?size=2")])
        # Given back, then taken at once (as by a call that saw nobody waiting): usually
        # before the first waiter wakes; if that waiter was quicker, the take finds nothing.
        pool._put_conn(conn)
        try:
            stolen = pool._take()
        except EmptyPoolError:
            stolen = None
        if stolen is not None:
            wait_until(lambda: pool.preset_waiting == 2, _BOUND, "both calls wait again")
            pool._put_conn(stolen)
        assert _finish(outcomes) == [200, 200]
    assert [seen.path for seen in http_server.requests] == ["/ok", "/ok?size=1", "/ok?size=2"]
    assert http_server.connections == 1
