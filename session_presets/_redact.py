"""Redaction: the one home for taking secrets out of URLs and headers before they are shown or stored."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "CREDENTIAL_HEADERS",
    "RedactingFilter",
    "redact_exception",
    "redact_text",
    "safe_url",
    "strip_credentials",
    "without_userinfo",
]

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


# ``scheme://user:password@``: the userinfo of any URL in a text.
_USERINFO: Final = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@]*@")
# A query string or fragment after a path (``/f?token=x``, ``http://h/f?x``, ``http://h?x``):
# urllib3 writes paths with their query into its messages (``url: /f?token=...``).
_QUERY: Final = re.compile(r"(/[^\s?#'\"]*)[?#]\S+")
# A ``?name=value`` query without a path before it (requests: ``Invalid URL 'f?token=x'``).
_BARE_QUERY: Final = re.compile(r"()\?[^\s?#=]*=\S*")
# Closing punctuation after a URL (``'http://h/f?x'``, ``(url='/f?x')``), kept so text still reads.
_CLOSING: Final = re.compile(r"[)'\"\]>,.;:]*$")


def _drop_query(match: re.Match[str]) -> str:
    closing = _CLOSING.search(match.group(0))
    return match.group(1) + (closing.group(0) if closing else "")


def redact_text(text: str) -> str:
    """Return ``text`` with every URL's userinfo, query string and fragment taken out."""
    if "?" not in text and "#" not in text and "@" not in text:
        return text
    text = _QUERY.sub(_drop_query, _USERINFO.sub(r"\1", text))
    return _BARE_QUERY.sub(_drop_query, text)


def redact_exception(exc: BaseException) -> BaseException:
    """Take query strings and userinfo out of the message of ``exc`` and of every exception it links to.

    The exceptions are changed in place, so their types, ``__cause__``,
    ``__context__`` and attributes (such as requests' ``request``, which keeps
    the full URL for code that needs it) stay as they are; only the text of
    their arguments and notes changes. Returns ``exc``.
    """
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        args = current.args
        redacted = tuple(redact_text(arg) if isinstance(arg, str) else arg for arg in args)
        if redacted != args:
            current.args = redacted
        notes = getattr(current, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [redact_text(note) if isinstance(note, str) else note for note in notes]
        linked = [*args, current.__cause__, current.__context__, getattr(current, "reason", None)]
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return exc


class RedactingFilter(logging.Filter):
    """A logger filter that redacts URLs in the records emitted while ``active()`` is true.

    Installed on foreign loggers (urllib3's), it touches only the records of
    our own calls and leaves everyone else's as they are.
    """

    def __init__(self, active: Callable[[], bool]) -> None:
        super().__init__()
        self._active = active

    def filter(self, record: logging.LogRecord) -> bool:
        if self._active():
            message = record.getMessage()
            redacted = redact_text(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True
