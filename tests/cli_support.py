"""What the command-line tests share: running the command, a file route with validators and a gate, waits."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .servers import Handler
from .waiting import wait_until

BINARY = bytes(range(256)) * 4
CLI_PAGE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def run_cli(
    *args: str,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    input: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m session_presets ARGS`` in a child process; text output."""
    environ = {key: value for key, value in {**os.environ, **(env or {})}.items() if key not in unset}
    return subprocess.run(
        [sys.executable, "-m", "session_presets", *args],
        capture_output=True,
        timeout=timeout,
        env=environ,
        check=False,
        input=input.decode("latin-1") if input is not None else None,
        text=True,
    )


def console_script() -> str:
    """The installed ``session-presets`` console script (next to this Python, or on PATH)."""
    beside = Path(sys.executable).with_name("session-presets")
    found = str(beside) if beside.exists() else shutil.which("session-presets")
    if found is None:  # pragma: no cover - the test extra installs the package with its script
        pytest.skip("the session-presets console script is not installed")
    return found


def binary_route(h: Handler) -> None:
    h.reply(200, BINARY, {"Content-Type": "application/octet-stream", "X-Served-By": "loopback"})


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BlobHit:
    """One request as the blob route saw it."""

    method: str
    range: str | None
    if_none_match: str | None
    if_modified_since: str | None
    status: int
    sent: int


@dataclass
class Blob:
    """A file route: ETag, Last-Modified, Range/If-Range, If-None-Match → 304, pacing, a gate, a log."""

    data: bytes
    etag: str | None = '"v1"'
    last_modified: str | None = "Wed, 21 Oct 2015 07:28:00 GMT"
    chunk: int = 64 * 1024
    #: Seconds between two pieces of the body: it arrives in pieces, as from a slow server.
    delay: float = 0.0
    log: list[BlobHit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: When set, the body pauses after ``hold_after`` bytes until the event is set (30 s at most),
    #: so a download is certainly still running however loaded the machine is.
    gate: threading.Event | None = None
    hold_after: int = 0

    def validators(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["ETag"] = self.etag
        if self.last_modified:
            headers["Last-Modified"] = self.last_modified
        return headers

    def note(self, h: Handler, status: int, sent: int) -> None:
        with self.lock:
            self.log.append(BlobHit(h.command, h.headers.get("Range"), h.headers.get("If-None-Match"),
                                    h.headers.get("If-Modified-Since"), status, sent))

    def __call__(self, h: Handler) -> None:
        inm = h.headers.get("If-None-Match")
        ims = h.headers.get("If-Modified-Since")
        if (inm is not None and inm == self.etag) or (inm is None and ims and ims == self.last_modified):
            self.note(h, 304, 0)
            h.send_response(304)
            for key, value in self.validators().items():
                h.send_header(key, value)
            h.end_headers()
            return
        start, status = 0, 200
        match = re.match(r"^bytes=(\d+)-$", h.headers.get("Range", ""))
        if_range = h.headers.get("If-Range")
        if match and (if_range is None or if_range in (self.etag, self.last_modified)):
            start, status = int(match.group(1)), 206
        h.send_response(status)
        for key, value in self.validators().items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(self.data) - start))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(self.data) - 1}/{len(self.data)}")
        h.end_headers()
        sent = 0
        if h.command != "HEAD":
            with contextlib.suppress(OSError):
                for position in range(start, len(self.data), self.chunk):
                    if self.gate is not None and sent >= self.hold_after:
                        self.gate.wait(30)
                    piece = self.data[position : position + self.chunk]
                    h.wfile.write(piece)
                    h.wfile.flush()
                    sent += len(piece)
                    if self.delay:
                        time.sleep(self.delay)
        self.note(h, status, sent)

    def bodies_sent(self) -> list[BlobHit]:
        """Requests that were sent body bytes."""
        with self.lock:
            return [hit for hit in self.log if hit.sent]


def read_lines(stream: object, into: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        into.put(line)
    into.put("")


def wait_for_line(lines: queue.Queue[str], needle: str, seen: list[str], timeout: float = 30) -> None:
    """Read lines until one holds ``needle`` (bounded by ``timeout``)."""
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        try:
            line = lines.get(timeout=max(0.0, ends - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if needle in line:
            return
        if line == "":
            break
    raise AssertionError(f"never saw {needle!r}; stderr so far: {''.join(seen)!r}")


def wait_for_size(path: Path, size: int, timeout: float = 30) -> None:
    """Wait until the file at ``path`` holds at least ``size`` bytes."""
    wait_until(lambda: path.exists() and path.stat().st_size >= size, timeout, f"{path} to reach {size} bytes")


@contextlib.contextmanager
def child_process(command: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[Any]]:
    """Popen that kills the child if the test fails first, so a broken command cannot hang the suite.

    The child starts with SIGINT at its default, as under a terminal. A suite started in the
    background by a non-interactive shell (``cmd &`` in a script, nohup) inherits SIGINT ignored,
    and a Python started with SIGINT ignored never raises KeyboardInterrupt: the Ctrl-C tests
    would then see the download finish instead. An installed handler is reset to the default
    by exec, so one is installed for the moment of the fork.
    """
    inherited = signal.getsignal(signal.SIGINT)
    if inherited is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        started = subprocess.Popen(command, **kwargs)
    finally:
        if inherited is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    with started as child:
        try:
            yield child
        finally:
            if child.poll() is None:
                child.kill()


@contextlib.contextmanager
def pty_reader() -> Iterator[tuple[int, list[bytes]]]:
    """A pseudo-terminal: yields the child's end and a list that fills with what the child writes."""
    master, slave = pty.openpty()
    # A new pty is 0x0: give it a real terminal's size, or tqdm draws a bar 0 columns wide.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield slave, chunks
    finally:
        os.close(slave)
        reader.join(10)
        assert not reader.is_alive(), "the pty reader never saw the terminal close"
        os.close(master)
