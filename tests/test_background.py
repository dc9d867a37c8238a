"""Background downloads: streaming to .part, resume with Range/If-Range, verification, lifecycle."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from session_presets import (
    BackgroundSession,
    ConfigError,
    SessionInvalidatedError,
    SessionState,
    TransferError,
    TransferState,
    TransferTask,
    background_session,
)

from .background_server import FileRoute
from .servers import LoopbackServer
from .waiting import wait_until

MIB = 1 << 20

#: Short timeouts and back-off so that retries take milliseconds.
FAST: dict[str, Any] = {
    "backoff_factor": 0.01,
    "backoff_max": 0.05,
    "connect_timeout": 2.0,
    "read_timeout": 2.0,
    "total_timeout": 30.0,
}

pytestmark = pytest.mark.timeout(30)


def make_data(size: int, seed: int = 1) -> bytes:
    """Return ``size`` reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


def digest(data: bytes) -> str:
    """Return the sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def open_bg(identifier: str = "t", **overrides: Any) -> BackgroundSession:
    """Open a background session with fast retries."""
    return background_session(identifier, **{**FAST, **overrides})


@pytest.fixture
def data() -> bytes:
    """A 3 MiB file."""
    return make_data(3 * MIB)


@pytest.fixture
def served(http_server: LoopbackServer, data: bytes) -> FileRoute:
    """``data`` served at /file with ETag "v1"."""
    route = FileRoute(data)
    http_server.route("/file", route)
    return route


def test_download_writes_dest_and_removes_part(http_server: LoopbackServer, served: FileRoute, tmp_path: Path) -> None:
    """A download ends in dest with the source's bytes, no .part left, one request without Range."""
    bg = open_bg()
    dest = tmp_path / "out.bin"
    task = bg.download(http_server.url("/file"), dest, sha256=digest(served.data)).wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert dest.read_bytes() == served.data
    assert not (tmp_path / "out.bin.part").exists()
    assert task.bytes_done == task.bytes_total == len(served.data)
    assert served.ranges == [None]
    assert task.kind == "download"
    assert task.dest == str(dest)
    assert task.src is None
    assert "completed" in repr(task)
    assert "?" not in repr(task)


def test_resume_after_drops_at_30_and_70_percent(
    http_server: LoopbackServer, served: FileRoute, data: bytes, tmp_path: Path
) -> None:
    """Two dropped connections resume at the exact offsets with Range and If-Range; sha256 matches."""
    first, second = int(len(data) * 0.3), int(len(data) * 0.7)
    served.drops = [first, second]
    bg = open_bg()
    dest = tmp_path / "out.bin"
    task = bg.download(http_server.url("/file"), dest).wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert digest(dest.read_bytes()) == digest(data)
    assert served.ranges == [None, f"bytes={first}-", f"bytes={second}-"]
    assert [hit.if_range for hit in served.log] == [None, '"v1"', '"v1"']
    assert [hit.status for hit in served.log] == [200, 206, 206]
    assert task.attempts == 3


def test_server_ignoring_range_restarts_from_zero(
    http_server: LoopbackServer, served: FileRoute, data: bytes, tmp_path: Path
) -> None:
    """A 200 answer to a Range request restarts the file from zero instead of appending."""
    served.drops = [MIB]
    served.ignore_range = True
    bg = open_bg()
    dest = tmp_path / "out.bin"
    task = bg.download(http_server.url("/file"), dest, sha256=digest(data)).wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert dest.read_bytes() == data
    assert served.ranges == [None, f"bytes={MIB}-"]
    assert [hit.status for hit in served.log] == [200, 200]


def test_changed_etag_makes_if_range_fetch_the_new_file(
    http_server: LoopbackServer, served: FileRoute, tmp_path: Path
) -> None:
    """When the ETag changes between attempts, If-Range gets a 200 and dest holds the new version."""
    new = make_data(2 * MIB, seed=2)
    served.drops = [MIB]

    def change(route: FileRoute) -> None:
        route.on_response = None
        route.set_file(new, etag='"v2"')

    served.on_response = change
    bg = open_bg()
    dest = tmp_path / "out.bin"
    task = bg.download(http_server.url("/file"), dest).wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert dest.read_bytes() == new
    assert [(hit.range, hit.if_range, hit.status) for hit in served.log] == [
        (None, None, 200),
        (f"bytes={MIB}-", '"v1"', 200),
    ]
    assert task.etag == '"v2"'


