"""The one way tests wait: poll a predicate within a bound, and fail saying what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable

#: How often a waiting test polls: short enough not to slow a test, long enough not to spin a core.
POLL_INTERVAL = 0.01


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Return once ``predicate()`` is true; raise AssertionError naming ``what`` after ``timeout`` seconds.

    Args:
        predicate: polled until it returns a true value; it is called once more at the deadline.
        timeout: seconds to wait at most.
        what: the awaited event, in words ("the server saw /slow"), for the failure message.

    Raises:
        AssertionError: ``predicate()`` stayed false for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            if predicate():
                return
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(POLL_INTERVAL)
