"""Background journal, identifier lock, state directory and uploads."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from session_presets import (
    IdentifierInUseError,
    SessionState,
    TransferError,
    TransferState,
    TransferTask,
    background_session,
)
from session_presets.background import engine
from session_presets.background.engine import BackgroundSession
from session_presets.background.journal import SCHEMA_VERSION, Journal
from session_presets.background.lockfile import default_state_dir

from .background_server import FileRoute, UploadRoute
from .servers import LoopbackServer
from .test_background import FAST, MIB, make_data, open_bg
from .waiting import wait_until

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def state_dir() -> Path:
    """The state directory the autouse environment fixture points SESSION_PRESETS_STATE_DIR at."""
    path = Path(os.environ["SESSION_PRESETS_STATE_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- journal contents --------------------------------------------------------------


def test_journal_is_private_and_holds_no_credentials(http_server: LoopbackServer, tmp_path: Path) -> None:
    """The journal and lock file are mode 0600; credential headers and URL passwords never reach the journal."""
    route = FileRoute(make_data(MIB))
    http_server.route("/file", route)
    bg = open_bg()
    url = http_server.url("/file").replace("http://", "http://user:urlsecret@")
    headers = {
        "Authorization": "Bearer tokensecret",
        "Proxy-Authorization": "Basic proxysecret",
        "Cookie": "session=cookiesecret",
        "X-Custom": "dropped",
        "Accept": "application/octet-stream",
    }
    task = bg.download(http_server.url("/file"), tmp_path / "out.bin", headers=headers).wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert route.log[0].authorization == "Bearer tokensecret"
    task = bg.download(url, tmp_path / "out2.bin").wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert route.log[1].authorization == "Basic dXNlcjp1cmxzZWNyZXQ="
    journal = Path(bg.journal_path)
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    assert stat.S_IMODE((journal.parent / "t.lock").stat().st_mode) == 0o600
    bg.finish_tasks_and_invalidate()
    raw = journal.read_bytes()
    for secret in (b"tokensecret", b"proxysecret", b"cookiesecret", b"urlsecret"):
        assert secret not in raw
    record, second = _records(journal)
    assert record["headers"] == {"Accept": "application/octet-stream"}
    assert record["url"] == second["url"] == http_server.url("/file")
    assert record["etag"] == '"v1"'
    assert record["state"] == "completed"
    assert record["bytes_done"] == MIB


def _records(path: Path) -> list[dict[str, Any]]:
    journal = Journal(str(path))
    try:
        return [
            {**vars(record), "headers": record.headers} for record in journal.load()
        ]
    finally:
        journal.close()


def test_journal_in_platform_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, http_server: LoopbackServer
) -> None:
    """Without state_dir, the journal goes to $XDG_STATE_HOME/session-presets/<identifier>.sqlite3."""
    monkeypatch.delenv("SESSION_PRESETS_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    bg = background_session("plat")
    assert bg.journal_path == str(tmp_path / "xdg" / "session-presets" / "plat.sqlite3")
    assert os.path.exists(bg.journal_path)
    assert bg.config.state_dir is None


def test_state_dir_override(tmp_path: Path) -> None:
    """state_dir= puts the journal where it says."""
    bg = open_bg(state_dir=str(tmp_path / "here"))
    assert bg.journal_path == str(tmp_path / "here" / "t.sqlite3")


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"XDG_STATE_HOME": "/xdg"}, "/xdg/session-presets"),
        ("linux", {"XDG_STATE_HOME": "relative"}, "{home}/.local/state/session-presets"),
        ("linux", {}, "{home}/.local/state/session-presets"),
        ("darwin", {}, "{home}/Library/Application Support/session-presets"),
        ("win32", {"LOCALAPPDATA": "/lad"}, "/lad/session-presets"),
        ("win32", {}, "{home}/AppData/Local/session-presets"),
    ],
)
def test_default_state_dir(
    monkeypatch: pytest.MonkeyPatch, platform: str, env: dict[str, str], expected: str
) -> None:
    """The platform state directory follows XDG on Linux, Application Support on macOS, LOCALAPPDATA on Windows."""
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("LOCALAPPDATA", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "platform", platform)
    assert default_state_dir() == expected.format(home=os.path.expanduser("~"))


def test_state_dir_that_cannot_be_created(tmp_path: Path) -> None:
    """A state_dir blocked by a file raises TransferError naming it."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(TransferError, match="state directory"):
        open_bg(state_dir=str(tmp_path / "file" / "sub"))


