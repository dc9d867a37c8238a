"""Background sessions: resumable file transfers with a journal (DESIGN §7)."""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["BackgroundSession", "TransferState", "TransferTask", "background_session"]


class TransferState(str, enum.Enum):
    """State of a background transfer."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TransferTask:
    """One download or upload of a background session (placeholder)."""


class BackgroundSession:
    """Runs transfers on worker threads with a journal (placeholder)."""


def background_session(identifier: str, **overrides: Any) -> BackgroundSession:
    """Return the live background session of ``identifier`` (placeholder)."""
    raise NotImplementedError("background sessions are not built yet")
