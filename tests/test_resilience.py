"""Resilience per preset, in one process: breakers, rate limits, max_in_flight and Retry-After pauses."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

import session_presets as sp
from session_presets import _resilience, testing
from session_presets.testing import Exchange, MockResponse, MockServer

from .waiting import wait_until

#: How long a test waits for something that should happen within a second or two.
BOUND = 10.0
#: A breaker that opens after 4 calls of which half failed, and stays open for 2 s (long enough
#: for the next call to find it open on a loaded machine, short enough to wait for).
FLAPPY = "failure_ratio=0.5,minimum_calls=4,break_duration=2s"
#: The same breaker, open for a minute: it stays open whatever the test's pace.
LONG_BREAK = "failure_ratio=0.5,minimum_calls=4,break_duration=1m"


@pytest.fixture
def server() -> Iterator[MockServer]:
    """A loopback MockServer."""
    with MockServer() as mock:
        yield mock


@pytest.fixture
def other_server() -> Iterator[MockServer]:
    """A second loopback MockServer: another origin."""
    with MockServer() as mock:
        yield mock


def _origin(mock: MockServer) -> str:
    return mock.url("/").rstrip("/")


def _state(mock: MockServer) -> str | None:
    found = {snap.origin: snap.state for snap in _resilience.breaker_states()}
    return found.get(_origin(mock))


def _open_breaker(session: sp.PresetSession, mock: MockServer) -> None:
    mock.route("/flaky", MockResponse(500))
    for _ in range(4):
        assert session.get(mock.url("/flaky")).status_code == 500


def test_a_flapping_origin_opens_the_breaker_and_a_recovering_one_closes_it(server: MockServer) -> None:
    """4 failures open the breaker (the 5th call never reaches the server); after the break a good probe closes it."""
    with sp.default_session(circuit_breaker=FLAPPY, retries=0) as session:
        _open_breaker(session, server)
        with pytest.raises(sp.CircuitOpenError) as refused:
            session.get(server.url("/flaky"))
        assert server.request_count == 4
        error = refused.value
        assert isinstance(error, requests.ConnectionError)
        assert (error.origin, error.preset, error.state) == (_origin(server), "default", "open")
        assert _origin(server) in str(error) and "'default'" in str(error) and "probe" in str(error)
        assert error.retry_at > time.time() - 1
        assert session.stats.breaker_states == {_origin(server): "open"}
        server.route("/flaky", MockResponse(200, body="back"))
        wait_until(lambda: _state(server) == "half-open", BOUND, "the break to end")
        assert session.get(server.url("/flaky")).text == "back"
        assert server.request_count == 5
        stats = session.stats
        assert stats.breaker_states == {_origin(server): "closed"}
        assert (stats.breaker_transitions, stats.rejected_calls) == (2, 1)


def test_a_failed_probe_opens_the_breaker_again(server: MockServer) -> None:
    """Half-open lets one probe through; when it fails the next call is refused with nothing sent."""
    with sp.default_session(circuit_breaker=FLAPPY, retries=0) as session:
        _open_breaker(session, server)
        wait_until(lambda: _state(server) == "half-open", BOUND, "the break to end")
        assert session.get(server.url("/flaky")).status_code == 500
        with pytest.raises(sp.CircuitOpenError):
            session.get(server.url("/flaky"))
        assert server.request_count == 5


def test_connection_errors_count_as_failures() -> None:
    """A refused connection is a failure: the breaker opens on a dead origin, and then opens no socket."""
    with MockServer() as dead:
        url = dead.url("/")
    with sp.default_session(circuit_breaker="failure_ratio=1,minimum_calls=2,break_duration=1m", retries=0) as session:
        for _ in range(2):
            with pytest.raises(requests.ConnectionError) as failed:
                session.get(url)
            assert not isinstance(failed.value, sp.CircuitOpenError)
        with pytest.raises(sp.CircuitOpenError):
            session.get(url)
        assert session.stats.connections_opened == 0


def test_each_retry_passes_the_breaker(server: MockServer) -> None:
    """Retries are calls at the origin too: once two attempts failed the third is refused before it is sent."""
    server.route("/down", MockResponse(503))
    breaker = "failure_ratio=1,minimum_calls=2,break_duration=1m"
    with sp.default_session(circuit_breaker=breaker, retries=5, backoff_factor=0) as session, pytest.raises(
        sp.CircuitOpenError
    ):
        session.get(server.url("/down"))
    assert server.request_count == 2


def test_statuses_that_count_as_failures_are_configurable(server: MockServer) -> None:
    """failure_statuses=503 leaves 500 alone: ten 500s keep the breaker closed."""
    server.route("/err", MockResponse(500))
    breaker = {"failure_ratio": 0.5, "minimum_calls": 2, "failure_statuses": "503"}
    with sp.default_session(circuit_breaker=breaker, retries=0) as session:
        for _ in range(10):
            assert session.get(server.url("/err")).status_code == 500
    assert server.request_count == 10


def test_one_origins_breaker_never_refuses_another(server: MockServer, other_server: MockServer) -> None:
    """With the breaker of one origin open, calls to another origin still reach it."""
    other_server.route("/ok", MockResponse(200))
    with sp.default_session(circuit_breaker=LONG_BREAK, retries=0) as session:
        _open_breaker(session, server)
        for _ in range(5):
            assert session.get(other_server.url("/ok")).status_code == 200
    assert other_server.request_count == 5


def test_one_origins_rate_limit_never_slows_another(server: MockServer, other_server: MockServer) -> None:
    """3/h spent on one origin refuses its 4th call at once (nothing sent); another origin gets 3 unqueued."""
    with sp.default_session(rate_limit="3/h") as session:
        for _ in range(3):
            assert session.get(server.url("/")).metrics.queued == 0.0
        with pytest.raises(sp.RateLimitedError) as refused:
            session.get(server.url("/"))
        for _ in range(3):
            assert session.get(other_server.url("/")).metrics.queued == 0.0
    assert (server.request_count, other_server.request_count) == (3, 3)
    error = refused.value
    assert isinstance(error, requests.ConnectionError)
    assert (error.origin, error.preset, error.state) == (_origin(server), "default", "rate limit 3/h")
    assert "nothing was sent" in str(error) and _origin(server) in str(error)


def test_the_rate_limit_is_a_moving_window_at_the_server(server: MockServer) -> None:
    """5/s from 4 threads: no span of 0.9 s ever holds more than 5 arrivals at the server (no 2N at a window edge)."""
    arrivals: list[float] = []
    lock = threading.Lock()

    def stamp(exchange: Exchange) -> None:
        with lock:
            arrivals.append(time.monotonic())
        exchange.reply(200)

    server.route("/", stamp)
    with sp.default_session(rate_limit="5/s") as session, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: session.get(server.url("/")).status_code, range(16)))
        assert session.stats.rate_limit_waits > 0
    assert len(arrivals) == 16
    arrivals.sort()
    for first in range(len(arrivals)):
        within = [t for t in arrivals[first:] if t - arrivals[first] < 0.9]
        assert len(within) <= 5, f"{len(within)} arrivals within 0.9 s"


def test_32_threads_under_max_in_flight_4_never_have_more_than_4_at_the_server(server: MockServer) -> None:
    """The server counts the requests it is serving at once: never more than max_in_flight=4, and 4 is reached."""
    serving = 0
    peak = 0
    lock = threading.Lock()

    def slow(exchange: Exchange) -> None:
        nonlocal serving, peak
        with lock:
            serving += 1
            peak = max(peak, serving)
        exchange.wait(0.02)
        with lock:
            serving -= 1
        exchange.reply(200, b"done")

    server.route("/slow", slow)
    with sp.default_session(max_in_flight=4, pool_maxsize=32) as session, ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda _: session.get(server.url("/slow")).text, range(96)))
        assert session.stats.in_flight == 0
    assert answers == ["done"] * 96
    assert server.request_count == 96
    assert peak == 4


def test_a_call_waiting_for_a_slot_keeps_its_deadline(server: MockServer) -> None:
    """A streamed body holds the one slot; a call with total_timeout=0.5 then raises TotalTimeoutError, unsent."""
    server.route("/big", MockResponse(200, body=b"x" * 100_000))
    with sp.default_session(max_in_flight=1, total_timeout=0.5) as session:
        streamed = session.get(server.url("/big"), stream=True)
        assert session.stats.in_flight == 1
        with pytest.raises(sp.TotalTimeoutError):
            session.get(server.url("/second"))
        assert session.stats.rejected_calls == 1
        assert [seen.path for seen in server.requests] == ["/big"]
        assert len(streamed.content) == 100_000
        assert session.stats.in_flight == 0
        assert session.get(server.url("/third")).status_code == 404
    assert [seen.path for seen in server.requests] == ["/big", "/third"]


def test_a_429_with_retry_after_pauses_every_caller_of_the_preset(server: MockServer) -> None:
    """After a 429 with Retry-After: 3, another session of the preset waits (or, short of time, sends nothing)."""
    sp.register_preset("api", rate_limit="1000/s", retries=0)
    server.route("/", MockResponse(200))
    server.enqueue(MockResponse(429, headers={"Retry-After": "3"}))
    with sp.get_session("api") as first:
        assert first.get(server.url("/")).status_code == 429
    with sp.default_session(rate_limit="1000/s", retries=0, total_timeout=0.3) as unrelated:
        assert unrelated.get(server.url("/")).status_code == 200  # another preset is not paused
    short = sp.PresetSession(sp.get_preset("api").replace(total_timeout=0.3))
    with short, pytest.raises(sp.RateLimitedError) as refused:
        short.get(server.url("/"))
    assert refused.value.state == "a Retry-After pause"
    assert server.request_count == 2
    with sp.PresetSession(sp.get_preset("api")) as patient:
        answer = patient.get(server.url("/"))
        assert answer.status_code == 200 and answer.metrics.queued > 0
        assert patient.stats.rate_limit_waits == 1
    assert server.request_count == 3


def test_a_child_after_fork_and_a_reset_start_with_fresh_state(server: MockServer) -> None:
    """A breaker open in the parent is closed in a forked child and after testing.reset()."""
    if not hasattr(os, "fork"):
        pytest.skip("no os.fork on this platform")
    server.route("/fine", MockResponse(200))
    with sp.default_session(circuit_breaker=LONG_BREAK, retries=0) as session:
        _open_breaker(session, server)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 1
            try:
                code = 0 if session.get(server.url("/fine")).status_code == 200 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with pytest.raises(sp.CircuitOpenError):
            session.get(server.url("/fine"))
    assert [seen.path for seen in server.requests][-1] == "/fine"
    assert server.request_count == 5
    testing.reset()
    with sp.default_session(circuit_breaker=LONG_BREAK, retries=0) as fresh:
        assert fresh.get(server.url("/fine")).status_code == 200
    assert server.request_count == 6


def test_resilience_fields_come_from_the_environment_with_their_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    """SESSION_PRESETS_* set the four fields; the preset says which variable set each."""
    monkeypatch.setenv("SESSION_PRESETS_RATE_LIMIT", "10/s;5000/h")
    monkeypatch.setenv("SESSION_PRESETS_DEFAULT_MAX_IN_FLIGHT", "8")
    monkeypatch.setenv("SESSION_PRESETS_CIRCUIT_BREAKER", "failure_ratio=0.25,break_duration=10s")
    monkeypatch.setenv("SESSION_PRESETS_COORDINATION_URL", "redis://:hunter2@127.0.0.1:1/0")
    config = sp.get_preset("default")
    assert config.rate_limit == "10/s;5000/h"
    assert config.max_in_flight == 8
    assert config.circuit_breaker is not None
    assert (config.circuit_breaker.failure_ratio, config.circuit_breaker.break_duration) == (0.25, 10.0)
    assert config.circuit_breaker.minimum_calls == 100
    assert config.origin("rate_limit") == "env SESSION_PRESETS_RATE_LIMIT"
    assert config.origin("max_in_flight") == "env SESSION_PRESETS_DEFAULT_MAX_IN_FLIGHT"
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.as_dict())


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("SESSION_PRESETS_RATE_LIMIT", "10 per second", "10/s"),
        ("SESSION_PRESETS_MAX_IN_FLIGHT", "-1", "whole number"),
        ("SESSION_PRESETS_CIRCUIT_BREAKER", "ratio=0.5", "failure_ratio"),
        ("SESSION_PRESETS_CIRCUIT_BREAKER", "failure_ratio=2", "failure_ratio=2"),
        ("SESSION_PRESETS_COORDINATION_URL", "http://:pw@cache:6379", "redis://"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_accepted_form(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    """A bad resilience variable raises ConfigError naming it and the accepted form, passwords masked."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(sp.ConfigError) as refused:
        sp.get_preset("default")
    message = str(refused.value)
    assert variable in message and named in message
    assert ":pw@" not in message


