"""Counters: the live counts of one session (SessionStats), incremented where the events happen."""

from __future__ import annotations

import itertools
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


def _count_value(count: itertools.count[int]) -> int:
    # itertools.count offers its value only through repr() ("count(7)"); its
    # pickle support, the other way, is deprecated since Python 3.12.
    return int(repr(count)[6:-1])


def _counter(name: str, doc: str) -> property:
    """A read-only attribute of Counters giving the value of counter ``name``."""

    def value(self: Counters) -> int:
        return _count_value(self._counts[name])

    return property(value, doc=doc)


class Counters:
    """Live counters of one session, incremented where the events happen.

    Each counter is an ``itertools.count``: ``next()`` on it is one C call under
    the GIL, so threads never lose an increment and no lock is taken per request.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts = {name: itertools.count() for name in COUNTER_NAMES}

    def add(self, name: str) -> None:
        """Add one to counter ``name``."""
        next(self._counts[name])

    def after_fork(self) -> None:
        """Start from zero (in a forked child)."""
        self._counts = {name: itertools.count() for name in COUNTER_NAMES}

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a dict."""
        return {name: _count_value(count) for name, count in self._counts.items()}

    requests = _counter("requests", "Requests sent (each attempt a PresetAdapter sends).")
    connections_opened = _counter("connections_opened", "Connections opened.")
    connections_reused = _counter("connections_reused", "Requests sent over a connection that was already open.")
    connections_resumed = _counter("connections_resumed", "Connections whose TLS session was resumed.")
    retries = _counter("retries", "Retries made.")
    errors = _counter("errors", "Calls that failed.")
