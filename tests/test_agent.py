"""Detached background sessions: the per-user agent process, its socket, its lifecycle and its failures."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from session_presets import (
    ConfigError,
    InvalidationTimeoutError,
    SessionInvalidatedError,
    SessionState,
    TransferError,
    TransferState,
    background_session,
)
from session_presets.background import BackgroundSession, DetachedSession, _client, agent
from session_presets.background._protocol import (
    AGENT_LOCK,
    AGENT_LOG,
    AGENT_SOCKET,
    PROTOCOL_VERSION,
    ProtocolError,
    decode,
)

from .background_server import FileRoute, UploadRoute
from .cli_support import console_script
from .servers import LoopbackServer
from .test_background import FAST, MIB, make_data
from .waiting import wait_until

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(sys.platform == "win32", reason="the agent is POSIX only"),
]

#: Generous bound for anything involving a process start on a loaded machine.
BOUND = 60.0

#: A child process: attaches detached, then does what argv says. argv: identifier, mode, url, dest.
CHILD = textwrap.dedent(
    """
    import json, sys
    from session_presets import background_session
    from session_presets.background._client import agent_request

    identifier, mode = sys.argv[1], sys.argv[2]
    fast = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    bg = background_session(identifier, detached=True, **fast)
    pid = agent_request(bg.state_dir, "ping")["pid"]
    if mode == "start":
        task = bg.download(sys.argv[3], sys.argv[4])
        print("started", task.id, pid, task.state.value, flush=True)
    elif mode == "wait":
        for task in bg.tasks():
            task.wait(60)
            print(task.state.value, task.bytes_done, task.error, flush=True)
    elif mode == "ping":
        print("agent", pid, flush=True)
    """
)


def state_dir() -> Path:
    """The test's state directory (conftest points SESSION_PRESETS_STATE_DIR at it)."""
    return Path(os.environ["SESSION_PRESETS_STATE_DIR"])


def run_child(*args: str) -> subprocess.Popen[str]:
    """Start the child script with ``args`` and the test's environment."""
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str]) -> str:
    """Wait for a child script, check it succeeded, return its stdout."""
    out, err = proc.communicate(timeout=BOUND)
    assert proc.returncode == 0, err
    return out


def agent_pid() -> int:
    """The pid of the running agent (asked over its socket)."""
    return int(_client.agent_request(str(state_dir()), "ping", start=False)["pid"])


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie child of ours is reaped here)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def lock_is_free(path: Path) -> bool:
    """True if no process holds the agent lock at ``path``."""
    if not path.exists():
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