def test_code_forms_are_normalised() -> None:
    """Rates are sorted and canonical, a breaker takes True or a mapping, 'off' turns fields off."""
    config = sp.PresetConfig(rate_limit="5000/hour; 10/s;100/5m", circuit_breaker=True)
    assert config.rate_limit == "10/s;100/5m;5000/h"
    assert config.circuit_breaker is not None and config.circuit_breaker.failure_ratio == 0.1
    assert config.replace(rate_limit="off", circuit_breaker="off").rate_limit is None
    with pytest.raises(sp.ConfigError, match="max_in_flight"):
        sp.PresetConfig(max_in_flight=0)
    with pytest.raises(sp.ConfigError, match="circuit_breaker"):
        sp.PresetConfig(circuit_breaker={"minimum_calls": 0})


def test_the_resilient_preset_adapts_dotnets_standard_handler() -> None:
    """resilient: total 30 s, 3 retries, 10 s attempt timeouts, 1000 in flight, a 10%/30 s/100/5 s breaker."""
    config = sp.get_preset("resilient")
    assert (config.total_timeout, config.retries, config.connect_timeout, config.read_timeout) == (30, 3, 10, 10)
    assert config.max_in_flight == 1000
    breaker = config.circuit_breaker
    assert breaker is not None
    assert (breaker.failure_ratio, breaker.sampling_window, breaker.minimum_calls, breaker.break_duration) == (
        0.1, 30.0, 100, 5.0,
    )
    assert config.origin("circuit_breaker") == "base preset 'resilient'" or config.origin("circuit_breaker")


