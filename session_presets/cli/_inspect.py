"""``presets`` and ``doctor``: what the presets resolve to, and what a bug report needs."""

from __future__ import annotations

import argparse
import json
from typing import Any, Final

from .._config import PresetConfig
from .._diagnostics import diagnostics
from .._env import collected_error
from .._errors import ConfigError
from .._presets import get_preset, preset_names
from ._base import EXIT_OK, format_duration

#: Preset fields that are durations, shown as 20s, 5m, 7d.
_DURATION_FIELDS: Final = frozenset(
    {"connect_timeout", "read_timeout", "total_timeout", "backoff_factor", "backoff_max", "max_connection_age"}
)


def _platform_state_dir() -> str:
    try:
        from ..background.lockfile import default_state_dir
    except ImportError:  # pragma: no cover - the background engine moved it
        return "(the platform state directory)"
    return default_state_dir()


def _shown(field: str, value: Any) -> str:
    if field == "state_dir" and value is None:
        return _platform_state_dir()
    if field in _DURATION_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_duration(float(value))
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(str(item) for item in value) if value else "(empty)"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _effective_presets() -> dict[str, PresetConfig]:
    """Resolve every preset; bad variables of all presets are reported together.

    Raises:
        ConfigError: one or more variables are invalid; ``problems`` lists each once.
    """
    configs: dict[str, PresetConfig] = {}
    problems: list[str] = []
    for name in preset_names():
        try:
            configs[name] = get_preset(name)
        except ConfigError as exc:
            problems.extend(problem for problem in exc.problems if problem not in problems)
    if problems:
        raise collected_error(problems)
    return configs


def _cmd_presets(args: argparse.Namespace) -> int:
    configs = _effective_presets()
    if args.json:
        out: dict[str, dict[str, Any]] = {}
        for name, config in configs.items():
            values = config.as_dict()
            if values.get("state_dir") is None:
                values["state_dir"] = _platform_state_dir()
            if args.show_origin:
                out[name] = {key: {"value": value, "origin": config.origin(key)} for key, value in values.items()}
            else:
                out[name] = values
        print(json.dumps(out, indent=2))
        return EXIT_OK
    width = max(len(field) for field in PresetConfig.field_names())
    blocks = []
    for name, config in configs.items():
        values = {key: _shown(key, value) for key, value in config.as_dict().items()}
        value_width = max(len(text) for text in values.values())
        lines = [f"[{name}]"]
        for key, text in values.items():
            line = f"  {key.ljust(width)}  {text}"
            if args.show_origin:
                line = f"  {key.ljust(width)}  {text.ljust(value_width)}  ({config.origin(key)})"
            lines.append(line.rstrip())
        blocks.append("\n".join(lines))
    print("\n\n".join(blocks))
    return EXIT_OK


def _cmd_doctor(args: argparse.Namespace) -> int:
    report = diagnostics()
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.format())
    return EXIT_OK


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``presets`` and ``doctor`` to the command's subparsers."""
    presets = sub.add_parser("presets", parents=[common], help="print every preset's effective configuration")
    presets.add_argument("--show-origin", action="store_true", help="say where each value comes from")
    presets.add_argument("--json", action="store_true", help="print JSON")
    presets.set_defaults(run=_cmd_presets)

    doctor = sub.add_parser("doctor", parents=[common],
                            help="print versions, the fast path's state, hooks and environment (for a bug report)")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.set_defaults(run=_cmd_doctor)
