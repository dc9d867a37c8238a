"""Background sessions across processes: kill -9 and resume, one process per identifier, disk full."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from session_presets import IdentifierInUseError, TransferState, background_session

from .background_server import FileRoute
from .servers import LoopbackServer
from .test_background import FAST, MIB, make_data, open_bg

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX signals and resource limits"),
]

#: Opens a background session in a child process; argv: identifier, then a mode.
CHILD = textwrap.dedent(
    """
    import resource, signal, sys, time
    from session_presets import background_session

    identifier, mode = sys.argv[1], sys.argv[2]
    if mode == "fsize":
        # Past RLIMIT_FSIZE, write() fails with EFBIG instead of killing us with SIGXFSZ.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[5]), resource.RLIM_INFINITY))
    bg = background_session(identifier, backoff_factor=0.01, backoff_max=0.05, read_timeout=5, total_timeout=30)
    if mode == "hold":
        print("ready", flush=True)
        time.sleep(60)
    task = bg.download(sys.argv[3], sys.argv[4], sha256=sys.argv[6] if len(sys.argv) > 6 else None)
    print("started", task.id, flush=True)
    task.wait(30)
    print(task.state.value, type(task.error).__name__, task.error, flush=True)
    bg.finish_tasks_and_invalidate()
    """
)


def spawn(*args: str) -> subprocess.Popen[str]:
    """Start the child script with ``args``; it inherits the test's state directory."""
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def test_kill_9_then_new_process_resumes_from_part(http_server: LoopbackServer, tmp_path: Path) -> None:
    """After SIGKILL mid-download, background_session(id) resumes from the .part offset to an identical file."""
    data = make_data(4 * MIB)
    route = FileRoute(data, chunk=32 * 1024)
    route.delay = 0.01
    http_server.route("/big", route)
    dest = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"
    child = spawn("killme", "download", http_server.url("/big"), str(dest))
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("started")
        deadline = time.monotonic() + 20
        while (not part.exists() or part.stat().st_size < MIB) and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:  # pragma: no cover - only when the wait above failed
            child.kill()
            child.wait()
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL
    offset = part.stat().st_size
    assert MIB <= offset < len(data)
    assert not dest.exists()
    route.delay = 0

    bg = background_session("killme", **FAST)
    (task,) = bg.tasks()
    assert task.wait(20).state is TransferState.COMPLETED, task.error
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
    # The killed child's request is logged whenever the server notices the dead socket.
    assert sorted(route.ranges, key=str) == [None, f"bytes={offset}-"]
    assert route.log[route.ranges.index(f"bytes={offset}-")].status == 206


def test_second_live_process_gets_identifier_in_use(state_dir_env: None) -> None:
    """A second live process on the same identifier raises IdentifierInUseError; after it dies, it is free."""
    child = spawn("shared", "hold")
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(IdentifierInUseError, match=rf"pid {child.pid}"):
            background_session("shared")
    finally:
        child.kill()
        child.wait()
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()  # type: ignore[union-attr]
    bg = background_session("shared")
    assert bg.tasks() == []


def test_identifier_held_here_is_refused_in_another_process(state_dir_env: None) -> None:
    """While this process holds an identifier, a child process gets IdentifierInUseError."""
    open_bg("mine")
    child = spawn("mine", "hold")
    _, err = child.communicate(timeout=30)
    assert child.returncode != 0
    assert "IdentifierInUseError" in err
    assert "'mine' is in use by another process" in err


@pytest.fixture
def state_dir_env() -> None:
    """The child inherits SESSION_PRESETS_STATE_DIR from the autouse environment fixture."""
    assert os.environ["SESSION_PRESETS_STATE_DIR"]


def test_disk_full_fails_then_next_run_resumes(http_server: LoopbackServer, tmp_path: Path) -> None:
    """EFBIG (RLIMIT_FSIZE) fails the task with a clear TransferError; the next run resumes and completes."""
    data = make_data(3 * MIB)
    route = FileRoute(data)
    http_server.route("/big", route)
    dest = tmp_path / "big.bin"
    limit = MIB + 12345
    sha = hashlib.sha256(data).hexdigest()
    child = spawn("full", "fsize", http_server.url("/big"), str(dest), str(limit), sha)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("started")
    assert lines[1].startswith("failed DiskFullError")
    assert "disk full while writing" in lines[1]
    assert "big.bin.part" in lines[1]
    part = tmp_path / "big.bin.part"
    assert part.stat().st_size == limit
    assert not dest.exists()

    bg = background_session("full", **FAST)
    (task,) = bg.tasks()
    assert task.state in (TransferState.PENDING, TransferState.RUNNING, TransferState.COMPLETED)
    assert task.wait(20).state is TransferState.COMPLETED, task.error
    assert dest.read_bytes() == data
    assert sorted(route.ranges, key=str) == [None, f"bytes={limit}-"]
