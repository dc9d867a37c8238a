"""Resumable background download with progress, against a loopback server that drops once.

Run it with no arguments::

    python examples/background_download.py

It starts an HTTP server on 127.0.0.1 that serves a 4 MiB file with ETag and
Range support, and closes the connection once, halfway through the body. The
background session notices, asks for ``Range: bytes=N-`` with ``If-Range``,
appends the rest to ``file.part``, checks the sha256 and renames the file.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from session_presets import TransferState, TransferTask, background_session

DATA = random.Random(0).randbytes(4 * 1024 * 1024)
ETAG = '"demo-v1"'


class FileHandler(BaseHTTPRequestHandler):
    """Serves DATA with Range/If-Range; the first response stops halfway."""

    protocol_version = "HTTP/1.1"
    dropped = False
    seen: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and self.headers.get("If-Range", ETAG) == ETAG:
            start = int(match.group(1))
        FileHandler.seen.append(self.headers.get("Range") or "(no Range)")
        self.send_response(206 if start else 200)
        self.send_header("ETag", ETAG)
        self.send_header("Content-Length", str(len(DATA) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        self.end_headers()
        end = len(DATA)
        if not FileHandler.dropped:
            FileHandler.dropped = True
            end = len(DATA) // 2
        try:
            for offset in range(start, end, 64 * 1024):
                self.wfile.write(DATA[offset : min(end, offset + 64 * 1024)])
                time.sleep(0.01)  # a slow link, so that progress has something to show
            self.wfile.flush()
        except OSError:
            return
        if end < len(DATA):
            # Simulate a network failure: close the connection mid-body.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_WR)


def show(task: TransferTask) -> None:
    """Print progress; called from a worker thread about ten times a second, and at the end."""
    total = task.bytes_total or 0
    percent = 100 * task.bytes_done / total if total else 0.0
    print(f"  {task.state.value:<9} {task.bytes_done:>8} / {total} bytes ({percent:5.1f}%)")


def main() -> int:
    """Download the file once through a dropped connection and report the resume."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FileHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/demo.bin"
    with tempfile.TemporaryDirectory() as workdir:
        dest = os.path.join(workdir, "demo.bin")
        # A throwaway state_dir keeps the example out of your real journal; short
        # back-off keeps the retry quick.
        bg = background_session("example-download", state_dir=workdir, backoff_factor=0.1, backoff_max=1)
        with bg:
            print(f"downloading {url}")
            task = bg.download(url, dest, sha256=hashlib.sha256(DATA).hexdigest(), progress=show)
            task.wait()
        server.shutdown()
        server.server_close()
        print(f"requests the server saw: {FileHandler.seen}")
        print(f"attempts: {task.attempts}, state: {task.state.value}")
        if task.state is not TransferState.COMPLETED:
            print(f"failed: {task.error}")
            return 1
        with open(dest, "rb") as file:
            identical = file.read() == DATA
        print(f"resumed with Range: {any(r.startswith('bytes=') for r in FileHandler.seen)}; identical: {identical}")
        return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
