"""``upload``: a resumable background upload (tus, the IETF draft, or a plain PUT) with progress."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
from typing import Any

from .._redact import safe_url, without_userinfo
from ._base import (
    EXIT_OK,
    EXIT_TABLE,
    URL_HELP,
    UsageError,
    add_transfer_options,
    check_url,
    summary,
    with_scheme,
)
from ._transfer import (
    Attached,
    await_transfer,
    resumed_note,
    run_attached,
    source_identity,
    task_state,
    throughput,
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
    args.url = check_url(with_scheme(args.url))
    src = os.path.abspath(args.file)
    if not os.path.isfile(src):
        raise UsageError(f"FILE {args.file!r} is not an existing file")
    identifier = args.identifier or upload_identifier(src, args.url)
    if args.detach:
        from ._agent import run_detached_upload

        return run_detached_upload(args, identifier, src, transfer_overrides(args))
    return run_attached(args, identifier, os.path.basename(src), lambda bg, run: _run_upload(bg, run, src))


def _run_upload(bg: Any, run: Attached, src: str) -> tuple[bool, int]:
    """Start the upload, or reattach to it, and wait for its end; return (left running, exit status)."""
    args = run.args
    task, complete = find_upload(bg, src, args.url)
    if complete:
        summary(f"{src} is already uploaded to {safe_url(args.url)} (unchanged since); nothing sent")
        return False, EXIT_OK
    reattached = task is not None
    if task is None:
        task = bg.upload(args.url, src, protocol=args.protocol, progress=run.progress)
    else:
        task.progress = run.progress
    ended = await_transfer(run, task, lambda: "run the same command again to resume")
    if ended is not None:
        return ended
    resumed_from = int(task.resumed_from) if reattached else 0
    summary(
        f"uploaded {task.src}: {throughput(run, int(task.bytes_done), resumed_from)}, "
        f"protocol {task.protocol}, {resumed_note(resumed_from)}"
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
