"""The command line's detached transfers: ``download --detach``, ``upload --detach``, ``transfers``, ``stop-agent``.

The agent's commands are one self-contained piece: ``build_parser`` calls
:func:`add_parsers`, and ``download`` and ``upload`` hand over to
:func:`run_detached_download` and :func:`run_detached_upload`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .._presets import resolve
from ..background._client import agent_request, stop_agent
from ..background._protocol import MARKER_SUFFIX
from ..background.engine import background_session
from ..background.lockfile import default_state_dir
from ..background.task import FINISHED, TransferState
from ._base import EXIT_CONFIG, EXIT_HTTP, EXIT_NETWORK, EXIT_OK, err, human_bytes
from ._transfer import source_identity

__all__ = ["add_parsers", "run_detached_download", "run_detached_upload"]


def _state_dir() -> str:
    return os.path.abspath(resolve("background", {}).state_dir or default_state_dir())


def run_detached_download(args: argparse.Namespace, identifier: str, output: str, overrides: dict[str, Any]) -> int:
    """Hand the download to the agent, print its identifier and return at once."""
    bg = background_session(identifier, detached=True, **overrides)
    running = [task for task in bg.tasks() if task.dest == output and not task.done]
    if not running:
        bg.download(args.url, output, sha256=args.sha256)
    print(identifier, flush=True)
    return EXIT_OK


def run_detached_upload(args: argparse.Namespace, identifier: str, src: str, overrides: dict[str, Any]) -> int:
    """Hand the upload to the agent (unless it runs or is complete and unchanged), print its identifier."""
    bg = background_session(identifier, detached=True, **overrides)
    busy = False
    now = source_identity(src)
    for task in bg.tasks():
        if task.src != src:
            continue
        if not task.done:
            busy = True
        elif task.state is TransferState.COMPLETED and now is not None and task.source_identity == now:
            busy = True
            err(f"{src} is already uploaded (unchanged since); nothing sent")
        else:
            bg.forget(task)
    if not busy:
        bg.upload(args.url, src, protocol=args.protocol)
    print(identifier, flush=True)
    return EXIT_OK


def _snapshots() -> list[dict[str, Any]]:
    state_dir = _state_dir()
    if not os.path.isdir(state_dir) or not any(name.endswith(MARKER_SUFFIX) for name in os.listdir(state_dir)):
        return []  # nothing detached: no agent is started just to say so
    result: list[dict[str, Any]] = agent_request(state_dir, "list")
    return result


def _line(task: dict[str, Any]) -> str:
    total = "?" if task["bytes_total"] is None else human_bytes(task["bytes_total"])
    rate = "" if task["rate"] is None else f" {human_bytes(task['rate'])}/s"
    where = task["dest"] if task["kind"] == "download" else task["src"]
    error = f"  error: {task['error']}" if task["error"] else ""
    return (
        f"{task['identifier']}  {task['id']}  {task['state']}  {human_bytes(task['bytes_done'])}/{total}{rate}  "
        f"{task['kind']} {task['url']} {'->' if task['kind'] == 'download' else '<-'} {where}{error}"
    )


def _cmd_transfers(args: argparse.Namespace) -> int:
    if args.action is None:
        # argparse fills ``action`` first: an ID alone is refused there as an unknown action.
        snapshots = _snapshots()
        if args.json:
            print(json.dumps(snapshots, indent=2))
        else:
            for snapshot in snapshots:
                print(_line(snapshot))
        return EXIT_OK
    if args.id is None:
        err(f"transfers {args.action}: give the identifier that 'download --detach' printed")
        return EXIT_CONFIG
    bg = background_session(args.id, detached=True)
    tasks = bg.tasks()
    if args.action == "cancel":
        for task in tasks:
            if not task.done:
                task.cancel()
        for task in tasks:
            print(f"{args.id}  {task.id}  {task.state.value}")
        return EXIT_OK
    status = EXIT_OK
    for task in tasks:
        task.wait(args.timeout)
        state = task.state
        print(f"{args.id}  {task.id}  {state.value}  {task.bytes_done} bytes  {task.path}", flush=True)
        if state not in FINISHED:
            status = max(status, EXIT_NETWORK)
        elif state is not TransferState.COMPLETED:
            if task.error is not None:
                err(f"task {task.id}: {task.error}")
            status = max(status, EXIT_HTTP)
    return status


def _cmd_stop_agent(args: argparse.Namespace) -> int:
    pid = stop_agent(_state_dir())
    print("no agent was running" if pid is None else f"stopped the agent (pid {pid})", file=sys.stderr)
    return EXIT_OK


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``transfers`` and ``stop-agent`` to the command's subparsers."""
    transfers = sub.add_parser(
        "transfers", parents=[common],
        help="list detached transfers of every identifier; 'wait ID' or 'cancel ID' acts on one",
    )
    transfers.add_argument("action", nargs="?", choices=("wait", "cancel"), help="wait for or cancel ID's tasks")
    transfers.add_argument("id", nargs="?", metavar="ID", help="the identifier 'download --detach' printed")
    transfers.add_argument("--json", action="store_true", help="print JSON")
    transfers.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                           help="wait: give up after SECONDS (exit status 3); default: until done")
    transfers.set_defaults(run=_cmd_transfers)
    stop = sub.add_parser("stop-agent", parents=[common],
                          help="suspend every detached transfer into its journal and stop the agent")
    stop.set_defaults(run=_cmd_stop_agent)
