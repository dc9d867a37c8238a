"""Fault injection for the tests: named points between two durable steps where a process can be made to exit."""

from __future__ import annotations

import os
from typing import Final

__all__ = ["CRASH_EXIT", "crash_point", "set_crash_point"]

#: Exit status of a process stopped at a crash point.
CRASH_EXIT: Final = 86

_crash_at: tuple[str, int] | None = None
_crash_seen: dict[str, int] = {}


def set_crash_point(name: str | None, nth: int = 1) -> None:
    """Make the process ``os._exit(CRASH_EXIT)`` the ``nth`` time it reaches crash point ``name`` (tests only).

    The points, in the order a download meets them: ``fresh:journaled``,
    ``fresh:truncated`` (a 200 replaced what the .part held), ``restart:journaled``,
    ``restart:truncated`` (a restart from zero), ``commit:fsynced``,
    ``commit:done``, ``finish:verified``, ``finish:renamed``.
    """
    global _crash_at
    _crash_at = None if name is None else (name, nth)
    _crash_seen.clear()


def crash_point(name: str) -> None:
    """Exit the process here if :func:`set_crash_point` chose ``name`` and this is its ``nth`` visit."""
    if _crash_at is None or _crash_at[0] != name:
        return
    _crash_seen[name] = _crash_seen.get(name, 0) + 1
    if _crash_seen[name] >= _crash_at[1]:
        os._exit(CRASH_EXIT)

