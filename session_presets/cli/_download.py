"""``download``: a resumable background download with progress, or ``-o -`` streamed as ``get`` does."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
from typing import Any, Final

import requests

from .._redact import without_userinfo
from .._sessions import PresetSession
from ._base import (
    EXIT_OK,
    EXIT_TABLE,
    URL_HELP,
    UsageError,
    add_transfer_options,
    check_url,
    config_with,
    summary,
    with_scheme,
)
from ._get import fetch
from ._transfer import (
    Attached,
    Progress,
    await_transfer,
    resumed_note,
    run_attached,
    task_state,
    throughput,
    transfer_overrides,
)

#: The longest the "already complete" check may take before the download itself goes ahead.
_CHECK_TIMEOUT: Final = 30.0

log = logging.getLogger(__name__)


def default_identifier(output: str) -> str:
    """Return the background identifier derived from ``output``'s absolute path.

    The same output path always gives the same identifier, so a rerun finds the
    journal and the ``.part`` file of an interrupted download.
    """
    digest = hashlib.sha256(os.path.abspath(output).encode("utf-8", "surrogateescape")).hexdigest()
    return f"cli-{digest[:16]}"


def _task_dest(task: Any) -> str | None:
    value = getattr(task, "dest", None)
    return None if value is None else os.path.abspath(os.fspath(str(value)))


def _same_source(task: Any, args: argparse.Namespace) -> bool:
    same_url = without_userinfo(task.url) == without_userinfo(args.url)
    return bool(same_url and getattr(task, "sha256", None) == args.sha256)


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _current_because(args: argparse.Namespace, output: str, record: Any) -> str | None:
    """Say why the complete file at ``output`` is current, or None to download it again.

    With ``--sha256`` the file's digest decides, with no request. Otherwise the
    validators recorded by the run that completed it (ETag, Last-Modified,
    length) are sent in a conditional GET: 304, or a 200 with the same strong
    ETag (or the same Last-Modified and length), means the file is current.
    """
    try:
        size = os.path.getsize(output)
    except OSError:
        return None
    if args.sha256 is not None:
        try:
            return "its sha256 matches" if _sha256_of(output) == args.sha256 else None
        except OSError:
            return None
    if record is None or getattr(record, "bytes_total", None) not in (None, size):
        return None
    etag = getattr(record, "etag", None)
    last_modified = getattr(record, "last_modified", None)
    headers = {"Accept-Encoding": "identity"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    config = config_with("background", args).replace(
        retries=0, total_timeout=min(args.timeout or _CHECK_TIMEOUT, _CHECK_TIMEOUT)
    )
    try:
        with PresetSession(config) as session, session.get(args.url, headers=headers, stream=True) as response:
            if response.status_code == 304:
                return "the server answered 304 Not Modified"
            if response.status_code != 200:
                return None
            length = response.headers.get("Content-Length")
            same_length = length == str(size)
            if etag and not etag.startswith("W/") and response.headers.get("ETag") == etag:
                return f"ETag {etag} is unchanged"
            if not etag and last_modified and response.headers.get("Last-Modified") == last_modified and same_length:
                return "Last-Modified and length are unchanged"
            if not etag and not last_modified and same_length and not response.headers.get("ETag") \
                    and not response.headers.get("Last-Modified"):
                return "its length matches (the server sends no ETag or Last-Modified)"
    except requests.RequestException as exc:
        log.debug("the already-complete check failed: %r", exc)
    return None


def _find_or_start(
    bg: Any, args: argparse.Namespace, output: str, progress: Progress
) -> tuple[Any, str | None, bool]:
    """Return the task that writes ``output`` (None if the file is current), why not, and if it resumes."""
    completed = None
    for existing in bg.tasks():
        if _task_dest(existing) != output:
            continue
        if task_state(existing) in ("pending", "running"):
            if _same_source(existing, args):
                existing.progress = progress
                return existing, None, True  # an interrupted run of the same command: its .part resumes
            existing.cancel()
            existing.wait()
        elif task_state(existing) == "completed" and _same_source(existing, args) and completed is None:
            completed = existing
            continue
        with contextlib.suppress(Exception):
            bg.forget(existing)
    if os.path.isfile(output):
        because = _current_because(args, output, completed)
        if because is not None:
            return None, because, False
    if completed is not None:
        with contextlib.suppress(Exception):
            bg.forget(completed)
    return bg.download(args.url, output, sha256=args.sha256, progress=progress), None, False


def _part_note(output: str) -> str:
    part = output + ".part"
    try:
        size = os.path.getsize(part)
    except OSError:
        size = 0
    if size:
        return f"{size} bytes kept in {part}: run the same command again to resume"
    return "no data had arrived, so nothing was kept"


def _cmd_download(args: argparse.Namespace) -> int:
    if args.output == "-" and args.detach:
        raise UsageError("--detach needs -o FILE: the agent cannot write to this command's standard output")
    if args.output == "-":
        # Standard output cannot be resumed into: stream it as get does, with the background preset.
        args.include, args.header, args.data, args.json, args.request = False, [], [], None, None
        args.location, args.max_redirs = True, None
        return fetch(args, "background")
    args.url = check_url(with_scheme(args.url))
    output = os.path.abspath(args.output)
    if os.path.isdir(output):
        raise UsageError(f"-o {args.output!r} is a directory; give a file path")
    if args.sha256 is not None:
        text = args.sha256.strip().lower()
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise UsageError(f"--sha256 {args.sha256!r} is invalid: expected 64 hexadecimal digits")
        args.sha256 = text
    identifier = args.identifier or default_identifier(output)
    if args.detach:
        from ._agent import run_detached_download

        return run_detached_download(args, identifier, output, transfer_overrides(args))
    # Measured before the session opens: it resumes an interrupted task at once.
    part_before = os.path.getsize(output + ".part") if os.path.isfile(output + ".part") else 0
    return run_attached(
        args, identifier, os.path.basename(output), lambda bg, run: _run_download(bg, run, output, part_before)
    )


def _run_download(bg: Any, run: Attached, output: str, part_before: int) -> tuple[bool, int]:
    """Run the download to its end; return (left running for a later resume, exit status)."""
    task, because, reattached = _find_or_start(bg, run.args, output, run.progress)
    if task is None:
        summary(f"{output} is already complete: {because}; nothing downloaded")
        return False, EXIT_OK
    # The journal's committed offset, not bytes_done (a reattached task resumes at
    # once and may be finished by now) nor the .part's size (the engine cuts it back
    # to what the journal committed).
    resumed_from = int(getattr(task, "resumed_from", part_before) or 0) if reattached else 0
    ended = await_transfer(run, task, lambda: _part_note(output))
    if ended is not None:
        return ended
    summary(f"saved {output}: {throughput(run, int(task.bytes_done), resumed_from)}, {resumed_note(resumed_from)}")
    return False, EXIT_OK


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``download`` to the command's subparsers."""
    download = sub.add_parser("download", parents=[common], help="resumable background download with progress",
                              epilog=EXIT_TABLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    download.add_argument("url", metavar="URL", help=URL_HELP)
    download.add_argument("-o", "--output", metavar="FILE", required=True,
                          help="where to save the file; '-' streams it to standard output (no resume)")
    download.add_argument("--identifier", metavar="ID",
                          help="background session identifier (default: derived from the output path)")
    download.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the complete file")
    add_transfer_options(download, timeout_help="stop waiting after DURATION and keep the .part for a rerun "
                                                "(default: retry until the background preset's total_timeout)")
    download.add_argument("--detach", action="store_true",
                          help="hand the download to the per-user agent, print its identifier and return at once")
    download.set_defaults(run=_cmd_download)
