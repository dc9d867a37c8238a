"""What ``download`` and ``upload`` share: the session, progress, retry reports, following a task, reports."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Final

import requests

from .._errors import TransferError
from .._redact import safe_url
from ._base import (
    EXIT_HTTP,
    EXIT_INTERRUPTED,
    EXIT_NETWORK,
    PROG,
    debugging,
    err,
    format_duration,
    handling_debug_records,
    human_bytes,
)
from ._reasons import causes, network_reason, short_reason

#: Seconds between two progress updates, and how often a transfer's wait wakes up.
_PROGRESS_INTERVAL: Final = 0.1


class Progress:
    """Progress on stderr: tqdm when installed, a plain percentage line otherwise.

    Once closed it stays closed: the worker thread may still report progress
    after an interrupt, and no second bar must appear.
    """

    def __init__(self, label: str, *, enabled: bool) -> None:
        self._label = label
        self._enabled = enabled
        self._lock = threading.Lock()
        self._bar: Any = None
        self._last = 0.0
        self._shown = False
        self._closed = False
        try:
            import tqdm

            self._tqdm: Any = tqdm.tqdm
        except ImportError:
            self._tqdm = None

    def __call__(self, task: Any) -> None:
        if not self._enabled:
            return
        done = int(getattr(task, "bytes_done", 0) or 0)
        total = getattr(task, "bytes_total", None)
        with self._lock:
            if self._closed:
                return
            if self._tqdm is not None:
                if self._bar is None:
                    self._bar = self._tqdm(
                        total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                        desc=self._label, file=sys.stderr, leave=True,
                    )
                if total is not None and self._bar.total != total:
                    self._bar.total = total
                self._bar.n = done
                self._bar.refresh()
                return
            now = time.monotonic()
            if now - self._last < _PROGRESS_INTERVAL and (total is None or done < total):
                return
            self._last = now
            mib = done / (1 << 20)
            text = f"{self._label}: {mib:.1f} MiB" if not total else (
                f"{self._label}: {100 * done / total:3.0f}% ({mib:.1f} of {total / (1 << 20):.1f} MiB)"
            )
            sys.stderr.write("\r" + text)
            sys.stderr.flush()
            self._shown = True

    def message(self, line: str) -> None:
        """Print one ``session-presets:`` line on stderr without breaking the bar; nothing once closed.

        After close() the command prints its own last line (interrupted, gave
        up, saved): a retry the worker thread reports meanwhile must not follow
        it, nor land in the middle of it.
        """
        text = f"{PROG}: {line}"
        with self._lock:
            if self._closed:
                return
            if self._bar is not None:
                self._bar.write(text, file=sys.stderr)
                return
            if self._shown:
                sys.stderr.write("\r\x1b[K")
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the bar or the line for good."""
        with self._lock:
            self._closed = True
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            elif self._shown:
                sys.stderr.write("\n")
                sys.stderr.flush()
                self._shown = False


class RetryReporter(logging.Handler):
    """Prints each retry the background engine decides on: attempt, reason, next try.

    The engine reports a retry as a debug record ``task %d attempt %d: %s;
    retrying in %.2fs``; this handler listens to the ``session_presets.background``
    logger while the command runs.
    """

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.DEBUG)
        self._say = say
        self.task_id: int | None = None
        self.last_reason: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if "retrying in" not in str(record.msg) or not isinstance(args, tuple) or len(args) != 4:
            return
        task_id, attempt, reason, delay = args
        if self.task_id is not None and task_id != self.task_id:
            return
        self.last_reason = short_reason(str(reason))
        try:
            seconds = float(delay)  # type: ignore[arg-type]
        except (TypeError, ValueError):  # pragma: no cover - the engine logs a number
            seconds = 0.0
        self._say(f"attempt {attempt} failed: {self.last_reason}; next try in {seconds:.1f} s")


def reporting_retries(reporter: RetryReporter) -> contextlib.AbstractContextManager[None]:
    """Attach ``reporter`` to the background engine's logger while the block runs."""
    return handling_debug_records("session_presets.background", reporter)


def task_state(task: Any) -> str:
    """The task's state as text: pending, running, completed, failed or cancelled."""
    state = getattr(task, "state", "")
    return str(getattr(state, "value", state))


def source_identity(src: str) -> str | None:
    """What identifies this version of the file ``src`` (device, inode, size, mtime); None if it cannot be read."""
    try:
        info = os.stat(src)
    except OSError:
        return None
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"