# -- damaged journals ---------------------------------------------------------------


def _assert_refused(path: Path, match: str) -> None:
    before = path.read_bytes()
    for _ in range(2):  # the second try proves the lock was released, not stuck
        with pytest.raises(TransferError, match=match) as info:
            background_session("t")
        assert str(path) in str(info.value)
        assert not isinstance(info.value, IdentifierInUseError)
    assert path.read_bytes() == before
    assert engine._live_sessions() == []


def test_corrupt_journal_raises_and_is_kept(state_dir: Path) -> None:
    """A journal that is not SQLite raises TransferError naming the file, which is left untouched."""
    path = state_dir / "t.sqlite3"
    path.write_bytes(b"this is not an sqlite database, just text\n" * 200)
    _assert_refused(path, "cannot be used")


def test_journal_of_another_user_raises_and_is_kept(state_dir: Path, http_server: LoopbackServer) -> None:
    """A journal owned by another user raises TransferError naming the file, which is left untouched."""
    if not hasattr(os, "getuid") or os.getuid() != 0:
        pytest.skip("needs root to give a file to another user")
    http_server.route("/file", FileRoute(make_data(1024)))
    bg = background_session("t")
    bg.download(http_server.url("/file"), str(state_dir / "out.bin")).wait(10)
    bg.finish_tasks_and_invalidate()
    path = state_dir / "t.sqlite3"
    os.chown(path, 4242, 4242)
    _assert_refused(path, "owned by another user")


def test_newer_journal_raises_and_is_kept(state_dir: Path) -> None:
    """A journal with a newer schema version raises TransferError naming the file, which is left untouched."""
    path = state_dir / "t.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, future TEXT)")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    _assert_refused(path, "newer")


@pytest.mark.parametrize(
    ("version", "sql"),
    [
        (0, "CREATE TABLE other (x)"),
        (SCHEMA_VERSION, "CREATE TABLE other (x)"),
    ],
)
def test_foreign_sqlite_file_is_refused(state_dir: Path, version: int, sql: str) -> None:
    """An SQLite file that is not our journal is refused and left untouched."""
    path = state_dir / "t.sqlite3"
    db = sqlite3.connect(path)
    db.execute(sql)
    db.execute(f"PRAGMA user_version={version}")
    db.commit()
    db.close()
    _assert_refused(path, "cannot be used")


@pytest.mark.parametrize(
    ("column", "value"),
    [("headers", "not json"), ("headers", "[1]"), ("state", "exploded"), ("kind", "teleport")],
)
def test_malformed_row_is_refused(state_dir: Path, tmp_path: Path, column: str, value: str) -> None:
    """A journal row with a malformed value raises TransferError naming the file."""
    bg = open_bg()
    (tmp_path / "src").write_bytes(b"x")
    bg.upload("http://127.0.0.1:9/up", tmp_path / "src").cancel()
    bg.invalidate_and_cancel()
    path = state_dir / "t.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"UPDATE tasks SET {column} = ?", (value,))
    db.commit()
    db.close()
    _assert_refused(path, "malformed")


def test_journal_update_rejects_unknown_columns(state_dir: Path) -> None:
    """Journal.update accepts only the mutable columns; a closed journal refuses writes."""
    journal = Journal(str(state_dir / "direct.sqlite3"))
    task_id = journal.add(kind="download", url="http://h/x", path="/x", method="GET", headers={}, sha256=None,
                          state="pending").id
    with pytest.raises(ValueError, match="not journal columns"):
        journal.update(task_id, url="http://evil/")
    journal.close()
    journal.close()
    for call in (lambda: journal.update(task_id, state="failed"), lambda: journal.delete(task_id),
                 journal.load, lambda: journal.add(kind="upload", url="u", path="p", method="PUT", headers={},
                                                   sha256=None, state="pending")):
        with pytest.raises(TransferError, match="closed|cannot"):
            call()


