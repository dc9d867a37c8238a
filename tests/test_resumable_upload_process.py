"""Resumable uploads across processes: kill -9 of the uploading process, and of the detached agent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from session_presets import TransferState, background_session
from session_presets.testing import MockServer, ResumableUploadRoute

from .test_agent import agent_env, agent_pid, process_gone  # noqa: F401 - agent_env is an autouse fixture
from .test_background import FAST, MIB, make_data
from .waiting import wait_until

#: How long a test waits for a process or a transfer.
BOUND = 30.0

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX signals and the detached agent"),
]

PROTOCOLS = ["tus", "ietf"]

#: Uploads a file in a background session; argv: identifier, url, src, protocol.
CHILD = textwrap.dedent(
    """
    import sys
    from session_presets import background_session

    identifier, url, src, protocol = sys.argv[1:5]
    bg = background_session(identifier, backoff_factor=0.01, backoff_max=0.05, read_timeout=5, total_timeout=60)
    task = bg.upload(url, src, protocol=protocol)
    print("started", task.id, flush=True)
    task.wait(60)
    print(task.state.value, task.error, flush=True)
    """
)


@pytest.fixture
def server() -> Iterator[MockServer]:
    """A started MockServer."""
    with MockServer() as mock:
        yield mock


def _settled(route: ResumableUploadRoute) -> bool:
    """True once the killed side's connection has ended at the server (its first append is recorded)."""
    return len(route.upload().appends) >= 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_kill_9_at_40_percent_then_new_process_finishes_from_server_offset(
    server: MockServer, tmp_path: Path, protocol: str
) -> None:
    """SIGKILL the uploader at 40%; a new process with the same identifier HEADs and PATCHes only the rest."""
    data = make_data(8 * MIB, seed=5)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    route = ResumableUploadRoute()
    url = route.install(server, "/files")
    # The server holds the upload at 40% until the child is dead: the kill lands there, however
    # fast the child sends (a throttle and a poll let it fill the socket buffers with the rest).
    route.hold_at = len(data) * 4 // 10
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "killup", url, str(src), protocol],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("started")
        assert route.holding.wait(BOUND), "the upload never reached 40% at the server"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        route.release()
        if child.poll() is None:  # pragma: no cover - only when the wait above failed
            child.kill()
            child.wait()
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL
    wait_until(lambda: _settled(route), BOUND, "the killed upload's connection to end at the server")
    offset = route.received()
    assert offset == len(data) * 4 // 10
    seen = len(server.requests)

    with background_session("killup", **FAST) as bg:
        (task,) = bg.tasks()
        assert task.wait(30).state is TransferState.COMPLETED, task.error
        assert task.upload_url == server.url("/uploads/1")
    upload = route.upload()
    assert bytes(upload.data) == data
    assert upload.received_once() and len(upload.appends) == 2
    resumed = server.requests[seen:]
    assert [request.method for request in resumed] == ["HEAD", "PATCH"]
    assert resumed[1].header("Upload-Offset") == str(offset)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_detached_agent_killed_mid_upload_is_resumed_by_the_next_agent(
    server: MockServer, tmp_path: Path, protocol: str
) -> None:
    """SIGKILL the agent mid-upload; the next attach starts an agent that resumes from the server's offset."""
    data = make_data(8 * MIB, seed=6)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    route = ResumableUploadRoute()
    url = route.install(server, "/files")
    # The server holds the upload at 40% until the agent is dead: the kill lands there.
    route.hold_at = len(data) * 4 // 10
    bg = background_session("agentup", detached=True, **FAST)
    task = bg.upload(url, src, protocol=protocol, headers={"X-Api-Key": "k"})
    try:
        assert route.holding.wait(BOUND), "the upload never reached 40% at the server"
        pid = agent_pid()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: process_gone(pid), BOUND, "the killed agent to be gone")
    finally:
        route.release()
    wait_until(lambda: _settled(route), BOUND, "the killed agent's connection to end at the server")
    offset = route.received()
    assert offset == len(data) * 4 // 10
    seen = len(server.requests)

    again = background_session("agentup", detached=True)
    assert agent_pid() != pid
    (task,) = again.tasks()
    assert task.wait(30).state is TransferState.COMPLETED, task.error
    assert task.protocol == protocol and task.upload_url == server.url("/uploads/1")
    assert task.resumed_from <= offset
    upload = route.upload()
    assert bytes(upload.data) == data and upload.received_once()
    resumed = server.requests[seen:]
    assert [request.method for request in resumed] == ["HEAD", "PATCH"]
    assert resumed[1].header("Upload-Offset") == str(offset)
    # The first agent had the caller's header; the second has only what the journal keeps.
    assert server.requests[0].header("X-Api-Key") == "k" and resumed[0].header("X-Api-Key") is None
