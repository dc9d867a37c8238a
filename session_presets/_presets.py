"""Built-in presets, user presets and their resolution (code, environment, overrides).

A preset is resolved in layers, lowest first: built-in preset, base preset,
``register_preset`` fields, ``SESSION_PRESETS_<FIELD>``,
``SESSION_PRESETS_<PRESET>_<FIELD>``, then factory keyword overrides.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Mapping
from typing import Any, Final

from . import _process
from ._config import BUILTIN, BreakerSpec, PresetConfig
from ._env import ambiguity, apply_environment
from ._errors import ConfigError, UnknownPresetError

__all__ = [
    "BUILTIN_PRESETS",
    "get_preset",
    "preset_names",
    "register_preset",
    "resolve",
]

_DAY: Final = 86400.0

#: The three URLSession-like configurations, and ``resilient`` (.NET's standard resilience handler).
BUILTIN_PRESETS: Final[Mapping[str, PresetConfig]] = types.MappingProxyType(
    {
        "default": PresetConfig(name="default"),
        "ephemeral": PresetConfig(
            name="ephemeral", pool_connections=4, pool_maxsize=4, tls_session_cache="private"
        ),
        "background": PresetConfig(
            name="background",
            connect_timeout=30.0,
            read_timeout=60.0,
            total_timeout=7 * _DAY,
            retries=None,
            backoff_factor=1.0,
            backoff_max=300.0,
            pool_connections=4,
            pool_maxsize=4,
        ),
        # .NET's AddStandardResilienceHandler, adapted (docs/resilience.md): its rate limiter is a
        # concurrency limiter of 1000 permits (max_in_flight), total 30 s, 3 retries with
        # exponential back-off and jitter, an attempt timeout of 10 s (connect and read here),
        # and a breaker at 10% failures over 30 s once 100 calls were made, open for 5 s.
        "resilient": PresetConfig(
            name="resilient",
            connect_timeout=10.0,
            read_timeout=10.0,
            total_timeout=30.0,
            retries=3,
            max_in_flight=1000,
            circuit_breaker=BreakerSpec(),
        ),
    }
)

#: The field defaults every built-in preset starts from.
_PLAIN: Final = PresetConfig()

_lock = _process.fork_safe_lock()
#: name -> (base name, fields given in code)
_registered: dict[str, tuple[str, Mapping[str, Any]]] = {}


def preset_names() -> list[str]:
    """Return every known preset name, built-in first, then registered, each sorted."""
    return sorted(BUILTIN_PRESETS) + sorted(_registered)


def _unknown(name: object) -> UnknownPresetError:
    import difflib  # only for a wrong name: every import of the package would pay for it

    known = preset_names()
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known presets: {', '.join(known)}"
    return UnknownPresetError(f"unknown preset {name!r}{hint}")


def _code_layers(name: str) -> PresetConfig:
    """Resolve built-in, base and code layers of ``name`` (no environment)."""
    builtin = BUILTIN_PRESETS.get(name)
    if builtin is not None:
        return builtin
    entry = _registered.get(name)
    if entry is None:
        raise _unknown(name)
    base_name, fields = entry
    base = _code_layers(base_name)
    rebased = dataclasses.replace(base, name=name, _origins=_inherited_origins(base_name, base))
    return rebased._with(fields, origin="code")


def _inherited_origins(base_name: str, base: PresetConfig) -> dict[str, str]:
    """Origins of the values a derived preset takes from ``base``.

    A value is "from base preset X" only when X (or a preset X derives from)
    really set it; a value X never set is still the built-in default.
    """
    label = f"base preset {base_name!r}"
    origins: dict[str, str] = {}
    for field in PresetConfig.field_names():
        origin = base.origin(field)
        if origin == "code":
            origins[field] = label
        elif origin != BUILTIN:
            origins[field] = origin  # set further up the chain: say by whom
        elif base_name in BUILTIN_PRESETS and getattr(base, field) != getattr(_PLAIN, field):
            origins[field] = label  # a built-in preset's own value, such as background's 7 days
    return origins


def resolve(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> PresetConfig:
    """Return the effective configuration of ``name``: code, environment, then overrides.

    Raises:
        UnknownPresetError: no preset has that name.
        ConfigError: a field, override or environment variable is invalid.
    """
    if not isinstance(name, str):
        raise _unknown(name)
    config = _code_layers(name)
    config = apply_environment(
        config, os.environ if environ is None else environ, preset_names=preset_names()
    )
    if overrides:
        config = config.replace(**overrides)
    return config


def get_preset(name: str) -> PresetConfig:
    """Return the effective configuration of preset ``name`` (code + environment).

    Raises:
        UnknownPresetError: no preset has that name.
        ConfigError: an environment variable is invalid; every bad one is listed.
    """
    return resolve(name)


def register_preset(name: str, *, base: str = "default", **fields: Any) -> PresetConfig:
    """Define preset ``name`` from ``base`` with ``fields`` changed; return its effective config.

    Raises:
        ConfigError: the name is taken or would make an environment variable
            ambiguous, or a field is invalid.
        UnknownPresetError: ``base`` is not a known preset.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"preset name {name!r} is invalid: expected a non-empty string")
    with _lock:
        if name in BUILTIN_PRESETS or name in _registered:
            raise ConfigError(f"preset {name!r} is already defined; choose another name")
        problem = ambiguity(name, preset_names())
        if problem is not None:
            raise ConfigError(problem)
        _code_layers(base)._with(fields, origin="code")  # validate before storing
        _registered[name] = (base, types.MappingProxyType(dict(fields)))
    return resolve(name)


def _clear_registered() -> None:
    with _lock:
        _registered.clear()


_process.on_reset(_clear_registered, order=_process.ORDER_PRESETS)
