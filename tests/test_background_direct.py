"""Background downloads write aligned runs with O_DIRECT, the rest through the page cache, and fall back."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from session_presets import TransferError, TransferState
from session_presets.background import _bodyio, _files

from .background_server import FileRoute
from .servers import LoopbackServer
from .test_background import MIB, make_data, open_bg

ALIGN = _bodyio.DIRECT_ALIGN

pytestmark = pytest.mark.skipif(not _files.O_DIRECT, reason="the platform has no O_DIRECT")


def _direct_supported(directory: Path) -> bool:
    probe = directory / "probe"
    probe.write_bytes(b"")
    try:
        fd = os.open(probe, os.O_WRONLY | _files.O_DIRECT)
    except OSError:
        return False
    finally:
        probe.unlink()
    os.close(fd)
    return True


@dataclass
class Writes:
    """Every pwrite to a .part: (direct?, offset, length); ``fail`` decides an injected error."""

    seen: list[tuple[bool, int, int]] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def direct(self) -> list[tuple[int, int]]:
        return [(offset, length) for is_direct, offset, length in self.seen if is_direct]

    def buffered(self) -> list[tuple[int, int]]:
        return [(offset, length) for is_direct, offset, length in self.seen if not is_direct]


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Writes:
    """Record every os.pwrite to a .part, telling direct descriptors apart; inject errors on direct ones."""
    if not _direct_supported(tmp_path):
        pytest.skip("the file system of tmp_path refuses O_DIRECT")
    record = Writes()
    real = os.pwrite

    def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
        if not os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):
            return real(fd, data, offset)  # the lock file, say
        is_direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & _files.O_DIRECT)
        with record.lock:
            record.seen.append((is_direct, offset, len(data)))
            if is_direct and record.fail.get("direct_after", -1) == 0:
                raise OSError(record.fail["errno"], os.strerror(record.fail["errno"]))
            if is_direct and "direct_after" in record.fail:
                record.fail["direct_after"] -= 1
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    return record


def test_aligned_runs_go_direct_and_odd_resume_offsets_stay_exact(
    http_server: LoopbackServer, tmp_path: Path, writes: Writes
) -> None:
    """Resumes at odd offsets: direct writes stay aligned, buffered ones never span a block, bytes identical."""
    data = make_data(3 * MIB + 123)
    route = FileRoute(data)
    route.drops = [1_000_003, 2_500_001]
    http_server.route("/file", route)
    dest = tmp_path / "out.bin"
    task = open_bg().download(http_server.url("/file"), dest).wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert dest.read_bytes() == data
    assert route.ranges == [None, "bytes=1000003-", "bytes=2500001-"]
    direct, buffered = writes.direct(), writes.buffered()
    assert all(not offset % ALIGN and length and not length % ALIGN for offset, length in direct), direct
    # Only heads and tails go through the page cache: never a whole aligned block.
    assert all(offset // ALIGN == (offset + length - 1) // ALIGN for offset, length in buffered), buffered
    assert sum(length for _, length in direct) >= len(data) - 8 * ALIGN


def test_file_system_refusing_direct_writes_gets_buffered_ones(
    http_server: LoopbackServer, tmp_path: Path, writes: Writes
) -> None:
    """EINVAL on a direct write: the rest is written through the page cache; one request, same bytes."""
    data = make_data(3 * MIB)
    route = FileRoute(data)
    http_server.route("/file", route)
    writes.fail.update(direct_after=0, errno=errno.EINVAL)
    dest = tmp_path / "out.bin"
    task = open_bg().download(http_server.url("/file"), dest).wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert dest.read_bytes() == data
    assert route.ranges == [None]
    assert len(writes.direct()) == 1  # tried once, then never again
    assert sum(length for _, length in writes.buffered()) == len(data)


def test_write_error_on_the_writer_thread_fails_the_task(
    http_server: LoopbackServer, tmp_path: Path, writes: Writes
) -> None:
    """An I/O error in the writer thread fails the task with the .part named; dest is never written."""
    route = FileRoute(make_data(3 * MIB))
    http_server.route("/file", route)
    writes.fail.update(direct_after=0, errno=errno.EIO)
    dest = tmp_path / "out.bin"
    task = open_bg().download(http_server.url("/file"), dest).wait(20)
    assert task.state is TransferState.FAILED
    assert isinstance(task.error, TransferError)
    assert f"{str(dest) + '.part'!r}" in str(task.error)
    assert "Input/output error" in str(task.error)
    assert not dest.exists()
    assert route.ranges == [None]


def test_without_positioned_io_a_resumed_verified_download_is_exact(
    http_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where os.pwrite/pread do not exist (Windows), seek-and-write keeps resumes and sha256 exact."""
    monkeypatch.setattr(_files, "_HAS_PWRITE", False)
    data = make_data(3 * MIB + 5)
    route = FileRoute(data)
    route.drops = [1_000_003]
    http_server.route("/file", route)
    dest = tmp_path / "out.bin"
    digest = hashlib.sha256(data).hexdigest()
    task = open_bg().download(http_server.url("/file"), dest, sha256=digest).wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert dest.read_bytes() == data
    assert route.ranges == [None, "bytes=1000003-"]
