"""Transaction metrics (response.metrics), session aggregates (stats), logging and the CLI timing."""

from __future__ import annotations

import gc
import json
import logging
import os
import pickle
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import session_presets as sp
from session_presets import _metrics, _process
from session_presets._counters import Counters
from session_presets.cli import main

from .servers import Handler, LoopbackServer

#: Upper bound for any phase: generous, the machine is shared and loaded.
SLACK = 20.0


class PhasedServer:
    """An HTTPS server of one connection that delays each phase by a known amount.

    Once the ClientHello has arrived it sleeps ``tls_delay`` before the handshake;
    after the request headers, ``request_delay`` before it reads the body; then
    ``wait_delay`` before the status line; then it sends ``chunks`` body chunks,
    each ``body_delay`` after the one before (the first after the headers).
    """

    def __init__(self, context: ssl.SSLContext, *, tls_delay: float, request_delay: float,
                 wait_delay: float, body_delay: float, chunks: int = 3) -> None:
        self.context = context
        self.delays = (tls_delay, request_delay, wait_delay, body_delay)
        self.chunks = chunks
        self.listener = socket.create_server(("127.0.0.1", 0))
        # A small receive window: the client's sendall of a large body cannot
        # finish before this server starts reading it.
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.bodies: list[int] = []
        self.done = threading.Event()
        _process.start_thread(self._serve, name="phased-server")

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        tls_delay, request_delay, wait_delay, body_delay = self.delays
        try:
            raw, _ = self.listener.accept()
        except OSError:
            return
        self.connections += 1
        try:
            raw.recv(1, socket.MSG_PEEK)  # the client's handshake started: its connect is over
            time.sleep(tls_delay)
            with self.context.wrap_socket(raw, server_side=True) as conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(65536)
                headers, _, body = head.partition(b"\r\n\r\n")
                length = 0
                for line in headers.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                time.sleep(request_delay)
                received = len(body)
                while received < length:
                    data = conn.recv(1 << 20)
                    if not data:
                        break
                    received += len(data)
                self.bodies.append(received)
                time.sleep(wait_delay)
                chunk = b"c" * 1000
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (len(chunk) * self.chunks)
                )
                for _ in range(self.chunks):
                    time.sleep(body_delay)
                    conn.sendall(chunk)
        except OSError:
            pass
        finally:
            self.done.set()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def tls_session(ca_bundle: str) -> Iterator[sp.PresetSession]:
    """A caller-owned session trusting the test CA."""
    with sp.default_session(ca_bundle=ca_bundle) as session:
        yield session


def test_each_phase_is_at_least_the_delay_the_server_put_in_it(
    server_context: ssl.SSLContext, tls_session: sp.PresetSession
) -> None:
    """dns/connect/tls/request/wait/body/total come from where they happen: each covers the server's delay."""
    # tls and request are bound causally (the client cannot finish before the
    # server resumes); wait and body are not (the client's own thread may mark
    # its start late on a loaded machine), so the server delays those by more.
    delay = 0.3
    server = PhasedServer(server_context, tls_delay=delay, request_delay=delay, wait_delay=2 * delay,
                          body_delay=delay, chunks=3)
    body = b"u" * (16 << 20)
    try:
        response = tls_session.post(server.url("/upload"), data=body)
    finally:
        server.close()
    assert server.done.wait(SLACK)
    assert server.connections == 1
    assert server.bodies == [len(body)]
    m = response.metrics
    assert isinstance(m, sp.TransactionMetrics)
    assert m.dns is not None and 0 <= m.dns < SLACK
    assert m.connect is not None and 0 <= m.connect < SLACK
    assert m.tls is not None and delay <= m.tls < delay + SLACK
    assert m.request is not None and delay <= m.request < delay + SLACK
    assert m.wait is not None and delay <= m.wait < 2 * delay + SLACK
    assert m.body is not None and 2 * delay <= m.body < 3 * delay + SLACK
    assert m.total is not None and m.total >= m.connect + m.tls + m.request + m.wait + m.body
    assert m.total >= 6 * delay
    assert (m.reused, m.attempts, m.remote_address) == (False, 1, "127.0.0.1")
    assert m.tls_version is not None and m.tls_version.startswith("TLS")
    assert m.cipher
    assert m.bytes_sent > len(body)
    assert m.bytes_received > 3000


