"""``upload``: a resumable background upload (tus, the IETF draft, or a plain PUT) with progress."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import time
from typing import Any

from .._redact import safe_url, without_userinfo
from ._base import (
    EXIT_OK,
    EXIT_TABLE,
    URL_HELP,
    UsageError,
    add_transfer_options,
    check_url,
    human_bytes,
    summary,
    with_scheme,
)
from ._transfer import (
    Progress,
    RetryReporter,
    follow_transfer,
    reporting_retries,
    source_identity,
    task_state,
    transfer_failed,
    transfer_overrides,
)


def upload_identifier(src: str, url: str) -> str:
    """Return the background identifier of uploading ``src`` to ``url``: the same pair, the same journal."""
    key = f"{os.path.abspath(src)}\0{without_userinfo(url)}"
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
    return f"cli-up-{digest[:16]}"


def find_upload(bg: Any, src: str, url: str) -> tuple[Any, bool]:
    """The task of this session that uploads ``src`` to ``url`` and whether it is already complete.

    A pending or running task is reattached (it resumes); a completed one whose
    source is unchanged means there is nothing to send. Any other task for the
    same file (failed, cancelled, or completed with another version of the
    file) is forgotten, and (None, False) says to start a new upload.
    """
    for existing in bg.tasks():
        if existing.src is None or os.path.abspath(existing.src) != src:
            continue
        same_url = without_userinfo(existing.url) == without_userinfo(url)
        state = task_state(existing)
        if same_url and state in ("pending", "running"):
            return existing, False
        now = source_identity(src)
        if same_url and state == "completed" and now is not None and existing.source_identity == now:
            return existing, True
        if state in ("pending", "running"):
            existing.cancel()
            existing.wait()
        with contextlib.suppress(Exception):
            bg.forget(existing)
    return None, False


def _cmd_upload(args: argparse.Namespace) -> int:
    from ..background import background_session

    args.url = check_url(with_scheme(args.url))
    src = os.path.abspath(args.file)
    if not os.path.isfile(src):
        raise UsageError(f"FILE {args.file!r} is not an existing file")
    identifier = args.identifier or upload_identifier(src, args.url)
    overrides = transfer_overrides(args)
    if args.detach:
        from ._agent import run_detached_upload

        return run_detached_upload(args, identifier, src, overrides)
    progress = Progress(os.path.basename(src), enabled=sys.stderr.isatty())
    reporter = RetryReporter(progress.message)
    started = time.monotonic()
    with reporting_retries(reporter):
        bg: Any = background_session(identifier, **overrides)
        left_running = False
        try:
            task, complete = find_upload(bg, src, args.url)
            if complete:
                summary(f"{src} is already uploaded to {safe_url(args.url)} (unchanged since); nothing sent")
                return EXIT_OK
            reattached = task is not None
            if task is None:
                task = bg.upload(args.url, src, protocol=args.protocol, progress=progress)
            else:
                task.progress = progress
            left_running, status = _run_upload(task, args, progress, reporter, started, reattached)
            return status
        finally:
            progress.close()
            if not left_running:
                bg.finish_tasks_and_invalidate()


def _run_upload(
    task: Any, args: argparse.Namespace, progress: Progress, reporter: RetryReporter, started: float,
    reattached: bool,
) -> tuple[bool, int]:
    """Wait for the upload to end; return (left running for a later resume, exit status)."""
    reporter.task_id = task.id
    deadline = None if args.timeout is None else started + args.timeout
    resumable = "run the same command again to resume"
    early = follow_transfer(task, progress, reporter, args, deadline, lambda: resumable)
    if early is not None:
        return early
    state = task_state(task)
    if state != "completed":
        return False, transfer_failed(args.url, getattr(task, "error", None), state, task)
    elapsed = max(time.monotonic() - started, 1e-6)
    size = int(task.bytes_done)
    resumed_from = int(task.resumed_from) if reattached else 0
    how = f"resumed from byte {resumed_from}" if resumed_from else "not resumed"
    summary(
        f"uploaded {task.src}: {size} bytes in {elapsed:.1f} s "
        f"({human_bytes(max(size - resumed_from, 0) / elapsed)}/s), protocol {task.protocol}, {how}"
    )
    return False, EXIT_OK


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``upload`` to the command's subparsers."""
    upload = sub.add_parser("upload", parents=[common], help="resumable background upload (tus, IETF draft)",
                            epilog=EXIT_TABLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    upload.add_argument("file", metavar="FILE", help="the file to send")
    upload.add_argument("url", metavar="URL", help=URL_HELP)
    upload.add_argument("--protocol", choices=("auto", "tus", "ietf", "none"), default="auto",
                        help="resume protocol: auto asks the server (OPTIONS) and falls back to none, a plain "
                             "PUT sent again from the start (default: %(default)s)")
    upload.add_argument("--identifier", metavar="ID",
                        help="background session identifier (default: derived from FILE and URL)")
    add_transfer_options(upload, timeout_help="stop waiting after DURATION; a rerun resumes "
                                              "(default: retry until the background preset's total_timeout)")
    upload.add_argument("--detach", action="store_true",
                        help="hand the upload to the per-user agent, print its identifier and return at once")
    upload.set_defaults(run=_cmd_upload)
