"""The registry: one shared session per preset, from many threads and after a fork.

Run it with no arguments. It starts its own loopback HTTP server, then:

1. eight threads make 20 calls each through ``get_session()``: they share one
   session and at most ``pool_maxsize`` connections;
2. a worker made by ``os.fork()`` calls ``get_session()`` too: it gets a new
   session and opens a connection of its own, never one of its parent's.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

from _loopback import LoopbackHandler, LoopbackServer

from session_presets import close_all, get_preset, get_session


class PidHandler(LoopbackHandler):
    """Answers with the connection's number, so a caller can see which one it used."""

    def respond(self) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, str(self.connection_number).encode()


def from_threads(server: LoopbackServer) -> None:
    """Eight threads share the registry's session."""
    seen_sessions: set[int] = set()
    used: set[str] = set()
    lock = threading.Lock()

    def work(_: int) -> None:
        for _ in range(20):
            session = get_session()
            reply = session.get(server.url("/thread"))
            with lock:
                seen_sessions.add(id(session))
                used.add(reply.text)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(8)))
    stats = get_session().stats
    print(f"threads: 8 x 20 calls used {len(seen_sessions)} session object(s) and {len(used)} connection(s) "
          f"(pool_maxsize={get_preset('default').pool_maxsize}); server accepted {server.connections}; "
          f"client stats: requests={stats.requests} opened={stats.connections_opened}")


def from_a_forked_worker(server: LoopbackServer) -> int:
    """A child process builds its own session on first use; the parent's sockets stay the parent's."""
    parent_session = get_session()
    parent_connection = parent_session.get(server.url("/parent")).text
    before = server.connections
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() with threads running (here: the demo server's).
        # The child below only uses the registry, which is rebuilt after fork.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the worker
        os.close(read_end)
        status = 1
        try:
            child_session = get_session()
            connection = child_session.get(server.url("/child")).text
            report = f"{child_session is not parent_session} {connection}"
            os.write(write_end, report.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        new_object, child_connection = pipe.read().split()
    _, status = os.waitpid(pid, 0)
    print(f"fork: the worker got a new session object: {new_object}; it used connection #{child_connection}, "
          f"the parent uses #{parent_connection}; server connections {before} -> {server.connections}")
    again = parent_session.get(server.url("/parent-again")).text
    print(f"fork: the parent still reuses its own connection #{again}")
    if os.waitstatus_to_exitcode(status) != 0 or child_connection == parent_connection:
        return 1
    return 0


def main() -> int:
    """Run both demonstrations against a loopback server."""
    with LoopbackServer(PidHandler) as server:
        try:
            from_threads(server)
            if not hasattr(os, "fork"):
                print("fork: not available on this platform")
                return 0
            return from_a_forked_worker(server)
        finally:
            close_all()
            sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