def test_a_reused_connection_has_no_dns_connect_or_tls(
    https_server: LoopbackServer, tls_session: sp.PresetSession
) -> None:
    """The second call over the same connection reports reused=True and None for the phases it skipped."""
    first = tls_session.get(https_server.url("/ok"))
    second = tls_session.get(https_server.url("/ok?size=5000"))
    assert https_server.connections == 1
    assert first.metrics.reused is False and first.metrics.tls is not None and first.metrics.connect is not None
    m = second.metrics
    assert (m.reused, m.dns, m.connect, m.tls) == (True, None, None, None)
    assert m.request is not None and m.wait is not None and m.body is not None and m.total is not None
    assert m.tls_version == first.metrics.tls_version and m.cipher == first.metrics.cipher
    assert m.bytes_received > 5000


def test_plain_http_has_no_tls_figures(http_server: LoopbackServer) -> None:
    """Over plain HTTP, tls, tls_version and cipher are None; bytes_sent counts the request body."""
    with sp.default_session() as session:
        response = session.post(http_server.url("/echo"), data=b"x" * 1234)
    seen = http_server.requests[-1]
    assert len(seen.body) == 1234
    m = response.metrics
    assert (m.tls, m.tls_version, m.cipher) == (None, None, None)
    assert m.connect is not None
    assert m.bytes_sent >= 1234 + len("POST /echo HTTP/1.1\r\n")
    assert m.bytes_received >= len(response.content)


def test_every_response_in_history_has_its_own_metrics(http_server: LoopbackServer) -> None:
    """A redirect's hops each carry metrics of their own, complete once the hop's body was consumed."""
    with sp.default_session() as session:
        response = session.get(http_server.url("/redirect?to=/ok"))
    assert [seen.path for seen in http_server.requests] == ["/redirect?to=/ok", "/ok"]
    hop = response.history[0].metrics
    assert hop is not response.metrics
    assert hop.total is not None and response.metrics.total is not None
    assert hop.reused is False and response.metrics.reused is True


def test_metrics_survive_pickling(http_server: LoopbackServer) -> None:
    """A pickled response keeps its metrics, as requests keeps the rest of a response."""
    with sp.default_session() as session:
        response = session.get(http_server.url("/ok"))
    copy = pickle.loads(pickle.dumps(response))
    assert copy.text == "ok"
    assert copy.metrics == response.metrics
    assert copy.metrics is not None and copy.metrics.total is not None


def test_streamed_body_fills_body_and_total_when_consumed(http_server: LoopbackServer) -> None:
    """stream=True: body/total are None until the body is read, then filled; the request stays active meanwhile."""
    with sp.default_session() as session:
        response = session.get(http_server.url("/trickle?bytes=3&interval=0.05"), stream=True)
        assert response.metrics.body is None and response.metrics.total is None
        assert response.metrics.wait is not None
        assert session.stats.active_requests == 1
        assert response.content == b"zzz"
        assert response.metrics.body is not None and response.metrics.total is not None
        assert response.metrics.total >= response.metrics.body > 0
        assert session.stats.active_requests == 0


def test_streamed_body_fills_body_and_total_when_closed(http_server: LoopbackServer) -> None:
    """stream=True closed unread: body/total are filled at the close and the request is no longer active."""
    with sp.default_session() as session:
        response = session.get(http_server.url("/stall?after=1&for=5"), stream=True)
        assert response.metrics.total is None
        response.close()
        assert response.metrics.total is not None and response.metrics.body is not None
        assert session.stats.active_requests == 0
        assert session.stats.request_duration.count == 1


def test_an_abandoned_stream_ends_its_request_and_connection(http_server: LoopbackServer) -> None:
    """A streamed response collected unread and unclosed ends as unclosed_response and closes its socket."""
    with sp.default_session() as session:
        response = session.get(http_server.url("/stall?after=1&for=5"), stream=True)
        assert (session.stats.active_requests, session.stats.open_connections) == (1, 1)
        del response
        gc.collect()
        stats = session.stats
        assert (stats.active_requests, stats.open_connections) == (0, 0)
        assert stats.request_duration.count == stats.connection_duration.count == 1
        session.get(http_server.url("/ok"))
    assert http_server.connections == 2


