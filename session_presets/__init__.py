"""session_presets: named presets, fast shared sessions and no hidden state for requests.

Use ``get_session(name)`` for a shared, process-wide session, or one of the
factories (``default_session``, ``ephemeral_session``, ``background_session``)
for a session you own and close.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._metrics import TransactionMetrics
from ._version import __version__
from .adapters import PresetAdapter
from .background import BackgroundSession, TransferState, TransferTask, background_session
from .config import PresetConfig
from .errors import (
    ConfigError,
    IdentifierInUseError,
    InsecureRedirectError,
    InsecureSessionWarning,
    SessionInvalidatedError,
    SessionPresetsError,
    SessionPresetsWarning,
    SessionReuseWarning,
    TotalTimeoutError,
    TransferError,
    UnknownPresetError,
    UnknownVariableWarning,
)
from .presets import get_preset, preset_names, register_preset
from .registry import SessionRegistry, close_all, get_session
from .sessions import (
    InvalidationTimeoutError,
    PresetSession,
    SessionReuseError,
    SessionState,
    SessionStats,
    default_session,
    ephemeral_session,
)

if TYPE_CHECKING:
    from .otel import instrument

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    # instrument lives with the OpenTelemetry glue, loaded only when asked for.
    if name == "instrument":
        from .otel import instrument

        return instrument
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "BackgroundSession",
    "ConfigError",
    "IdentifierInUseError",
    "InsecureRedirectError",
    "InsecureSessionWarning",
    "InvalidationTimeoutError",
    "PresetAdapter",
    "PresetConfig",
    "PresetSession",
    "SessionInvalidatedError",
    "SessionPresetsError",
    "SessionPresetsWarning",
    "SessionRegistry",
    "SessionReuseError",
    "SessionReuseWarning",
    "SessionState",
    "SessionStats",
    "TotalTimeoutError",
    "TransactionMetrics",
    "TransferError",
    "TransferState",
    "TransferTask",
    "UnknownPresetError",
    "UnknownVariableWarning",
    "__version__",
    "background_session",
    "close_all",
    "default_session",
    "ephemeral_session",
    "get_preset",
    "get_session",
    "instrument",
    "preset_names",
    "register_preset",
]
