"""Threads that fetch the shared session each time never see it invalidated (issue 9 §8)."""

from __future__ import annotations

import threading

import pytest

from session_presets import SessionInvalidatedError, SessionState, _process, get_session

from .servers import LoopbackServer
from .waiting import wait_until

THREADS = 32
#: Invalidations of the shared session while the threads run.
ROUNDS = 5
#: Each thread's request loop is bounded in count as well as by the stop event.
MAX_PER_THREAD = 5000
BOUND = 60.0


def _hammer(url: str, rounds: int) -> tuple[list[BaseException], int]:
    """Run THREADS threads calling get_session().get(url) while the session is invalidated ``rounds`` times."""
    stop = threading.Event()
    lock = threading.Lock()
    errors: list[BaseException] = []
    done = [0] * THREADS

    def worker(index: int) -> None:
        while not stop.is_set() and done[index] < MAX_PER_THREAD:
            try:
                get_session().get(url)
            except Exception as exc:
                with lock:
                    errors.append(exc)
                return
            done[index] += 1

    threads = [_process.start_thread(worker, name=f"test-fetcher-{i}", args=(i,)) for i in range(THREADS)]
    try:
        for _ in range(rounds):
            target = sum(done) + THREADS
            # Calls in flight on the current session, from many threads.
            wait_until(
                lambda target=target: sum(done) >= target or errors or not any(t.is_alive() for t in threads),
                BOUND,
                "the threads to make progress",
            )
            old = get_session()
            old.finish_tasks_and_invalidate(BOUND)
            assert old.state is SessionState.INVALIDATED
            assert get_session() is not old
    finally:
        stop.set()
        for thread in threads:
            thread.join(BOUND)
    return errors, sum(done)


@pytest.mark.timeout(180)
def test_threads_fetching_get_session_never_see_it_invalidated(http_server: LoopbackServer) -> None:
    """32 threads calling get_session().get() while it is invalidated 5 times: no SessionInvalidatedError."""
    errors, done = _hammer(http_server.url("/slow?delay=0.01"), ROUNDS)
    assert errors == [], f"{len(errors)} thread(s) failed, first: {errors[0]!r}"
    assert len(http_server.requests) == done


def test_late_request_on_a_gracefully_invalidated_shared_session_uses_the_replacement(
    http_server: LoopbackServer,
) -> None:
    """A request reaching a shared session after finish_tasks_and_invalidate is sent by its replacement."""
    old = get_session()
    old.get(http_server.url())
    old.finish_tasks_and_invalidate()
    assert old.state is SessionState.INVALIDATED
    assert old.get(http_server.url("/echo")).status_code == 200
    new = get_session()
    assert new is not old
    assert new.stats.requests == 1
    # The replacement opened its own connection: the old one was closed with its session.
    assert [seen.connection for seen in http_server.requests] == [1, 2]


def test_request_on_a_cancelled_shared_session_is_refused(http_server: LoopbackServer) -> None:
    """After invalidate_and_cancel, a request on the old shared session raises SessionInvalidatedError."""
    old = get_session()
    old.invalidate_and_cancel()
    with pytest.raises(SessionInvalidatedError, match="refuses new requests"):
        old.get(http_server.url())
    assert http_server.requests == []
    assert get_session() is not old