def test_with_every_field_off_the_adapter_has_no_guard(server: MockServer) -> None:
    """The default preset pays one attribute check: no guard, no breaker state, no counts."""
    with sp.default_session() as session:
        assert session.adapter.guard is None
        session.get(server.url("/"))
        stats = session.stats
    assert (stats.breaker_states, stats.rejected_calls, stats.in_flight) == ({}, 0, 0)
    assert _resilience.breaker_states() == []


def test_breaker_states_lists_every_breaker_for_doctor(server: MockServer) -> None:
    """breaker_states() shows each preset's breakers with state, counts and time to reopen."""
    with sp.default_session(circuit_breaker=LONG_BREAK, retries=0) as session:
        _open_breaker(session, server)
    (snap,) = _resilience.breaker_states()
    assert (snap.preset, snap.origin, snap.state) == ("default", _origin(server), "open")
    assert 0 < snap.reopens_in <= 60


def test_otel_exports_breaker_state_and_counts(server: MockServer) -> None:
    """The OpenTelemetry export carries the breaker state per origin, rejections and in-flight slots."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrumentation = sp.instrument(meter_provider=provider)
    try:
        with sp.default_session(circuit_breaker=LONG_BREAK, retries=0, max_in_flight=2) as session:
            _open_breaker(session, server)
            with pytest.raises(sp.CircuitOpenError):
                session.get(server.url("/flaky"))
            points: dict[str, list[Any]] = {}
            data = reader.get_metrics_data()
            for resource in data.resource_metrics if data else []:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        points.setdefault(metric.name, []).extend(metric.data.data_points)
    finally:
        instrumentation.uninstrument()
        provider.shutdown()
    (state,) = points["session_presets.circuit_breaker.state"]
    assert state.value == 2 and state.attributes["server.port"] == server.port
    assert [p.value for p in points["session_presets.resilience.rejected"]] == [1]
    assert [p.value for p in points["session_presets.circuit_breaker.transitions"]] == [1]
    assert [p.value for p in points["session_presets.in_flight"]] == [0]


def test_presets_command_shows_the_fields_with_the_password_masked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """session-presets presets lists the four fields of every preset; a coordination password never shows."""
    from session_presets.cli import main

    monkeypatch.setenv("SESSION_PRESETS_API_COORDINATION_URL", "redis://:hunter2@127.0.0.1:6379/0")
    sp.register_preset("api", rate_limit="10/s")
    assert main(["presets", "--show-origin"]) == 0
    shown = capsys.readouterr().out
    assert "hunter2" not in shown
    assert "redis://***@127.0.0.1:6379/0" in shown
    assert "10/s" in shown and "max_in_flight" in shown
    assert "failure_ratio=0.1,sampling_window=30s,minimum_calls=100,break_duration=5s" in shown


def test_an_adapter_on_a_plain_session_keeps_the_deadline_while_waiting(server: MockServer) -> None:
    """A PresetAdapter mounted on requests.Session refuses at once a call whose permit lies past total_timeout."""
    adapter = sp.PresetAdapter(sp.get_preset("default").replace(rate_limit="1/h", total_timeout=1))
    with requests.Session() as plain:
        plain.mount("http://", adapter)
        assert plain.get(server.url("/")).status_code == 404
        with pytest.raises(sp.RateLimitedError):
            plain.get(server.url("/"))
    assert server.request_count == 1
