"""Background retries go through urllib3's Retry built from the preset; task handles are read-only views."""

from __future__ import annotations

import ast
import logging
import threading
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

import session_presets
from session_presets import TransferError, TransferState, TransferTask, background_session
from session_presets.background import _retrying, _taskstate
from session_presets.background.journal import Journal

from .fault_servers import Arrivals, status_then_ok
from .servers import LoopbackServer
from .test_background import FAST

pytestmark = pytest.mark.timeout(60)

BACKGROUND = Path(session_presets.__file__).parent / "background"


class _RetryLog(logging.Handler):
    """Collects the runner's "retrying in" DEBUG lines and signals the first one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "retrying in" in message:
            self.lines.append(message)
            self.seen.set()


@pytest.fixture
def retry_log() -> Any:
    """The runner's retry lines, captured while the test runs."""
    logger = logging.getLogger(_retrying.__name__)
    handler = _RetryLog()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# -- Retry-After and back-off ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "total_timeout", "retried"),
    [
        ("0", 30.0, True),
        ("7", 5.0, False),
        ("http-date+30", 5.0, False),
        ("http-date-30", 30.0, True),
        ("soon", 30.0, True),
    ],
)
def test_retry_after_forms(
    http_server: LoopbackServer, tmp_path: Path, retry_after: str, total_timeout: float, retried: bool
) -> None:
    """Retry-After is read as seconds or an HTTP date; past the deadline the task gives up, unreadable is ignored."""
    if retry_after.startswith("http-date"):
        retry_after = formatdate(time.time() + int(retry_after.removeprefix("http-date")), usegmt=True)
    arrivals = Arrivals()
    http_server.route("/busy", status_then_ok(arrivals, 503, retry_after))
    bg = background_session("t", **{**FAST, "total_timeout": total_timeout})
    task = bg.download(http_server.url("/busy"), tmp_path / "out.bin").wait(30)
    if retried:
        assert task.state is TransferState.COMPLETED, task.error
        assert (tmp_path / "out.bin").read_bytes() == b"finally"
        assert len(arrivals.times) == 2
    else:
        assert task.state is TransferState.FAILED
        assert f"total_timeout={total_timeout:g}s would pass before the next attempt" in str(task.error)
        assert "HTTP 503" in str(task.error)
        assert len(arrivals.times) == 1


def test_huge_retry_after_is_capped_and_cancel_ends_the_wait(
    http_server: LoopbackServer, tmp_path: Path, retry_log: _RetryLog
) -> None:
    """A Retry-After of decades is waited urllib3's cap (6 h) within a 7-day deadline, and cancel ends the wait."""
    arrivals = Arrivals()
    http_server.route("/busy", status_then_ok(arrivals, 503, str(10**9)))
    bg = background_session("t", **{**FAST, "total_timeout": "7d"})
    task = bg.download(http_server.url("/busy"), tmp_path / "out.bin")
    assert retry_log.seen.wait(30), f"no retry was scheduled: {task!r} {task.error}"
    assert retry_log.lines[0].endswith(f"retrying in {_retrying.RETRY_AFTER_MAX:.2f}s"), retry_log.lines
    assert _retrying.RETRY_AFTER_MAX == 6 * 3600
    task.cancel()
    assert task.wait(30).state is TransferState.CANCELLED
    assert len(arrivals.times) == 1
    assert not (tmp_path / "out.bin.part").exists()


def test_backoff_grows_exponentially(http_server: LoopbackServer, tmp_path: Path) -> None:
    """Against a server that always answers 503, pauses double: few requests reach it before total_timeout."""
    arrivals = Arrivals()
    http_server.route("/busy", status_then_ok(arrivals, 503, None, failures=10**6))
    # Pauses of 0, 0.2, 0.4, 0.8 and 1.6 s (plus jitter) leave no time for a sixth try within 3 s;
    # a pause that did not grow (backoff_factor each time) would let about 30 through.
    bg = background_session("t", **{**FAST, "backoff_factor": 0.1, "backoff_max": 60.0, "total_timeout": 3.0})
    task = bg.download(http_server.url("/busy"), tmp_path / "out.bin").wait(30)
    assert task.state is TransferState.FAILED
    assert "total_timeout=3s would pass before the next attempt" in str(task.error)
    assert 2 <= len(arrivals.times) <= 7, len(arrivals.times)


def test_backoff_is_capped_by_backoff_max(http_server: LoopbackServer, tmp_path: Path) -> None:
    """With backoff_max below backoff_factor, every pause is backoff_max: retries run until retries is spent."""
    arrivals = Arrivals()
    http_server.route("/busy", status_then_ok(arrivals, 503, None, failures=10**6))
    # Uncapped, the 12th pause alone would be 0.1 * 2**11 s = 3.4 min, past total_timeout.
    bg = background_session(
        "t", **{**FAST, "backoff_factor": 0.1, "backoff_max": 0.01, "total_timeout": 60.0, "retries": 12}
    )
    task = bg.download(http_server.url("/busy"), tmp_path / "out.bin").wait(50)
    assert task.state is TransferState.FAILED
    assert "13 attempt(s)" in str(task.error) and "retries=12" in str(task.error)
    assert len(arrivals.times) == 13


