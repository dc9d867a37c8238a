"""PresetConfig: the frozen, validated description of one kind of HTTP work."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import ssl
import types
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Final, Literal

from requests.__version__ import __version__ as _requests_version
from requests.utils import prepend_scheme_if_needed
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from ._errors import ConfigError
from ._redact import AUTHORIZATION_HEADERS, mask_url, mask_value
from ._version import __version__

__all__ = [
    "BUILTIN",
    "BreakerSpec",
    "DEFAULT_RETRY_STATUSES",
    "DEFAULT_USER_AGENT",
    "FIELD_FORMS",
    "FIELD_PARSERS",
    "FIELD_SPECS",
    "FieldSpec",
    "OVERRIDE",
    "PROXY_SCHEMES",
    "PresetConfig",
    "TLS_VERSIONS",
    "check_header",
    "parse_bool",
    "parse_breaker",
    "parse_duration",
    "parse_number",
    "parse_rate_limit",
    "parse_whole",
    "show_rate",
    "validate_field",
]

#: Statuses retried by default; Retry-After is honoured for each of them.
DEFAULT_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})

#: The User-Agent every preset sends unless told otherwise.
DEFAULT_USER_AGENT: Final = f"session-presets/{__version__} python-requests/{_requests_version}"

#: Headers a preset refuses in ``headers``: credentials never live in a preset.
FORBIDDEN_HEADERS: Final = AUTHORIZATION_HEADERS

#: Origin label of a value that no layer changed.
BUILTIN: Final = "built-in"

#: Origin label of a factory keyword override.
OVERRIDE: Final = "override"

CachePolicy = Literal["reload", "protocol"]
CookiePolicy = Literal["memory", "none", "file"]
TrustStore = Literal["certifi", "system"]

#: The one table of TLS versions a preset may require, and the ssl constant of each.
TLS_VERSIONS: Final[Mapping[str, ssl.TLSVersion]] = types.MappingProxyType(
    {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
)
#: Proxy URL schemes urllib3 can use (socks* need the PySocks extra of requests).
PROXY_SCHEMES: Final = frozenset({"http", "https", "socks4", "socks4a", "socks5", "socks5h"})
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _shown(value: object) -> str:
    try:
        return repr(mask_value(value))
    except ValueError:  # an int with more digits than int->str conversion allows
        return "<a number too large to show>"


def _invalid(field: str, value: object, reason: str | None = None, *, label: str | None = None) -> ConfigError:
    """Return the ConfigError for ``value`` refused in ``field`` (shown as ``label``, e.g. ``headers['X']``)."""
    spec = FIELD_SPECS.get(field)
    form = spec.form if spec is not None else None
    why = reason if reason is not None else f"expected {form}"
    shown_as = label if label is not None else field
    return ConfigError(
        f"{shown_as}={_shown(value)} is invalid: {why}",
        field=shown_as,
        value=mask_value(value),
        expected=form,
        reason=why,
    )


#: A decimal number as the environment writes one: digits, with an optional fraction.
_NUMBER = r"(\d+(?:\.\d+)?|\.\d+)"
_DURATION = re.compile(rf"^\s*{_NUMBER}\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NONE: Final = frozenset({"none", "off"})


def parse_duration(text: str, *, allow_none: bool = False) -> float | None:
    """Parse ``20``, ``20s``, ``500ms``, ``2m``, ``1h``, ``7d`` (and ``none``/``off``).

    Raises:
        ValueError: the text is not a duration.
    """
    lowered = text.strip().lower()
    if lowered in _NONE:
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


def _duration(field: str, value: object, *, allow_none: bool = False, allow_zero: bool = False) -> float | None:
    if isinstance(value, str):
        # Code accepts the forms the environment accepts: read_timeout="5s".
        try:
            value = parse_duration(value, allow_none=allow_none)
        except ValueError:
            raise _invalid(field, value) from None
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(field, value)
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        raise _invalid(field, value) from None
    if math.isnan(number) or math.isinf(number) or number < 0 or (number == 0 and not allow_zero):
        raise _invalid(field, value)
    return number


#: The longest connect or read timeout that every platform's sockets accept (about 31 years).
_MAX_SOCKET_TIMEOUT: Final = 1e9


def _socket_timeout(field: str, value: object) -> float | None:
    number = _duration(field, value)
    if number is not None and number > _MAX_SOCKET_TIMEOUT:
        raise _invalid(
            field,
            value,
            f"longer than a socket timeout can be (at most {_MAX_SOCKET_TIMEOUT:g}s); "
            f"expected {FIELD_SPECS[field].form}",
        )
    return number


#: The most pools or pooled connections a preset may ask for: urllib3 allocates
#: a queue slot for every pooled connection up front.
_MAX_POOL: Final = 1024


def _whole(field: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        raise _invalid(field, value)
    return value


def _flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _invalid(field, value)
    return value


def _choice(field: str, value: object, choices: Iterable[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _invalid(field, value)
    return value


def _form_note(field: str) -> str:
    spec = FIELD_SPECS.get(field)
    return f" ({spec.form})" if spec is not None else ""


def _clean_text(field: str, value: object, *, what: str = "") -> str:
    if not isinstance(value, str) or "\r" in value or "\n" in value or "\x00" in value:
        raise _invalid(field, value, f"CR, LF and NUL are not allowed{_form_note(field)}", label=f"{field}{what}")
    return value


def _header_value(field: str, value: object, *, what: str = "") -> str:
    # What requests and http.client would refuse on every request is refused here, once.
    text = _clean_text(field, value, what=what)
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise _invalid(
            field, text, f"header values must be Latin-1 text{_form_note(field)}", label=f"{field}{what}"
        ) from None
    if text[:1].isspace():
        raise _invalid(field, text, f"leading whitespace is not allowed{_form_note(field)}", label=f"{field}{what}")
    return text


def _path(field: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _invalid(field, value)
    return value


def check_header(name: object, value: object, *, field: str = "headers") -> tuple[str, str]:
    """Return ``(name, value)`` if requests and http.client would send them; the one header check.

    Presets, background transfers and the CLI's ``-H`` all validate headers here.
    ``field`` names the source in the error (a preset field adds its accepted form).

    Raises:
        ConfigError: the name is not an HTTP token, or the value holds CR, LF or NUL,
            is not Latin-1 text, or starts with whitespace.
    """
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        reason = "expected an HTTP token (letters, digits, '-')"
        raise ConfigError(
            f"{field}: header name {name!r} is invalid: {reason}",
            field=field,
            value=name,
            expected="an HTTP token (letters, digits, '-')",
            reason=reason,
        )
    return name, _header_value(field, value, what=f"[{name!r}]")


def _headers(field: str, value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise _invalid(field, value)
    clean: dict[str, str] = {}
    for name, text in value.items():
        check_header(name, "", field=field)
        if name.lower() in FORBIDDEN_HEADERS:
            raise ConfigError(
                f"headers: {name!r} is refused in a preset: credentials never live in configuration; "
                "pass auth= to default_session(), ephemeral_session() or background_session(), "
                "or to the request (session.get(url, auth=...))",
                field=field,
                value=name,
                expected=FIELD_SPECS[field].form,
            )
        clean[name] = check_header(name, text, field=field)[1]
    return types.MappingProxyType(clean)


def _proxies(field: str, value: object) -> str | Mapping[str, str]:
    if isinstance(value, str):
        return _choice(field, value, ("env", "none"))
    if not isinstance(value, Mapping):
        raise _invalid(field, value)
    clean: dict[str, str] = {}
    for key, url in value.items():
        if not isinstance(key, str) or not key:
            raise _invalid(field, value)
        clean[key] = _proxy_url(key, _clean_text(field, url, what=f"[{key!r}]"))
    return types.MappingProxyType(clean)


def _proxy_url(key: str, url: str) -> str:
    # Checked as requests' adapter reads it on every request (scheme-less means http), so a
    # proxy that would make every request fail with InvalidURL is refused once, here.
    try:
        parsed = parse_url(prepend_scheme_if_needed(url, "http"))
    except (LocationParseError, ValueError, TypeError):
        # TypeError: requests' prepend_scheme_if_needed on an authority with no host ("0@").
        parsed = None
    if (
        parsed is None
        or not parsed.host
        or (parsed.scheme or "").lower() not in PROXY_SCHEMES
        # Checked here, not left to the parser: urllib3 before 2.8 parses "not a url" as a host.
        or not (parsed.host.startswith("[") or _REG_NAME.fullmatch(parsed.host))
    ):
        reason = f"expected {FIELD_SPECS['proxies'].form}"
        if "@" in url:
            reason += "; a '@', '#', '/', '?' or space in a user name or password must be percent-encoded"
        raise _invalid("proxies", url, reason, label=f"proxies[{key!r}]")
    return url


#: A host name as RFC 3986 spells one (``reg-name``): no spaces, no control characters.
_REG_NAME: Final = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")


def _statuses(field: str, value: object) -> frozenset[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise _invalid(field, value)
    items = list(value)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or not 100 <= item <= 599:
            raise _invalid(field, value)
    return frozenset(items)


def _client_cert(field: str, value: object) -> str | tuple[str, str] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise _invalid(field, value)
        cert, key = (_path(field, item) for item in value)
        if cert is None or key is None:
            raise _invalid(field, value)
        return (cert, key)
    return _path(field, value)


def _user_agent(field: str, value: object) -> str:
    text = _header_value(field, value)
    if not text:
        raise _invalid(field, value)
    return text


def _retries(field: str, value: object) -> int | None:
    return None if value is None else _whole(field, value, minimum=0)


# -- environment text -> value (each raises ValueError on text of the wrong form) ------------

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


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
    raise ValueError(f"{text!r} is not a boolean")


def _parse_optional_duration(text: str) -> float | None:
    return parse_duration(text, allow_none=True)


def parse_whole(text: str) -> int:
    """Parse a whole number written in decimal digits (``0``, ``10``).

    Raises:
        ValueError: the text is not a whole number.
    """
    stripped = text.strip()
    if not re.fullmatch(r"\d+", stripped):
        raise ValueError(f"{text!r} is not a whole number")
    return int(stripped)


def _parse_retries(text: str) -> int | None:
    if text.strip().lower() == "unlimited":
        return None
    return parse_whole(text)


def _parse_statuses(text: str) -> frozenset[int]:
    parts = [part.strip() for part in text.split(",")]
    if not text.strip():
        return frozenset()
    return frozenset(parse_whole(part) for part in parts)


def _parse_json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)  # its JSONDecodeError is a ValueError
    if not isinstance(value, dict):
        raise ValueError(f"{text!r} is not a JSON object")
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
        value = json.loads(stripped)
        if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{text!r} is not a JSON list [cert, key]")
        return (value[0], value[1])
    return _parse_optional_path(text)


def _parse_header_text(text: str) -> str:
    # Spaces and tabs around the value go, as a shell's quoting leaves them; a CR or LF
    # stays for the check to refuse, leading or trailing as much as embedded.
    return text.strip(" \t")


def _parse_word(text: str) -> str:
    return text.strip()


def _parse_lower_word(text: str) -> str:
    return text.strip().lower()


def _parse_tls_version(text: str) -> str:
    lowered = text.strip().lower().replace("tlsv", "").replace("tls", "")
    return next((name for name in TLS_VERSIONS if name.endswith(f"v{lowered}")), text.strip())


# -- value -> text, in the form the environment accepts -------------------------------------


def _show_plain(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, frozenset):
        return ",".join(str(item) for item in sorted(value))
    if isinstance(value, Mapping):
        return json.dumps({key: mask_url(text) for key, text in value.items()})
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return str(value)


def _show_duration(value: float | None) -> str:
    if value is None:
        return "none"
    # Seconds up to an hour read best in a timeout table (60s, 300s); days and hours beyond.
    for unit, seconds in (("d", 86400.0), ("h", 3600.0)):
        if value >= seconds and value % seconds == 0:
            return f"{value / seconds:g}{unit}"
    return f"{value:g}s"


def _show_retries(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


# -- resilience: rate limits, breaker, coordination ---------------------------------------

#: Units of a rate limit's period: ``10/s``, ``5000/h``, and a count of them (``100/5m``).
_RATE_UNITS: Final = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$", re.IGNORECASE)
#: The most permits one rate limit may grant per period (a moving window keeps one timestamp each).
_MAX_RATE_PERMITS: Final = 1_000_000


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
        if not 1 <= permits <= _MAX_RATE_PERMITS or period <= 0:
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


def _rate_limit(field: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() in _NONE:
        if isinstance(value, str):
            return None
        raise _invalid(field, value)
    try:
        limits = parse_rate_limit(value)
    except ValueError as exc:
        raise _invalid(field, value, f"{exc}; expected {FIELD_SPECS[field].form}") from None
    return ";".join(show_rate(permits, period) for permits, period in limits)


def _parse_optional_rate(text: str) -> str | None:
    return None if text.strip().lower() in _NONE else text.strip()


def _optional_whole(field: str, value: object, *, minimum: int, maximum: int | None = None) -> int | None:
    return None if value is None else _whole(field, value, minimum=minimum, maximum=maximum)


def _parse_optional_whole(text: str) -> int | None:
    return None if text.strip().lower() in _NONE else parse_whole(text)


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
                f"sampling_window={_show_duration(self.sampling_window)}",
                f"minimum_calls={self.minimum_calls}",
                f"break_duration={_show_duration(self.break_duration)}",
                f"half_open_probes={self.half_open_probes}",
                f"failure_statuses={_show_statuses(self.failure_statuses)}",
            )
        )


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
    if stripped.lower() in _NONE or stripped.lower() in _FALSE:
        return None
    if stripped.lower() in _TRUE or stripped.lower() == "default":
        return BreakerSpec()
    given: dict[str, Any] = {}
    for part in filter(None, (item.strip() for item in stripped.split(","))):
        key, equals, raw = part.partition("=")
        key = key.strip()
        if not equals or key not in _BREAKER_KEYS:
            raise ValueError(f"{part!r} is not one of {', '.join(k + '=...' for k in _BREAKER_KEYS)}")
        given[key] = raw.strip()
    return _breaker_from(given)


def _breaker_from(given: Mapping[str, Any]) -> BreakerSpec:
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
                if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= _MAX_RATE_PERMITS:
                    raise ValueError
                values[key] = count
            elif key == "failure_statuses":
                values[key] = (
                    _parse_status_ranges(raw) if isinstance(raw, str) else _statuses("circuit_breaker", raw)
                )
            else:
                raise KeyError(key)
        except KeyError:
            raise ValueError(f"{key!r} is not one of {', '.join(_BREAKER_KEYS)}") from None
        except (ValueError, TypeError, ConfigError):
            raise ValueError(f"{key}={raw!r} is not valid") from None
    return BreakerSpec(**values)


def _breaker(field: str, value: object) -> BreakerSpec | None:
    if value is None or value is False:
        return None
    if isinstance(value, BreakerSpec):
        return value
    try:
        if value is True:
            return BreakerSpec()
        if isinstance(value, str):
            return parse_breaker(value)
        if isinstance(value, Mapping):
            return _breaker_from(value)
    except ValueError as exc:
        raise _invalid(field, value, f"{exc}; expected {FIELD_SPECS[field].form}") from None
    raise _invalid(field, value)


def _show_breaker(value: BreakerSpec | None) -> str:
    return "none" if value is None else value.text()


#: URL schemes of a coordination server.
COORDINATION_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})


def _coordination_url(field: str, value: object) -> str | None:
    if value is None:
        return None
    text = _clean_text(field, value)
    if text.strip().lower() in _NONE:
        return None
    try:
        parsed = parse_url(text)
    except (LocationParseError, ValueError):
        parsed = None
    if parsed is None or (parsed.scheme or "").lower() not in COORDINATION_SCHEMES or (
        parsed.scheme != "unix" and not parsed.host
    ):
        raise _invalid(field, text)
    return text


# -- the one spec per field ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """Everything known about one PresetConfig field, stated once.

    Attributes:
        form: the accepted form, as error messages and docs/presets.md show it.
        parse: environment text -> value; raises ValueError on text of the wrong form.
        check: ``check(field, value)`` returns the value normalised or raises ConfigError.
        doc: what the field means, one line (the preset table of docs/presets.md).
        show: value -> text in the form the environment accepts (``10s``, ``none``).
    """

    form: str
    parse: Callable[[str], Any]
    check: Callable[[str, Any], Any]
    doc: str
    show: Callable[[Any], str] = _show_plain


_BOOLEAN_FORM: Final = "a boolean: 1/0/true/false/yes/no/on/off"


def _spec(
    default: Any = dataclasses.MISSING,
    *,
    form: str,
    parse: Callable[[str], Any],
    check: Callable[[str, Any], Any],
    doc: str,
    show: Callable[[Any], str] = _show_plain,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    hash: bool | None = None,
) -> Any:
    """Declare a PresetConfig field together with its spec (kept in the field's metadata)."""
    spec = FieldSpec(form=form, parse=parse, check=check, doc=doc, show=show)
    return dataclasses.field(default=default, default_factory=default_factory, hash=hash, metadata={"spec": spec})


@dataclasses.dataclass(frozen=True, slots=True)
class PresetConfig:
    """The configuration of one preset: timeouts, retries, pools, TLS, state policy.

    Every field is validated when the object is built. Instances are immutable:
    use :meth:`replace` for a validated copy. ``origin(field)`` says which layer
    (built-in, base preset, code, environment variable, override) set a value.

    Raises:
        ConfigError: a field is invalid; the message names the field, the value
            and the accepted form.
    """

    name: str = "default"
    connect_timeout: float = _spec(
        10.0,
        form="a duration > 0 such as 10, 10s, 500ms, 2m",
        parse=parse_duration,
        check=_socket_timeout,
        show=_show_duration,
        doc="TCP and TLS connect",
    )
    read_timeout: float = _spec(
        20.0,
        form="a duration > 0 such as 20, 20s, 500ms, 2m",
        parse=parse_duration,
        check=_socket_timeout,
        show=_show_duration,
        doc="idle gap between bytes",
    )
    total_timeout: float | None = _spec(
        60.0,
        form="a duration > 0 such as 60s, 1h, 7d, or none/off",
        parse=_parse_optional_duration,
        check=partial(_duration, allow_none=True),
        show=_show_duration,
        doc="deadline for one call: retries and body included",
    )
    retries: int | None = _spec(
        2,
        form="a whole number >= 0, or 'unlimited' (bounded by total_timeout)",
        parse=_parse_retries,
        check=_retries,
        show=_show_retries,
        doc="extra attempts, idempotent methods only; connect errors always",
    )
    backoff_factor: float = _spec(
        0.5,
        form="a duration >= 0 such as 0.5, 500ms, 1s",
        parse=parse_duration,
        check=partial(_duration, allow_zero=True),
        show=_show_duration,
        doc="back-off unit: the first retry is at once, later ones wait 2x, 4x, ... this, plus up to this much jitter",
    )
    backoff_max: float = _spec(
        30.0,
        form="a duration > 0 such as 30s, 5m",
        parse=parse_duration,
        check=_duration,
        show=_show_duration,
        doc="longest pause between retries",
    )
    retry_statuses: frozenset[int] = _spec(
        DEFAULT_RETRY_STATUSES,
        form="comma-separated HTTP status codes from 100 to 599, such as 429,503",
        parse=_parse_statuses,
        check=_statuses,
        doc="statuses retried; Retry-After is honoured",
    )
    pool_connections: int = _spec(
        10,
        form="a whole number from 1 to 1024",
        parse=parse_whole,
        check=partial(_whole, minimum=1, maximum=_MAX_POOL),
        doc="hosts kept in the pool",
    )
    pool_maxsize: int = _spec(
        10,
        form="a whole number from 1 to 1024",
        parse=parse_whole,
        check=partial(_whole, minimum=1, maximum=_MAX_POOL),
        doc="connections kept per host",
    )
    pool_block: bool = _spec(
        True,
        form=_BOOLEAN_FORM,
        parse=parse_bool,
        check=_flag,
        doc="a call beyond pool_maxsize waits for a free connection (up to connect_timeout, "
        "within total_timeout) instead of opening one that is thrown away",
    )
    max_connection_age: float | None = _spec(
        300.0,
        form="a duration > 0 such as 300s, 5m, or none/off",
        parse=_parse_optional_duration,
        check=partial(_duration, allow_none=True),
        show=_show_duration,
        doc="older connections are not reused (DNS changes)",
    )
    cache_policy: CachePolicy = _spec(
        "reload",
        form="'reload' or 'protocol'",
        parse=_parse_lower_word,
        check=partial(_choice, choices=("reload", "protocol")),
        doc="`reload` sends `Cache-Control: no-cache` and `Pragma: no-cache`; `protocol` sends nothing",
    )
    cookies: CookiePolicy = _spec(
        "memory",
        form="'memory', 'none' or 'file' (with cookie_file)",
        parse=_parse_lower_word,
        check=partial(_choice, choices=("memory", "none", "file")),
        doc="`memory`, `none`, or `file` together with `cookie_file`",
    )
    cookie_file: str | None = _spec(
        None,
        form="a file path, or none",
        parse=_parse_optional_path,
        check=_path,
        doc="cookie file (Netscape format, mode 0600) when cookies is `file`",
    )
    store_credentials: bool = _spec(
        False,
        form=_BOOLEAN_FORM,
        parse=parse_bool,
        check=_flag,
        doc="netrc is read only when true; credentials are never written anywhere",
    )
    headers: Mapping[str, str] = _spec(
        default_factory=lambda: types.MappingProxyType({}),
        hash=False,
        form="a JSON object of header names to string values, without Authorization",
        parse=_parse_json_object,
        check=_headers,
        doc="extra default headers; `Authorization` is refused",
    )
    user_agent: str = _spec(
        DEFAULT_USER_AGENT,
        form="a non-empty string without CR or LF",
        parse=_parse_header_text,
        check=_user_agent,
        doc="the User-Agent header",
    )
    verify: bool = _spec(
        True,
        form=_BOOLEAN_FORM,
        parse=parse_bool,
        check=_flag,
        doc="check TLS certificates",
    )
    ca_bundle: str | None = _spec(
        None,
        form="a path to a PEM CA bundle file or directory, or none",
        parse=_parse_optional_path,
        check=_path,
        doc="CA bundle; set in code or a preset, it wins over `REQUESTS_CA_BUNDLE`",
    )
    client_cert: str | tuple[str, str] | None = _spec(
        None,
        form="a path to a PEM file, or a JSON list [cert, key], or none",
        parse=_parse_client_cert,
        check=_client_cert,
        doc="client certificate, or certificate and key",
    )
    trust_store: TrustStore = _spec(
        "certifi",
        form="'certifi' or 'system'",
        parse=_parse_lower_word,
        check=partial(_choice, choices=("certifi", "system")),
        doc="`certifi`, or `system` (extra `truststore`)",
    )
    tls_min_version: str = _spec(
        "TLSv1.2",
        form="'TLSv1.2' or 'TLSv1.3'",
        parse=_parse_tls_version,
        check=partial(_choice, choices=TLS_VERSIONS),
        doc="oldest TLS version accepted",
    )
    tls_session_cache: str = _spec(
        "shared",
        form="'shared', 'private' or 'off'",
        parse=_parse_lower_word,
        check=partial(_choice, choices=("shared", "private", "off")),
        doc="TLS session resumption: `shared` by the preset's sessions, `private` to each session, or `off`",
    )
    proxies: str | Mapping[str, str] = _spec(
        "env",
        hash=False,
        form="'env', 'none', or a JSON object of proxy URLs (http, https, socks4, socks4a, socks5 or socks5h) "
            "such as {\"https\": \"http://proxy:3128\"}",
        parse=_parse_proxies,
        check=_proxies,
        doc="`env` (read once, when the session is built), `none`, or a mapping",
    )
    max_redirects: int = _spec(
        10,
        form="a whole number >= 0",
        parse=parse_whole,
        check=partial(_whole, minimum=0),
        doc="redirects followed before TooManyRedirects",
    )
    allow_insecure_redirects: bool = _spec(
        False,
        form=_BOOLEAN_FORM,
        parse=parse_bool,
        check=_flag,
        doc="an https→http redirect raises `InsecureRedirectError` unless true",
    )
    rate_limit: str | None = _spec(
        None,
        form="a rate such as 10/s, 5000/h or 100/5m, several joined by ';', or none",
        parse=_parse_optional_rate,
        check=_rate_limit,
        doc="per origin: at most N requests in any span of the period (a moving window); "
        "a call waits for a permit within its deadline, else `RateLimitedError`",
    )
    max_in_flight: int | None = _spec(
        None,
        form="a whole number >= 1, or none",
        parse=_parse_optional_whole,
        check=partial(_optional_whole, minimum=1, maximum=_MAX_RATE_PERMITS),
        doc="requests of one session in flight at once; the others wait in line within their deadline",
    )
    circuit_breaker: BreakerSpec | None = _spec(
        None,
        form="none, on (the defaults), or key=value pairs joined by ',' with keys failure_ratio (0-1), "
        "sampling_window, minimum_calls, break_duration, half_open_probes, failure_statuses (such as 429|500-599)",
        parse=parse_breaker,
        check=_breaker,
        show=_show_breaker,
        doc="per origin: opens when failure_ratio of the calls in sampling_window fail; "
        "then `CircuitOpenError` at once for break_duration",
    )
    coordination_url: str | None = _spec(
        None,
        form="a URL such as redis://host:6379/0 (rediss://, unix://), or none",
        parse=_parse_optional_path,
        check=_coordination_url,
        doc="none: limits, breakers and pauses stay in the process; a Redis URL shares them "
        "across processes (extra `redis`)",
    )
    max_concurrent_transfers: int = _spec(
        4,
        form="a whole number >= 1",
        parse=parse_whole,
        check=partial(_whole, minimum=1),
        doc="background only: transfers run at once",
    )
    state_dir: str | None = _spec(
        None,
        form="a directory path, or none for the platform state directory",
        parse=_parse_optional_path,
        check=_path,
        doc="background only: journal directory; none: the platform state directory",
    )
    _origins: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({}), compare=False, hash=False, repr=False
    )

    def __post_init__(self) -> None:
        fix = object.__setattr__
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name={self.name!r} is invalid: expected a non-empty string")
        for field, spec in FIELD_SPECS.items():
            fix(self, field, spec.check(field, getattr(self, field)))
        fix(self, "_origins", types.MappingProxyType(dict(self._origins)))
        self._check_combinations()

    def _check_combinations(self) -> None:
        if self.cookies == "file" and self.cookie_file is None:
            raise ConfigError("cookies='file' needs cookie_file: set cookie_file to a file path")
        if self.cookies != "file" and self.cookie_file is not None:
            raise ConfigError(
                f"cookie_file={self.cookie_file!r} is set but cookies={self.cookies!r}: "
                "set cookies='file' to use it"
            )
        if self.retries is None and self.total_timeout is None:
            raise ConfigError(
                "retries='unlimited' needs a total_timeout: set total_timeout to a duration"
            )

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Return the configurable field names, in declaration order."""
        return tuple(FIELD_SPECS)

    def replace(self, **changes: Any) -> PresetConfig:
        """Return a validated copy with ``changes`` applied, marked as overrides.

        Raises:
            ConfigError: a name is not a field, or a value is invalid.
        """
        return self._with(changes, origin=OVERRIDE)

    def _with(self, changes: Mapping[str, Any], *, origin: str | Mapping[str, str]) -> PresetConfig:
        known = set(self.field_names())
        unknown = sorted(set(changes) - known)
        if unknown:
            from difflib import get_close_matches

            hints = [
                f"{name!r}" + (f" (did you mean {close[0]!r}?)" if (close := get_close_matches(name, known, 1)) else "")
                for name in unknown
            ]
            raise ConfigError(f"unknown preset field {', '.join(hints)}")
        origins = dict(self._origins)
        for key in changes:
            origins[key] = origin if isinstance(origin, str) else origin[key]
        return dataclasses.replace(self, **changes, _origins=origins)

    def origin(self, field: str) -> str:
        """Say which layer set ``field``: 'built-in', "base preset 'x'", 'code',
        'env VARIABLE' or 'override'.

        Raises:
            ConfigError: ``field`` is not a field.
        """
        if field not in self.field_names():
            raise ConfigError(f"unknown preset field {field!r}")
        return self._origins.get(field, BUILTIN)

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as plain JSON-friendly values, secrets masked."""
        out: dict[str, Any] = {}
        for name in self.field_names():
            value = getattr(self, name)
            if name == "retries" and value is None:
                value = "unlimited"  # the same word the environment accepts
            elif isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, Mapping):
                value = {k: mask_url(v) for k, v in value.items()}
            elif isinstance(value, BreakerSpec):
                value = value.text()
            elif name == "coordination_url" and value is not None:
                value = mask_url(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        # Read-only mappings do not pickle; rebuild (and revalidate) from plain values.
        state: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            state[field.name] = dict(value) if isinstance(value, Mapping) else value
        return (_rebuild, (state,))

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}={value!r}" for key, value in self.as_dict().items())
        return f"PresetConfig(name={self.name!r}, {shown})"


