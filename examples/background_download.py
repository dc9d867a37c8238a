"""Resumable background download with progress, against a loopback server that drops once.

Run it with no arguments::

    python examples/background_download.py

It starts a ``session_presets.testing.MockServer`` on 127.0.0.1 that serves a
4 MiB file with ETag and Range support (a ``FileRoute``), and closes the
connection once, halfway through the body. The
background session notices, asks for ``Range: bytes=N-`` with ``If-Range``,
appends the rest to ``file.part``, checks the sha256 and renames the file.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import tempfile

from session_presets import TransferState, TransferTask, background_session
from session_presets.testing import FileRoute, MockServer

DATA = random.Random(0).randbytes(4 * 1024 * 1024)
ETAG = '"demo-v1"'


def show(task: TransferTask) -> None:
    """Print progress; called from a worker thread about ten times a second, and at the end."""
    total = task.bytes_total or 0
    percent = 100 * task.bytes_done / total if total else 0.0
    print(f"  {task.state.value:<9} {task.bytes_done:>8} / {total} bytes ({percent:5.1f}%)")


def main() -> int:
    """Download the file once through a dropped connection and report the resume."""
    # Range and If-Range come from the file route; 8 MiB/s is a slow link, so that
    # progress has something to show, and the connection drops once, halfway.
    route = FileRoute(DATA, etag=ETAG, throttle=8 * 1024 * 1024)
    route.drops.append(len(DATA) // 2)
    with MockServer() as server, tempfile.TemporaryDirectory() as workdir:
        server.route("/demo.bin", route)
        url = server.url("/demo.bin")
        dest = os.path.join(workdir, "demo.bin")
        # A throwaway state_dir keeps the example out of your real journal; short
        # back-off keeps the retry quick.
        bg = background_session("example-download", state_dir=workdir, backoff_factor=0.1, backoff_max=1)
        with bg:
            print(f"downloading {url}")
            task = bg.download(url, dest, sha256=hashlib.sha256(DATA).hexdigest(), progress=show)
            task.wait()
        seen = [request.header("Range") or "(no Range)" for request in server.requests]
        print(f"requests the server saw: {seen}")
        print(f"attempts: {task.attempts}, state: {task.state.value}")
        if task.state is not TransferState.COMPLETED:
            print(f"failed: {task.error}")
            return 1
        with open(dest, "rb") as file:
            identical = file.read() == DATA
        print(f"resumed with Range: {any(r.startswith('bytes=') for r in seen)}; identical: {identical}")
        return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
