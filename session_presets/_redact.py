"""Redaction: the one home for taking secrets out of URLs and headers before they are shown or stored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["CREDENTIAL_HEADERS", "safe_url", "strip_credentials", "without_userinfo"]

#: Headers that carry credentials: never stored, never logged.
CREDENTIAL_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})


def safe_url(url: str | bytes | None) -> str:
    """Return ``url`` without credentials, query string or fragment, for logs and errors."""
    if url is None:
        return ""
    text = url.decode("utf-8", "replace") if isinstance(url, bytes) else url
    try:
        parts = urlsplit(text)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def without_userinfo(url: str) -> str:
    """Return ``url`` without ``user:password@``, everything else kept."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def strip_credentials(url: str, headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Return ``url`` without ``user:password@`` and ``headers`` without credential headers."""
    kept = {name: value for name, value in headers.items() if name.lower() not in CREDENTIAL_HEADERS}
    return without_userinfo(url), kept