# -- identifier lock ----------------------------------------------------------------


def test_second_owner_in_process_is_refused(state_dir: Path) -> None:
    """A second BackgroundSession on a held identifier raises IdentifierInUseError naming the lock file."""
    bg = open_bg()
    with pytest.raises(IdentifierInUseError, match=r"in use by another process \(pid \d+\)") as info:
        BackgroundSession("t", bg.config)
    assert "t.lock" in str(info.value)
    bg.finish_tasks_and_invalidate()
    again = BackgroundSession("t", bg.config)
    again.finish_tasks_and_invalidate()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_inherit_the_session(state_dir: Path) -> None:
    """In a forked child the parent's session is gone and the identifier is still the parent's."""
    bg = open_bg()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            if engine._live_sessions() == [] and bg.state is SessionState.INVALIDATED:
                try:
                    background_session("t")
                except IdentifierInUseError:
                    code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert bg.state is SessionState.ACTIVE
    assert background_session("t") is bg


def test_suspend_at_exit_keeps_tasks_for_next_run(http_server: LoopbackServer, tmp_path: Path) -> None:
    """At interpreter exit, running and pending tasks are suspended, not cancelled, and resume next run."""
    data = make_data(MIB)
    route = FileRoute(data, chunk=16 * 1024)
    route.delay = 0.02
    http_server.route("/file", route)
    bg = open_bg(max_concurrent_transfers=1)
    first = bg.download(http_server.url("/file"), tmp_path / "a.bin")
    second = bg.download(http_server.url("/file"), tmp_path / "b.bin")
    wait_until(lambda: first.bytes_done > 0, 30.0, "the first bytes of the first download")
    engine._suspend_all()
    assert bg.state is SessionState.INVALIDATED
    assert first.state is second.state is TransferState.PENDING
    assert {r["state"] for r in _records(Path(bg.journal_path))} == {"pending"}
    route.delay = 0
    tasks = open_bg().tasks()
    for task in tasks:
        assert task.wait(20).state is TransferState.COMPLETED, task.error
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes() == data


