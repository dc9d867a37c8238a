"""Hostile file systems: planted symbolic links, a shared or foreign state directory; the victim is never touched."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from session_presets import TransferError, TransferState, background_session

from .background_server import FileRoute
from .servers import LoopbackServer
from .test_background import FAST, MIB, make_data, open_bg
from .waiting import wait_until

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX symbolic links, modes and owners"),
]

VICTIM = b"precious bytes of another file\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the download's directory that a planted link points at."""
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_bytes(VICTIM)
    return path


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    """The directory downloads go to."""
    path = tmp_path / "downloads"
    path.mkdir()
    return path


def state_dir() -> Path:
    """The state directory the autouse fixture points SESSION_PRESETS_STATE_DIR at."""
    return Path(os.environ["SESSION_PRESETS_STATE_DIR"])


# -- the state directory -------------------------------------------------------------


def test_state_dir_is_created_private() -> None:
    """A missing state directory is created with mode 0700, whatever the umask."""
    old = os.umask(0o002)
    try:
        bg = open_bg()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(bg.state_dir).st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_group_or_other_writable_state_dir_is_refused(mode: int) -> None:
    """A state directory writable by group or others is refused with a TransferError naming the fix."""
    path = state_dir()
    path.mkdir(parents=True)
    path.chmod(mode)
    with pytest.raises(TransferError, match=rf"lets group or others write to it. Run: chmod 700 '{path}'"):
        background_session("t", **FAST)
    assert list(path.iterdir()) == []


def test_state_dir_of_another_user_is_refused() -> None:
    """A state directory owned by another uid is refused, and nothing is created in it."""
    if os.getuid() != 0:
        pytest.skip("changing a directory's owner needs root")
    path = state_dir()
    path.mkdir(parents=True, mode=0o700)
    os.chown(path, 4242, -1)
    with pytest.raises(TransferError, match=r"owned by uid 4242, not by this user"):
        background_session("t", **FAST)
    assert list(path.iterdir()) == []


# -- planted links in the state directory ---------------------------------------------


def test_lock_file_symlink_is_refused_and_victim_untouched(victim: Path) -> None:
    """A symlinked <identifier>.lock gives a clear TransferError; its target is not truncated."""
    path = state_dir()
    path.mkdir(parents=True, mode=0o700)
    (path / "t.lock").symlink_to(victim)
    with pytest.raises(TransferError, match="lock file .* is a symbolic link"):
        background_session("t", **FAST)
    assert victim.read_bytes() == VICTIM


def test_dangling_journal_symlink_is_refused_and_no_database_created(tmp_path: Path) -> None:
    """A dangling <identifier>.sqlite3 link is refused; no database appears at its target."""
    path = state_dir()
    path.mkdir(parents=True, mode=0o700)
    target = tmp_path / "planted.sqlite3"
    (path / "t.sqlite3").symlink_to(target)
    with pytest.raises(TransferError, match="journal .* is a symbolic link"):
        background_session("t", **FAST)
    assert not target.exists()
    # The identifier is free again: the lock was released.
    (path / "t.sqlite3").unlink()
    assert open_bg().tasks() == []


def test_journal_symlink_to_a_file_is_refused(victim: Path) -> None:
    """A journal link to an existing file is refused and the file is left as it was."""
    path = state_dir()
    path.mkdir(parents=True, mode=0o700)
    (path / "t.sqlite3").symlink_to(victim)
    with pytest.raises(TransferError, match="journal .* is a symbolic link"):
        background_session("t", **FAST)
    assert victim.read_bytes() == VICTIM


# -- planted links beside the destination ----------------------------------------------