@pytest.fixture(autouse=True)
def agent_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An idle time long enough for a loaded machine, and no agent outliving the test (stopped, else killed)."""
    monkeypatch.setenv("SESSION_PRESETS_AGENT_IDLE", "30")
    yield
    directory = state_dir()
    with contextlib.suppress(Exception):
        _client.stop_agent(str(directory))
    lock = directory / AGENT_LOCK
    if not lock_is_free(lock):
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(lock.read_text().strip()), signal.SIGKILL)
    for proc in list(_client._spawned):
        try:
            proc.wait(BOUND)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _client._reap()


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Set it to let the file route answer (set at teardown, so no server thread stays blocked)."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def gated(http_server: LoopbackServer, gate: threading.Event) -> FileRoute:
    """An 8 MiB file at /file whose responses wait for ``gate``."""
    route = FileRoute(make_data(8 * MIB), chunk=256 * 1024)
    route.before_headers = lambda: gate.wait(BOUND) and None
    http_server.route("/file", route)
    return route


def test_download_outlives_the_process_that_started_it(
    http_server: LoopbackServer, gated: FileRoute, gate: threading.Event, tmp_path: Path
) -> None:
    """A script starts a detached download and exits; a second process finds it completed, byte-identical."""
    dest = tmp_path / "out.bin"
    out = finish(run_child("nightly", "start", http_server.url("/file"), str(dest), json.dumps(FAST)))
    _word, _task_id, pid, state = out.split()
    assert state in ("pending", "running")
    assert int(pid) != os.getpid()
    assert not dest.exists()
    gate.set()  # the server answers only now that the script is gone
    out = finish(run_child("nightly", "wait"))
    assert out.split()[:2] == ["completed", str(len(gated.data))]
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(gated.data).digest()
    assert len(gated.log) == 1 and gated.log[0].range is None


def test_detached_session_has_the_background_session_api(
    http_server: LoopbackServer, gated: FileRoute, gate: threading.Event, tmp_path: Path
) -> None:
    """download/tasks/wait/state/bytes/error work through the agent; the task reports what the agent ran."""
    bg = background_session("api", detached=True, **FAST)
    assert isinstance(bg, DetachedSession)
    assert bg.journal_path == str(state_dir() / "api.sqlite3") and bg.config.backoff_max == FAST["backoff_max"]
    assert bg.state is SessionState.ACTIVE and "'api'" in repr(bg)
    task = bg.download(http_server.url("/file"), tmp_path / "a.bin")
    assert task.wait(0.01).state in (TransferState.PENDING, TransferState.RUNNING)
    assert not task.done
    gate.set()
    task.wait(BOUND)
    assert task.state is TransferState.COMPLETED, task.error
    assert task.done and task.error is None and task.rate is None
    assert task.bytes_done == task.bytes_total == len(gated.data)
    assert (tmp_path / "a.bin").read_bytes() == gated.data
    assert [t.id for t in bg.tasks()] == [task.id]
    assert task.path == str(tmp_path / "a.bin") and "state=completed" in repr(task)
    failing = bg.download(http_server.url("/missing"), tmp_path / "b.bin").wait(BOUND)
    assert failing.state is TransferState.FAILED
    assert isinstance(failing.error, TransferError) and "404" in str(failing.error)
    bg.forget(failing)
    assert [t.id for t in bg.tasks()] == [task.id]
    with pytest.raises(ConfigError, match="does not belong"):
        bg.forget(failing)
    bg.finish_tasks_and_invalidate()
    bg.finish_tasks_and_invalidate()
    with pytest.raises(SessionInvalidatedError, match="detached=True"):
        bg.download(http_server.url("/file"), tmp_path / "c.bin")


def test_finish_that_timed_out_finishes_on_the_next_call(
    http_server: LoopbackServer, gated: FileRoute, gate: threading.Event, tmp_path: Path
) -> None:
    """After a finish whose timeout ran out, the next finish waits for the agent's download and ends the session."""
    bg = background_session("again", detached=True, **FAST)
    task = bg.download(http_server.url("/file"), tmp_path / "a.bin")
    with pytest.raises(InvalidationTimeoutError, match=r"1 transfer\(s\) still unfinished after 0.2s"):
        bg.finish_tasks_and_invalidate(timeout=0.2)
    assert bg.state is SessionState.INVALIDATING
    with pytest.raises(SessionInvalidatedError, match="'again' is invalidating; it refuses new transfers"):
        bg.download(http_server.url("/file"), tmp_path / "b.bin")
    assert not task.wait(0.01).done  # the agent still answers for its invalidating session
    gate.set()
    bg.finish_tasks_and_invalidate()
    assert bg.state is SessionState.INVALIDATED
    assert task.state is TransferState.COMPLETED, task.error
    assert (tmp_path / "a.bin").read_bytes() == gated.data
    assert [hit.status for hit in gated.log] == [200]


