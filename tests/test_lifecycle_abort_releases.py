"""A call aborted just as a retryable status arrives gives its connection back, closed: no socket is left open."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psutil
import pytest
import requests

from session_presets import SessionInvalidatedError, default_session
from session_presets._calls import CANCELLED, DEADLINE, current_call
from session_presets._retry import PresetRetry
from tests.servers import LoopbackServer


@pytest.fixture
def abort_on_retryable_status(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Abort the running call (with the reason put in the list) the moment urllib3 sees a retryable status.

    That is the instant, between reading a 503's headers and PresetRetry.increment, where a
    cancel from another thread or the deadline watchdog lands about once in thirty tries;
    here it lands every time.
    """
    reasons: list[str] = []
    original = PresetRetry.is_retry

    def is_retry(self: PresetRetry, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        answer = original(self, method, status_code, has_retry_after)
        call = current_call()
        if answer and reasons and call is not None:
            call.abort(reasons.pop())
        return answer

    monkeypatch.setattr(PresetRetry, "is_retry", is_retry)
    return reasons


def _in_own_thread(call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` on a thread of its own, so nothing of it outlives the thread; return what it raised."""
    box: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return box[0] if box else None


def _open_sockets_to(server: LoopbackServer) -> list[int]:
    """Descriptors this process still holds on connections to ``server`` (its accepted side excluded).

    No gc.collect() first: a connection must be closed when it is let go, not when the GC
    finds it (the GC closes it too, with a ResourceWarning that surfaces in some later test).
    """
    return [
        conn.fd
        for conn in psutil.Process().net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == server.port and conn.fd != -1
    ]


def test_cancel_between_status_and_retry_leaves_no_socket_open(
    http_server: LoopbackServer, abort_on_retryable_status: list[str]
) -> None:
    """A cancel landing after a 503's headers raises SessionInvalidatedError and closes that connection."""
    abort_on_retryable_status.append(CANCELLED)
    session = default_session(retries=3, backoff_factor=0)
    error = _in_own_thread(lambda: session.get(http_server.url("/status/503")))
    assert isinstance(error, SessionInvalidatedError), error
    del error
    session.invalidate_and_cancel()
    assert [r.path for r in http_server.requests] == ["/status/503"]
    assert _open_sockets_to(http_server) == []


def test_deadline_between_status_and_retry_keeps_the_pool_whole(
    http_server: LoopbackServer, abort_on_retryable_status: list[str]
) -> None:
    """After a deadline abort at that instant, the connection is closed and a one-slot pool serves the next call."""
    abort_on_retryable_status.append(DEADLINE)
    with default_session(retries=3, backoff_factor=0, pool_maxsize=1, total_timeout=30) as session:
        error = _in_own_thread(lambda: session.get(http_server.url("/status/503")))
        assert isinstance(error, requests.Timeout), error
        del error
        assert _open_sockets_to(http_server) == []
        assert session.get(http_server.url("/ok"), timeout=5).status_code == 200
    assert [r.path for r in http_server.requests] == ["/status/503", "/ok"]