#: The spec of every configurable field, in declaration order: the one source of the tables below.
FIELD_SPECS: Final[Mapping[str, FieldSpec]] = types.MappingProxyType(
    {field.name: field.metadata["spec"] for field in dataclasses.fields(PresetConfig) if "spec" in field.metadata}
)

#: The accepted form of each field, as shown in error messages.
FIELD_FORMS: Final[Mapping[str, str]] = types.MappingProxyType({name: s.form for name, s in FIELD_SPECS.items()})

#: Environment text -> value, per field (each raises ValueError on text of the wrong form).
FIELD_PARSERS: Final[Mapping[str, Callable[[str], Any]]] = types.MappingProxyType(
    {name: s.parse for name, s in FIELD_SPECS.items()}
)

#: One check per field: returns the normalised value or raises ConfigError.
_VALIDATORS: Final[Mapping[str, Callable[[Any], Any]]] = types.MappingProxyType(
    {name: partial(s.check, name) for name, s in FIELD_SPECS.items()}
)


def validate_field(field: str, value: Any) -> Any:
    """Return ``value`` normalised for ``field``, checked alone (not in combination).

    Raises:
        ConfigError: the value is invalid for the field, or the field is unknown.
    """
    check = _VALIDATORS.get(field)
    if check is None:
        raise ConfigError(f"unknown preset field {field!r}")
    return check(value)


def _rebuild(state: dict[str, Any]) -> PresetConfig:
    """Unpickle a PresetConfig (see PresetConfig.__reduce__)."""
    return PresetConfig(**state)
