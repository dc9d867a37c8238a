"""Invalidation, flush and reset close connections from the server's point of view, responses held or not."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import requests

import session_presets as sp

from .servers import Handler, LoopbackServer
from .waiting import wait_until

#: Connections the hostile run saw left open: one per concurrent call.
CALLS = 10


def _together(server: LoopbackServer) -> str:
    """A route that answers only once CALLS requests have arrived, so each came on its own connection."""
    arrived = threading.Barrier(CALLS)

    def route(h: Handler) -> None:
        arrived.wait(timeout=10)
        h.reply(200, b"done")

    server.route("/together", route)
    return server.url("/together")


def _held_responses(session: sp.PresetSession, server: LoopbackServer) -> list[requests.Response]:
    """CALLS fully read responses from CALLS threads at once, kept by the caller."""
    url = _together(server)
    held: list[requests.Response] = []
    threads = [threading.Thread(target=lambda: held.append(session.get(url))) for _ in range(CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert [r.content for r in held] == [b"done"] * CALLS
    assert server.mock.open_connections == server.connections == CALLS
    return held


ENDINGS: dict[str, Callable[[sp.PresetSession], None]] = {
    "finish_tasks_and_invalidate": sp.PresetSession.finish_tasks_and_invalidate,
    "invalidate_and_cancel": sp.PresetSession.invalidate_and_cancel,
    "close": sp.PresetSession.close,
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_invalidation_closes_connections_of_responses_still_held(ending: str, http_server: LoopbackServer) -> None:
    """Ten fully read responses kept by the caller: after invalidation the server sees all ten connections close."""
    session = sp.default_session(pool_maxsize=CALLS)
    held = _held_responses(session, http_server)
    ENDINGS[ending](session)
    wait_until(lambda: http_server.mock.open_connections == 0, 5, "the server to see every connection closed")
    assert session.stats.open_connections == 0
    assert len(held) == CALLS  # still referenced: the pools are closed, not collected


@pytest.mark.parametrize("ending", ["flush", "reset"])
def test_flush_and_reset_close_idle_connections_of_responses_still_held(
    ending: str, http_server: LoopbackServer
) -> None:
    """flush() and reset() close the idle connections of responses still held; the next call opens a new one."""
    with sp.default_session(pool_maxsize=CALLS) as session:
        held = _held_responses(session, http_server)
        getattr(session, ending)()
        wait_until(lambda: http_server.mock.open_connections == 0, 5, "the server to see every connection closed")
        assert session.stats.open_connections == 0
        assert session.get(http_server.url("/ok")).status_code == 200
        assert http_server.connections == CALLS + 1
        del held


def test_a_streamed_body_being_read_keeps_its_connection_until_released(http_server: LoopbackServer) -> None:
    """finish_tasks_and_invalidate leaves a streamed body readable; its connection closes once the body is read."""
    session = sp.default_session()
    streamed = session.get(http_server.url("/ok?size=300000"), stream=True)
    idle = session.get(http_server.url("/ok?size=10"))  # a second connection: the first is held
    assert http_server.mock.open_connections == 2
    session.finish_tasks_and_invalidate()
    wait_until(lambda: http_server.mock.open_connections == 1, 5, "the idle connection to close")
    assert len(streamed.content) == 300_000
    wait_until(lambda: http_server.mock.open_connections == 0, 5, "the streamed body's connection to close")
    assert session.stats.open_connections == 0
    assert idle.content == b"x" * 10


@pytest.mark.parametrize("pool_block", [False, True])
@pytest.mark.parametrize("ending", ["flush", "reset"])
def test_a_call_holding_a_pool_closed_by_flush_still_sends(
    ending: str, pool_block: bool, http_server: LoopbackServer
) -> None:
    """A call that looked its pool up just before flush()/reset() closed it still sends, on a connection then closed."""
    with sp.default_session(pool_block=pool_block) as session:
        assert session.get(http_server.url("/ok")).status_code == 200
        request = session.prepare_request(requests.Request("GET", http_server.url("/echo")))
        pool = session.adapter.get_connection_with_tls_context(request, True)
        getattr(session, ending)()
        response = pool.urlopen("GET", "/echo", preload_content=True)
        assert response.status == 200
        wait_until(lambda: http_server.mock.open_connections == 0, 5, "the straggler's connection to close")
        assert session.stats.open_connections == 0
    assert [seen.path for seen in http_server.requests] == ["/ok", "/echo"]
    assert http_server.connections == 2


class _ForeignProxyManager:
    """Not urllib3's manager: what requests' own suite puts in an adapter's proxy_manager (it has no pools)."""

    def __init__(self) -> None:
        self.cleared = 0

    def clear(self) -> None:
        self.cleared += 1


def test_close_reaches_a_foreign_proxy_manager_without_pools(http_server: LoopbackServer) -> None:
    """close() clears an object in proxy_manager that has no pools, as requests' close does, and still closes ours."""
    session = sp.default_session()
    assert session.get(http_server.url("/ok")).status_code == 200
    foreign = _ForeignProxyManager()
    session.adapter.proxy_manager["http://proxy.invalid:1"] = foreign  # type: ignore[assignment]
    session.close()
    assert foreign.cleared == 1
    wait_until(lambda: http_server.mock.open_connections == 0, 5, "the session's connection to close")
