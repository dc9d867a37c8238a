"""A child forked while another thread holds a library lock does not inherit it held (issue 9 §3)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from session_presets import _process, default_session
from session_presets import _tls as tls

from .servers import LoopbackServer
from .waiting import wait_until

pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")

#: How long the parent waits for the child; before the fix the child hangs forever.
CHILD_BOUND = 30.0


def _held(lock: Any) -> bool:
    """Whether another thread holds ``lock`` now."""
    if lock.acquire(blocking=False):
        lock.release()
        return False
    return True


def _exit_code(pid: int, bound: float) -> int | None:
    """The child's exit code, or None (child killed) if it did not end within ``bound`` seconds."""
    codes: list[int] = []

    def exited() -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            codes.append(os.waitstatus_to_exitcode(status))
        return bool(codes)

    try:
        wait_until(exited, bound, "the forked child to exit")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    return codes[0]


@pytest.mark.timeout(90)
def test_child_forked_during_a_context_build_builds_its_own(
    https_server: LoopbackServer, ca_bundle: str, tmp_path: Path
) -> None:
    """A child forked while a thread builds an SSLContext (holding tls._lock) builds another and calls out."""
    # A CA bundle that is a FIFO: loading it blocks, inside tls._lock, until we write to it.
    fifo = tmp_path / "ca.fifo"
    os.mkfifo(fifo)
    built = threading.Event()

    def build() -> None:
        tls.get_ssl_context(tls.TrustConfig(ca_bundle=str(fifo)))
        built.set()

    _process.start_thread(build, name="test-context-builder")
    try:
        wait_until(lambda: _held(tls._lock), CHILD_BOUND, "the builder thread to take tls._lock")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            code = 1
            try:
                with default_session(ca_bundle=ca_bundle) as session:
                    code = 0 if session.get(https_server.url("/echo?from=child")).status_code == 200 else 3
            finally:
                os._exit(code)
        code = _exit_code(pid, CHILD_BOUND)
    finally:
        # Feed the FIFO: the builder thread finishes and releases the lock.
        with open(fifo, "w", encoding="ascii") as feed:
            feed.write(Path(ca_bundle).read_text(encoding="ascii"))
        assert built.wait(CHILD_BOUND)
    assert code == 0, "the child hung on tls._lock and was killed" if code is None else f"child exit code {code}"
    assert [seen.path for seen in https_server.requests] == ["/echo?from=child"]
