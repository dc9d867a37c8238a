"""Background sessions across processes: kill -9 and resume, one process per identifier, disk full."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from session_presets import IdentifierInUseError, TransferError, TransferState, background_session
from session_presets.background._crashpoints import CRASH_EXIT

from .background_server import FileRoute
from .servers import LoopbackServer
from .test_background import FAST, MIB, make_data, open_bg
from .waiting import wait_until

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX signals and resource limits"),
]

#: Opens a background session in a child process; argv: identifier, then a mode.
CHILD = textwrap.dedent(
    """
    import os, resource, signal, sys, time
    from session_presets import background_session
    from session_presets.background import _crashpoints, _download

    identifier, mode = sys.argv[1], sys.argv[2]
    # Commit often, so a kill leaves a committed offset inside small test files.
    _download.COMMIT_BYTES = 256 * 1024
    if os.environ.get("CRASH_AT"):
        name, nth = os.environ["CRASH_AT"].split("#")
        _crashpoints.set_crash_point(name, int(nth))
    if mode == "resume":
        bg = background_session(identifier, backoff_factor=0.01, backoff_max=0.05, read_timeout=5, total_timeout=30)
        for task in bg.tasks():
            task.wait(30)
            print(task.state.value, type(task.error).__name__, task.error, flush=True)
        bg.finish_tasks_and_invalidate()
        sys.exit(0)
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


def spawn(*args: str, crash_at: str | None = None) -> subprocess.Popen[str]:
    """Start the child script with ``args``; it inherits the test's state directory.

    ``crash_at`` is ``"point#n"``: the child exits with CRASH_EXIT the n-th time it reaches that point.
    """
    env = os.environ.copy()
    if crash_at is not None:
        env["CRASH_AT"] = crash_at
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def committed_offset(identifier: str) -> int:
    """The bytes_done the journal of ``identifier`` holds, read as a new process would."""
    path = Path(os.environ["SESSION_PRESETS_STATE_DIR"]) / f"{identifier}.sqlite3"
    with sqlite3.connect(path) as db:
        (value,) = db.execute("SELECT bytes_done FROM tasks").fetchone()
    db.close()
    return int(value)


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
        wait_until(lambda: part.exists() and part.stat().st_size >= MIB, 20.0, "1 MiB in the child's .part")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:  # pragma: no cover - only when the wait above failed
            child.kill()
            child.wait()
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL
    assert MIB <= part.stat().st_size < len(data)
    # The resume starts at the last offset the journal committed (after an fsync), not at the .part size.
    offset = committed_offset("killme")
    assert 0 < offset <= part.stat().st_size
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


# -- write-ahead: a kill between any two steps of a version change ----------------------


def _run(*args: str, crash_at: str | None = None) -> tuple[int, str, str]:
    child = spawn(*args, crash_at=crash_at)
    out, err = child.communicate(timeout=40)
    return child.returncode, out, err


@pytest.mark.parametrize(
    ("point", "honest"),
    [
        ("fresh:journaled#1", True),
        ("fresh:truncated#1", True),
        ("commit:fsynced#1", True),
        ("commit:done#1", True),
        ("finish:verified#1", True),
        ("finish:renamed#1", True),
        ("restart:journaled#1", False),
        ("restart:truncated#1", False),
    ],
)
def test_kill_at_each_step_of_a_version_change_leaves_one_whole_version(
    http_server: LoopbackServer, tmp_path: Path, point: str, honest: bool
) -> None:
    """A process killed at any step after the file changed leaves a state the next run finishes as v2, whole."""
    old, new = make_data(2 * MIB, seed=1), make_data(2 * MIB, seed=2)
    route = FileRoute(old, chunk=64 * 1024)
    # Slow enough that the commit thread runs between chunks (a commit every 256 KiB).
    route.delay = 0.03
    http_server.route("/f", route)
    dest = tmp_path / "out.bin"
    # Run 1: part of v1 is written and committed, then the process dies.
    code, _, err = _run("wal", "download", http_server.url("/f"), str(dest), crash_at="commit:done#2")
    assert code == CRASH_EXIT, err
    assert committed_offset("wal") > 0
    # The file changes; a lying server answers the resume with a 206 of the new version.
    route.set_file(new, etag='"v2"')
    route.honor_if_range = honest
    # Run 2: dies at the step under test.
    code, _, err = _run("wal", "resume", crash_at=point)
    assert code == CRASH_EXIT, err
    assert not dest.exists() or point == "finish:renamed#1"
    # Run 3: finishes, and dest holds v2 and nothing else (no sha256 was given).
    route.honor_if_range = True
    code, out, err = _run("wal", "resume")
    assert code == 0, err
    assert out.split()[0] == "completed", out
    assert dest.read_bytes() == new
    assert not (tmp_path / "out.bin.part").exists()


def test_crash_after_last_byte_finishes_with_416(http_server: LoopbackServer, tmp_path: Path) -> None:
    """Killed after the last byte was committed but before the rename, the next run gets a 416 and renames."""
    data = make_data(2 * MIB)
    route = FileRoute(data)
    http_server.route("/f", route)
    dest = tmp_path / "out.bin"
    code, _, err = _run("done", "download", http_server.url("/f"), str(dest), crash_at="finish:verified#1")
    assert code == CRASH_EXIT, err
    assert committed_offset("done") == len(data)
    code, out, err = _run("done", "resume")
    assert code == 0, err
    assert out.split()[0] == "completed", out
    assert dest.read_bytes() == data
    assert [(hit.range, hit.status) for hit in route.log] == [(None, 200), (f"bytes={len(data)}-", 416)]


def test_destination_held_by_another_process_is_refused(http_server: LoopbackServer, tmp_path: Path) -> None:
    """A download to a dest another process is writing raises naming that process; its bytes are untouched."""
    data = make_data(4 * MIB)
    route = FileRoute(data, chunk=32 * 1024)
    route.delay = 0.01
    http_server.route("/big", route)
    dest = tmp_path / "big.bin"
    child = spawn("writer", "download", http_server.url("/big"), str(dest))
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("started")
        owner = rf"already being written by pid {child.pid}, background session 'writer'"
        with pytest.raises(TransferError, match=owner):
            open_bg("other").download(http_server.url("/big"), dest)
        route.delay = 0
        out, err = child.communicate(timeout=40)
    finally:
        if child.poll() is None:  # pragma: no cover - only when the wait above failed
            child.kill()
            child.wait()
    assert out.splitlines()[-1].startswith("completed"), err
    assert dest.read_bytes() == data
    assert len(route.log) == 1
