"""The URLSession lifecycle that PresetSession, BackgroundSession and DetachedSession share.

One home for each rule of it (docs/design.md, "Sessions and their lifecycle"):

- ``state`` runs active → invalidating → invalidated, and never back.
- ``finish_tasks_and_invalidate(timeout)`` refuses new work, waits for the work
  in flight, then releases what the session holds. When ``timeout`` runs out it
  raises InvalidationTimeoutError, and the session stays invalidating: a later
  call waits again, or ``invalidate_and_cancel()`` ends it.
- ``invalidate_and_cancel()`` refuses new work, cancels the work in flight,
  then releases what the session holds.
- Both are safe to call twice, and do nothing on an invalidated session.
- Work offered to a session that is not active is refused with
  SessionInvalidatedError, whose message names the session and its state.
- ``close()`` and leaving a ``with`` block are ``finish_tasks_and_invalidate()``.

A session class says what its work is and how to wait for, cancel and release
it; the order of the steps and the messages live here.
"""

from __future__ import annotations

import enum
import threading
from typing import Any, ClassVar, Final, TypeVar

from ._errors import InvalidationTimeoutError, SessionInvalidatedError

__all__ = ["SessionLifecycle", "SessionState"]


class SessionState(str, enum.Enum):
    """Lifecycle of a session: active, then invalidating, then invalidated."""

    ACTIVE = "active"
    INVALIDATING = "invalidating"
    INVALIDATED = "invalidated"


_INVALIDATED: Final = SessionState.INVALIDATED

_Session = TypeVar("_Session", bound="SessionLifecycle")


class SessionLifecycle:
    """The lifecycle steps and their messages, for a session class to fill in.

    A subclass calls ``_init_lifecycle()`` first thing in ``__init__`` and
    implements ``_describe``, ``_unfinished``, ``_drained``, ``_cancel_work``
    and ``_release``. ``_cond`` (over ``_lock``) guards ``_state`` and whatever
    the subclass counts as work in flight; notify it when that work ends.
    """

    #: What the session refuses once it stops accepting, plural ("requests", "transfers").
    _WORK: ClassVar[str]

    _state: SessionState
    _lock: threading.Lock
    _cond: threading.Condition

    def _init_lifecycle(self, state: SessionState = SessionState.ACTIVE) -> None:
        """Give the session its lock and its first state (a fresh lock after a fork, too)."""
        # The bare lock too: taking it directly skips Condition's Python-level __enter__ (per request).
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._state = state

    # -- what a session class says about itself --------------------------------

    def _describe(self) -> str:
        """The session as messages name it, e.g. ``background session 'nightly'``."""
        raise NotImplementedError

    def _refusal_hint(self) -> str:
        """What to do instead, appended to the refusal message (empty by default)."""
        return ""

    def _unfinished(self) -> str:
        """The work still in flight, counted, e.g. ``2 transfer(s) still unfinished`` (hold ``_cond``)."""
        raise NotImplementedError

    def _drained(self) -> bool:
        """Whether ``finish_tasks_and_invalidate`` may stop waiting (hold ``_cond``)."""
        raise NotImplementedError

    def _on_stop_accepting(self, *, cancel: bool, first: bool) -> None:
        """Run under ``_cond`` each time an invalidation begins, ``first`` when the session was active."""

    def _wait_for_work(self, timeout: float | None) -> None:
        """Wait until ``_drained()``; raise InvalidationTimeoutError after ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(self._drained, timeout):
                raise self._timeout_error(timeout)

    def _cancel_work(self) -> None:
        """Cancel the work in flight and give it a bounded time to unwind."""
        raise NotImplementedError

    def _release(self) -> None:
        """Release what the session holds (pools, journal, locks); runs once."""
        raise NotImplementedError

    # -- the lifecycle ------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """Where the session is in its lifecycle: active, invalidating, invalidated."""
        return self._state

    def finish_tasks_and_invalidate(self, timeout: float | None = None) -> None:
        """Refuse new work, wait for the work in flight, then release what the session holds.

        Like URLSession's ``finishTasksAndInvalidate``. Safe to call twice.

        Args:
            timeout: seconds to wait for the work in flight; None waits as long as it takes.

        Raises:
            InvalidationTimeoutError: work was still in flight after ``timeout``;
                the session stays invalidating and the work goes on.
        """
        if not self._stop_accepting(cancel=False):
            return
        self._wait_for_work(timeout)
        self._finish_invalidation()

    def invalidate_and_cancel(self) -> None:
        """Refuse new work, cancel the work in flight, then release what the session holds.

        Like URLSession's ``invalidateAndCancel``. Safe to call twice.
        """
        if not self._stop_accepting(cancel=True):
            return
        self._cancel_work()
        self._finish_invalidation()

    def close(self) -> None:
        """Same as ``finish_tasks_and_invalidate()``; safe to call twice."""
        self.finish_tasks_and_invalidate()

    def __enter__(self: _Session) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the steps ------------------------------------------------------------------

    def _stop_accepting(self, *, cancel: bool) -> bool:
        """Refuse new work from now on; False if the session is already invalidated."""
        with self._cond:
            if self._state is _INVALIDATED:
                return False
            first = self._state is SessionState.ACTIVE
            self._state = SessionState.INVALIDATING
            self._on_stop_accepting(cancel=cancel, first=first)
        return True

    def _finish_invalidation(self) -> None:
        """Release what the session holds, once; it is invalidated even if releasing fails."""
        if self._state is _INVALIDATED:
            return
        try:
            self._release()
        finally:
            self._state = _INVALIDATED

    def _refusal(self, **kwargs: Any) -> SessionInvalidatedError:
        """The error for work offered while the session is not active; ``kwargs`` go to the error."""
        return SessionInvalidatedError(
            f"{self._describe()} is {self._state.value}; it refuses new {self._WORK}{self._refusal_hint()}",
            **kwargs,
        )

    def _require_active(self) -> None:
        """Raise the refusal unless the session is active."""
        if self._state is not SessionState.ACTIVE:
            raise self._refusal()

    def _timeout_error(self, timeout: float | None) -> InvalidationTimeoutError:
        """The error for a ``finish_tasks_and_invalidate`` whose ``timeout`` ran out (hold ``_cond``)."""
        return InvalidationTimeoutError(
            f"{self._unfinished()} after {timeout:g}s; {self._describe()} stays invalidating"
        )
