"""Counters: the live counts of one session (SessionStats), incremented where the events happen."""

from __future__ import annotations

import threading
from typing import Final

__all__ = ["COUNTER_NAMES", "Counters"]

#: The counters a session keeps (SessionStats fields of the same names).
COUNTER_NAMES: Final = (
    "requests",
    "connections_opened",
    "connections_reused",
    "connections_resumed",
    "retries",
    "errors",
)


def _counter(name: str, doc: str) -> property:
    """A read-only attribute of Counters giving the value of counter ``name``."""

    def value(self: Counters) -> int:
        return self._values[name]

    return property(value, doc=doc)


class Counters:
    """Live counters of one session, incremented where the events happen.

    Each increment takes the set's lock: ``+=`` on a shared int is a read, an
    add and a write, which threads interleave without the GIL (a free-threaded
    CPython build) and, between bytecodes, even with it. An uncontended lock
    costs well under a microsecond, next to the tens a request costs.
    """

    __slots__ = ("_lock", "_values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(COUNTER_NAMES, 0)

    def add(self, name: str) -> None:
        """Add one to counter ``name``.

        Raises:
            KeyError: ``name`` is not one of COUNTER_NAMES.
        """
        with self._lock:
            self._values[name] += 1

    def after_fork(self) -> None:
        """Start from zero (in a forked child), with a new lock: another thread of the parent may have held it."""
        self._lock = threading.Lock()
        self._values = dict.fromkeys(COUNTER_NAMES, 0)

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a dict, all read at one moment."""
        with self._lock:
            return dict(self._values)

    requests = _counter("requests", "Requests sent (each attempt a PresetAdapter sends).")
    connections_opened = _counter("connections_opened", "Connections opened.")
    connections_reused = _counter("connections_reused", "Requests sent over a connection that was already open.")
    connections_resumed = _counter("connections_resumed", "Connections whose TLS session was resumed.")
    retries = _counter("retries", "Retries made.")
    errors = _counter("errors", "Calls that failed.")
