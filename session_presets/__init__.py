"""session_presets: named presets, fast shared sessions and no hidden state for requests.

Use ``get_session(name)`` for a shared, process-wide session, or one of the
factories (``default_session``, ``ephemeral_session``, ``background_session``)
for a session you own and close.
"""

# Every name bound here is public API (tests/test_api.py compares them with
# __all__), so the helpers are imported under private names and there is no
# `from __future__ import annotations`, which would bind `annotations`.
import importlib as _importlib
import logging as _logging
import typing as _typing

from ._adapters import PresetAdapter, PresetTimeout, preset_adapter_class
from ._config import PresetConfig
from ._diagnostics import Diagnostics, diagnostics
from ._errors import (
    BodyReadTimeoutError,
    CircuitOpenError,
    ConfigError,
    DestinationInUseError,
    DiskFullError,
    ForeignAdapterWarning,
    IdentifierInUseError,
    InsecureRedirectError,
    InsecureSessionWarning,
    InvalidationTimeoutError,
    RateLimitedError,
    SessionInvalidatedError,
    SessionPresetsError,
    SessionPresetsWarning,
    SessionReuseError,
    SessionReuseWarning,
    SharedSessionError,
    TotalTimeoutError,
    TransferError,
    UnknownPresetError,
    UnknownVariableWarning,
)
from ._metrics import TransactionMetrics
from ._presets import get_preset, preset_names, register_preset
from ._registry import SessionRegistry, close_all, get_session
from ._sessions import (
    PresetSession,
    SessionState,
    SessionStats,
    default_session,
    ephemeral_session,
)
from ._version import __version__

if _typing.TYPE_CHECKING:
    from .background import BackgroundSession, TransferState, TransferTask, background_session
    from .otel import instrument

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

#: Public names loaded on first use: the background engine pulls in sqlite3, fcntl and its
#: worker machinery, which a script that never opens a background session should not pay for.
_LAZY: dict[str, str] = {
    "BackgroundSession": ".background",
    "TransferState": ".background",
    "TransferTask": ".background",
    "background_session": ".background",
    # The OpenTelemetry glue: opentelemetry itself is imported only when instrument() runs.
    "instrument": ".otel",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BackgroundSession",
    "BodyReadTimeoutError",
    "CircuitOpenError",
    "ConfigError",
    "DestinationInUseError",
    "Diagnostics",
    "DiskFullError",
    "ForeignAdapterWarning",
    "IdentifierInUseError",
    "InsecureRedirectError",
    "InsecureSessionWarning",
    "InvalidationTimeoutError",
    "PresetAdapter",
    "PresetConfig",
    "PresetSession",
    "PresetTimeout",
    "RateLimitedError",
    "SessionInvalidatedError",
    "SessionPresetsError",
    "SessionPresetsWarning",
    "SessionRegistry",
    "SessionReuseError",
    "SessionReuseWarning",
    "SessionState",
    "SessionStats",
    "SharedSessionError",
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
    "diagnostics",
    "ephemeral_session",
    "get_preset",
    "get_session",
    "instrument",
    "preset_adapter_class",
    "preset_names",
    "register_preset",
]