def test_attempts_count_the_retries(http_server: LoopbackServer) -> None:
    """A 503 then a 200 gives attempts=2, and the phases are the last attempt's."""
    hits: list[int] = []

    def flaky(h: Handler) -> None:
        hits.append(1)
        h.reply(503 if len(hits) == 1 else 200, b"flaky", {"Retry-After": "0"})

    http_server.route("/flaky", flaky)
    with sp.default_session(backoff_factor=0) as session:
        response = session.get(http_server.url("/flaky"))
        assert response.status_code == 200
        assert len(http_server.requests) == 2
        assert response.metrics.attempts == 2
        assert response.metrics.total is not None
        assert session.stats.retries == 1
        assert session.stats.request_duration.count == 1
        assert session.stats.active_requests == 0


def test_stats_aggregates_follow_the_server(http_server: LoopbackServer) -> None:
    """open_connections, request and connection durations agree with what the server saw."""
    with sp.default_session() as session:
        stats = session.stats
        assert (stats.open_connections, stats.active_requests, stats.request_duration.count) == (0, 0, 0)
        assert stats.p50 is None and stats.connections_resumed == 0
        for _ in range(5):
            session.get(http_server.url("/ok"))
        session.get(http_server.url("/close"))
        session.get(http_server.url("/ok"))
        stats = session.stats
        assert http_server.connections == 2
        assert stats.open_connections == 1
        assert stats.connection_duration.count == 1
        assert stats.request_duration.count == 7 == stats.requests
        assert sum(stats.request_duration.bucket_counts) == 7
        assert len(stats.request_duration.bucket_counts) == len(_metrics.REQUEST_DURATION_BUCKETS) + 1
        assert stats.p50 is not None and stats.p90 is not None and stats.p99 is not None
        assert 0 < stats.p50 <= stats.p90 <= stats.p99
        assert stats.request_duration.quantile(1.0) == stats.p99 or stats.p99 <= stats.request_duration.quantile(1.0)
        session.flush()
        assert session.stats.open_connections == 0
        assert session.stats.connection_duration.count == 2


def test_histogram_quantiles_are_read_from_fixed_buckets() -> None:
    """Quantiles land within the bucket resolution of the recorded values; bad q names the accepted range."""
    histogram = _metrics.Histogram(_metrics.REQUEST_DURATION_BUCKETS)
    for value in [0.001] * 50 + [0.02] * 40 + [0.5] * 9 + [30.0] + [0.0]:
        histogram.record(value)
    snap = histogram.snapshot()
    assert snap.count == 101
    assert snap.bucket_counts[0] == 51 and snap.bucket_counts[2] == 40 and snap.bucket_counts[-1] == 1
    assert snap.p50 is not None and 0.00094 <= snap.p50 <= 0.00106
    assert snap.p90 is not None and 0.0188 <= snap.p90 <= 0.0212
    assert snap.p99 is not None and 0.46 <= snap.p99 <= 0.54
    assert snap.quantile(0.001) is not None and snap.quantile(0.001) < 1e-5  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"q=1.5 is invalid: expected a number in \(0, 1\]"):
        snap.quantile(1.5)
    assert _metrics.Histogram((1.0,)).snapshot().quantile(0.5) is None


def test_aggregates_are_thread_safe(http_server: LoopbackServer) -> None:
    """8 threads x 50 calls: every request is in the histogram once and none is left active."""
    threads, per_thread = 8, 50
    with sp.default_session(pool_maxsize=threads) as session:
        url = http_server.url("/ok")
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(per_thread):
                    session.get(url)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        workers = [_process.start_thread(work, name="metrics-worker") for _ in range(threads)]
        for worker in workers:
            worker.join(SLACK * 3)
        assert errors == []
        stats = session.stats
        assert len(http_server.requests) == threads * per_thread
        assert stats.request_duration.count == stats.requests == threads * per_thread
        assert stats.active_requests == 0
        assert stats.open_connections == http_server.connections


