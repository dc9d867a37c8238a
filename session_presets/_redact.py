"""Redaction: the one home for taking secrets out of URLs and headers before they are shown or stored."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "AUTHORIZATION_HEADERS",
    "CREDENTIAL_HEADERS",
    "SECRET_HEADER_WORDS",
    "RedactingFilter",
    "looks_secret",
    "mask_text",
    "mask_url",
    "mask_value",
    "redact_exception",
    "redact_text",
    "safe_url",
    "strip_credentials",
    "userinfo_secrets",
    "without_userinfo",
]

#: Headers that carry credentials for the server or the proxy: refused in presets.
AUTHORIZATION_HEADERS: Final = frozenset({"authorization", "proxy-authorization"})
#: Headers that carry credentials: never stored, never logged, never remembered, never sent to another origin.
CREDENTIAL_HEADERS: Final = AUTHORIZATION_HEADERS | {"cookie"}
#: Words that make any header name look like it carries a secret (``X-Api-Key``, ``X-Auth-Token``).
SECRET_HEADER_WORDS: Final = ("auth", "cookie", "key", "password", "secret", "session", "signature", "token")


def looks_secret(name: str) -> bool:
    """Whether header ``name`` is a credential header or looks like one (see SECRET_HEADER_WORDS)."""
    lowered = name.lower()
    return lowered in CREDENTIAL_HEADERS or any(word in lowered for word in SECRET_HEADER_WORDS)

#: What stands in for a userinfo (or any known secret) in what is shown.
MASK: Final = "***"

_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# What may follow the userinfo's "@": a host (a name, IPv4 or [IPv6]) and an optional port.
_HOST_PORT: Final = re.compile(r"(?:\[[0-9A-Za-z:.%]*\]|[^\s:/?#@\[\]'\"<>]*)(?::\d*)?")
_AUTHORITY_END: Final = re.compile(r"[/?#]")


def _authority_end(rest: str, start: int = 0) -> int:
    found = _AUTHORITY_END.search(rest, start)
    return len(rest) if found is None else found.start()


def _userinfo_end(rest: str) -> int:
    """Return the index of the ``@`` that ends the userinfo in ``rest`` (a URL after its scheme), or -1.

    A well-formed authority (everything up to the first ``/``, ``?`` or ``#``) is split at
    its last ``@``, as urllib3 splits it. When what follows that ``@`` is no host and port,
    the password holds a ``/``, ``?``, ``#`` or space that a URL parser would take for the
    end of the authority: the userinfo then runs to the last ``@`` that a host follows, so
    too much is masked rather than too little.
    """
    end = _authority_end(rest)
    at = rest.rfind("@", 0, end)
    if _HOST_PORT.fullmatch(rest, at + 1, end):
        return at
    last = -1
    for index in range(len(rest) - 1, at, -1):
        if rest[index] != "@":
            continue
        if last < 0:
            last = index
        if _HOST_PORT.fullmatch(rest, index + 1, _authority_end(rest, index + 1)):
            return index
    return last if last >= 0 else at


def _split(url: str) -> tuple[str, str, str]:
    """Split ``url`` into (``scheme://`` or ``""``, userinfo or ``""``, the rest after its ``@``)."""
    scheme = _SCHEME.match(url)
    prefix = scheme.group(0) if scheme else ""
    rest = url[len(prefix) :]
    at = _userinfo_end(rest)
    if at < 0:
        return prefix, "", rest
    return prefix, rest[:at], rest[at + 1 :]


def mask_url(url: str) -> str:
    """Return ``url`` with its whole userinfo replaced by ``***``, whatever characters it holds.

    A URL without a scheme (``user:password@host:port``, as proxies are often written) is
    masked too.
    """
    prefix, userinfo, rest = _split(url)
    if not userinfo and not url[len(prefix) :].startswith("@"):
        return url
    return f"{prefix}{MASK}@{rest}"


def mask_value(value: object) -> object:
    """Return ``value`` (a URL, or a mapping or sequence of them) with every userinfo masked."""
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, Mapping):
        return {key: mask_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_value(item) for item in value)
    return value


def mask_text(text: str) -> str:
    """Return a configuration text (a URL, or a JSON object of URLs) with every userinfo masked."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except ValueError:
            return redact_text(text, keep_query=True)
        if isinstance(value, dict):
            return json.dumps({key: mask_url(item) if isinstance(item, str) else item for key, item in value.items()})
    if stripped.startswith(("{", "[")):
        return redact_text(text, keep_query=True)
    return mask_url(text)


def userinfo_secrets(urls: Iterable[object]) -> tuple[str, ...]:
    """Return the userinfo of each URL in ``urls``, and the pieces of it a URL parser may show.

    A parser that takes a ``#`` in a password for the start of a fragment reports
    ``'user:pa'`` as a bad host and port; that piece is returned too, longest first.
    """
    found: set[str] = set()
    for url in urls:
        if not isinstance(url, str):
            continue
        prefix, userinfo, _ = _split(url)
        if not userinfo:
            continue
        # The userinfo and its pieces are masked, not the password alone: a short
        # password would mask every match of it in a message that never held it.
        found.add(userinfo)
        rest = url[len(prefix) :]
        parsed_authority = rest[: _authority_end(rest)]
        if parsed_authority and userinfo.startswith(parsed_authority):
            found.add(parsed_authority)
    return tuple(sorted(found, key=len, reverse=True))


def safe_url(url: str | bytes | None) -> str:
    """Return ``url`` without credentials, query string or fragment, for logs and errors."""
    if url is None:
        return ""
    text = url.decode("utf-8", "replace") if isinstance(url, bytes) else url
    prefix, _, rest = _split(text)
    try:
        parts = urlsplit(prefix + rest)
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def without_userinfo(url: str) -> str:
    """Return ``url`` without ``user:password@``, everything else kept."""
    prefix, userinfo, rest = _split(url)
    if not userinfo and not url[len(prefix) :].startswith("@"):
        return url
    return prefix + rest


def strip_credentials(url: str, headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Return ``url`` without ``user:password@`` and ``headers`` without credential headers."""
    kept = {name: value for name, value in headers.items() if name.lower() not in CREDENTIAL_HEADERS}
    return without_userinfo(url), kept


# A URL in a text: a scheme, then everything up to a space or a quote.
_URL_IN_TEXT: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]*")
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