def test_upload_and_cancel_through_the_agent(
    http_server: LoopbackServer, gated: FileRoute, tmp_path: Path
) -> None:
    """An upload reaches the server with the file's bytes; cancel and invalidate_and_cancel stop downloads."""
    uploads = UploadRoute()
    http_server.route("/up", uploads)
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 1000)
    with background_session("up", detached=True, **FAST) as bg:
        task = bg.upload(http_server.url("/up"), src, protocol="none", method="POST").wait(BOUND)
        assert task.state is TransferState.COMPLETED, task.error
        held = bg.download(http_server.url("/file"), tmp_path / "held.bin")
        held.cancel()
        assert held.wait(BOUND).state is TransferState.CANCELLED
    assert uploads.methods == ["POST"] and uploads.bodies == [src.read_bytes()]
    bg = background_session("up", detached=True)
    other = bg.download(http_server.url("/file"), tmp_path / "other.bin")
    bg.invalidate_and_cancel()
    bg.invalidate_and_cancel()
    assert other.wait(BOUND).state is TransferState.CANCELLED
    assert not (tmp_path / "other.bin.part").exists()


def test_sigkilled_agent_is_replaced_and_resumes_from_the_journal(http_server: LoopbackServer, tmp_path: Path) -> None:
    """After SIGKILL mid-transfer, the next attach starts an agent that resumes with Range, byte-identical."""
    data = make_data(32 * MIB, seed=3)
    route = FileRoute(data, chunk=1 * MIB)
    held, release = threading.Event(), threading.Event()
    pieces = [0]

    def after_piece(exchange: Any) -> None:
        pieces[0] += 1
        # Far enough past the 16 MiB commit that socket buffers cannot hold the client below it.
        if pieces[0] == 28:
            held.set()
            release.wait(BOUND)

    route.after_piece = after_piece
    http_server.route("/big", route)
    dest = tmp_path / "big.bin"
    bg = background_session("big", detached=True, **FAST)
    bg.download(http_server.url("/big"), dest)
    assert held.wait(BOUND)
    journal = state_dir() / "big.sqlite3"

    def committed() -> int:
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT bytes_done FROM tasks").fetchone()[0])

    wait_until(lambda: committed() > 0, BOUND, "a committed offset in the journal")
    offset = committed()
    pid = agent_pid()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: process_gone(pid), BOUND, "the killed agent to be gone")
    release.set()
    again = background_session("big", detached=True)
    assert agent_pid() != pid
    (task,) = again.tasks()
    assert task.wait(BOUND).state is TransferState.COMPLETED, task.error
    assert task.resumed_from == offset
    assert dest.read_bytes() == data
    assert route.ranges == [None, f"bytes={offset}-"]


def test_two_concurrent_attaches_share_one_agent() -> None:
    """Two processes attaching at the same moment talk to the same agent; one agent holds the lock."""
    first, second = run_child("pair", "ping"), run_child("pair", "ping")
    pids = {finish(first).split()[1], finish(second).split()[1]}
    assert len(pids) == 1
    assert pids == {str(agent_pid())}
    assert (state_dir() / AGENT_LOCK).read_text().strip() == pids.pop()


def test_socket_of_another_user_is_refused() -> None:
    """A socket file planted by another uid is refused by name and left in place."""
    directory = state_dir()
    directory.mkdir(mode=0o700, parents=True)
    path = directory / AGENT_SOCKET
    planted = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    planted.bind(str(path))
    planted.listen(1)
    try:
        os.chown(path, 65534, 65534)
        with pytest.raises(TransferError, match="owned by uid 65534"):
            background_session("x", detached=True)
        assert path.exists()
    finally:
        planted.close()


def test_non_socket_at_the_socket_path_is_refused() -> None:
    """A regular file where the socket belongs is refused and left untouched."""
    directory = state_dir()
    directory.mkdir(mode=0o700, parents=True)
    (directory / AGENT_SOCKET).write_text("not a socket")
    with pytest.raises(TransferError, match="not a socket"):
        background_session("x", detached=True)
    assert (directory / AGENT_SOCKET).read_text() == "not a socket"


@pytest.mark.parametrize("mode", [0o750, 0o755, 0o777])
def test_state_dir_with_a_wider_mode_is_refused(mode: int) -> None:
    """A state directory that group or others may enter is refused, naming its mode."""
    directory = state_dir()
    directory.mkdir(parents=True)
    os.chmod(directory, mode)
    with pytest.raises(TransferError, match=f"{mode:04o}"):
        background_session("x", detached=True)
    assert not (directory / AGENT_SOCKET).exists()


