"""Fork safety: children never reuse a parent's pooled socket, and process pools work."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import signal

import pytest

from session_presets import get_session

from .fault_servers import request_id_route
from .servers import LoopbackServer
from .waiting import wait_until

WORKERS = 4
PER_WORKER = 200

pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


def _child(url: str, index: int, write_fd: int) -> None:
    """Body of a forked worker: PER_WORKER calls through get_session(); report what it saw, then _exit."""
    code = 1
    try:
        session = get_session()
        mismatches: list[str] = []
        for n in range(PER_WORKER):
            rid = f"w{index}-r{n}"
            response = session.get(url, headers={"X-Request-Id": rid})
            got = response.text.split(" ")[0]
            if response.status_code != 200 or got != rid:
                mismatches.append(f"{rid} -> {response.status_code} {response.text!r}")
        report = {"pid": os.getpid(), "mismatches": mismatches, "stats": session.stats.connections_opened}
        os.write(write_fd, json.dumps(report).encode())
        code = 0
    except BaseException as exc:
        os.write(write_fd, json.dumps({"error": repr(exc)}).encode())
    finally:
        os._exit(code)


def _reap_all(pids: list[int], timeout: float) -> dict[int, int]:
    """The exit code of every child; fails naming the children still running after ``timeout`` (killed)."""
    codes: dict[int, int] = {}

    def all_exited() -> bool:
        for pid in pids:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
        return len(codes) == len(pids)

    try:
        wait_until(all_exited, timeout, f"{len(pids)} forked children to exit")
    finally:
        for pid in pids:
            if pid not in codes:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    return codes


@pytest.mark.timeout(60)
def test_forked_workers_open_their_own_connections(http_server: LoopbackServer) -> None:
    """4 os.fork() workers x 200 calls after the parent used its session: new connections only, no mix-ups."""
    http_server.route("/rid", request_id_route)
    url = http_server.url("/rid")
    parent = get_session()
    for n in range(5):
        assert parent.get(url, headers={"X-Request-Id": f"parent-{n}"}).text.startswith(f"parent-{n} ")
    parent_conns = {r.connection for r in http_server.requests}
    assert len(parent_conns) == 1

    pipes: list[tuple[int, int]] = []
    pids: list[int] = []
    for index in range(WORKERS):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(read_fd)
            _child(url, index, write_fd)
        os.close(write_fd)
        pipes.append((index, read_fd))
        pids.append(pid)

    codes = _reap_all(pids, timeout=45)
    reports = {}
    for index, read_fd in pipes:
        with os.fdopen(read_fd, "rb") as pipe:
            reports[index] = json.loads(pipe.read() or b'{"error": "no report"}')
    assert all(code == 0 for code in codes.values()), (codes, reports)
    for index, report in reports.items():
        assert report.get("mismatches") == [], (index, report)

    seen = [r for r in http_server.requests if (r.header("X-Request-Id") or "").startswith("w")]
    assert len(seen) == WORKERS * PER_WORKER
    by_worker: dict[str, set[int]] = {}
    for r in seen:
        worker = (r.header("X-Request-Id") or "").split("-")[0]
        by_worker.setdefault(worker, set()).add(r.connection)
    assert sorted(by_worker) == [f"w{i}" for i in range(WORKERS)]
    for worker, conns in by_worker.items():
        # No child ever sent on the parent's socket ...
        assert not conns & parent_conns, (worker, conns, parent_conns)
        # ... nor on a sibling's.
        others = set().union(*(c for w, c in by_worker.items() if w != worker))
        assert not conns & others, (worker, conns, others)

    # The parent keeps working, still on its own pooled connection.
    before = len(http_server.requests)
    response = parent.get(url, headers={"X-Request-Id": "parent-after"})
    assert response.text.split(" ")[0] == "parent-after"
    last = http_server.requests[before:]
    assert [r.header("X-Request-Id") for r in last] == ["parent-after"]
    assert last[0].connection in parent_conns
    assert get_session() is parent


def _pool_task(url: str, rid: str) -> tuple[int, str, int]:
    """Process-pool task: one call through the worker's get_session()."""
    response = get_session().get(url, headers={"X-Request-Id": rid})
    body_rid, conn = response.text.split(" ")
    return os.getpid(), body_rid, int(conn)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_process_pool_workers_use_get_session(http_server: LoopbackServer, method: str) -> None:
    """ProcessPoolExecutor (fork / forkserver) workers call get_session(); each answer matches its request."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"start method {method!r} is not available on this platform")
    http_server.route("/rid", request_id_route)
    url = http_server.url("/rid")
    parent = get_session()
    assert parent.get(url, headers={"X-Request-Id": "parent"}).ok
    parent_conns = {r.connection for r in http_server.requests}

    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        rids = [f"{method}-{n}" for n in range(40)]
        results = list(pool.map(_pool_task, [url] * len(rids), rids))

    assert [body_rid for _, body_rid, _ in results] == rids
    pids = {pid for pid, _, _ in results}
    assert os.getpid() not in pids
    worker_conns = {conn for _, _, conn in results}
    assert not worker_conns & parent_conns
    seen = [r for r in http_server.requests if (r.header("X-Request-Id") or "").startswith(method)]
    assert sorted(r.header("X-Request-Id") or "" for r in seen) == sorted(rids)
    # Each worker keeps one connection for all its calls: at most one per worker process.
    assert len({r.connection for r in seen}) <= len(pids)
    assert parent.get(url, headers={"X-Request-Id": "parent-after"}).text.startswith("parent-after ")
