"""Load: many threads through one shared session, every response matched to its request."""

from __future__ import annotations

import os
import threading
from collections import Counter

import pytest

from session_presets import get_session

from .fault_servers import request_id_route
from .servers import LoopbackServer

THREADS = 16
PER_THREAD = 500


def _hammer(server: LoopbackServer, threads: int, per_thread: int) -> tuple[list[str], Counter[int]]:
    """Run ``threads`` x ``per_thread`` GETs through get_session(); return errors and connections used."""
    server.route("/rid", request_id_route)
    session = get_session()
    errors: list[str] = []
    used: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(index: int) -> None:
        start.wait()
        local: Counter[int] = Counter()
        for n in range(per_thread):
            rid = f"t{index}-r{n}"
            try:
                response = session.get(server.url(f"/rid?n={n}"), headers={"X-Request-Id": rid})
                got, conn = response.text.split(" ")
                if response.status_code != 200 or got != rid:
                    with lock:
                        errors.append(f"{rid}: status {response.status_code} body {response.text!r}")
                local[int(conn)] += 1
            except Exception as exc:
                with lock:
                    errors.append(f"{rid}: {exc!r}")
        with lock:
            used.update(local)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return errors, used


def _check(server: LoopbackServer, threads: int, per_thread: int, errors: list[str], used: Counter[int]) -> None:
    assert errors == []
    seen = [r for r in server.requests if r.path.startswith("/rid")]
    assert len(seen) == threads * per_thread
    # Every request id arrived exactly once: no duplicate sends, no lost requests.
    ids = Counter(r.header("X-Request-Id") for r in seen)
    assert len(ids) == threads * per_thread
    assert set(ids.values()) == {1}
    # The server's view of which connection carried each request agrees with the client's.
    assert Counter(r.connection for r in seen) == used
    assert server.connections <= threads


@pytest.fixture
def wide_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the default preset keep one pooled connection per thread (the built-in keeps 10)."""
    monkeypatch.setenv("SESSION_PRESETS_DEFAULT_POOL_MAXSIZE", str(THREADS))


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("wide_pool")
def test_sixteen_threads_share_one_session(http_server: LoopbackServer) -> None:
    """16 threads x 500 GETs through one get_session(): no error, every body is its own, ≤ 16 connections."""
    errors, used = _hammer(http_server, THREADS, PER_THREAD)
    _check(http_server, THREADS, PER_THREAD, errors, used)
    stats = get_session().stats
    assert stats.requests == THREADS * PER_THREAD
    assert stats.errors == 0
    assert stats.connections_opened == http_server.connections


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("wide_pool")
def test_sixteen_threads_share_one_session_over_tls(https_server: LoopbackServer, ca_bundle: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """16 threads x 100 HTTPS GETs through one get_session(): no error, ≤ 16 TLS connections."""
    monkeypatch.setenv("SESSION_PRESETS_CA_BUNDLE", ca_bundle)
    errors, used = _hammer(https_server, THREADS, 100)
    _check(https_server, THREADS, 100, errors, used)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.usefixtures("wide_pool")
def test_soak_sixteen_threads(http_server: LoopbackServer, request: pytest.FixtureRequest) -> None:
    """Soak: 16 threads x LOAD_SOAK_PER_THREAD GETs with the same guarantees (small count unless -m slow)."""
    # The default run and CI use a smaller count; `pytest -m slow` soaks for real.
    default = "5000" if "slow" in (request.config.getoption("-m") or "") else "300"
    per_thread = int(os.environ.get("LOAD_SOAK_PER_THREAD", default))
    errors, used = _hammer(http_server, THREADS, per_thread)
    _check(http_server, THREADS, per_thread, errors, used)
