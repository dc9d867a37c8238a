"""One version, whole: validators on 206, strict 416, committed offsets, one writer per destination, redaction."""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import sqlite3
import threading
from pathlib import Path

import pytest

from session_presets import TransferError, TransferState
from session_presets.background import DestinationInUseError

from .background_server import FileRoute
from .servers import Handler, LoopbackServer
from .test_background import MIB, make_data, open_bg
from .waiting import wait_until

pytestmark = pytest.mark.timeout(60)


def journal_row(path: str, task_id: int) -> dict[str, object]:
    """Read one task's row straight from the journal file, as a new process would."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
    db.close()
    return dict(row)


def suspended_midway(http_server: LoopbackServer, route: FileRoute, tmp_path: Path, least: int) -> int:
    """Start a throttled download of ``route``, suspend it after ``least`` bytes; return the committed offset."""
    route.chunk = 32 * 1024
    route.delay = 0.02
    http_server.route("/file", route)
    bg = open_bg()
    task = bg.download(http_server.url("/file"), tmp_path / "out.bin")
    wait_until(lambda: task.bytes_done >= least, 20.0, f"{least} bytes downloaded")
    bg._suspend()
    assert task.state is TransferState.PENDING
    committed = journal_row(bg.journal_path, task.id)["bytes_done"]
    assert isinstance(committed, int)
    route.delay = 0
    return committed


# -- one version, whole ---------------------------------------------------------


def test_206_with_another_etag_restarts_from_zero(http_server: LoopbackServer, tmp_path: Path) -> None:
    """A server ignoring If-Range answers the resume with 206 of a new version: the file restarts, never splices."""
    old, new = make_data(2 * MIB, seed=1), make_data(2 * MIB, seed=2)
    route = FileRoute(old)
    route.drops = [MIB]
    route.honor_if_range = False

    def change(served: FileRoute) -> None:
        served.on_response = None
        served.set_file(new, etag='"v2"')

    route.on_response = change
    http_server.route("/file", route)
    task = open_bg().download(http_server.url("/file"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert (tmp_path / "out.bin").read_bytes() == new
    assert [(hit.range, hit.if_range, hit.status) for hit in route.log] == [
        (None, None, 200),
        (f"bytes={MIB}-", '"v1"', 206),
        (None, None, 200),
    ]


def test_206_with_another_last_modified_restarts_from_zero(http_server: LoopbackServer, tmp_path: Path) -> None:
    """Without an ETag, a 206 whose Last-Modified differs from the stored one restarts the file too."""
    old, new = make_data(2 * MIB, seed=1), make_data(2 * MIB, seed=2)
    route = FileRoute(old, etag=None)
    route.drops = [MIB]
    route.honor_if_range = False

    def change(served: FileRoute) -> None:
        served.on_response = None
        served.set_file(new, etag=None, last_modified="Thu, 22 Oct 2015 07:28:00 GMT")

    route.on_response = change
    http_server.route("/file", route)
    task = open_bg().download(http_server.url("/file"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert (tmp_path / "out.bin").read_bytes() == new
    assert [hit.status for hit in route.log] == [200, 206, 200]


def test_lying_416_is_not_complete(http_server: LoopbackServer, tmp_path: Path) -> None:
    """A 416 naming the .part's own size as the total does not complete a short file: it restarts from zero."""
    data = make_data(2 * MIB)
    route = FileRoute(data)
    committed = suspended_midway(http_server, route, tmp_path, 256 * 1024)
    assert 0 < committed < len(data)
    route.lying_416 = 1
    (task,) = open_bg().tasks()
    assert task.wait(20).state is TransferState.COMPLETED, task.error
    assert (tmp_path / "out.bin").read_bytes() == data
    resumed = [(hit.range, hit.status) for hit in route.log[-2:]]
    assert resumed == [(f"bytes={committed}-", 416), (None, 200)]


