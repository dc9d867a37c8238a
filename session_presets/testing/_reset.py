"""reset(): put the library's process-wide state back as freshly imported, between tests."""

from __future__ import annotations

import logging

from .. import _process
from .. import _registry as registry
from .._sessions import InvalidationTimeoutError, SessionState
from ..background import engine

__all__ = ["reset"]

log = logging.getLogger(__name__)


def reset(*, timeout: float | None = 5.0) -> None:
    """Forget every piece of process state the library keeps, as a test's setup or teardown.

    In order: background sessions left running are cancelled; shared
    (registry) sessions finish the requests they have in flight, waiting up to
    ``timeout`` seconds for each, and are invalidated (cancelled if still busy);
    then every reset hook runs: registered presets, the environment's
    warning memo, TLS contexts, reuse counters. The next ``get_session`` builds
    a new session from the environment as it is then.

    Args:
        timeout: Seconds each shared session may take to finish its requests; None waits.
    """
    for background in engine._live_sessions():
        background.invalidate_and_cancel()
    shared = list(registry.default_registry._sessions.values())
    try:
        registry.close_all(timeout=timeout)
    except InvalidationTimeoutError:
        log.debug("a shared session was still busy after %r s; cancelling it", timeout)
    for session in shared:
        # The registry lets go of a session as soon as it starts invalidating,
        # so one still busy after the grace is cancelled here.
        if session.state is not SessionState.INVALIDATED:
            session.invalidate_and_cancel()
    _process.reset()