def _drop_userinfo(match: re.Match[str]) -> str:
    return without_userinfo(match.group(0))


def redact_text(text: str, *, secrets: Iterable[str] = (), keep_query: bool = False) -> str:
    """Return ``text`` with every URL's userinfo, query string and fragment taken out.

    Each URL in the text (a scheme, then up to a space or a quote) is parsed: its userinfo
    runs to the last ``@`` of its authority, whatever it holds.

    Args:
        text: the text to redact.
        secrets: known secrets (see :func:`userinfo_secrets`), each replaced by ``***``
            wherever it appears, for texts that show a secret outside any URL.
        keep_query: keep query strings (for configuration texts, which have none to hide).
    """
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    if "?" not in text and "#" not in text and "@" not in text:
        return text
    text = _URL_IN_TEXT.sub(_drop_userinfo, text)
    if keep_query:
        return text
    text = _QUERY.sub(_drop_query, text)
    return _BARE_QUERY.sub(_drop_query, text)


def redact_exception(exc: BaseException, *, secrets: Iterable[str] = ()) -> BaseException:
    """Take query strings and userinfo out of the message of ``exc`` and of every exception it links to.

    ``secrets`` (see :func:`userinfo_secrets`) are masked wherever they appear: urllib3
    shows the piece of a proxy's userinfo that it took for a host without any URL around it.

    The exceptions are changed in place, so their types, ``__cause__``,
    ``__context__`` and attributes (such as requests' ``request``, which keeps
    the full URL for code that needs it) stay as they are; only the text of
    their arguments and notes changes. Returns ``exc``.
    """
    hidden = tuple(secrets)
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        args = current.args
        redacted = tuple(redact_text(arg, secrets=hidden) if isinstance(arg, str) else arg for arg in args)
        if redacted != args:
            current.args = redacted
        notes = getattr(current, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [redact_text(note, secrets=hidden) if isinstance(note, str) else note for note in notes]
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
