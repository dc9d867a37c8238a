"""PresetConfig: the frozen, validated description of one kind of HTTP work."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal

from requests.__version__ import __version__ as _requests_version

from ._version import __version__
from .errors import ConfigError

__all__ = [
    "BUILTIN",
    "DEFAULT_RETRY_STATUSES",
    "DEFAULT_USER_AGENT",
    "FIELD_FORMS",
    "OVERRIDE",
    "PresetConfig",
    "mask_url",
    "validate_field",
]

#: Statuses retried by default; Retry-After is honoured for each of them.
DEFAULT_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})

#: The User-Agent every preset sends unless told otherwise.
DEFAULT_USER_AGENT: Final = f"session-presets/{__version__} python-requests/{_requests_version}"

#: Headers a preset refuses in ``headers``: credentials never live in a preset.
FORBIDDEN_HEADERS: Final = frozenset({"authorization", "proxy-authorization"})

#: Origin label of a value that no layer changed.
BUILTIN: Final = "built-in"

#: Origin label of a factory keyword override.
OVERRIDE: Final = "override"

CachePolicy = Literal["reload", "protocol"]
CookiePolicy = Literal["memory", "none", "file"]
TrustStore = Literal["certifi", "system"]

_TLS_VERSIONS: Final = frozenset({"TLSv1.2", "TLSv1.3"})
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Greedy up to the last "@" of the authority, as urllib3 splits it: a password may hold "@".
_CREDENTIALS_IN_URL = re.compile(r"(?<=://)([^/?#\s]*)@")

#: The accepted form of each field, as shown in error messages.
FIELD_FORMS: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "connect_timeout": "a duration > 0 such as 10, 10s, 500ms, 2m",
        "read_timeout": "a duration > 0 such as 20, 20s, 500ms, 2m",
        "total_timeout": "a duration > 0 such as 60s, 1h, 7d, or none/off",
        "retries": "a whole number >= 0, or 'unlimited' (bounded by total_timeout)",
        "backoff_factor": "a duration >= 0 such as 0.5, 500ms, 1s",
        "backoff_max": "a duration > 0 such as 30s, 5m",
        "retry_statuses": "comma-separated HTTP status codes from 100 to 599, such as 429,503",
        "pool_connections": "a whole number from 1 to 1024",
        "pool_maxsize": "a whole number from 1 to 1024",
        "max_connection_age": "a duration > 0 such as 300s, 5m, or none/off",
        "cache_policy": "'reload' or 'protocol'",
        "cookies": "'memory', 'none' or 'file' (with cookie_file)",
        "cookie_file": "a file path, or none",
        "store_credentials": "a boolean: 1/0/true/false/yes/no/on/off",
        "headers": "a JSON object of header names to string values, without Authorization",
        "user_agent": "a non-empty string without CR or LF",
        "verify": "a boolean: 1/0/true/false/yes/no/on/off",
        "ca_bundle": "a path to a PEM CA bundle file or directory, or none",
        "client_cert": "a path to a PEM file, or a JSON list [cert, key], or none",
        "trust_store": "'certifi' or 'system'",
        "tls_min_version": "'TLSv1.2' or 'TLSv1.3'",
        "proxies": "'env', 'none', or a JSON object such as {\"https\": \"http://proxy:3128\"}",
        "max_redirects": "a whole number >= 0",
        "allow_insecure_redirects": "a boolean: 1/0/true/false/yes/no/on/off",
        "max_concurrent_transfers": "a whole number >= 1",
        "state_dir": "a directory path, or none for the platform state directory",
    }
)


def mask_url(url: str) -> str:
    """Return ``url`` with any ``user:password@`` part replaced by ``***@``."""
    return _CREDENTIALS_IN_URL.sub("***@", url)


def _shown(value: object) -> str:
    try:
        return repr(mask_url(value) if isinstance(value, str) else value)
    except ValueError:  # an int with more digits than int->str conversion allows
        return "<a number too large to show>"


def _bad(field: str, value: object) -> ConfigError:
    return ConfigError(f"{field}={_shown(value)} is invalid: expected {FIELD_FORMS[field]}")


def _duration(field: str, value: object, *, allow_none: bool = False, allow_zero: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(field, value)
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        raise _bad(field, value) from None
    if math.isnan(number) or math.isinf(number) or number < 0 or (number == 0 and not allow_zero):
        raise _bad(field, value)
    return number


#: The longest connect or read timeout that every platform's sockets accept (about 31 years).
_MAX_SOCKET_TIMEOUT: Final = 1e9


def _socket_timeout(field: str, value: object) -> float | None:
    number = _duration(field, value)
    if number is not None and number > _MAX_SOCKET_TIMEOUT:
        raise ConfigError(
            f"{field}={_shown(value)} is invalid: longer than a socket timeout can be "
            f"(at most {_MAX_SOCKET_TIMEOUT:g}s); expected {FIELD_FORMS[field]}"
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
        raise _bad(field, value)
    return value


def _flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _bad(field, value)
    return value


def _choice(field: str, value: object, choices: Iterable[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _bad(field, value)
    return value


def _clean_text(field: str, value: object, *, what: str = "") -> str:
    if not isinstance(value, str) or "\r" in value or "\n" in value or "\x00" in value:
        label = f"{field}{what}"
        raise ConfigError(f"{label}={_shown(value)} is invalid: CR, LF and NUL are not allowed ({FIELD_FORMS[field]})")
    return value


def _header_value(field: str, value: object, *, what: str = "") -> str:
    # What requests and http.client would refuse on every request is refused here, once.
    text = _clean_text(field, value, what=what)
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{field}{what}={_shown(text)} is invalid: header values must be Latin-1 text ({FIELD_FORMS[field]})"
        ) from None
    if text[:1].isspace():
        raise ConfigError(
            f"{field}{what}={_shown(text)} is invalid: leading whitespace is not allowed ({FIELD_FORMS[field]})"
        )
    return text


def _path(field: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _bad(field, value)
    return value


def _headers(value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise _bad("headers", value)
    clean: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigError(
                f"headers: header name {name!r} is invalid: expected an HTTP token (letters, digits, '-')"
            )
        if name.lower() in FORBIDDEN_HEADERS:
            raise ConfigError(
                f"headers: {name!r} is refused in a preset: credentials never live in configuration; "
                "pass auth= to default_session(), ephemeral_session() or background_session(), "
                "or to the request (session.get(url, auth=...))"
            )
        clean[name] = _header_value("headers", text, what=f"[{name!r}]")
    return types.MappingProxyType(clean)


def _proxies(value: object) -> str | Mapping[str, str]:
    if isinstance(value, str):
        return _choice("proxies", value, ("env", "none"))
    if not isinstance(value, Mapping):
        raise _bad("proxies", value)
    clean: dict[str, str] = {}
    for key, url in value.items():
        if not isinstance(key, str) or not key:
            raise _bad("proxies", value)
        clean[key] = _clean_text("proxies", url, what=f"[{key!r}]")
    return types.MappingProxyType(clean)


def _statuses(value: object) -> frozenset[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise _bad("retry_statuses", value)
    items = list(value)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or not 100 <= item <= 599:
            raise _bad("retry_statuses", value)
    return frozenset(items)


def _client_cert(value: object) -> str | tuple[str, str] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise _bad("client_cert", value)
        cert, key = (_path("client_cert", item) for item in value)
        if cert is None or key is None:
            raise _bad("client_cert", value)
        return (cert, key)
    return _path("client_cert", value)


def _user_agent(value: object) -> str:
    text = _header_value("user_agent", value)
    if not text:
        raise _bad("user_agent", value)
    return text


def _retries(value: object) -> int | None:
    return None if value is None else _whole("retries", value, minimum=0)


#: One check per field: returns the normalised value or raises ConfigError.
_VALIDATORS: Final[Mapping[str, Callable[[Any], Any]]] = types.MappingProxyType(
    {
        "connect_timeout": lambda v: _socket_timeout("connect_timeout", v),
        "read_timeout": lambda v: _socket_timeout("read_timeout", v),
        "total_timeout": lambda v: _duration("total_timeout", v, allow_none=True),
        "retries": _retries,
        "backoff_factor": lambda v: _duration("backoff_factor", v, allow_zero=True),
        "backoff_max": lambda v: _duration("backoff_max", v),
        "retry_statuses": _statuses,
        "pool_connections": lambda v: _whole("pool_connections", v, minimum=1, maximum=_MAX_POOL),
        "pool_maxsize": lambda v: _whole("pool_maxsize", v, minimum=1, maximum=_MAX_POOL),
        "max_connection_age": lambda v: _duration("max_connection_age", v, allow_none=True),
        "cache_policy": lambda v: _choice("cache_policy", v, ("reload", "protocol")),
        "cookies": lambda v: _choice("cookies", v, ("memory", "none", "file")),
        "cookie_file": lambda v: _path("cookie_file", v),
        "store_credentials": lambda v: _flag("store_credentials", v),
        "headers": _headers,
        "user_agent": _user_agent,
        "verify": lambda v: _flag("verify", v),
        "ca_bundle": lambda v: _path("ca_bundle", v),
        "client_cert": _client_cert,
        "trust_store": lambda v: _choice("trust_store", v, ("certifi", "system")),
        "tls_min_version": lambda v: _choice("tls_min_version", v, _TLS_VERSIONS),
        "proxies": _proxies,
        "max_redirects": lambda v: _whole("max_redirects", v, minimum=0),
        "allow_insecure_redirects": lambda v: _flag("allow_insecure_redirects", v),
        "max_concurrent_transfers": lambda v: _whole("max_concurrent_transfers", v, minimum=1),
        "state_dir": lambda v: _path("state_dir", v),
    }
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
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_timeout: float | None = 60.0
    retries: int | None = 2
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    pool_connections: int = 10
    pool_maxsize: int = 10
    max_connection_age: float | None = 300.0
    cache_policy: CachePolicy = "reload"
    cookies: CookiePolicy = "memory"
    cookie_file: str | None = None
    store_credentials: bool = False
    headers: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )
    user_agent: str = DEFAULT_USER_AGENT
    verify: bool = True
    ca_bundle: str | None = None
    client_cert: str | tuple[str, str] | None = None
    trust_store: TrustStore = "certifi"
    tls_min_version: str = "TLSv1.2"
    proxies: str | Mapping[str, str] = dataclasses.field(default="env", hash=False)
    max_redirects: int = 10
    allow_insecure_redirects: bool = False
    max_concurrent_transfers: int = 4
    state_dir: str | None = None
    _origins: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({}), compare=False, hash=False, repr=False
    )

    def __post_init__(self) -> None:
        fix = object.__setattr__
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name={self.name!r} is invalid: expected a non-empty string")
        for field, check in _VALIDATORS.items():
            fix(self, field, check(getattr(self, field)))
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
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("name", "_origins"))

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


def _rebuild(state: dict[str, Any]) -> PresetConfig:
    """Unpickle a PresetConfig (see PresetConfig.__reduce__)."""
    return PresetConfig(**state)