def test_upload_with_post_is_retried_on_a_retry_status(http_server: LoopbackServer, tmp_path: Path) -> None:
    """An upload is sent again after a 503 whatever its method (POST included), unlike the adapter's retries."""
    arrivals = Arrivals()
    http_server.route("/up", status_then_ok(arrivals, 503, "0"))
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    task = background_session("t", **FAST).upload(http_server.url("/up"), src, protocol="none", method="POST").wait(30)
    assert task.state is TransferState.COMPLETED, task.error
    assert arrivals.methods == ["POST", "POST"]


# -- the handle is read-only; the runner is the one writer of a task's state -----------------


def _public_names() -> list[str]:
    return sorted(name for name in dir(TransferTask) if not name.startswith("_"))


def test_task_handle_is_read_only(http_server: LoopbackServer, tmp_path: Path) -> None:
    """Every public attribute of a TransferTask refuses assignment (only progress is settable), as do new ones."""
    http_server.route("/up", status_then_ok(Arrivals(), 200, None, failures=0))
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    task = background_session("t", **FAST).upload(http_server.url("/up"), src).wait(30)
    assert task.state is TransferState.COMPLETED, task.error
    names = _public_names()
    assert {"state", "bytes_done", "bytes_total", "error", "url", "dest", "src", "attempts", "etag"} <= set(names)
    for name in names:
        if name == "progress":
            continue
        before = getattr(task, name)
        with pytest.raises(AttributeError):
            setattr(task, name, before)
    with pytest.raises(AttributeError):
        task.label = "mine"  # type: ignore[attr-defined]
    task.progress = print
    assert task.progress is print
    assert (task.state, task.bytes_done, task.bytes_total) == (TransferState.COMPLETED, 7, 7)


def _writes(tree: ast.AST) -> list[ast.Attribute]:
    """Every attribute assigned to in ``tree`` (plain, augmented, annotated and tuple targets)."""
    targets: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets.extend(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets.append(node.target)
    found: list[ast.Attribute] = []
    while targets:
        target = targets.pop()
        if isinstance(target, (ast.Tuple, ast.List)):
            targets.extend(target.elts)
        elif isinstance(target, ast.Attribute):
            found.append(target)
    return found


#: The runner: transfer.py and the modules it runs a task with; the only writers of a TaskState.
RUNNER_MODULES = frozenset({"transfer.py", "_download.py", "_upload.py", "_retrying.py", "_journaling.py"})


def test_runner_is_the_only_writer_of_task_state() -> None:
    """In background/, only the runner's modules assign TaskState fields, and no code writes another's _fields."""
    fields = set(_taskstate.TaskState.__slots__)
    offenders = []
    for path in sorted(BACKGROUND.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for target in _writes(tree):
            if ast.unparse(target.value) in ("self", "cls"):
                continue
            private = target.attr.startswith("_") and not target.attr.startswith("__")
            if private or (target.attr in fields and path.name not in RUNNER_MODULES):
                offenders.append(f"{path.name}:{target.lineno}: {ast.unparse(target)}")
    assert offenders == []


def test_finished_task_reattaches_with_its_record(http_server: LoopbackServer, tmp_path: Path) -> None:
    """A failed task read back by a new session keeps its state, error text, URL and path, and stays read-only."""
    state_dir = tmp_path / "state"
    bg = background_session("t", **FAST, state_dir=str(state_dir))
    task = bg.download(http_server.url("/missing"), tmp_path / "out.bin").wait(30)
    assert task.state is TransferState.FAILED
    bg.finish_tasks_and_invalidate()
    (again,) = background_session("t", **FAST, state_dir=str(state_dir)).tasks()
    assert (again.id, again.kind, again.url, again.dest, again.src) == (task.id, "download", task.url, task.dest, None)
    assert again.state is TransferState.FAILED and again.done
    assert isinstance(again.error, TransferError) and "404" in str(again.error)
    assert again.attempts == 0 and again.resumed_from == 0
    with pytest.raises(AttributeError):
        again.error = None  # type: ignore[misc]


def test_journal_add_takes_record_fields_only(tmp_path: Path) -> None:
    """Journal.add refuses names that are not TaskRecord fields, or that it assigns itself (id, created_at)."""
    journal = Journal(str(tmp_path / "direct.sqlite3"))
    try:
        record = journal.add(url="http://u:p@h/x", headers={"Accept": "a", "X-Key": "k"}, kind="upload", path="/x",
                             method="PUT", sha256=None, state="pending")
        assert (record.url, record.headers) == ("http://h/x", {"Accept": "a"})
        assert (record.bytes_done, record.resumable, record.error) == (0, False, None)
        for bad in ({"no_such_column": 1}, {"id": 7}, {"created_at": 0.0}):
            with pytest.raises(ValueError, match="not journal columns"):
                journal.add(url="http://h/y", headers={}, kind="upload", path="/y", method="PUT", state="pending",
                            **bad)
        assert [row.id for row in journal.load()] == [record.id]
    finally:
        journal.close()