def transfer_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The preset fields that ``--retries`` and ``-k`` override for a download or an upload."""
    overrides: dict[str, Any] = {}
    if args.retries is not None:
        overrides["retries"] = args.retries
    if args.insecure:
        overrides["verify"] = False
    return overrides


@dataclasses.dataclass(frozen=True)
class Attached:
    """One download or upload this command follows: its options, progress display, retry reports and start."""

    args: argparse.Namespace
    progress: Progress
    reporter: RetryReporter
    #: ``time.monotonic()`` before the background session opened (it resumes an interrupted task at once).
    started: float


def run_attached(
    args: argparse.Namespace, identifier: str, label: str, body: Callable[[Any, Attached], tuple[bool, int]]
) -> int:
    """Run ``body`` with the background session ``identifier``, progress labelled ``label`` and retry reports.

    ``body`` returns (left running, exit status). A transfer left running (``--timeout``
    passed, or Ctrl-C) is suspended into its journal at exit for the next run to resume;
    otherwise the session finishes its tasks and is invalidated.
    """
    from ..background import background_session

    progress = Progress(label, enabled=sys.stderr.isatty())
    run = Attached(args, progress, RetryReporter(progress.message), time.monotonic())
    with reporting_retries(run.reporter):
        bg: Any = background_session(identifier, **transfer_overrides(args))
        left_running = False
        try:
            left_running, status = body(bg, run)
            return status
        finally:
            progress.close()
            if not left_running:
                bg.finish_tasks_and_invalidate()


def await_transfer(run: Attached, task: Any, note: Callable[[], str]) -> tuple[bool, int] | None:
    """Show ``task``'s progress until it ends: None once it completed, else (left running, exit status).

    On an early exit (``--timeout`` passed, or Ctrl-C) the transfer is left live: at exit the
    session suspends it and keeps the journal (and a download's .part file), like a kill would,
    for the next run to resume. ``note`` says how to resume, read when it is printed. A task
    that failed or was cancelled is reported by :func:`transfer_failed`.
    """
    args, progress, reporter = run.args, run.progress, run.reporter
    reporter.task_id = task.id
    deadline = None if args.timeout is None else run.started + args.timeout
    try:
        while not task.done:
            if deadline is not None and time.monotonic() >= deadline:
                task.progress = None
                progress.close()
                last = f"; last error: {reporter.last_reason}" if reporter.last_reason else ""
                err(f"{safe_url(args.url)}: gave up after --timeout {format_duration(args.timeout)}{last}; {note()}")
                return True, EXIT_NETWORK
            task.wait(_PROGRESS_INTERVAL)
            progress(task)
    except KeyboardInterrupt:
        task.progress = None
        progress.close()
        err(f"interrupted; {note()}")
        return True, EXIT_INTERRUPTED
    progress(task)
    progress.close()
    state = task_state(task)
    if state != "completed":
        return False, transfer_failed(args.url, getattr(task, "error", None), state, task)
    return None


def throughput(run: Attached, size: int, resumed_from: int) -> str:
    """``N bytes in T s (R/s)`` for a completed transfer: the rate counts only what this run moved."""
    elapsed = max(time.monotonic() - run.started, 1e-6)
    return f"{size} bytes in {elapsed:.1f} s ({human_bytes(max(size - resumed_from, 0) / elapsed)}/s)"


def resumed_note(resumed_from: int) -> str:
    """Say where a transfer resumed: ``resumed from byte N`` or ``not resumed``."""
    return f"resumed from byte {resumed_from}" if resumed_from else "not resumed"


def transfer_failed(url: str, error: BaseException | None, state: str, task: Any) -> int:
    """Report why a transfer ended without completing; exit status 3 for a network failure, else 1."""
    attempts = int(getattr(task, "attempts", 0) or 0)
    after = f" (after {attempts} attempt{'s' if attempts != 1 else ''})" if attempts > 1 else ""
    if error is None:
        err(f"{safe_url(url)}: download {state}")
        return EXIT_HTTP
    if debugging.enabled:
        traceback.print_exception(type(error), error, error.__traceback__)
    if any(isinstance(item, (requests.RequestException, ssl.SSLError)) and not isinstance(item, TransferError)
           for item in causes(error)):
        err(f"{safe_url(url)}: {network_reason(error, url=url)}{after}")
        return EXIT_NETWORK
    message = str(error).strip().splitlines()
    err(message[0] if message else f"{safe_url(url)}: download {state}")
    return EXIT_HTTP
