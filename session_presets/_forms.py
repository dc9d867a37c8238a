"""The text forms of preset values: environment text -> value, and value -> the text the environment accepts.

Each ``parse_*`` raises ValueError on text of the wrong form; :mod:`._config` turns
that into a ConfigError naming the field. Rate limits and the circuit breaker's
spec are parsed and shown here too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import ssl
import types
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ._redact import mask_value

__all__ = [
    "FALSE_WORDS",
    "MAX_RATE_PERMITS",
    "NONE_WORDS",
    "TLS_VERSIONS",
    "TRUE_WORDS",
    "BreakerSpec",
    "breaker_from",
    "parse_bool",
    "parse_breaker",
    "parse_client_cert",
    "parse_duration",
    "parse_header_text",
    "parse_json_object",
    "parse_lower_word",
    "parse_number",
    "parse_optional_duration",
    "parse_optional_path",
    "parse_optional_rate",
    "parse_optional_whole",
    "parse_proxies",
    "parse_rate_limit",
    "parse_retries",
    "parse_statuses",
    "parse_tls_version",
    "parse_whole",
    "show_breaker",
    "show_duration",
    "show_plain",
    "show_rate",
    "show_retries",
    "status_set",
]

#: The one table of TLS versions a preset may require, and the ssl constant of each.
TLS_VERSIONS: Final[Mapping[str, ssl.TLSVersion]] = types.MappingProxyType(
    {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
)

#: A decimal number as the environment writes one: digits, with an optional fraction.
_NUMBER = r"(\d+(?:\.\d+)?|\.\d+)"
_DURATION = re.compile(rf"^\s*{_NUMBER}\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
NONE_WORDS: Final = frozenset({"none", "off"})


def parse_duration(text: str, *, allow_none: bool = False) -> float | None:
    """Parse ``20``, ``20s``, ``500ms``, ``2m``, ``1h``, ``7d`` (and ``none``/``off``).

    Raises:
        ValueError: the text is not a duration.
    """
    lowered = text.strip().lower()
    if lowered in NONE_WORDS:
        if allow_none:
            return None
        raise ValueError(f"{text!r} is not a duration")
    match = _DURATION.match(lowered)
    if match is None:
        raise ValueError(f"{text!r} is not a duration")
    return float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]


def parse_number(text: str) -> float:
    """Parse a decimal number without a unit (``256``, ``0.5``), the number part of a duration.

    Raises:
        ValueError: the text is not such a number.
    """
    match = re.fullmatch(rf"\s*{_NUMBER}\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not a number")
    return float(match.group(1))


# -- environment text -> value (each raises ValueError on text of the wrong form) ------------

TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})


def parse_bool(text: str) -> bool:
    """Parse ``1/0/true/false/yes/no/on/off``, case-insensitively.

    Raises:
        ValueError: the text is not a boolean.
    """
    lowered = text.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise ValueError(f"{text!r} is not a boolean")


def parse_optional_duration(text: str) -> float | None:
    return parse_duration(text, allow_none=True)


def parse_whole(text: str) -> int:
    stripped = text.strip()
    if not re.fullmatch(r"\d+", stripped):
        raise ValueError(f"{text!r} is not a whole number")
    return int(stripped)


def parse_retries(text: str) -> int | None:
    if text.strip().lower() == "unlimited":
        return None
    return parse_whole(text)


def parse_statuses(text: str) -> frozenset[int]:
    parts = [part.strip() for part in text.split(",")]
    if not text.strip():
        return frozenset()
    return frozenset(parse_whole(part) for part in parts)


def parse_json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)  # its JSONDecodeError is a ValueError
    if not isinstance(value, dict):
        raise ValueError(f"{text!r} is not a JSON object")
    return value


def parse_proxies(text: str) -> str | dict[str, Any]:
    stripped = text.strip()
    if stripped.lower() in ("env", "none"):
        return stripped.lower()
    return parse_json_object(stripped)


def parse_optional_path(text: str) -> str | None:
    return None if text.strip().lower() == "none" or not text.strip() else text


def parse_client_cert(text: str) -> str | tuple[str, str] | None:
    stripped = text.strip()
    if stripped.startswith("["):
        value = json.loads(stripped)
        if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{text!r} is not a JSON list [cert, key]")
        return (value[0], value[1])
    return parse_optional_path(text)


def parse_header_text(text: str) -> str:
    # Spaces and tabs around the value go, as a shell's quoting leaves them; a CR or LF
    # stays for the check to refuse, leading or trailing as much as embedded.
    return text.strip(" \t")


def parse_lower_word(text: str) -> str:
    return text.strip().lower()


def parse_tls_version(text: str) -> str:
    lowered = text.strip().lower().replace("tlsv", "").replace("tls", "")
    return next((name for name in TLS_VERSIONS if name.endswith(f"v{lowered}")), text.strip())


# -- value -> text, in the form the environment accepts -------------------------------------


def show_plain(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, frozenset):
        return ",".join(str(item) for item in sorted(value))
    if isinstance(value, Mapping):
        return json.dumps(mask_value(value))
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return str(value)


def show_duration(value: float | None) -> str:
    if value is None:
        return "none"
    # Seconds up to an hour read best in a timeout table (60s, 300s); days and hours beyond.
    for unit, seconds in (("d", 86400.0), ("h", 3600.0)):
        if value >= seconds and value % seconds == 0:
            return f"{value / seconds:g}{unit}"
    return f"{value:g}s"


def show_retries(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


# -- resilience: rate limits, breaker, coordination ---------------------------------------

#: Units of a rate limit's period: ``10/s``, ``5000/h``, and a count of them (``100/5m``).
_RATE_UNITS: Final = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$", re.IGNORECASE)
#: The most permits one rate limit may grant per period (a moving window keeps one timestamp each).
MAX_RATE_PERMITS: Final = 1_000_000


def parse_rate_limit(text: str) -> tuple[tuple[int, float], ...]:
    """Parse ``"10/s"``, ``"5000/h"``, ``"100/5m"``, several joined by ``;``, into (permits, period) pairs.

    Raises:
        ValueError: a part is not ``N/unit`` with N from 1 to 1,000,000 and a period > 0.
    """
    limits: list[tuple[int, float]] = []
    for part in text.split(";"):
        match = _RATE.match(part)
        unit = _RATE_UNITS.get(match.group(3).lower()) if match else None
        if match is None or unit is None:
            raise ValueError(f"{part.strip()!r} is not a rate such as 10/s or 5000/h")
        permits = int(match.group(1))
        period = float(match.group(2) or 1) * unit
        if not 1 <= permits <= MAX_RATE_PERMITS or period <= 0:
            raise ValueError(f"{part.strip()!r} is not a rate such as 10/s or 5000/h")
        limits.append((permits, period))
    return tuple(sorted(set(limits), key=lambda item: (item[1], item[0])))


def show_rate(permits: int, period: float) -> str:
    """Return the canonical text of one rate limit: ``10/s``, ``5000/h``, ``100/5m``."""
    for unit, seconds in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if period >= seconds and period % seconds == 0:
            count = period / seconds
            return f"{permits}/{unit}" if count == 1 else f"{permits}/{count:g}{unit}"
    return f"{permits}/{period:g}s"

def parse_optional_rate(text: str) -> str | None:
    return None if text.strip().lower() in NONE_WORDS else text.strip()

def parse_optional_whole(text: str) -> int | None:
    return None if text.strip().lower() in NONE_WORDS else parse_whole(text)

@dataclasses.dataclass(frozen=True, slots=True)
class BreakerSpec:
    """A circuit breaker, as resilience4j and Polly describe one (failure-ratio, sliding time window).

    Attributes:
        failure_ratio: the share of failed calls in the window that opens the breaker (0 < r <= 1).
        sampling_window: seconds over which calls are counted.
        minimum_calls: calls in the window before the ratio is looked at.
        break_duration: seconds the breaker stays open before it lets probes through.
        half_open_probes: calls let through while half-open; all must succeed to close it.
        failure_statuses: response statuses that count as failures (connection errors
            and timeouts always do).
    """

    failure_ratio: float = 0.1
    sampling_window: float = 30.0
    minimum_calls: int = 100
    break_duration: float = 5.0
    half_open_probes: int = 1
    failure_statuses: frozenset[int] = frozenset({429, *range(500, 600)})

    def text(self) -> str:
        """The canonical form, as the environment accepts it."""
        return ",".join(
            (
                f"failure_ratio={self.failure_ratio:g}",
                f"sampling_window={show_duration(self.sampling_window)}",
                f"minimum_calls={self.minimum_calls}",
                f"break_duration={show_duration(self.break_duration)}",
                f"half_open_probes={self.half_open_probes}",
                f"failure_statuses={_show_statuses(self.failure_statuses)}",
            )
        )


def status_set(value: object) -> frozenset[int]:
    """Return ``value`` (an iterable of HTTP status codes from 100 to 599, not a string) as a frozenset.

    Raises:
        ValueError: ``value`` is a string or not iterable, or an item is not such a status.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{value!r} is not a collection of HTTP statuses")
    items = list(value)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or not 100 <= item <= 599:
            raise ValueError(f"{item!r} is not an HTTP status from 100 to 599")
    return frozenset(items)


