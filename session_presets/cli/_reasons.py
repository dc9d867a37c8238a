"""Why a command failed, in one line a person can act on: network, TLS, timeout and retry reasons."""

from __future__ import annotations

import re
import socket
import ssl
import traceback
from collections.abc import Iterator
from typing import Final

import requests

from .._config import PresetConfig
from .._env import variable_name
from .._errors import InsecureRedirectError, TotalTimeoutError
from .._redact import safe_url
from ._base import EXIT_NETWORK, debugging, err, format_duration

#: OpenSSL reasons seen when a TLS client talks to a plain-HTTP port.
_PLAIN_HTTP_REASONS: Final = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST", "UNKNOWN_PROTOCOL"}
)
#: X.509 verify codes that mean "no trusted CA for this chain" (a private or missing CA).
_UNKNOWN_CA_CODES: Final = frozenset({2, 18, 19, 20, 21})


def causes(exc: BaseException) -> Iterator[BaseException]:
    """Yield ``exc`` and every exception reachable from it: args, ``reason``, cause, context."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [arg for arg in current.args if isinstance(arg, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            linked.append(reason)
        linked += [e for e in (current.__cause__, current.__context__) if e is not None]
        pending.extend(linked)


def _setting(config: PresetConfig | None, field: str, *, flag: str | None = None) -> str:
    """Say a duration setting's value and who set it, with the way to change it."""
    if config is None:
        return field
    value = getattr(config, field)
    shown = f"{field}={format_duration(value)}" if isinstance(value, (int, float)) else f"{field}={value}"
    origin = config.origin(field)
    if origin.startswith("env "):
        return f"{shown}, set by {origin[4:]}"
    if origin == "override":
        return f"{shown}, set by {flag}" if flag else f"{shown}, set on the command line"
    where = "its default" if origin == "built-in" else origin
    change = f"--{flag.lstrip('-')} or " if flag else ""
    return f"{shown}, preset {config.name!r} {where}; change it with {change}{variable_name(field)}"


def _tls_reason(item: ssl.SSLError, url: str) -> str:
    reason = item.reason or item.strerror or str(item)
    text = f"TLS error: {reason}"
    if item.reason in _PLAIN_HTTP_REASONS:
        plain = re.sub(r"^https://", "http://", url, flags=re.IGNORECASE)
        text += f": is this port plain HTTP? If so, use {safe_url(plain)}"
    return text


def network_reason(exc: BaseException, *, url: str = "", config: PresetConfig | None = None) -> str:
    """Return a short, one-line reason for a network, TLS or timeout error, with the fix when known."""
    chain = list(causes(exc))
    for item in chain:
        if isinstance(item, ssl.SSLCertVerificationError):
            text = f"TLS certificate verify failed: {item.verify_message or item.reason}"
            if item.verify_code in _UNKNOWN_CA_CODES:
                text += (
                    "; if the server's CA is private, set SESSION_PRESETS_CA_BUNDLE=/path/to/ca.pem "
                    "(or ca_bundle= in the preset)"
                )
            return text
    for item in chain:
        if isinstance(item, ssl.SSLError):
            return _tls_reason(item, url)
    for item in chain:
        if isinstance(item, TotalTimeoutError):
            return f"timed out: {_setting(config, 'total_timeout', flag='--timeout')} (retries and body included)"
    for item in chain:
        if isinstance(item, requests.ConnectTimeout):
            return f"timed out connecting: {_setting(config, 'connect_timeout')}"
    for item in chain:
        if isinstance(item, requests.ReadTimeout) or type(item).__name__ == "ReadTimeoutError":
            return f"timed out: no data for {_setting(config, 'read_timeout')}"
    for item in chain:
        if isinstance(item, requests.TooManyRedirects):
            limit = "" if config is None else f" (max_redirects={config.max_redirects}; --max-redirs changes it)"
            return f"too many redirects{limit}"
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, socket.gaierror):
            return f"cannot resolve host name ({item.strerror})"
    for item in chain:
        if isinstance(item, (TimeoutError, socket.timeout, requests.Timeout)):
            return "timed out"
        if isinstance(item, ConnectionResetError):
            return "connection reset by peer"
    for item in reversed(chain):
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def network_error(url: str, exc: BaseException, config: PresetConfig | None = None) -> int:
    """Report a failure with no final response in one line (a traceback too with --debug); exit status 3."""
    if debugging.enabled:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    if isinstance(exc, InsecureRedirectError):
        err(str(exc).splitlines()[0])
    else:
        err(f"{safe_url(url)}: {network_reason(exc, url=url, config=config)}")
    return EXIT_NETWORK


def short_reason(text: str) -> str:
    """Shorten a retry reason logged by the background engine to what a person needs."""
    lowered = text.lower()
    known = (
        (("connection refused",), "connection refused"),
        (
            ("name or service not known", "nodename nor servname", "failed to resolve",
             "temporary failure in name resolution", "no address associated", "getaddrinfo failed"),
            "cannot resolve host name",
        ),
        (("certificate verify failed",), "TLS certificate verify failed"),
        (("connection reset",), "connection reset by peer"),
        (("timed out", "timeout"), "timed out"),
    )
    for needles, reason in known:
        if any(needle in lowered for needle in needles):
            prefix = text.split(":", 1)[0] if lowered.startswith("connection lost after") else ""
            return f"{prefix}: {reason}" if prefix else reason
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return first if len(first) <= 120 else first[:117] + "..."
