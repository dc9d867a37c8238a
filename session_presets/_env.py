"""Environment binding: ``SESSION_PRESETS_*`` variables, value parsing, provenance.

The environment is read when a session is built, never on a request.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Collection, Mapping
from typing import Any, Final

from . import _process, _warn
from ._config import FIELD_FORMS, FIELD_PARSERS, PresetConfig, parse_bool, parse_duration, validate_field
from ._errors import ConfigError, UnknownVariableWarning
from ._redact import mask_text
from ._upstream import FAST_PATH_VARIABLE

__all__ = [
    "CA_BUNDLE_VARIABLES",
    "MAX_ENV_HEADER_VALUE",
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

#: Seconds the detached-transfer agent stays up with nothing to do (background/agent.py).
AGENT_IDLE_VARIABLE: Final = "SESSION_PRESETS_AGENT_IDLE"

#: Variables with this prefix that are not preset fields (FAST_PATH_VARIABLE: docs/fast-path.md).
_EXTRA_VARIABLES: Final = frozenset({STRICT_REUSE_VARIABLE, AGENT_IDLE_VARIABLE, FAST_PATH_VARIABLE})

_warned_lock = _process.fork_safe_lock()
_warned: set[str] = set()


def variable_stem(preset: str) -> str:
    """Return the upper-cased variable stem of a preset name (``my-api`` → ``MY_API``)."""
    return re.sub(r"[-.]", "_", preset).upper()


def variable_name(field: str, preset: str | None = None) -> str:
    """Return the variable that sets ``field`` for every preset, or for ``preset``."""
    if preset is None:
        return f"{PREFIX}{field.upper()}"
    return f"{PREFIX}{variable_stem(preset)}_{field.upper()}"


#: The longest header value (User-Agent, or one of ``headers``) a variable may set, in
#: characters: what common servers accept in one header field (Apache: 8190 bytes).
MAX_ENV_HEADER_VALUE: Final = 8190
#: The longest value an error message shows whole.
_SHOWN_TEXT: Final = 200


def _problem(variable: str, text: str, field: str, detail: str | None = None) -> str:
    reason = detail if detail is not None else f"expected {FIELD_FORMS[field]}"
    shown = mask_text(text)
    if len(shown) > _SHOWN_TEXT:
        return f"{variable}={shown[:_SHOWN_TEXT // 2]!r}... ({len(text)} characters) is invalid: {reason}"
    return f"{variable}={shown!r} is invalid: {reason}"


def _oversized_header(field: str, value: Any) -> str | None:
    """Say which header value set by the environment is over MAX_ENV_HEADER_VALUE, or None."""
    if field == "user_agent":
        values = {"User-Agent": value}
    elif field == "headers":
        values = dict(value)
    else:
        return None
    for name, text in values.items():
        if len(text) > MAX_ENV_HEADER_VALUE:
            return (
                f"the {name} header value is {len(text)} characters long; a variable may set at most "
                f"{MAX_ENV_HEADER_VALUE} (what common servers accept in one header field)"
            )
    return None


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
                value = FIELD_PARSERS[field](text)
            except ValueError:
                problems.append(_problem(variable, text, field))
                continue
            try:
                value = validate_field(field, value)
            except ConfigError as exc:
                problems.append(_problem(variable, text, field, exc.reason))
                continue
            oversized = _oversized_header(field, value)
            if oversized is not None:
                problems.append(_problem(variable, text, field, oversized))
                continue
            changes[field] = value
            origins[field] = f"env {variable}"
    if problems:
        raise collected_error(problems)
    try:
        return config._with(changes, origin=origins)
    except ConfigError as exc:
        raise ConfigError(f"environment: {exc}") from None


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
    import difflib  # only when an unknown variable is seen: every import of the package would pay for it

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