def test_weak_etag_uses_last_modified_for_if_range(
    http_server: LoopbackServer, data: bytes, tmp_path: Path
) -> None:
    """A weak ETag is never sent in If-Range: Last-Modified is used instead."""
    route = FileRoute(data, etag='W/"weak"', last_modified="Thu, 01 Jan 2015 00:00:00 GMT")
    route.drops = [MIB]
    http_server.route("/weak", route)
    task = open_bg().download(http_server.url("/weak"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert route.log[1].if_range == "Thu, 01 Jan 2015 00:00:00 GMT"
    assert (tmp_path / "out.bin").read_bytes() == data


def test_wrong_content_range_start_restarts_without_corruption(
    http_server: LoopbackServer, served: FileRoute, data: bytes, tmp_path: Path
) -> None:
    """A 206 that does not start at the requested offset is discarded and the file starts over."""
    served.drops = [MIB]
    served.shift_start = 1
    task = open_bg().download(http_server.url("/file"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert (tmp_path / "out.bin").read_bytes() == data
    assert served.ranges == [None, f"bytes={MIB}-", None]


def test_unsatisfiable_range_on_shrunk_file_restarts(http_server: LoopbackServer, tmp_path: Path) -> None:
    """Without validators, a 416 for an offset past the new end restarts and fetches the new file."""
    route = FileRoute(make_data(2 * MIB), etag=None, last_modified=None)
    route.drops = [int(1.5 * MIB)]
    small = make_data(MIB, seed=3)

    def shrink(r: FileRoute) -> None:
        r.on_response = None
        r.set_file(small, etag=None)

    route.on_response = shrink
    http_server.route("/shrink", route)
    task = open_bg().download(http_server.url("/shrink"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert (tmp_path / "out.bin").read_bytes() == small
    assert [(hit.range, hit.if_range, hit.status) for hit in route.log] == [
        (None, None, 200),
        (f"bytes={int(1.5 * MIB)}-", None, 416),
        (None, None, 200),
    ]


def test_sha256_mismatch_fails_and_leaves_no_file(
    http_server: LoopbackServer, served: FileRoute, tmp_path: Path
) -> None:
    """A wrong sha256 fails the task with a TransferError naming dest; neither dest nor .part remain."""
    dest = tmp_path / "out.bin"
    task = open_bg().download(http_server.url("/file"), dest, sha256="0" * 64).wait(20)
    assert task.state is TransferState.FAILED
    assert isinstance(task.error, TransferError)
    assert "sha256 mismatch" in str(task.error)
    assert str(dest) in str(task.error)
    assert not dest.exists()
    assert not (tmp_path / "out.bin.part").exists()


def test_sha256_mismatch_after_resume_retries_once_from_zero(
    http_server: LoopbackServer, served: FileRoute, tmp_path: Path
) -> None:
    """A digest mismatch on a spliced file triggers one clean download from zero before failing."""
    served.drops = [MIB]
    task = open_bg().download(http_server.url("/file"), tmp_path / "out.bin", sha256="1" * 64).wait(20)
    assert task.state is TransferState.FAILED
    assert served.ranges == [None, f"bytes={MIB}-", None]


def test_retry_status_is_retried(http_server: LoopbackServer, served: FileRoute, tmp_path: Path) -> None:
    """A 503 with Retry-After is retried, then the download completes."""
    served.statuses = [503, 429]
    task = open_bg().download(http_server.url("/file"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert [hit.status for hit in served.log] == [503, 429, 200]


def test_http_error_status_fails(http_server: LoopbackServer, tmp_path: Path) -> None:
    """A 404 fails the task at once with the status in the message."""
    task = open_bg().download(http_server.url("/missing"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.FAILED
    assert "404" in str(task.error)
    assert task.attempts == 1


def test_retries_limit_gives_up(http_server: LoopbackServer, served: FileRoute, tmp_path: Path) -> None:
    """With retries=2, three failed attempts without progress fail the task."""
    served.statuses = [503] * 10
    task = open_bg(retries=2).download(http_server.url("/file"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.FAILED
    assert "3 attempt(s)" in str(task.error)
    assert len(served.log) == 3


def test_total_timeout_gives_up(http_server: LoopbackServer, served: FileRoute, tmp_path: Path) -> None:
    """Retries stop once total_timeout would pass, with a message naming it."""
    served.statuses = [503] * 1000
    bg = open_bg(total_timeout=0.5, backoff_factor=0.1, backoff_max=0.2)
    task = bg.download(http_server.url("/file"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.FAILED
    assert "total_timeout=0.5s" in str(task.error)


def test_connection_refused_is_retried_until_deadline(tmp_path: Path) -> None:
    """A refused connection counts as a retryable failure, bounded by retries."""
    with LoopbackServer() as server:
        url = server.url("/file")
    task = open_bg(retries=1).download(url, tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.FAILED
    assert "ConnectionError" in str(task.error)
    assert task.attempts == 2


def test_concurrency_is_bounded(http_server: LoopbackServer, tmp_path: Path) -> None:
    """At most max_concurrent_transfers downloads are in flight at once, server-side."""
    route = FileRoute(make_data(256 * 1024), chunk=16 * 1024)
    route.delay = 0.01
    http_server.route("/file", route)
    bg = open_bg(max_concurrent_transfers=2)
    tasks = [bg.download(http_server.url("/file"), tmp_path / f"out{i}.bin") for i in range(5)]
    for task in tasks:
        assert task.wait(20).state is TransferState.COMPLETED, task.error
    assert route.max_active == 2


def test_progress_is_rate_limited_and_called_at_the_end(http_server: LoopbackServer, tmp_path: Path) -> None:
    """Progress runs on a worker thread at most ~10 times a second, and once more with the final state."""
    route = FileRoute(make_data(MIB), chunk=16 * 1024)
    route.delay = 0.008
    http_server.route("/file", route)
    calls: list[tuple[float, int, TransferState, str]] = []

    def progress(task: TransferTask) -> None:
        calls.append((time.monotonic(), task.bytes_done, task.state, threading.current_thread().name))

    started = time.monotonic()
    task = open_bg().download(http_server.url("/file"), tmp_path / "out.bin", progress=progress).wait(20)
    elapsed = time.monotonic() - started
    assert task.state is TransferState.COMPLETED
    assert len(calls) >= 3
    assert len(calls) <= elapsed * 10 + 2
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(calls[:-1])]
    assert all(gap >= 0.099 for gap in gaps)
    assert calls[-1][1:3] == (MIB, TransferState.COMPLETED)
    assert all(name.startswith("session-presets-") for *_, name in calls)


def test_failing_progress_callback_does_not_break_the_download(
    http_server: LoopbackServer, served: FileRoute, tmp_path: Path
) -> None:
    """A progress callback that raises is dropped; the transfer still completes."""
    calls = []

    def progress(task: TransferTask) -> None:
        calls.append(task.bytes_done)
        raise RuntimeError("bug in caller")

    task = open_bg().download(http_server.url("/file"), tmp_path / "out.bin", progress=progress).wait(20)
    assert task.state is TransferState.COMPLETED
    assert len(calls) == 1


def test_cancel_running_download_deletes_part(http_server: LoopbackServer, tmp_path: Path) -> None:
    """cancel() on a running download stops it promptly and deletes the .part file."""
    route = FileRoute(make_data(2 * MIB), chunk=16 * 1024)
    route.delay = 0.05
    http_server.route("/file", route)
    task = open_bg().download(http_server.url("/file"), tmp_path / "out.bin")
    wait_until(lambda: task.bytes_done > 0, 30.0, "the first bytes of the download")
    assert (tmp_path / "out.bin.part").exists()
    started = time.monotonic()
    task.cancel()
    assert task.wait(5).state is TransferState.CANCELLED
    assert time.monotonic() - started < 2
    assert not (tmp_path / "out.bin.part").exists()
    assert not (tmp_path / "out.bin").exists()
    task.cancel()  # a finished task is left alone
    assert task.state is TransferState.CANCELLED


def test_cancel_waiting_for_headers(http_server: LoopbackServer, tmp_path: Path) -> None:
    """cancel() interrupts a request still waiting for response headers."""
    task = open_bg(read_timeout=20.0).download(http_server.url("/slow?delay=10"), tmp_path / "out.bin")
    # The request is on the server, so the client is sending its end or waiting for headers: no sleep needed.
    wait_until(lambda: http_server.requests, 30.0, "the server to see the request")
    started = time.monotonic()
    task.cancel()
    assert task.wait(5).state is TransferState.CANCELLED
    assert time.monotonic() - started < 2


def test_invalidate_and_cancel_deletes_parts_and_releases_identifier(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    """invalidate_and_cancel cancels running and pending tasks, deletes .part files, frees the identifier."""
    route = FileRoute(make_data(2 * MIB), chunk=16 * 1024)
    route.delay = 0.05
    http_server.route("/file", route)
    bg = open_bg(max_concurrent_transfers=1)
    running = bg.download(http_server.url("/file"), tmp_path / "a.bin")
    pending = bg.download(http_server.url("/file"), tmp_path / "b.bin")
    wait_until(lambda: running.bytes_done > 0, 30.0, "the first bytes of the running download")
    bg.invalidate_and_cancel()
    assert bg.state is SessionState.INVALIDATED
    assert running.state is pending.state is TransferState.CANCELLED
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SessionInvalidatedError):
        bg.download(http_server.url("/file"), tmp_path / "c.bin")
    bg.invalidate_and_cancel()
    again = open_bg()
    assert again is not bg
    assert again.state is SessionState.ACTIVE
    assert {task.state for task in again.tasks()} == {TransferState.CANCELLED}


def test_finish_tasks_and_invalidate_waits(http_server: LoopbackServer, served: FileRoute, tmp_path: Path) -> None:
    """finish_tasks_and_invalidate lets every task finish, then refuses new ones; a context manager does it too."""
    with open_bg() as bg:
        tasks = [bg.download(http_server.url("/file"), tmp_path / f"{i}.bin") for i in range(3)]
    assert bg.state is SessionState.INVALIDATED
    assert all(task.state is TransferState.COMPLETED for task in tasks)
    with pytest.raises(SessionInvalidatedError):
        bg.upload(http_server.url("/up"), tmp_path / "0.bin")
    bg.finish_tasks_and_invalidate()


def test_finish_tasks_and_invalidate_timeout(http_server: LoopbackServer, tmp_path: Path) -> None:
    """finish_tasks_and_invalidate(timeout) raises when tasks outlast it, and the session stays invalidating."""
    from session_presets import InvalidationTimeoutError

    route = FileRoute(make_data(MIB), chunk=16 * 1024)
    route.delay = 0.05
    http_server.route("/file", route)
    bg = open_bg()
    bg.download(http_server.url("/file"), tmp_path / "a.bin")
    with pytest.raises(InvalidationTimeoutError):
        bg.finish_tasks_and_invalidate(timeout=0.1)
    assert bg.state is SessionState.INVALIDATING
    bg.invalidate_and_cancel()


def test_finish_that_timed_out_finishes_on_the_next_call(http_server: LoopbackServer, tmp_path: Path) -> None:
    """After a finish whose timeout ran out, the next finish waits for the download and ends the session."""
    from session_presets import InvalidationTimeoutError

    gate = threading.Event()
    route = FileRoute(make_data(MIB))
    route.before_headers = lambda: gate.wait(30) and None
    http_server.route("/file", route)
    bg = open_bg()
    try:
        task = bg.download(http_server.url("/file"), tmp_path / "a.bin")
        with pytest.raises(InvalidationTimeoutError, match=r"1 transfer\(s\) still unfinished after 0.1s"):
            bg.finish_tasks_and_invalidate(timeout=0.1)
        with pytest.raises(SessionInvalidatedError, match="'t' is invalidating; it refuses new transfers"):
            bg.download(http_server.url("/file"), tmp_path / "b.bin")
    finally:
        gate.set()
    bg.finish_tasks_and_invalidate()
    assert bg.state is SessionState.INVALIDATED
    assert task.state is TransferState.COMPLETED, task.error
    assert (tmp_path / "a.bin").read_bytes() == route.data
    assert [hit.status for hit in route.log] == [200]


def test_one_object_per_identifier(tmp_path: Path) -> None:
    """background_session returns the same live object for an identifier, a new one per identifier."""
    first = open_bg("same")
    assert background_session("same") is first
    assert open_bg("same") is first
    assert open_bg("other") is not first
    with pytest.raises(ConfigError, match="other settings"):
        background_session("same", max_concurrent_transfers=9)


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "con", "x" * 200, "dot.", 5, "nul.txt", "a b"])
def test_identifier_is_validated(bad: Any) -> None:
    """An identifier that is not a safe file name raises ConfigError naming it."""
    with pytest.raises(ConfigError, match="identifier="):
        background_session(bad)


def test_bad_arguments_raise_config_error(http_server: LoopbackServer, tmp_path: Path) -> None:
    """download() and upload() check their arguments before queuing anything."""
    bg = open_bg()
    url = http_server.url("/file")
    with pytest.raises(ConfigError, match="url="):
        bg.download("ftp://example/x", tmp_path / "x")
    with pytest.raises(ConfigError, match="sha256="):
        bg.download(url, tmp_path / "x", sha256="abc")
    with pytest.raises(ConfigError, match="Range"):
        bg.download(url, tmp_path / "x", headers={"Range": "bytes=0-"})
    with pytest.raises(ConfigError, match="headers"):
        bg.download(url, tmp_path / "x", headers={"X": "a\nb"})
    with pytest.raises(ConfigError, match="headers"):
        bg.download(url, tmp_path / "x", headers=[("X", "y")])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="directory"):
        bg.download(url, tmp_path / "nowhere" / "x")
    with pytest.raises(ConfigError, match="src="):
        bg.upload(url, tmp_path / "missing")
    (tmp_path / "src").write_bytes(b"x")
    with pytest.raises(ConfigError, match="method="):
        bg.upload(url, tmp_path / "src", method="P U T")
    with pytest.raises(ConfigError, match="max_concurrent_transfers"):
        background_session("other", max_concurrent_transfers=0)
    assert bg.tasks() == []


def test_same_dest_twice_is_refused(http_server: LoopbackServer, tmp_path: Path) -> None:
    """A second unfinished download to the same dest raises ConfigError."""
    route = FileRoute(make_data(MIB), chunk=16 * 1024)
    route.delay = 0.05
    http_server.route("/file", route)
    bg = open_bg()
    bg.download(http_server.url("/file"), tmp_path / "a.bin")
    with pytest.raises(ConfigError, match="already the target"):
        bg.download(http_server.url("/file"), tmp_path / "a.bin")


def test_stale_part_without_task_is_not_resumed(
    http_server: LoopbackServer, served: FileRoute, data: bytes, tmp_path: Path
) -> None:
    """A .part file no task owns is discarded: the download starts from zero."""
    (tmp_path / "out.bin.part").write_bytes(b"garbage" * 1000)
    task = open_bg().download(http_server.url("/file"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.COMPLETED
    assert (tmp_path / "out.bin").read_bytes() == data
    assert served.ranges == [None]


def test_forget_drops_task_from_session_and_journal(
    http_server: LoopbackServer, served: FileRoute, tmp_path: Path
) -> None:
    """Finished tasks stay listed (even in the next session) until forget() drops them."""
    bg = open_bg()
    done = bg.download(http_server.url("/file"), tmp_path / "a.bin").wait(20)
    kept = bg.download(http_server.url("/file"), tmp_path / "b.bin").wait(20)
    bg.finish_tasks_and_invalidate()
    bg = open_bg()
    listed = bg.tasks()
    assert [(t.id, t.state) for t in listed] == [(done.id, TransferState.COMPLETED), (kept.id, TransferState.COMPLETED)]
    bg.forget(listed[0])
    assert [t.id for t in bg.tasks()] == [kept.id]
    with pytest.raises(ConfigError, match="does not belong"):
        bg.forget(done)
    bg.finish_tasks_and_invalidate()
    assert [t.id for t in open_bg().tasks()] == [kept.id]


def test_forget_cancels_an_unfinished_task(http_server: LoopbackServer, tmp_path: Path) -> None:
    """forget() on a running task cancels it, deletes its .part and drops it."""
    route = FileRoute(make_data(MIB), chunk=16 * 1024)
    route.delay = 0.05
    http_server.route("/file", route)
    bg = open_bg()
    task = bg.download(http_server.url("/file"), tmp_path / "a.bin")
    wait_until(lambda: task.bytes_done > 0, 30.0, "the first bytes of the download")
    bg.forget(task)
    assert task.state is TransferState.CANCELLED
    assert bg.tasks() == []
    assert not (tmp_path / "a.bin.part").exists()


def test_suspended_task_resumes_in_next_session_with_auth(http_server: LoopbackServer, tmp_path: Path) -> None:
    """A task left unfinished resumes in the next session from its .part with Range and the session's auth."""
    data = make_data(2 * MIB)
    route = FileRoute(data, chunk=32 * 1024)
    route.delay = 0.02
    route.require_auth = "Basic dXNlcjpwYXNz"
    http_server.route("/file", route)
    bg = open_bg(auth=("user", "pass"))
    task = bg.download(http_server.url("/file"), tmp_path / "out.bin", headers={"X-Trace": "1"})
    wait_until(lambda: task.bytes_done >= 256 * 1024, 30.0, "256 KiB downloaded")
    bg._suspend()
    assert task.state is TransferState.PENDING
    offset = (tmp_path / "out.bin.part").stat().st_size
    assert 0 < offset < len(data)
    route.delay = 0
    resumed = open_bg(auth=("user", "pass"))
    (again,) = resumed.tasks()
    assert again.id == task.id
    assert again is not task
    assert again.wait(20).state is TransferState.COMPLETED, again.error
    assert (tmp_path / "out.bin").read_bytes() == data
    (ranged,) = [hit for hit in route.log if hit.range is not None]
    assert ranged.range == f"bytes={offset}-"
    assert ranged.status == 206
    assert ranged.authorization == "Basic dXNlcjpwYXNz"
    assert b"dXNlcjpwYXNz" not in Path(resumed.journal_path).read_bytes()


def test_resume_without_validators_sends_range_only(http_server: LoopbackServer, data: bytes, tmp_path: Path) -> None:
    """A server without ETag or Last-Modified still gets a plain Range request, and the file is correct."""
    route = FileRoute(data, etag=None, last_modified=None)
    route.drops = [MIB]
    http_server.route("/plain", route)
    task = open_bg().download(http_server.url("/plain"), tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.COMPLETED, task.error
    assert (tmp_path / "out.bin").read_bytes() == data
    assert [(hit.range, hit.if_range, hit.status) for hit in route.log] == [
        (None, None, 200),
        (f"bytes={MIB}-", None, 206),
    ]


def test_redirect_loop_fails_without_retrying(http_server: LoopbackServer, tmp_path: Path) -> None:
    """Errors that a retry cannot fix, such as too many redirects, fail the task at once."""
    url = http_server.url("/redirect?to=/redirect%3Fto%3D/redirect")
    task = open_bg(max_redirects=1).download(url, tmp_path / "out.bin").wait(20)
    assert task.state is TransferState.FAILED
    assert task.attempts == 1
    assert "redirect" in str(task.error).lower()


def test_cancel_from_progress_callback(http_server: LoopbackServer, served: FileRoute, tmp_path: Path) -> None:
    """A task cancelled from its own progress callback ends cancelled with no .part left."""
    task = open_bg().download(http_server.url("/file"), tmp_path / "out.bin", progress=lambda t: t.cancel())
    assert task.wait(20).state is TransferState.CANCELLED
    assert not (tmp_path / "out.bin.part").exists()
    assert task.progress is not None


def test_close_is_finish_tasks_and_invalidate(http_server: LoopbackServer, served: FileRoute, tmp_path: Path) -> None:
    """close() waits for tasks like finish_tasks_and_invalidate and is safe to call twice."""
    bg = open_bg()
    task = bg.download(http_server.url("/file"), tmp_path / "out.bin")
    bg.close()
    bg.close()
    assert task.state is TransferState.COMPLETED
    assert bg.state is SessionState.INVALIDATED


def test_dest_that_is_a_directory_is_refused_before_any_request(
    http_server: LoopbackServer, served: FileRoute, tmp_path: Path
) -> None:
    """A directory as dest is a ConfigError at download(); the server never sees a request."""
    with open_bg() as bg, pytest.raises(ConfigError, match="it is a directory"):
        bg.download(http_server.url("/file"), tmp_path)
    assert [r.path for r in http_server.requests] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_dest_name_too_long_for_its_part_lock_is_refused_up_front(
    http_server: LoopbackServer, served: FileRoute, data: bytes, tmp_path: Path
) -> None:
    """A valid name whose .part.lock would pass NAME_MAX is refused with the limit; one byte shorter downloads."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    too_long = tmp_path / ("a" * (limit - len(".part.lock") + 1))
    fits = tmp_path / ("b" * (limit - len(".part.lock")))
    with open_bg() as bg:
        with pytest.raises(ConfigError, match=f"limit of {limit} bytes; use a name of at most {limit - 10} bytes"):
            bg.download(http_server.url("/file"), too_long)
        assert [r.path for r in http_server.requests] == []
        task = bg.download(http_server.url("/file"), fits).wait(30)
        assert task.state is TransferState.COMPLETED, task.error
    assert fits.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == [fits.name]
