"""PresetConfig: the frozen, validated description of one kind of HTTP work."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Final, Literal

from requests.__version__ import __version__ as _requests_version
from requests.utils import prepend_scheme_if_needed
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from ._errors import ConfigError
from ._forms import (
    MAX_RATE_PERMITS,
    NONE_WORDS,
    TLS_VERSIONS,
    BreakerSpec,
    breaker_from,
    parse_bool,
    parse_breaker,
    parse_client_cert,
    parse_duration,
    parse_header_text,
    parse_json_object,
    parse_lower_word,
    parse_optional_duration,
    parse_optional_path,
    parse_optional_rate,
    parse_optional_whole,
    parse_proxies,
    parse_rate_limit,
    parse_retries,
    parse_statuses,
    parse_tls_version,
    parse_whole,
    show_breaker,
    show_duration,
    show_plain,
    show_rate,
    show_retries,
    status_set,
)
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
    "parse_rate_limit",
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

#: Proxy URL schemes urllib3 can use (socks* need the PySocks extra of requests).
PROXY_SCHEMES: Final = frozenset({"http", "https", "socks4", "socks4a", "socks5", "socks5h"})
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _shown(value: object) -> str:
    try:
        return repr(mask_value(value))
    except ValueError:  # an int with more digits than int->str conversion allows
        return "<a number too large to show>"


def _invalid(
    field: str, value: object, reason: str | None = None, *, label: str | None = None, detail: str | None = None
) -> ConfigError:
    """Return the ConfigError for ``value`` refused in ``field`` (shown as ``label``, e.g. ``headers['X']``).

    The reason is ``reason``, else the field's accepted form (``expected ...``), after ``detail`` if given.
    """
    spec = FIELD_SPECS.get(field)
    form = spec.form if spec is not None else None
    why = reason if reason is not None else f"expected {form}"
    if detail is not None:
        why = f"{detail}; {why}"
    shown_as = label if label is not None else field
    return ConfigError(
        f"{shown_as}={_shown(value)} is invalid: {why}",
        field=shown_as,
        value=mask_value(value),
        expected=form,
        reason=why,
    )


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
            field, value, detail=f"longer than a socket timeout can be (at most {_MAX_SOCKET_TIMEOUT:g}s)"
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
    try:
        return status_set(value)
    except ValueError:
        raise _invalid(field, value) from None


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


def _rate_limit(field: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() in NONE_WORDS:
        if isinstance(value, str):
            return None
        raise _invalid(field, value)
    try:
        limits = parse_rate_limit(value)
    except ValueError as exc:
        raise _invalid(field, value, detail=str(exc)) from None
    return ";".join(show_rate(permits, period) for permits, period in limits)


def _optional_whole(field: str, value: object, *, minimum: int, maximum: int | None = None) -> int | None:
    return None if value is None else _whole(field, value, minimum=minimum, maximum=maximum)


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
            return breaker_from(value)
    except ValueError as exc:
        raise _invalid(field, value, detail=str(exc)) from None
    raise _invalid(field, value)


#: URL schemes of a coordination server.
COORDINATION_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})


def _coordination_url(field: str, value: object) -> str | None:
    if value is None:
        return None
    text = _clean_text(field, value)
    if text.strip().lower() in NONE_WORDS:
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
    show: Callable[[Any], str] = show_plain


_BOOLEAN_FORM: Final = "a boolean: 1/0/true/false/yes/no/on/off"


def _spec(
    default: Any = dataclasses.MISSING,
    *,
    form: str,
    parse: Callable[[str], Any],
    check: Callable[[str, Any], Any],
    doc: str,
    show: Callable[[Any], str] = show_plain,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    hash: bool | None = None,
) -> Any:
    """Declare a PresetConfig field together with its spec (kept in the field's metadata)."""
    spec = FieldSpec(form=form, parse=parse, check=check, doc=doc, show=show)
    return dataclasses.field(default=default, default_factory=default_factory, hash=hash, metadata={"spec": spec})


def _flag_spec(default: bool, *, doc: str) -> Any:
    """Declare a boolean field."""
    return _spec(default, form=_BOOLEAN_FORM, parse=parse_bool, check=_flag, doc=doc)


def _duration_spec(
    default: float, *, form: str, doc: str, optional: bool = False, zero: bool = False, socket: bool = False
) -> Any:
    """Declare a duration field: ``optional`` takes none/off, ``zero`` takes 0, ``socket`` is capped as sockets need."""
    check = _socket_timeout if socket else partial(_duration, allow_none=optional, allow_zero=zero)
    parse = parse_optional_duration if optional else parse_duration
    return _spec(default, form=form, parse=parse, check=check, show=show_duration, doc=doc)


def _whole_spec(
    default: int | None, *, form: str, doc: str, minimum: int, maximum: int | None = None, optional: bool = False
) -> Any:
    """Declare a whole-number field from ``minimum`` to ``maximum``; ``optional`` takes none."""
    if optional:
        return _spec(
            default,
            form=form,
            parse=parse_optional_whole,
            check=partial(_optional_whole, minimum=minimum, maximum=maximum),
            doc=doc,
        )
    check = partial(_whole, minimum=minimum, maximum=maximum)
    return _spec(default, form=form, parse=parse_whole, check=check, doc=doc)


def _choice_spec(
    default: str,
    choices: tuple[str, ...],
    *,
    doc: str,
    form: str | None = None,
    parse: Callable[[str], str] = parse_lower_word,
) -> Any:
    """Declare a field that takes one of ``choices``; its form lists them (``'a', 'b' or 'c'``) unless given."""
    if form is None:
        quoted = [repr(choice) for choice in choices]
        form = f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return _spec(default, form=form, parse=parse, check=partial(_choice, choices=choices), doc=doc)


def _path_spec(*, form: str, doc: str) -> Any:
    """Declare a file or directory path field that defaults to none."""
    return _spec(None, form=form, parse=parse_optional_path, check=_path, doc=doc)


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
    connect_timeout: float = _duration_spec(
        10.0, form="a duration > 0 such as 10, 10s, 500ms, 2m", doc="TCP and TLS connect", socket=True
    )
    read_timeout: float = _duration_spec(
        20.0, form="a duration > 0 such as 20, 20s, 500ms, 2m", doc="idle gap between bytes", socket=True
    )
    total_timeout: float | None = _duration_spec(
        60.0,
        form="a duration > 0 such as 60s, 1h, 7d, or none/off",
        doc="deadline for one call: retries and body included",
        optional=True,
    )
    retries: int | None = _spec(
        2,
        form="a whole number >= 0, or 'unlimited' (bounded by total_timeout)",
        parse=parse_retries,
        check=partial(_optional_whole, minimum=0),
        show=show_retries,
        doc="extra attempts, idempotent methods only; connect errors always",
    )
    backoff_factor: float = _duration_spec(
        0.5,
        form="a duration >= 0 such as 0.5, 500ms, 1s",
        doc="back-off unit: the first retry is at once, later ones wait 2x, 4x, ... this, plus up to this much jitter",
        zero=True,
    )
    backoff_max: float = _duration_spec(
        30.0, form="a duration > 0 such as 30s, 5m", doc="longest pause between retries"
    )
    retry_statuses: frozenset[int] = _spec(
        DEFAULT_RETRY_STATUSES,
        form="comma-separated HTTP status codes from 100 to 599, such as 429,503",
        parse=parse_statuses,
        check=_statuses,
        doc="statuses retried; Retry-After is honoured",
    )
    pool_connections: int = _whole_spec(
        10, form="a whole number from 1 to 1024", doc="hosts kept in the pool", minimum=1, maximum=_MAX_POOL
    )
    pool_maxsize: int = _whole_spec(
        10, form="a whole number from 1 to 1024", doc="connections kept per host", minimum=1, maximum=_MAX_POOL
    )
    pool_block: bool = _flag_spec(
        True,
        doc="a call beyond pool_maxsize waits for a free connection (up to connect_timeout, "
        "within total_timeout) instead of opening one that is thrown away",
    )
    max_connection_age: float | None = _duration_spec(
        300.0,
        form="a duration > 0 such as 300s, 5m, or none/off",
        doc="older connections are not reused (DNS changes)",
        optional=True,
    )
    cache_policy: CachePolicy = _choice_spec(
        "reload",
        ("reload", "protocol"),
        doc="`reload` sends `Cache-Control: no-cache` and `Pragma: no-cache`; `protocol` sends nothing",
    )
    cookies: CookiePolicy = _choice_spec(
        "memory",
        ("memory", "none", "file"),
        form="'memory', 'none' or 'file' (with cookie_file)",
        doc="`memory`, `none`, or `file` together with `cookie_file`",
    )
    cookie_file: str | None = _path_spec(
        form="a file path, or none", doc="cookie file (Netscape format, mode 0600) when cookies is `file`"
    )
    store_credentials: bool = _flag_spec(
        False, doc="netrc is read only when true; credentials are never written anywhere"
    )
    headers: Mapping[str, str] = _spec(
        default_factory=lambda: types.MappingProxyType({}),
        hash=False,
        form="a JSON object of header names to string values, without Authorization",
        parse=parse_json_object,
        check=_headers,
        doc="extra default headers; `Authorization` is refused",
    )
    user_agent: str = _spec(
        DEFAULT_USER_AGENT,
        form="a non-empty string without CR or LF",
        parse=parse_header_text,
        check=_user_agent,
        doc="the User-Agent header",
    )
    verify: bool = _flag_spec(True, doc="check TLS certificates")
    ca_bundle: str | None = _path_spec(
        form="a path to a PEM CA bundle file or directory, or none",
        doc="CA bundle; set in code or a preset, it wins over `REQUESTS_CA_BUNDLE`",
    )
    client_cert: str | tuple[str, str] | None = _spec(
        None,
        form="a path to a PEM file, or a JSON list [cert, key], or none",
        parse=parse_client_cert,
        check=_client_cert,
        doc="client certificate, or certificate and key",
    )
    trust_store: TrustStore = _choice_spec(
        "certifi", ("certifi", "system"), doc="`certifi`, or `system` (extra `truststore`)"
    )
    tls_min_version: str = _choice_spec(
        "TLSv1.2", tuple(TLS_VERSIONS), parse=parse_tls_version, doc="oldest TLS version accepted"
    )
    tls_session_cache: str = _choice_spec(
        "shared",
        ("shared", "private", "off"),
        doc="TLS session resumption: `shared` by the preset's sessions, `private` to each session, or `off`",
    )
    proxies: str | Mapping[str, str] = _spec(
        "env",
        hash=False,
        form="'env', 'none', or a JSON object of proxy URLs (http, https, socks4, socks4a, socks5 or socks5h) "
            "such as {\"https\": \"http://proxy:3128\"}",
        parse=parse_proxies,
        check=_proxies,
        doc="`env` (read once, when the session is built), `none`, or a mapping",
    )
    max_redirects: int = _whole_spec(
        10, form="a whole number >= 0", doc="redirects followed before TooManyRedirects", minimum=0
    )
    allow_insecure_redirects: bool = _flag_spec(
        False, doc="an https→http redirect raises `InsecureRedirectError` unless true"
    )
    rate_limit: str | None = _spec(
        None,
        form="a rate such as 10/s, 5000/h or 100/5m, several joined by ';', or none",
        parse=parse_optional_rate,
        check=_rate_limit,
        doc="per origin: at most N requests in any span of the period (a moving window); "
        "a call waits for a permit within its deadline, else `RateLimitedError`",
    )
    max_in_flight: int | None = _whole_spec(
        None,
        form="a whole number >= 1, or none",
        doc="requests of one session in flight at once; the others wait in line within their deadline",
        minimum=1,
        maximum=MAX_RATE_PERMITS,
        optional=True,
    )
    circuit_breaker: BreakerSpec | None = _spec(
        None,
        form="none, on (the defaults), or key=value pairs joined by ',' with keys failure_ratio (0-1), "
        "sampling_window, minimum_calls, break_duration, half_open_probes, failure_statuses (such as 429|500-599)",
        parse=parse_breaker,
        check=_breaker,
        show=show_breaker,
        doc="per origin: opens when failure_ratio of the calls in sampling_window fail; "
        "then `CircuitOpenError` at once for break_duration",
    )
    coordination_url: str | None = _spec(
        None,
        form="a URL such as redis://host:6379/0 (rediss://, unix://), or none",
        parse=parse_optional_path,
        check=_coordination_url,
        doc="none: limits, breakers and pauses stay in the process; a Redis URL shares them "
        "across processes (extra `redis`)",
    )
    max_concurrent_transfers: int = _whole_spec(
        4, form="a whole number >= 1", doc="background only: transfers run at once", minimum=1
    )
    state_dir: str | None = _path_spec(
        form="a directory path, or none for the platform state directory",
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
                value = mask_value(value)
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
