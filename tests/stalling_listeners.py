"""Listeners that stall a client in connect or in the TLS handshake, on 127.0.0.1.

- :class:`FullBacklogListener`: a listening socket whose accept queue is full,
  so a new connection stays in SYN-SENT (the kernel drops its SYNs).
- :class:`SilentListener`: accepts every connection, reads what the client
  sends (a TLS ClientHello, a request) and never answers.
"""

from __future__ import annotations

import select
import socket
import threading

from session_presets import _process

__all__ = ["FullBacklogListener", "SilentListener", "syn_sent_to"]

#: How many filler connections at most are tried to fill an accept queue.
_MAX_FILLERS = 16


class FullBacklogListener:
    """A listener that never accepts, with its accept queue filled by this process."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._fillers: list[socket.socket] = []
        for _ in range(_MAX_FILLERS):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self._fillers.append(filler)
            # A filler that does not complete within the wait was dropped: the queue is full.
            _, writable, _ = select.select([], [filler], [], 0.5)
            if not writable:
                return
        raise AssertionError(f"the accept queue of port {self.port} never filled up")

    def url(self, path: str = "/ok", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        for filler in self._fillers:
            filler.close()
        self._listener.close()

    def __enter__(self) -> FullBacklogListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def syn_sent_to(port: int) -> int:
    """How many sockets of this machine are in SYN-SENT towards 127.0.0.1:``port`` (Linux /proc)."""
    count = 0
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == "02" and int(remote.split(":")[1], 16) == port:
                count += 1
    return count


class SilentListener:
    """Accepts connections, records the bytes each sends, and never answers."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._accepted: list[socket.socket] = []
        self._accept_count = 0
        self.received = threading.Event()
        self.closed_by_client = threading.Event()
        self._stop = threading.Event()
        self._thread = _process.start_thread(self._serve, name="silent-listener")

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._accept_count

    def url(self, path: str = "/ok", scheme: str = "https") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                watched = [self._listener, *(s for s in self._accepted if s.fileno() >= 0)]
            readable, _, _ = select.select(watched, [], [], 0.05)
            for sock in readable:
                if sock is self._listener:
                    try:
                        conn, _ = self._listener.accept()
                    except OSError:
                        return
                    with self._lock:
                        self._accepted.append(conn)
                        self._accept_count += 1
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if data:
                    self.received.set()
                else:
                    self.closed_by_client.set()
                    with self._lock:
                        self._accepted.remove(sock)
                    sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            for sock in self._accepted:
                sock.close()
            self._accepted.clear()
        self._listener.close()

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