# -- uploads --------------------------------------------------------------------------


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A 2 MiB file to upload."""
    path = tmp_path / "src.bin"
    path.write_bytes(make_data(2 * MIB, seed=7))
    return path


def test_upload_streams_file(http_server: LoopbackServer, src: Path) -> None:
    """A plain upload (protocol='none') sends the whole file with PUT and reports progress and completion."""
    route = UploadRoute()
    http_server.route("/up", route)
    seen: list[tuple[int, TransferState]] = []
    task = open_bg().upload(
        http_server.url("/up"), src, protocol="none", progress=lambda t: seen.append((t.bytes_done, t.state))
    )
    assert task.wait(20).state is TransferState.COMPLETED, task.error
    assert route.bodies == [src.read_bytes()]
    assert route.methods == ["PUT"]
    assert task.bytes_done == task.bytes_total == src.stat().st_size
    assert seen[-1] == (src.stat().st_size, TransferState.COMPLETED)
    assert task.kind == "upload"
    assert task.src == str(src)
    assert task.dest is None


def test_upload_is_retried_from_the_start(http_server: LoopbackServer, src: Path) -> None:
    """After a connection reset, a plain upload (protocol='none') is sent again from its first byte."""
    route = UploadRoute(failures=2)
    http_server.route("/up", route)
    task = open_bg().upload(http_server.url("/up"), src, protocol="none", method="post").wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert route.bodies == [src.read_bytes()] * 3
    assert route.methods == ["POST"] * 3
    assert task.attempts == 3


def test_upload_error_status_fails(http_server: LoopbackServer, src: Path) -> None:
    """An upload answered with a non-retryable error status fails with it in the message."""
    http_server.route("/up", UploadRoute(status=403))
    task = open_bg().upload(http_server.url("/up"), src).wait(20)
    assert task.state is TransferState.FAILED
    assert "403" in str(task.error)


def test_upload_of_vanished_file_fails(http_server: LoopbackServer, src: Path) -> None:
    """An upload whose file disappears before it runs fails with a TransferError naming it."""
    http_server.route("/up", UploadRoute())
    bg = open_bg(max_concurrent_transfers=1)
    blocker = FileRoute(make_data(MIB), chunk=16 * 1024)
    blocker.delay = 0.01
    http_server.route("/file", blocker)
    first = bg.download(http_server.url("/file"), src.parent / "blocker.bin")
    task = bg.upload(http_server.url("/up"), src)
    src.unlink()
    assert first.wait(20).state is TransferState.COMPLETED
    assert task.wait(20).state is TransferState.FAILED
    assert str(src) in str(task.error)


def test_cancel_pending_upload(http_server: LoopbackServer, src: Path) -> None:
    """A pending task is cancelled at once and never sent."""
    route = UploadRoute()
    http_server.route("/up", route)
    blocker = FileRoute(make_data(MIB), chunk=16 * 1024)
    blocker.delay = 0.01
    http_server.route("/file", blocker)
    bg = open_bg(max_concurrent_transfers=1)
    first = bg.download(http_server.url("/file"), src.parent / "blocker.bin")
    task = bg.upload(http_server.url("/up"), src)
    task.cancel()
    assert task.state is TransferState.CANCELLED
    assert task.done
    first.wait(20)
    assert route.bodies == []


def test_tls_certificate_failure_is_not_retried(https_server: LoopbackServer, tmp_path: Path) -> None:
    """A certificate that does not verify fails the task at once instead of retrying for days."""
    task = open_bg().download(https_server.url("/ok"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.FAILED
    assert task.attempts == 1
    assert "certificate" in str(task.error).lower()


def test_https_download_with_ca_bundle(https_server: LoopbackServer, ca_bundle: str, tmp_path: Path) -> None:
    """Downloads work over TLS with the preset's ca_bundle."""
    route = FileRoute(make_data(MIB))
    https_server.route("/file", route)
    bg = background_session("tls", ca_bundle=ca_bundle, **FAST)
    task = bg.download(https_server.url("/file"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert (tmp_path / "out.bin").read_bytes() == route.data


def test_repr_and_task_listing(http_server: LoopbackServer, src: Path) -> None:
    """repr shows identifier, state and counts without query strings."""
    http_server.route("/up", UploadRoute())
    bg = open_bg()
    task = bg.upload(http_server.url("/up?token=secret"), src).wait(20)
    assert "secret" not in repr(task)
    assert isinstance(task, TransferTask)
    assert "'t'" in repr(bg)
    assert bg.tasks() == [task]
    rows = _records(Path(bg.journal_path))
    assert json.dumps(rows[0]["headers"]) == "{}"


def test_cancel_upload_mid_body(http_server: LoopbackServer, src: Path) -> None:
    """An upload cancelled while its body is being read stops and ends cancelled."""
    route = UploadRoute()
    http_server.route("/up", route)
    task = open_bg().upload(http_server.url("/up"), src, progress=lambda t: t.cancel())
    assert task.wait(20).state is TransferState.CANCELLED
    assert all(len(body) < src.stat().st_size for body in route.bodies)


def test_environment_configures_background_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    """SESSION_PRESETS_BACKGROUND_* variables set timeouts, retries and concurrency; overrides win."""
    monkeypatch.setenv("SESSION_PRESETS_BACKGROUND_MAX_CONCURRENT_TRANSFERS", "3")
    monkeypatch.setenv("SESSION_PRESETS_BACKGROUND_TOTAL_TIMEOUT", "1h")
    monkeypatch.setenv("SESSION_PRESETS_RETRIES", "5")
    bg = background_session("envy", read_timeout=7)
    assert bg.config.max_concurrent_transfers == 3
    assert bg.config.total_timeout == 3600.0
    assert bg.config.retries == 5
    assert bg.config.read_timeout == 7.0
    assert bg.config.origin("max_concurrent_transfers") == "env SESSION_PRESETS_BACKGROUND_MAX_CONCURRENT_TRANSFERS"