def test_stale_socket_of_a_dead_agent_is_replaced() -> None:
    """A socket file nobody listens on (its agent died) is replaced by a new agent's."""
    directory = state_dir()
    directory.mkdir(mode=0o700, parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(directory / AGENT_SOCKET))
    stale.close()
    bg = background_session("x", detached=True)
    assert bg.tasks() == []
    assert agent_pid() != os.getpid()


def test_agent_exits_after_its_idle_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing to do, the agent exits by itself and removes its socket."""
    monkeypatch.setenv("SESSION_PRESETS_AGENT_IDLE", "0.3")
    background_session("x", detached=True)
    (proc,) = _client._spawned
    assert proc.wait(BOUND) == 0
    assert not (state_dir() / AGENT_SOCKET).exists()
    assert lock_is_free(state_dir() / AGENT_LOCK)


def test_sigterm_suspends_tasks_into_the_journal(
    http_server: LoopbackServer, gated: FileRoute, gate: threading.Event, tmp_path: Path
) -> None:
    """SIGTERM makes the agent keep its unfinished task pending in the journal; the next attach completes it."""
    bg = background_session("term", detached=True, **FAST)
    task = bg.download(http_server.url("/file"), tmp_path / "t.bin")
    wait_until(lambda: len(gated.log) == 0 and task.state is TransferState.RUNNING, BOUND, "the task to run")
    (proc,) = _client._spawned
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(BOUND) == 0
    gate.set()
    with contextlib.closing(sqlite3.connect(f"file:{state_dir() / 'term.sqlite3'}?mode=ro", uri=True)) as db:
        assert db.execute("SELECT state FROM tasks").fetchall() == [("pending",)]
    (again,) = background_session("term", detached=True).tasks()
    assert again.wait(BOUND).state is TransferState.COMPLETED, again.error
    assert (tmp_path / "t.bin").read_bytes() == gated.data


def test_agent_ignores_sighup() -> None:
    """A hang-up (the caller's terminal closing) does not stop the agent."""
    background_session("x", detached=True)
    pid = agent_pid()
    os.kill(pid, signal.SIGHUP)
    assert agent_pid() == pid


def test_unknown_protocol_version_is_refused() -> None:
    """A request of another protocol version gets an error naming both versions."""
    background_session("x", detached=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(BOUND)
        sock.connect(str(state_dir() / AGENT_SOCKET))
        sock.sendall(b'{"version": 99, "op": "ping"}\n')
        reply = json.loads(sock.makefile("rb").readline())
    assert reply["version"] == PROTOCOL_VERSION and reply["ok"] is False
    assert "version 99" in reply["error"]["message"] and f"version {PROTOCOL_VERSION}" in reply["error"]["message"]
    with pytest.raises(ProtocolError, match="version 2"):
        decode(b'{"version": 2}', sender="transfer agent")
    with pytest.raises(ProtocolError, match="not a JSON object"):
        decode(b"[1]", sender="transfer agent")


def test_unknown_request_and_missing_session_are_errors() -> None:
    """The agent answers an unknown op or an unopened identifier with an error naming it."""
    background_session("x", detached=True)
    directory = str(state_dir())
    with pytest.raises(ProtocolError, match="'dance'"):
        _client.agent_request(directory, "dance")
    with pytest.raises(ConfigError, match="'never-opened' has no detached session"):
        _client.agent_request(directory, "tasks", identifier="never-opened")
    with pytest.raises(ConfigError, match="task_id=42"):
        _client.agent_request(directory, "task", identifier="x", task_id=42)


def test_detached_refuses_auth_and_non_plain_overrides() -> None:
    """auth= and overrides that cannot cross the socket are refused before any agent starts."""
    with pytest.raises(ConfigError, match="auth= is refused"):
        background_session("x", detached=True, auth=("u", "p"))
    with pytest.raises(ConfigError, match="plain values"):
        background_session("x", detached=True, retry_statuses=frozenset({503}))
    assert _client._spawned == []


def test_detached_on_a_non_posix_platform_names_the_limitation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where there are no Unix domain sockets, detached=True raises a ConfigError naming POSIX."""
    monkeypatch.setattr(_client, "_POSIX", False)
    with pytest.raises(ConfigError, match="not supported on this platform.*POSIX"):
        background_session("x", detached=True)


def test_detached_false_is_the_in_process_session() -> None:
    """detached=False (the default) still returns the in-process BackgroundSession and starts no agent."""
    assert isinstance(background_session("x", detached=False), BackgroundSession)
    assert not (state_dir() / AGENT_SOCKET).exists()


def test_stop_agent_without_an_agent_returns_none() -> None:
    """stop_agent when none runs is a no-op returning None."""
    assert _client.stop_agent(str(state_dir())) is None


def test_agent_idle_setting_is_validated() -> None:
    """A bad idle time is refused naming the argument and the accepted form."""
    with pytest.raises(ConfigError, match="--idle='soon' is invalid: expected a number of seconds"):
        agent.main(["--state-dir", str(state_dir()), "--idle", "soon"])
    assert agent._idle_from(None, "X") == agent.DEFAULT_IDLE


def test_second_agent_exits_when_one_runs() -> None:
    """An agent started while another holds the lock exits at once with status 0."""
    background_session("x", detached=True)
    assert agent.main(["--state-dir", str(state_dir())]) == agent.ALREADY_RUNNING


def test_peer_of_another_uid_is_refused_by_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent checks SO_PEERCRED: a client whose uid differs from the agent's gets a refusal."""
    if not hasattr(socket, "SO_PEERCRED"):
        pytest.skip("SO_PEERCRED is Linux only")
    background_session("x", detached=True)
    code = textwrap.dedent(
        """
        import os, socket, sys
        os.setuid(65534)
        s = socket.socket(socket.AF_UNIX)
        s.connect(sys.argv[1])
        try:
            s.sendall(b'{"version": 1, "op": "ping"}\\n')
        except OSError:
            pass  # the agent may refuse and close before the request is sent
        print(s.makefile("rb").readline().decode())
        """
    )
    # The state directory is out of reach of uid 65534 (as it should be): a hard link to the socket's
    # inode in a directory it can enter stands for a client that got there anyway; the agent must refuse it.
    public = Path(tempfile.mkdtemp())
    try:
        public.chmod(0o755)
        os.chmod(state_dir() / AGENT_SOCKET, 0o777)
        os.link(state_dir() / AGENT_SOCKET, public / "s")
        out = subprocess.run(
            [sys.executable, "-c", code, str(public / "s")],
            capture_output=True, text=True, timeout=BOUND, check=False,
        )
    finally:
        shutil.rmtree(public)
    assert "refused: another user" in out.stdout, out.stderr


def test_connect_errors_other_than_refused_name_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connect failure that is not a stale socket raises a TransferError naming the path."""
    directory = state_dir()
    directory.mkdir(mode=0o700, parents=True)
    sock_path = directory / AGENT_SOCKET
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.close()

    def refuse(self: socket.socket, address: object) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(TransferError, match="cannot connect to the transfer agent"):
        background_session("x", detached=True)


# -- the command line -------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``session-presets`` console script with the test's environment."""
    return subprocess.run(
        [console_script(), *args], capture_output=True, text=True, timeout=BOUND, check=False
    )


def test_cli_download_detach_returns_at_once_and_transfers_follow_it(
    http_server: LoopbackServer, gated: FileRoute, gate: threading.Event, tmp_path: Path
) -> None:
    """download --detach prints the identifier while the server still holds the body; transfers lists and waits."""
    dest = tmp_path / "cli.bin"
    started = cli("download", "--detach", http_server.url("/file"), "-o", str(dest), "--identifier", "cli-job")
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "cli-job"
    assert not dest.exists()
    listed = cli("transfers")
    assert listed.returncode == 0, listed.stderr
    assert "cli-job  1  " in listed.stdout and str(dest) in listed.stdout
    as_json = json.loads(cli("transfers", "--json").stdout)
    assert [(t["identifier"], t["id"], t["dest"]) for t in as_json] == [("cli-job", 1, str(dest))]
    assert as_json[0]["state"] in ("pending", "running")
    again = cli("download", "--detach", http_server.url("/file"), "-o", str(dest), "--identifier", "cli-job")
    assert again.returncode == 0 and again.stdout.strip() == "cli-job", again.stderr
    gate.set()
    waited = cli("transfers", "wait", "cli-job")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.split()[:3] == ["cli-job", "1", "completed"]
    assert dest.read_bytes() == gated.data
    assert len(gated.log) == 1


def test_cli_transfers_cancel_wait_timeout_and_stop_agent(
    http_server: LoopbackServer, gated: FileRoute, tmp_path: Path
) -> None:
    """transfers wait --timeout exits 3 while held, cancel stops the task (wait then exits 1), stop-agent stops it."""
    dest = tmp_path / "held.bin"
    started = cli("download", "--detach", http_server.url("/file"), "-o", str(dest), "--identifier", "held")
    assert started.returncode == 0, started.stderr
    timed_out = cli("transfers", "wait", "held", "--timeout", "0.2")
    assert timed_out.returncode == 3, timed_out.stderr
    cancelled = cli("transfers", "cancel", "held")
    assert cancelled.returncode == 0, cancelled.stderr
    waited = cli("transfers", "wait", "held")
    assert waited.returncode == 1 and "cancelled" in waited.stdout, waited.stderr
    assert not Path(str(dest) + ".part").exists()
    pid = agent_pid()
    stopped = cli("stop-agent")
    assert stopped.returncode == 0 and f"pid {pid}" in stopped.stderr
    wait_until(lambda: lock_is_free(state_dir() / AGENT_LOCK), BOUND, "the agent to release its lock")
    assert "no agent was running" in cli("stop-agent").stderr


def test_cli_transfers_usage_errors_and_empty_listing() -> None:
    """transfers with nothing detached prints nothing and starts no agent; a missing ID exits 2."""
    listed = cli("transfers")
    assert listed.returncode == 0 and listed.stdout == ""
    assert not (state_dir() / AGENT_SOCKET).exists()
    missing = cli("transfers", "wait")
    assert missing.returncode == 2 and "give the identifier" in missing.stderr
    extra = cli("transfers", "--json", "x")
    assert extra.returncode == 2
    to_stdout = cli("download", "--detach", "http://127.0.0.1:9/f", "-o", "-")
    assert to_stdout.returncode == 2 and "--detach needs -o FILE" in to_stdout.stderr


def test_cli_transfer_sizes_use_the_binary_units() -> None:
    """The detached listing shows sizes as the rest of the CLI does: B, KiB, MiB, GiB."""
    from session_presets.cli._base import human_bytes

    assert [human_bytes(n) for n in (5, 2048, 3 * MIB, 5 << 30)] == [
        "5 B", "2.0 KiB", "3.0 MiB", "5.0 GiB",
    ]


def test_a_damaged_marker_is_skipped_and_the_agent_still_serves(tmp_path: Path) -> None:
    """A marker that does not hold settings is left alone with a warning in the log; other identifiers work."""
    directory = state_dir()
    directory.mkdir(mode=0o700, parents=True)
    (directory / "broken.agent").write_text("[1]")
    (directory / "garbled.agent").write_text("{not json")
    bg = background_session("fine", detached=True)
    assert bg.tasks() == []
    listed = _client.agent_request(str(directory), "list")
    assert listed == []
    log = (directory / AGENT_LOG).read_text()
    assert "'broken' not resumed" in log and "'garbled' not resumed" in log
    assert (directory / "broken.agent").read_text() == "[1]"
