"""Environment binding: ``SESSION_PRESETS_*`` variables, value parsing, provenance.

The environment is read when a session is built, never on a request.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import types
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from . import _process, _warn
from .config import FIELD_FORMS, PresetConfig, mask_url, parse_duration, validate_field
from .errors import ConfigError, UnknownVariableWarning

__all__ = [
    "CA_BUNDLE_VARIABLES",
    "PREFIX",
    "STRICT_REUSE_VARIABLE",
    "apply_environment",
    "collected_error",
    "parse_bool",
    "parse_duration",
    "variable_name",
    "variable_stem",
]

#: Every variable of this library starts with this.
PREFIX: Final = "SESSION_PRESETS_"

#: Turns SessionReuseWarning into an error when true.
STRICT_REUSE_VARIABLE: Final = "SESSION_PRESETS_STRICT_REUSE"

#: Variables that set a CA bundle for requests; honoured below a preset's own ca_bundle.
CA_BUNDLE_VARIABLES: Final = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")

#: Variables with this prefix that are not preset fields.
_EXTRA_VARIABLES: Final = frozenset({STRICT_REUSE_VARIABLE})

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

_warned_lock = _process.fork_safe_lock()
_warned: set[str] = set()


class _BadValue(ValueError):
    """A text value does not have the accepted form."""


def variable_stem(preset: str) -> str:
    """Return the upper-cased variable stem of a preset name (``my-api`` → ``MY_API``)."""
    return re.sub(r"[-.]", "_", preset).upper()


def variable_name(field: str, preset: str | None = None) -> str:
    """Return the variable that sets ``field`` for every preset, or for ``preset``."""
    if preset is None:
        return f"{PREFIX}{field.upper()}"
    return f"{PREFIX}{variable_stem(preset)}_{field.upper()}"


def parse_bool(text: str) -> bool:
    """Parse ``1/0/true/false/yes/no/on/off``, case-insensitively.

    Raises:
        ValueError: the text is not a boolean.
    """
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _BadValue(text)


def _parse_whole(text: str) -> int:
    stripped = text.strip()
    if not re.fullmatch(r"\d+", stripped):
        raise _BadValue(text)
    return int(stripped)


def _parse_retries(text: str) -> int | None:
    if text.strip().lower() == "unlimited":
        return None
    return _parse_whole(text)


def _parse_statuses(text: str) -> frozenset[int]:
    parts = [part.strip() for part in text.split(",")]
    if not text.strip():
        return frozenset()
    return frozenset(_parse_whole(part) for part in parts)


def _parse_json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise _BadValue(text) from None
    if not isinstance(value, dict):
        raise _BadValue(text)
    return value


def _parse_proxies(text: str) -> str | dict[str, Any]:
    stripped = text.strip()
    if stripped.lower() in ("env", "none"):
        return stripped.lower()
    return _parse_json_object(stripped)


def _parse_optional_path(text: str) -> str | None:
    return None if text.strip().lower() == "none" or not text.strip() else text


def _parse_client_cert(text: str) -> str | tuple[str, str] | None:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except ValueError:
            raise _BadValue(text) from None
        if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
            raise _BadValue(text)
        return (value[0], value[1])
    return _parse_optional_path(text)


def _word(text: str) -> str:
    return text.strip()


def _lower_word(text: str) -> str:
    return text.strip().lower()


def _tls_version(text: str) -> str:
    lowered = text.strip().lower().replace("tlsv", "").replace("tls", "")
    return {"1.2": "TLSv1.2", "1.3": "TLSv1.3"}.get(lowered, text.strip())


_PARSERS: Final[Mapping[str, Callable[[str], Any]]] = {
    "connect_timeout": parse_duration,
    "read_timeout": parse_duration,
    "total_timeout": lambda text: parse_duration(text, allow_none=True),
    "retries": _parse_retries,
    "backoff_factor": parse_duration,
    "backoff_max": parse_duration,
    "retry_statuses": _parse_statuses,
    "pool_connections": _parse_whole,
    "pool_maxsize": _parse_whole,
    "max_connection_age": lambda text: parse_duration(text, allow_none=True),
    "cache_policy": _lower_word,
    "cookies": _lower_word,
    "cookie_file": _parse_optional_path,
    "store_credentials": parse_bool,
    "headers": _parse_json_object,
    "user_agent": _word,
    "verify": parse_bool,
    "ca_bundle": _parse_optional_path,
    "client_cert": _parse_client_cert,
    "trust_store": _lower_word,
    "tls_min_version": _tls_version,
    "proxies": _parse_proxies,
    "max_redirects": _parse_whole,
    "allow_insecure_redirects": parse_bool,
    "max_concurrent_transfers": _parse_whole,
    "state_dir": _parse_optional_path,
}


def _problem(variable: str, text: str, field: str, detail: str | None = None) -> str:
    reason = detail if detail is not None else f"expected {FIELD_FORMS[field]}"
    return f"{variable}={mask_url(text)!r} is invalid: {reason}"


def known_variables(preset_names: Collection[str]) -> Mapping[str, tuple[str | None, str]]:
    """Map every valid variable name to its (preset or None, field)."""
    return _known_variables(tuple(preset_names))


@functools.lru_cache(maxsize=8)
def _known_variables(preset_names: tuple[str, ...]) -> Mapping[str, tuple[str | None, str]]:
    fields = PresetConfig.field_names()
    table: dict[str, tuple[str | None, str]] = {variable_name(f): (None, f) for f in fields}
    for preset in preset_names:
        for field in fields:
            table[variable_name(field, preset)] = (preset, field)
    return types.MappingProxyType(table)


def ambiguity(new_name: str, existing: Collection[str]) -> str | None:
    """Explain why a preset called ``new_name`` would make a variable ambiguous, or None."""
    stem = variable_stem(new_name)
    if not re.fullmatch(r"[A-Z0-9_]+", stem) or stem.startswith("_") or stem.endswith("_"):
        return (
            f"preset name {new_name!r} is invalid: use letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )
    reserved = {field.upper() for field in PresetConfig.field_names()} | {
        name.removeprefix(PREFIX) for name in _EXTRA_VARIABLES
    }
    if stem in reserved:
        return (
            f"preset name {new_name!r} is refused: {PREFIX}{stem} is already a variable of its own, "
            "so its variables would be ambiguous"
        )
    taken = known_variables(existing)
    for field in PresetConfig.field_names():
        candidate = variable_name(field, new_name)
        if candidate in taken or candidate in _EXTRA_VARIABLES:
            owner = taken.get(candidate)
            what = (
                "the global variable" if owner is None or owner[0] is None else f"preset {owner[0]!r}'s variable"
            )
            return (
                f"preset name {new_name!r} is refused: its variable {candidate} would collide with "
                f"{what} of the same name"
            )
    for preset in existing:
        if variable_stem(preset) == stem:
            return f"preset name {new_name!r} is refused: it has the same variables as preset {preset!r}"
    return None


def apply_environment(
    config: PresetConfig,
    environ: Mapping[str, str],
    *,
    preset_names: Collection[str],
) -> PresetConfig:
    """Apply ``SESSION_PRESETS_<FIELD>`` then ``SESSION_PRESETS_<PRESET>_<FIELD>`` to ``config``.

    Unknown ``SESSION_PRESETS_*`` variables warn once each, with a suggestion.

    Raises:
        ConfigError: one or more variables are invalid; every one is listed.
    """
    table = known_variables(preset_names)
    problems: list[str] = []
    changes: dict[str, Any] = {}
    origins: dict[str, str] = {}
    _warn_unknown(environ, table)

    if config.ca_bundle is None:
        for variable in CA_BUNDLE_VARIABLES:
            text = environ.get(variable)
            if text:
                changes["ca_bundle"] = text
                origins["ca_bundle"] = f"env {variable}"
                break

    for preset in (None, config.name):
        for field in PresetConfig.field_names():
            variable = variable_name(field, preset)
            text = environ.get(variable)
            if text is None:
                continue
            try:
                value = _PARSERS[field](text)
            except ValueError:
                problems.append(_problem(variable, text, field))
                continue
            try:
                value = validate_field(field, value)
            except ConfigError as exc:
                problems.append(_problem(variable, text, field, _reason(exc)))
                continue
            changes[field] = value
            origins[field] = f"env {variable}"
    if problems:
        raise collected_error(problems)
    try:
        return config._with(changes, origin=origins)
    except ConfigError as exc:
        raise ConfigError(f"environment: {exc}") from None


def _reason(exc: ConfigError) -> str:
    text = str(exc)
    return text.split(" is invalid: ", 1)[1] if " is invalid: " in text else text


def collected_error(problems: list[str]) -> ConfigError:
    """Return one ConfigError listing every problem line (the message alone for just one)."""
    if len(problems) == 1:
        return ConfigError(problems[0], problems=problems)
    listing = "\n".join(f"  - {line}" for line in problems)
    return ConfigError(f"{len(problems)} invalid environment variables:\n{listing}", problems=problems)


def _warn_unknown(environ: Mapping[str, str], table: Mapping[str, tuple[str | None, str]]) -> None:
    for variable in environ:
        if not variable.startswith(PREFIX) or variable in table or variable in _EXTRA_VARIABLES:
            continue
        with _warned_lock:
            if variable in _warned:
                continue
        verdict = _unknown_verdict(variable, table)
        if verdict is None:
            continue  # may belong to a preset registered later: looked at again on the next build
        with _warned_lock:
            if variable in _warned:
                continue
            _warned.add(variable)
        _warn.warn(verdict, UnknownVariableWarning)


#: How close an unknown preset part must be to a known preset's to be taken for a typo of it.
_PRESET_TYPO_CUTOFF: Final = 0.8


def _unknown_verdict(variable: str, table: Mapping[str, tuple[str | None, str]]) -> str | None:
    """Return the warning for an unknown variable, or None while it may name a later preset.

    ``SESSION_PRESETS_<STEM>_<FIELD>`` with a known field and an unknown stem is taken for a
    preset not registered yet, unless the stem is a near miss of a known preset's. A
    suggestion never crosses scopes: a per-preset variable is never told to use the global
    one, which would apply its value to every preset.
    """
    rest = variable.removeprefix(PREFIX)
    presets = {variable_stem(p): p for p, _ in table.values() if p is not None}
    fields = {f.upper(): f for f in PresetConfig.field_names()}
    for upper in sorted(fields, key=len, reverse=True):
        stem = rest.removesuffix(f"_{upper}")
        if stem != rest and stem:
            # A typo rarely adds or drops a "_": PAYMENTS_EU is a preset of its own, not PAYMENTS.
            alike = [known for known in presets if known.count("_") == stem.count("_")]
            close = difflib.get_close_matches(stem, alike, n=1, cutoff=_PRESET_TYPO_CUTOFF)
            if not close:
                return None
            return _unknown_message(variable, variable_name(fields[upper], presets[close[0]]))
    for stem in sorted(presets, key=len, reverse=True):
        if rest.startswith(f"{stem}_"):
            field_part = rest.removeprefix(f"{stem}_")
            close = difflib.get_close_matches(field_part, fields, n=1, cutoff=0.6)
            return _unknown_message(variable, variable_name(fields[close[0]], presets[stem]) if close else None)
    # Compared without the common prefix, which would make every pair look alike.
    globals_ = {name.removeprefix(PREFIX): name for name, (preset, _) in table.items() if preset is None}
    globals_.update({name.removeprefix(PREFIX): name for name in _EXTRA_VARIABLES})
    close = difflib.get_close_matches(rest, globals_, n=1, cutoff=0.6)
    return _unknown_message(variable, globals_[close[0]] if close else None)


def _unknown_message(variable: str, suggestion: str | None) -> str:
    hint = f"; did you mean {suggestion}?" if suggestion else ""
    return f"{variable} matches no preset and field and is ignored{hint}"


def _clear_warnings() -> None:
    with _warned_lock:
        _warned.clear()


_process.on_reset(_clear_warnings, order=_process.ORDER_ENV)