@pytest.mark.parametrize("planted", ["symlink", "fifo"])
def test_part_swapped_while_waiting_for_headers(
    http_server: LoopbackServer, downloads: Path, victim: Path, planted: str
) -> None:
    """A .part swapped for a link or a FIFO mid-request fails the task at once; victim and dest untouched.

    The FIFO case pins that no open of the path blocks waiting for a reader.
    """
    data = make_data(MIB)
    route = FileRoute(data)
    part = downloads / "out.bin.part"

    def plant() -> None:
        route.before_headers = None
        part.rename(downloads / "moved")
        if planted == "symlink":
            part.symlink_to(victim)
        else:
            os.mkfifo(part)

    route.before_headers = plant
    http_server.route("/file", route)
    task = open_bg().download(http_server.url("/file"), downloads / "out.bin").wait(20)
    assert task.state is TransferState.FAILED
    kind = "a symbolic link" if planted == "symlink" else "another file"
    assert f"was replaced by {kind}" in str(task.error)
    assert victim.read_bytes() == VICTIM
    assert not (downloads / "out.bin").exists()
    assert not (downloads / "out.bin").is_symlink()


def test_part_symlink_on_resume_is_refused(http_server: LoopbackServer, downloads: Path, victim: Path) -> None:
    """A .part replaced by a link between runs gives a clear TransferError; nothing is appended to the victim."""
    data = make_data(2 * MIB)
    route = FileRoute(data, chunk=32 * 1024)
    route.delay = 0.02
    http_server.route("/file", route)
    bg = open_bg()
    task = bg.download(http_server.url("/file"), downloads / "out.bin")
    wait_until(lambda: task.bytes_done >= 256 * 1024, 30.0, "256 KiB downloaded")
    bg._suspend()
    part = downloads / "out.bin.part"
    part.unlink()
    part.symlink_to(victim)
    route.delay = 0
    (again,) = open_bg().tasks()
    assert again.wait(20).state is TransferState.FAILED
    assert isinstance(again.error, TransferError)
    assert "is a symbolic link" in str(again.error)
    assert victim.read_bytes() == VICTIM
    assert not (downloads / "out.bin").exists()


def test_dest_symlink_is_replaced_not_written_through(
    http_server: LoopbackServer, downloads: Path, victim: Path
) -> None:
    """A link planted at dest is replaced by the downloaded file; the victim it pointed at is untouched."""
    data = make_data(MIB)
    http_server.route("/file", FileRoute(data))
    dest = downloads / "out.bin"
    dest.symlink_to(victim)
    task = open_bg().download(http_server.url("/file"), dest).wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert not dest.is_symlink()
    assert dest.read_bytes() == data
    assert victim.read_bytes() == VICTIM


def test_dest_lock_symlink_is_refused(http_server: LoopbackServer, downloads: Path, victim: Path) -> None:
    """A link planted at <dest>.part.lock makes download() raise; the victim is not truncated."""
    http_server.route("/file", FileRoute(make_data(MIB)))
    (downloads / "out.bin.part.lock").symlink_to(victim)
    with pytest.raises(TransferError, match="is a symbolic link"):
        open_bg().download(http_server.url("/file"), downloads / "out.bin")
    assert victim.read_bytes() == VICTIM
    assert not (downloads / "out.bin.part").exists()


def test_planted_part_before_the_first_attempt_is_not_followed(
    http_server: LoopbackServer, downloads: Path, victim: Path
) -> None:
    """A stale .part link left before download() is removed (the link, not its target) and a fresh file is made."""
    data = make_data(MIB)
    http_server.route("/file", FileRoute(data))
    (downloads / "out.bin.part").symlink_to(victim)
    task = open_bg().download(http_server.url("/file"), downloads / "out.bin").wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert (downloads / "out.bin").read_bytes() == data
    assert victim.read_bytes() == VICTIM


