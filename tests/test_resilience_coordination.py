"""coordination_url: rate limits, breakers and pauses shared by processes through a real redis-server."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

import session_presets as sp
from session_presets.testing import Exchange, MockResponse, MockServer

from .waiting import wait_until

#: How long a test waits for a server to start or a worker to finish.
BOUND = 30.0
#: A password with the characters a pattern-matching redaction gets wrong.
PASSWORD = "s3cr#t/p@ss word"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RedisServer:
    """A redis-server process on a free loopback port, with a password."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(BOUND)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis() -> RedisServer:
    """Start a real redis-server (no persistence) and wait until it answers; fail under CI if there is none."""
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed; CI needs it for these tests (apt install redis-server)")
        pytest.skip("redis-server is not installed")
    import redis
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(process, port)
    client = redis.Redis.from_url(server.url)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"redis-server exited with status {process.returncode}")
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until(answers, BOUND, f"redis-server to answer on port {port}")
    except AssertionError:
        server.stop()
        raise
    finally:
        client.close()
    return server


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the module, killed at the end."""
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def server() -> Iterator[MockServer]:
    """A loopback MockServer."""
    with MockServer() as mock:
        yield mock


def _workers(config: dict[str, object], url: str, count: int, processes: int) -> list[list[object]]:
    """Run ``processes`` worker processes at once, each making ``count`` calls; return their outcomes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.coordination_child", json.dumps(config), url, str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        for _ in range(processes)
    ]
    outcomes = []
    for process in started:
        out, err = process.communicate(timeout=BOUND * 2)
        assert process.returncode == 0, err.decode()
        outcomes.append(json.loads(out))
    return outcomes


def test_three_processes_share_one_rate_limit(redis_server: RedisServer, server: MockServer) -> None:
    """3 processes with rate_limit=10/s send 36 calls: no 0.9 s span at the server holds more than 10."""
    arrivals: list[float] = []
    lock = threading.Lock()

    def stamp(exchange: Exchange) -> None:
        with lock:
            arrivals.append(time.monotonic())
        exchange.reply(200)

    server.route("/", stamp)
    config = {"rate_limit": "10/s", "coordination_url": redis_server.url, "total_timeout": 60}
    outcomes = _workers(config, server.url("/"), 12, 3)
    assert outcomes == [[200] * 12] * 3
    assert len(arrivals) == 36
    arrivals.sort()
    for first in range(len(arrivals)):
        within = [t for t in arrivals[first:] if t - arrivals[first] < 0.9]
        assert len(within) <= 10, f"{len(within)} arrivals within 0.9 s: the limit was not shared"


def test_a_breaker_opened_in_one_process_is_open_in_the_others(redis_server: RedisServer, server: MockServer) -> None:
    """This process opens the breaker; two other processes are refused at once and never reach the server."""
    server.route("/flaky", MockResponse(500))
    breaker = "failure_ratio=0.5,minimum_calls=4,break_duration=1m"
    config = {"circuit_breaker": breaker, "coordination_url": redis_server.url, "retries": 0}
    with sp.default_session(**config) as session:  # type: ignore[arg-type]
        for _ in range(4):
            assert session.get(server.url("/flaky")).status_code == 500
        assert session.stats.breaker_states == {server.url("/").rstrip("/"): "open"}
    assert _workers(config, server.url("/flaky"), 2, 2) == [["open", "open"]] * 2
    assert server.request_count == 4
    from session_presets._resilience import breaker_states

    assert [(snap.origin, snap.state) for snap in breaker_states()] == [(server.url("/").rstrip("/"), "open")]


def test_a_retry_after_pauses_the_origin_in_every_process(redis_server: RedisServer, server: MockServer) -> None:
    """A 429 with Retry-After: 30 seen here pauses the origin for another process: it sends nothing."""
    server.enqueue(MockResponse(429, headers={"Retry-After": "30"}))
    config = {"coordination_url": redis_server.url, "retries": 0, "total_timeout": 1}
    with sp.default_session(**config) as session:  # type: ignore[arg-type]
        assert session.get(server.url("/")).status_code == 429
    assert _workers(config, server.url("/"), 1, 1) == [["limited: a Retry-After pause"]]
    assert server.request_count == 1


def test_a_redis_killed_mid_run_degrades_to_local_limits_with_one_warning(
    server: MockServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls keep going after redis-server dies: one warning (no password), failures counted, local limits hold."""
    redis_server = start_redis()
    server.route("/", MockResponse(200))
    try:
        config = sp.get_preset("default").replace(
            rate_limit="3/h", circuit_breaker="minimum_calls=100", coordination_url=redis_server.url
        )
        with sp.PresetSession(config) as session:
            assert session.get(server.url("/")).status_code == 200
            redis_server.stop()
            with caplog.at_level(logging.DEBUG, logger="session_presets"):
                assert session.get(server.url("/")).status_code == 200
                assert session.get(server.url("/")).status_code == 200
                assert session.get(server.url("/")).status_code == 200
                with pytest.raises(sp.RateLimitedError):  # the local 3/h, now full
                    session.get(server.url("/"))
            assert session.stats.coordination_failures >= 1
    finally:
        redis_server.stop()
    assert server.request_count == 4
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert f"127.0.0.1:{redis_server.port}" in warnings[0].getMessage()
    for record in caplog.records:
        text = record.getMessage()
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text and "s3cr" not in text


def test_without_redis_py_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A coordination_url with redis-py missing raises ConfigError naming the extra, the password masked."""
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(sp.ConfigError) as refused:
        sp.default_session(coordination_url=f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:1/0")
    assert "session-presets[redis]" in str(refused.value)
    assert "s3cr" not in str(refused.value)