def test_counters_lose_no_increment_between_threads() -> None:
    """8 threads adding to one Counters, switching as often as CPython allows, lose no increment."""
    threads, per_thread = 8, 20_000
    counters = Counters()
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait(SLACK)
        for _ in range(per_thread):
            counters.add("requests")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        workers = [_process.start_thread(work, name="counters-worker") for _ in range(threads)]
        for worker in workers:
            worker.join(SLACK * 3)
    finally:
        sys.setswitchinterval(interval)
    assert counters.requests == counters.snapshot()["requests"] == threads * per_thread
    with pytest.raises(KeyError):
        counters.add("request")


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_at_zero(http_server: LoopbackServer) -> None:
    """After os.fork() the child's stats are zero, and count only the child's own calls."""
    session = sp.get_session()
    for _ in range(3):
        session.get(http_server.url("/ok"))
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            before = session.stats
            session.get(http_server.url("/ok"))
            after = session.stats
            report = [before.requests, before.request_duration.count, before.open_connections,
                      after.requests, after.request_duration.count, after.open_connections]
            os.write(write_fd, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        report = json.loads(pipe.read() or "null")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == [0, 0, 0, 1, 1, 1]
    assert session.stats.request_duration.count == 3
    assert http_server.connections == 2


def test_one_debug_line_per_request_and_nothing_at_info(
    http_server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Each request logs one DEBUG line (preset, method, redacted URL, status, time, reused, attempts)."""
    url = http_server.url("/ok").replace("http://", "http://user:secret@") + "?token=hunter2"
    with sp.default_session() as session:
        caplog.set_level(logging.DEBUG, logger="session_presets")
        session.get(url)
        session.get(url)
        with pytest.raises(requests.ConnectionError):
            session.get("http://127.0.0.1:1/refused")
    lines = [r for r in caplog.records if r.name == "session_presets._metrics"]
    assert len(lines) == 3
    text = lines[0].getMessage()
    assert text.startswith(f"default GET http://127.0.0.1:{http_server.port}/ok -> 200 in ")
    assert "reused=False, attempts=1" in text
    assert "reused=True" in lines[1].getMessage()
    assert "ConnectionError" in lines[2].getMessage()
    for record in caplog.records:
        assert "secret" not in record.getMessage() and "hunter2" not in record.getMessage()
    assert [r for r in caplog.records if r.name.startswith("session_presets") and r.levelno >= logging.INFO] == []


def test_metrics_switched_off_record_nothing(http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the module switch off, responses carry metrics=None and the histogram stays empty."""
    monkeypatch.setattr(_metrics, "ENABLED", False)
    with sp.default_session() as session:
        response = session.get(http_server.url("/ok"))
        assert response.metrics is None
        assert session.stats.request_duration.count == 0
        assert session.stats.requests == 1


def test_a_failing_sink_does_not_fail_the_request(http_server: LoopbackServer) -> None:
    """An exporter that raises is logged at DEBUG and the request still succeeds."""

    class Broken:
        def request_started(self, tx: Any) -> None:
            raise RuntimeError("broken exporter")

        request_ended = connection_state = request_started

    sink = Broken()
    _metrics.add_sink(sink)
    _metrics.add_sink(sink)
    try:
        with sp.default_session() as session:
            assert session.get(http_server.url("/ok")).status_code == 200
    finally:
        _metrics.remove_sink(sink)
    assert sink not in _metrics._sinks


def test_cli_timing_prints_the_phases_after_the_body(
    https_server: LoopbackServer, ca_bundle: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """get -w writes the body to stdout, then the phase breakdown to stderr."""
    monkeypatch.setenv("SESSION_PRESETS_CA_BUNDLE", ca_bundle)
    assert main(["get", "-w", https_server.url("/ok")]) == 0
    out, err = capsys.readouterr()
    assert out == "ok"
    names = [line.split(":")[0].strip() for line in err.splitlines()]
    assert names == ["dns", "connect", "tls", "request", "wait", "body", "total", "reused", "attempts",
                     "remote_address", "tls_version", "cipher", "bytes_sent", "bytes_received"]
    assert "tls_version: TLS" in err and " ms" in err
    assert _metrics.format_timing(None) == "timing: not recorded\n"