def test_part_planted_while_the_task_is_queued_is_refused(
    http_server: LoopbackServer, downloads: Path, victim: Path
) -> None:
    """A .part link planted between download() and the task's start is refused (O_EXCL); the victim is untouched."""
    slow = FileRoute(make_data(MIB), chunk=16 * 1024)
    slow.delay = 0.02
    http_server.route("/slow", slow)
    http_server.route("/file", FileRoute(make_data(MIB)))
    bg = open_bg(max_concurrent_transfers=1)
    blocker = bg.download(http_server.url("/slow"), downloads / "first.bin")
    task = bg.download(http_server.url("/file"), downloads / "out.bin")
    (downloads / "out.bin.part").symlink_to(victim)
    slow.delay = 0
    assert blocker.wait(20).state is TransferState.COMPLETED
    assert task.wait(20).state is TransferState.FAILED
    assert "is a symbolic link" in str(task.error)
    assert victim.read_bytes() == VICTIM
    assert not (downloads / "out.bin").exists()


def test_part_of_another_user_is_refused_on_resume(http_server: LoopbackServer, downloads: Path) -> None:
    """A .part chowned to another uid between runs is refused by name and left as it was."""
    if os.getuid() != 0:
        pytest.skip("changing a file's owner needs root")
    route = FileRoute(make_data(2 * MIB), chunk=32 * 1024)
    route.delay = 0.02
    http_server.route("/file", route)
    bg = open_bg()
    task = bg.download(http_server.url("/file"), downloads / "out.bin")
    wait_until(lambda: task.bytes_done >= 256 * 1024, 30.0, "256 KiB downloaded")
    bg._suspend()
    part = downloads / "out.bin.part"
    os.chown(part, 4242, -1)
    before = part.read_bytes()
    (again,) = open_bg().tasks()
    assert again.wait(20).state is TransferState.FAILED
    assert "owned by another user (uid 4242)" in str(again.error)
    assert part.read_bytes() == before


def test_lock_file_of_another_user_is_refused(http_server: LoopbackServer, downloads: Path) -> None:
    """A <dest>.part.lock owned by another uid makes download() raise; nothing is written."""
    if os.getuid() != 0:
        pytest.skip("changing a file's owner needs root")
    http_server.route("/file", FileRoute(make_data(MIB)))
    lock = downloads / "out.bin.part.lock"
    lock.write_bytes(b"")
    os.chown(lock, 4242, -1)
    with pytest.raises(TransferError, match="not a regular file of this user"):
        open_bg().download(http_server.url("/file"), downloads / "out.bin")
    assert not (downloads / "out.bin.part").exists()


def test_state_dir_that_is_a_file_is_refused() -> None:
    """A file standing where the state directory should be gives a TransferError naming it."""
    path = state_dir()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a directory")
    with pytest.raises(TransferError, match="is not a directory"):
        background_session("t", **FAST)


def test_part_grown_by_someone_else_is_not_renamed(http_server: LoopbackServer, downloads: Path) -> None:
    """A .part longer than the announced total at the end is never renamed: the download restarts from zero."""
    data = make_data(MIB)
    route = FileRoute(data, chunk=32 * 1024)
    route.delay = 0.02
    http_server.route("/file", route)
    task = open_bg().download(http_server.url("/file"), downloads / "out.bin")
    wait_until(lambda: task.bytes_done >= 256 * 1024, 30.0, "256 KiB downloaded")
    with open(downloads / "out.bin.part", "ab") as part:
        part.write(b"x" * (2 * MIB))
    route.delay = 0
    assert task.wait(20).state is TransferState.COMPLETED, task.error
    assert (downloads / "out.bin").read_bytes() == data
    assert [hit.range for hit in route.log] == [None, None]


def test_a_users_file_at_the_lock_path_is_left_alone(http_server: LoopbackServer, downloads: Path) -> None:
    """A file at <dest>.part.lock that is not one of our lock files is refused, not rewritten or removed."""
    http_server.route("/file", FileRoute(make_data(MIB)))
    lock = downloads / "out.bin.part.lock"
    lock.write_bytes(b"my own notes\n")
    with pytest.raises(TransferError, match="holds something else"):
        open_bg().download(http_server.url("/file"), downloads / "out.bin")
    assert lock.read_bytes() == b"my own notes\n"
