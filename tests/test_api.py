"""The public surface: exactly the names in __all__, sorted, and the documented hierarchy."""

from __future__ import annotations

import requests

import session_presets as sp

EXPECTED = {
    "BackgroundSession", "ConfigError", "ForeignAdapterWarning", "IdentifierInUseError",
    "InsecureRedirectError", "InsecureSessionWarning", "InvalidationTimeoutError", "PresetAdapter",
    "PresetConfig", "PresetSession", "PresetTimeout", "SessionInvalidatedError", "SessionPresetsError",
    "SessionPresetsWarning", "SessionRegistry", "SessionReuseError", "SessionReuseWarning", "SessionState",
    "SessionStats", "SharedSessionError", "TotalTimeoutError", "TransactionMetrics",
    "TransferError", "TransferState", "TransferTask",
    "UnknownPresetError", "UnknownVariableWarning", "__version__", "background_session", "close_all", "default_session",
    "ephemeral_session", "get_preset", "get_session", "instrument", "preset_names", "register_preset",
}


def test_all_is_sorted_and_complete() -> None:
    """__all__ lists every public name once, sorted, and each one resolves."""
    assert sp.__all__ == sorted(sp.__all__)
    assert set(sp.__all__) == EXPECTED
    for name in sp.__all__:
        assert getattr(sp, name) is not None


def test_error_hierarchy() -> None:
    """Errors subclass the library base and the requests exception callers already catch."""
    assert issubclass(sp.UnknownPresetError, sp.ConfigError)
    assert issubclass(sp.UnknownPresetError, KeyError)
    assert issubclass(sp.ConfigError, sp.SessionPresetsError)
    assert issubclass(sp.SessionInvalidatedError, sp.SessionPresetsError)
    assert issubclass(sp.SessionInvalidatedError, requests.RequestException)
    assert issubclass(sp.TotalTimeoutError, requests.Timeout)
    assert issubclass(sp.IdentifierInUseError, sp.TransferError)
    assert issubclass(sp.SessionReuseWarning, Warning)
    assert issubclass(sp.SharedSessionError, sp.SessionPresetsError)
    assert issubclass(sp.SharedSessionError, AttributeError)
    assert issubclass(sp.ForeignAdapterWarning, sp.SessionPresetsWarning)


def test_unknown_preset_message_suggests_nearest() -> None:
    """An unknown preset name raises UnknownPresetError suggesting the closest known name."""
    try:
        sp.get_preset("defualt")
    except sp.UnknownPresetError as exc:
        assert "did you mean 'default'" in str(exc)
        assert isinstance(exc, KeyError)
    else:  # pragma: no cover
        raise AssertionError("no error")
