"""total_timeout and invalidate_and_cancel reach a call in TCP connect and in the TLS handshake."""

from __future__ import annotations

import socket

import pytest
import requests

from session_presets import SessionInvalidatedError, default_session
from session_presets._errors import TotalTimeoutError

from .servers import LoopbackServer
from .stalling_listeners import FullBacklogListener, SilentListener, syn_sent_to
from .threaded_call import Outcome as _Outcome
from .threaded_call import run_in_thread as _run
from .waiting import wait_until

#: How long a test waits for a call that should end within a few seconds (connect_timeout is 30 s).
BOUND = 10.0


def _ended(outcome: _Outcome) -> BaseException | None:
    assert outcome.done.wait(BOUND), f"the call was still running {BOUND:g} s later"
    return outcome.error


@pytest.mark.timeout(60)
def test_total_timeout_ends_a_connect_to_a_full_backlog() -> None:
    """A connect that hangs (full accept queue) ends at total_timeout=3, not at connect_timeout=30."""
    with FullBacklogListener() as listener, default_session(total_timeout=3, connect_timeout=30) as session:
        outcome = _run(lambda: session.get(listener.url()))
        wait_until(lambda: syn_sent_to(listener.port) > 1, BOUND, "the call's SYN")
        assert isinstance(_ended(outcome), TotalTimeoutError), outcome.error


@pytest.mark.timeout(60)
def test_total_timeout_ends_a_stalled_tls_handshake(ca_bundle: str) -> None:
    """A server that never answers the ClientHello fails the call at total_timeout=3, not connect_timeout=30."""
    with SilentListener() as listener, default_session(
        total_timeout=3, connect_timeout=30, ca_bundle=ca_bundle
    ) as session:
        outcome = _run(lambda: session.get(listener.url()))
        assert listener.received.wait(BOUND), "the server never received a ClientHello"
        assert isinstance(_ended(outcome), TotalTimeoutError), outcome.error
        # The client hung up: the server saw its connection closed.
        assert listener.closed_by_client.wait(BOUND)


@pytest.mark.timeout(60)
def test_cancel_aborts_a_call_in_connect() -> None:
    """invalidate_and_cancel() makes a call stuck in TCP connect raise SessionInvalidatedError at once."""
    with FullBacklogListener() as listener:
        session = default_session(total_timeout=None, connect_timeout=30)
        outcome = _run(lambda: session.get(listener.url()))
        wait_until(lambda: syn_sent_to(listener.port) > 1, BOUND, "the call's SYN")
        session.invalidate_and_cancel()
        assert isinstance(_ended(outcome), SessionInvalidatedError), outcome.error
        wait_until(lambda: syn_sent_to(listener.port) == 1, BOUND, "the call's SYN to be withdrawn")


@pytest.mark.timeout(60)
def test_cancel_aborts_a_call_in_the_tls_handshake(ca_bundle: str) -> None:
    """invalidate_and_cancel() makes a call waiting for a ServerHello raise SessionInvalidatedError at once."""
    with SilentListener() as listener:
        session = default_session(total_timeout=None, connect_timeout=30, ca_bundle=ca_bundle)
        outcome = _run(lambda: session.get(listener.url()))
        assert listener.received.wait(BOUND), "the server never received a ClientHello"
        session.invalidate_and_cancel()
        assert isinstance(_ended(outcome), SessionInvalidatedError), outcome.error
        assert listener.closed_by_client.wait(BOUND)
        assert listener.accepted == 1  # cancelled, not retried


@pytest.mark.timeout(60)
def test_cancel_aborts_a_post_in_the_tls_handshake(ca_bundle: str) -> None:
    """A POST cut in its handshake raises SessionInvalidatedError; the server never saw a request."""
    with SilentListener() as listener:
        session = default_session(total_timeout=None, connect_timeout=30, ca_bundle=ca_bundle)
        outcome = _run(lambda: session.post(listener.url("/form"), data=b"x"))
        assert listener.received.wait(BOUND)
        session.invalidate_and_cancel()
        assert isinstance(_ended(outcome), SessionInvalidatedError), outcome.error


def test_new_connections_keep_urllib3_socket_options(http_server: LoopbackServer) -> None:
    """Sockets made by the library keep urllib3's defaults (TCP_NODELAY) and reach the server once."""
    with default_session() as session:
        response = session.get(http_server.url("/ok?size=100000"), stream=True)
        sock = response.raw.connection.sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert len(response.content) == 100000
        session.get(http_server.url())
    assert http_server.connections == 1


def test_connection_refused_is_a_connection_error() -> None:
    """A refused connect is requests' ConnectionError naming the failure, as before."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    with default_session(retries=0) as session, pytest.raises(requests.ConnectionError) as info:
        session.get(f"http://127.0.0.1:{port}/ok")
    assert "Failed to establish a new connection" in str(info.value)
    assert not isinstance(info.value, TotalTimeoutError)


def test_localhost_tries_each_address(http_server: LoopbackServer) -> None:
    """A name with several addresses (::1 and 127.0.0.1) reaches the one that listens."""
    with default_session() as session:
        assert session.get(http_server.localhost_url()).text == "ok"
    assert http_server.connections == 1


def test_no_time_left_fails_the_phase_and_marks_the_deadline() -> None:
    """A phase that would start with no time left raises at once and marks the call as past its deadline."""
    from urllib3.exceptions import ProtocolError

    from session_presets._calls import DEADLINE, Call

    call = Call(total_timeout=0)
    with pytest.raises(ProtocolError, match="deadline"):
        call.cap(30)
    assert call.reason == DEADLINE
    assert Call(total_timeout=None).cap(None) is None