def _show_statuses(statuses: frozenset[int]) -> str:
    ranges: list[str] = []
    ordered = sorted(statuses)
    start = 0
    while start < len(ordered):
        end = start
        while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
            end += 1
        low, high = ordered[start], ordered[end]
        ranges.append(str(low) if low == high else f"{low}-{high}")
        start = end + 1
    return "|".join(ranges)


def _parse_status_ranges(text: str) -> frozenset[int]:
    statuses: set[int] = set()
    for part in filter(None, (item.strip() for item in text.split("|"))):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if not 100 <= first <= last <= 599:
            raise ValueError(f"{part!r} is not a status or a range such as 429 or 500-599")
        statuses.update(range(first, last + 1))
    return frozenset(statuses)


_BREAKER_KEYS: Final = (
    "failure_ratio", "sampling_window", "minimum_calls", "break_duration", "half_open_probes", "failure_statuses",
)


def parse_breaker(text: str) -> BreakerSpec | None:
    """Parse ``off``, ``on`` (the defaults), or ``key=value,...`` with keys of :class:`BreakerSpec`.

    Raises:
        ValueError: an unknown key, or a value of the wrong form.
    """
    stripped = text.strip()
    if stripped.lower() in NONE_WORDS or stripped.lower() in FALSE_WORDS:
        return None
    if stripped.lower() in TRUE_WORDS or stripped.lower() == "default":
        return BreakerSpec()
    given: dict[str, Any] = {}
    for part in filter(None, (item.strip() for item in stripped.split(","))):
        key, equals, raw = part.partition("=")
        key = key.strip()
        if not equals or key not in _BREAKER_KEYS:
            raise ValueError(f"{part!r} is not one of {', '.join(k + '=...' for k in _BREAKER_KEYS)}")
        given[key] = raw.strip()
    return breaker_from(given)