def test_bytes_past_the_committed_offset_are_never_kept(http_server: LoopbackServer, tmp_path: Path) -> None:
    """Garbage appended to the .part after the last commit is cut off: the resume starts at the committed offset."""
    data = make_data(2 * MIB)
    route = FileRoute(data)
    committed = suspended_midway(http_server, route, tmp_path, 256 * 1024)
    part = tmp_path / "out.bin.part"
    assert part.stat().st_size == committed
    with open(part, "ab") as file:
        file.write(b"\0" * 100_000)  # a tail refilled with zeros after a power cut
    (task,) = open_bg().tasks()
    assert task.wait(20).state is TransferState.COMPLETED, task.error
    assert (tmp_path / "out.bin").read_bytes() == data
    assert route.log[-1].range == f"bytes={committed}-"
    assert route.log[-1].status == 206


def test_part_shorter_than_committed_restarts_from_zero(http_server: LoopbackServer, tmp_path: Path) -> None:
    """A .part that lost committed bytes cannot be trusted: the journal is reset, then the file restarts at 0."""
    data = make_data(2 * MIB)
    route = FileRoute(data)
    committed = suspended_midway(http_server, route, tmp_path, 256 * 1024)
    os.truncate(tmp_path / "out.bin.part", committed // 2)
    (task,) = open_bg().tasks()
    assert task.wait(20).state is TransferState.COMPLETED, task.error
    assert (tmp_path / "out.bin").read_bytes() == data
    assert route.log[-1].range is None


def test_offset_is_committed_only_after_fsync_at_the_interval(
    http_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While running, the journal's bytes_done trails the .part: it moves in COMMIT_BYTES steps."""
    from session_presets.background import _download

    monkeypatch.setattr(_download, "COMMIT_BYTES", 256 * 1024)
    monkeypatch.setattr(_download, "COMMIT_SECONDS", 3600.0)
    data = make_data(2 * MIB)
    route = FileRoute(data, chunk=64 * 1024)
    route.delay = 0.02
    http_server.route("/file", route)
    bg = open_bg()
    task = bg.download(http_server.url("/file"), tmp_path / "out.bin")
    seen: list[int] = []

    def sample_until_done() -> bool:
        done = task.done  # read first: the last sample then sees the final commit
        committed = journal_row(bg.journal_path, task.id)["bytes_done"]
        assert isinstance(committed, int)
        if not seen or committed != seen[-1]:
            seen.append(committed)
        return done

    wait_until(sample_until_done, 30.0, "the download to finish while its journal row is sampled")
    assert task.wait(20).state is TransferState.COMPLETED, task.error
    assert journal_row(bg.journal_path, task.id)["bytes_done"] == len(data)
    # The offset only grows, in steps of at least COMMIT_BYTES, until the final length.
    steps = [b - a for a, b in itertools.pairwise(seen) if b != len(data)]
    assert seen == sorted(seen)
    assert len(seen) > 2
    assert all(step >= 256 * 1024 for step in steps)


# -- one writer per destination ---------------------------------------------------


def test_second_session_on_same_dest_is_refused_and_first_is_untouched(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    """A second session's download() to a live dest raises naming the owner; the first completes whole."""
    data = make_data(4 * MIB)
    route = FileRoute(data, chunk=64 * 1024)
    route.delay = 0.01
    http_server.route("/file", route)
    first = open_bg("first")
    dest = tmp_path / "out.bin"
    task = first.download(http_server.url("/file"), dest)
    wait_until(lambda: task.bytes_done >= 256 * 1024, 30.0, "256 KiB downloaded")
    second = open_bg("second")
    with pytest.raises(DestinationInUseError, match=rf"pid {os.getpid()}, background session 'first', task {task.id}"):
        second.download(http_server.url("/file"), dest)
    assert isinstance(DestinationInUseError("x"), TransferError)
    assert (tmp_path / "out.bin.part").exists()
    route.delay = 0
    assert task.wait(20).state is TransferState.COMPLETED, task.error
    assert dest.read_bytes() == data
    assert task.bytes_total == len(data)
    assert len(route.log) == 1
    assert not (tmp_path / "out.bin.part.lock").exists()
    # Once the first is done, the destination is free again.
    again = second.download(http_server.url("/file"), dest).wait(20)
    assert again.state is TransferState.COMPLETED, again.error


def test_destination_lock_is_released_on_cancel_and_failure(http_server: LoopbackServer, tmp_path: Path) -> None:
    """Cancelled and failed tasks free their destination for another session."""
    http_server.route("/file", FileRoute(make_data(MIB)))
    dest = tmp_path / "out.bin"
    first = open_bg("first")
    failed = first.download(http_server.url("/missing"), dest).wait(20)
    assert failed.state is TransferState.FAILED
    release = threading.Event()

    def held(h: Handler) -> None:
        # Holds the one worker until the queued task is cancelled, so it is cancelled while pending.
        release.wait(20)
        h.send_error(404)

    http_server.route("/held", held)
    queued = open_bg("second", max_concurrent_transfers=1)
    blocker = queued.download(http_server.url("/held"), tmp_path / "other.bin")
    task = queued.download(http_server.url("/file"), dest)
    task.cancel()
    release.set()
    blocker.wait(20)
    assert task.state is TransferState.CANCELLED
    assert first.download(http_server.url("/file"), dest).wait(20).state is TransferState.COMPLETED


# -- secrets ----------------------------------------------------------------------


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_errors_journal_and_logs_carry_no_query_or_userinfo(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A failed download's error, its journal row and the DEBUG log never show the token or the password."""
    url = f"http://user:pw-SECRET@127.0.0.1:{_refused_port()}/f?token=tok-SECRET#frag"
    caplog.set_level(logging.DEBUG, logger="session_presets")
    bg = open_bg(retries=1)
    task = bg.download(url, tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.FAILED
    assert isinstance(task.error, TransferError)
    assert "Connection" in str(task.error)
    assert "/f" in str(task.error)
    row = journal_row(bg.journal_path, task.id)
    for text in (str(task.error), repr(task), str(row["error"]), caplog.text):
        assert "SECRET" not in text
        assert "token" not in text


def test_journal_keeps_only_the_headers_a_resume_needs(http_server: LoopbackServer, tmp_path: Path) -> None:
    """X-Api-Key and other extra headers are sent but not stored; Accept and Accept-Language are kept."""
    route = FileRoute(make_data(MIB))
    http_server.route("/file", route)
    bg = open_bg()
    headers = {"X-Api-Key": "key-SECRET", "Accept": "application/octet-stream", "Accept-Language": "fr"}
    task = bg.download(http_server.url("/file"), tmp_path / "out.bin", headers=headers).wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert http_server.requests[-1].headers["X-Api-Key"] == "key-SECRET"
    stored = json.loads(str(journal_row(bg.journal_path, task.id)["headers"]))
    assert stored == {"Accept": "application/octet-stream", "Accept-Language": "fr"}
    bg.finish_tasks_and_invalidate()
    assert b"key-SECRET" not in Path(bg.journal_path).read_bytes()


def test_commit_thread_is_joined_before_the_task_ends(
    http_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No commit thread outlives its download, so a late commit never overwrites a newer offset."""
    from session_presets.background import _download

    monkeypatch.setattr(_download, "COMMIT_BYTES", 64 * 1024)
    http_server.route("/file", FileRoute(make_data(2 * MIB)))
    task = open_bg().download(http_server.url("/file"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert not [t for t in threading.enumerate() if t.name.startswith("session-presets-commit-")]


def test_body_without_content_length_is_read_to_the_end(http_server: LoopbackServer, tmp_path: Path) -> None:
    """A body delimited by the connection's end (no Content-Length) is read through urllib3, whole."""
    data = make_data(MIB + 123)

    def handler(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        for start in range(0, len(data), 100_000):
            h.wfile.write(data[start : start + 100_000])
        h.close_connection = True

    http_server.route("/stream", handler)
    task = open_bg().download(http_server.url("/stream"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert (tmp_path / "out.bin").read_bytes() == data
    assert task.bytes_total == len(data)
