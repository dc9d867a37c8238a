"""The public surface: exactly the names in __all__, sorted, and the documented hierarchy."""

from __future__ import annotations

import json
import subprocess
import sys

import requests

import session_presets as sp

EXPECTED = {
    "BackgroundSession", "CircuitOpenError", "ConfigError", "DestinationInUseError", "Diagnostics", "DiskFullError",
    "BodyReadTimeoutError", "ForeignAdapterWarning", "IdentifierInUseError",
    "InsecureRedirectError", "InsecureSessionWarning", "InvalidationTimeoutError", "PresetAdapter",
    "PresetConfig", "PresetSession", "PresetTimeout", "RateLimitedError", "SessionInvalidatedError",
    "SessionPresetsError",
    "SessionPresetsWarning", "SessionRegistry", "SessionReuseError", "SessionReuseWarning", "SessionState",
    "SessionStats", "SharedSessionError", "TotalTimeoutError", "TransactionMetrics",
    "TransferError", "TransferState", "TransferTask",
    "UnknownPresetError", "UnknownVariableWarning", "__version__", "background_session", "close_all", "default_session",
    "diagnostics", "ephemeral_session", "get_preset", "get_session", "instrument", "preset_adapter_class",
    "preset_names", "register_preset",
}


def test_all_is_sorted_and_complete() -> None:
    """__all__ lists every public name once, sorted, and each one resolves."""
    assert sp.__all__ == sorted(sp.__all__)
    assert set(sp.__all__) == EXPECTED
    for name in sp.__all__:
        assert getattr(sp, name) is not None


def test_all_matches_what_the_package_really_exposes() -> None:
    """__all__ is exactly the public names of a freshly imported package, lazy ones included."""
    script = (
        "import json, session_presets as sp; "
        "print(json.dumps(sorted({n for n in vars(sp) if not n.startswith('_')} | set(sp._LAZY)) + ['__version__']))"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    found = json.loads(shown)
    assert sorted(found) == sorted(sp.__all__)


def test_import_loads_no_engine_cli_bench_or_optional_library() -> None:
    """A script that only makes HTTP calls pays for none of them: they load on first use."""
    heavy = (
        "sqlite3", "fcntl", "difflib", "session_presets.background", "session_presets.cli", "session_presets.bench",
        "session_presets.otel", "session_presets.testing", "trustme", "truststore", "opentelemetry",
        "redis", "session_presets._coordination",
    )
    # Only what the import itself adds: under --cov, coverage's subprocess patch starts
    # every child with sqlite3 (its data file) already loaded.
    script = (
        f"import sys; before = set(sys.modules); import session_presets; "
        f"print([m for m in {heavy!r} if m in sys.modules and m not in before])"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "[]"


def test_error_hierarchy() -> None:
    """Errors subclass the library base and the requests exception callers already catch."""
    assert issubclass(sp.UnknownPresetError, sp.ConfigError)
    assert issubclass(sp.UnknownPresetError, KeyError)
    assert issubclass(sp.ConfigError, sp.SessionPresetsError)
    assert issubclass(sp.SessionInvalidatedError, sp.SessionPresetsError)
    assert issubclass(sp.SessionInvalidatedError, requests.RequestException)
    assert issubclass(sp.TotalTimeoutError, requests.Timeout)
    assert issubclass(sp.BodyReadTimeoutError, requests.ReadTimeout)
    assert issubclass(sp.BodyReadTimeoutError, requests.ConnectionError)
    assert issubclass(sp.IdentifierInUseError, sp.TransferError)
    assert issubclass(sp.DestinationInUseError, sp.TransferError)
    assert issubclass(sp.DiskFullError, sp.TransferError)
    assert issubclass(sp.InvalidationTimeoutError, TimeoutError)
    for refusal in (sp.CircuitOpenError, sp.RateLimitedError):
        assert issubclass(refusal, sp.SessionPresetsError)
        assert issubclass(refusal, requests.ConnectionError)
    for name in sp.__all__:  # every public exception and warning lives in one module
        value = getattr(sp, name)
        if isinstance(value, type) and issubclass(value, (BaseException, Warning)):
            assert value.__module__ == "session_presets._errors", name
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