def breaker_from(given: Mapping[str, Any]) -> BreakerSpec:
    """Build a BreakerSpec from text or values by key; raises ValueError naming the key."""
    values: dict[str, Any] = {}
    for key, raw in given.items():
        try:
            if key == "failure_ratio":
                number = float(raw) if not isinstance(raw, bool) else math.nan
                if not 0 < number <= 1:
                    raise ValueError
                values[key] = number
            elif key in ("sampling_window", "break_duration"):
                seconds = parse_duration(raw) if isinstance(raw, str) else raw
                if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < 1e9:
                    raise ValueError
                values[key] = float(seconds)
            elif key in ("minimum_calls", "half_open_probes"):
                count = parse_whole(raw) if isinstance(raw, str) else raw
                if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_RATE_PERMITS:
                    raise ValueError
                values[key] = count
            elif key == "failure_statuses":
                values[key] = (
                    _parse_status_ranges(raw) if isinstance(raw, str) else status_set(raw)
                )
            else:
                raise KeyError(key)
        except KeyError:
            raise ValueError(f"{key!r} is not one of {', '.join(_BREAKER_KEYS)}") from None
        except (ValueError, TypeError):
            raise ValueError(f"{key}={raw!r} is not valid") from None
    return BreakerSpec(**values)

def show_breaker(value: BreakerSpec | None) -> str:
    return "none" if value is None else value.text()
