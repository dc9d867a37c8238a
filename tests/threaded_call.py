"""Run a call on another thread and keep what it returned or raised, for tests that cut calls in flight."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from session_presets import _process


class Outcome:
    """What a call run on another thread returned or raised."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


def run_in_thread(target: Callable[[], Any]) -> Outcome:
    """Start ``target()`` on a thread (through _process.start_thread) and return its Outcome."""
    outcome = Outcome()

    def body() -> None:
        try:
            outcome.result = target()
        except BaseException as exc:
            outcome.error = exc
        finally:
            outcome.done.set()

    _process.start_thread(body, name="test-call")
    return outcome
