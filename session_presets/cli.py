"""The ``session-presets`` command line: presets, fetch a URL, download or upload a file, bench, doctor.

Exit statuses (the same table is printed by ``--help`` and shown in docs/cli.md):

- 0: success (for ``get``, a final status below 400).
- 1: the server answered with a status of 400 or more; the body is still printed.
- 2: usage or configuration error (bad option, bad ``SESSION_PRESETS_*`` value,
  unknown preset, unreadable ``-d @file``).
- 3: network, TLS, timeout or redirect failure: no final response.
- 4: the transfer is in use: another download holds its identifier or its file.
- 23: the output could not be written. A closed pipe (``| head``) exits 23
  without a message, as curl does.
- 70: internal error (a bug).
- 130: interrupted with Ctrl-C.

No traceback reaches the user unless ``--debug`` is given. Nothing in the
library imports this module.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import ssl
import stat
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Final, NoReturn, TextIO

import requests

from ._config import PresetConfig, check_header
from ._diagnostics import diagnostics
from ._env import collected_error, parse_duration, variable_name
from ._errors import (
    ConfigError,
    DestinationInUseError,
    IdentifierInUseError,
    InsecureRedirectError,
    SessionPresetsWarning,
    TotalTimeoutError,
    TransferError,
)
from ._metrics import format_timing
from ._presets import get_preset, preset_names
from ._redact import safe_url, without_userinfo
from ._sessions import PresetSession
from ._version import __version__

__all__ = [
    "DEFAULT_SCHEME",
    "EXIT_CONFIG",
    "EXIT_HTTP",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_IN_USE",
    "EXIT_NETWORK",
    "EXIT_OK",
    "EXIT_WRITE",
    "format_duration",
    "main",
]

#: Success.
EXIT_OK: Final = 0
#: The server answered with a status of 400 or more.
EXIT_HTTP: Final = 1
#: Usage or configuration error.
EXIT_CONFIG: Final = 2
#: Network, TLS, timeout or redirect failure.
EXIT_NETWORK: Final = 3
#: The background transfer (its identifier) is in use by another process.
EXIT_IN_USE: Final = 4
#: The output could not be written; curl's code for the same (a closed pipe included).
EXIT_WRITE: Final = 23
#: A bug: an exception nobody expected (sysexits' EX_SOFTWARE).
EXIT_INTERNAL: Final = 70
#: Interrupted by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED: Final = 130

#: The scheme given to a URL typed without one: https, so that nothing typed
#: without a scheme (a -H token, a -d body) ever crosses the network in clear.
DEFAULT_SCHEME: Final = "https"

PROG: Final = "session-presets"

EXIT_TABLE: Final = """\
exit statuses:
  0    success (get: a final status below 400)
  1    the server answered with an HTTP status of 400 or more (the body is still printed)
  2    usage or configuration error (bad option, SESSION_PRESETS_* value, preset, -d @file)
  3    network, TLS, timeout or redirect failure: no final response
  4    the transfer is in use: another download holds its identifier or its file
  23   the output could not be written; a closed pipe (| head) exits 23 quietly, like curl
  70   internal error (a bug: run again with --debug and report it)
  130  interrupted (Ctrl-C)"""

#: Bytes read from a response body at a time.
_BODY_CHUNK: Final = 64 * 1024
#: Seconds between two progress updates, and how often a download's wait wakes up.
_PROGRESS_INTERVAL: Final = 0.1
#: Bytes of a body looked at to tell text from binary (NUL bytes mean binary, as curl and httpie decide).
_SNIFF: Final = 1024
#: The longest the "already complete" check may take before the download itself goes ahead.
_CHECK_TIMEOUT: Final = 30.0

#: Preset fields that are durations, shown as 20s, 5m, 7d.
_DURATION_FIELDS: Final = frozenset(
    {"connect_timeout", "read_timeout", "total_timeout", "backoff_factor", "backoff_max", "max_connection_age"}
)
#: OpenSSL reasons seen when a TLS client talks to a plain-HTTP port.
_PLAIN_HTTP_REASONS: Final = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST", "UNKNOWN_PROTOCOL"}
)
#: X.509 verify codes that mean "no trusted CA for this chain" (a private or missing CA).
_UNKNOWN_CA_CODES: Final = frozenset({2, 18, 19, 20, 21})

log = logging.getLogger(__name__)


class _Debug(threading.local):
    """Whether the running command was given --debug."""

    enabled = False


_debug = _Debug()


class UsageError(Exception):
    """A command-line argument is invalid; exit status 2."""


class _WriteError(Exception):
    """The output could not be written; exit status 23 (quietly for a closed pipe)."""

    def __init__(self, message: str | None) -> None:
        super().__init__(message or "")
        self.message = message


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so ``main`` returns a status."""

    #: Builds the epilog when help is shown, for text that costs an import.
    epilog_factory: Callable[[], str] | None = None

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)

    def format_help(self) -> str:
        if self.epilog_factory is not None:
            self.epilog = self.epilog_factory()
        return super().format_help()


# -- output helpers ----------------------------------------------------------------


def _err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _library_warnings_as_messages() -> Iterator[None]:
    """Print the library's warnings as one ``session-presets: warning:`` line each, once."""
    # Once per text, whatever the code location: the same warning from two sessions
    # (-k on a download and its completeness check) is one message for a person.
    printed: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("default", SessionPresetsWarning)
        original = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
            if not issubclass(category, SessionPresetsWarning):
                original(message, category, filename, lineno, file, line)
            elif str(message) not in printed:
                printed.add(str(message))
                _err(f"warning: {message}")

        warnings.showwarning = show
        yield


def _binary_stdout() -> IO[bytes]:
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # pragma: no cover - a replaced stdout without a byte layer
        raise UsageError("standard output cannot take binary data; use -o FILE")
    return buffer  # type: ignore[no-any-return]


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # pragma: no cover - a closed or replaced stdout
        return False


def _summary(line: str) -> None:
    """Print a command's closing line: on stdout for scripts and logs, on stderr for a person."""
    if _stdout_is_terminal():
        _err(line)
    else:
        print(line, flush=True)


def format_duration(seconds: float) -> str:
    """Return ``seconds`` in the form the environment accepts: 500ms, 20s, 5m, 1h, 7d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds == 0 or seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


def _human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"  # pragma: no cover - the loop always returns


# -- error reasons -------------------------------------------------------------------


def _causes(exc: BaseException) -> Iterator[BaseException]:
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
    chain = list(_causes(exc))
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


def _network_error(url: str, exc: BaseException, config: PresetConfig | None = None) -> int:
    if _debug.enabled:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    if isinstance(exc, InsecureRedirectError):
        _err(str(exc).splitlines()[0])
    else:
        _err(f"{safe_url(url)}: {network_reason(exc, url=url, config=config)}")
    return EXIT_NETWORK


def _short_reason(text: str) -> str:
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


# -- presets --------------------------------------------------------------------------


def _platform_state_dir() -> str:
    try:
        from .background.lockfile import default_state_dir
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


# -- get ------------------------------------------------------------------------------


def _with_scheme(url: str) -> str:
    """Give a URL typed without a scheme the default one (``example.com/x`` → ``https://example.com/x``)."""
    if "://" in url:
        return url
    return f"{DEFAULT_SCHEME}://{url.lstrip('/')}"


def _parse_header(text: str) -> tuple[str, str | None]:
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not name:
        raise UsageError(f"-H {text!r} is invalid: expected 'Name: value' (or 'Name:' to remove a header)")
    value = value.strip()
    try:
        check_header(name, value, field="-H")
    except ConfigError as exc:
        raise UsageError(f"-H {text!r} is invalid: {exc.reason}") from None
    return name, (value or None)


def _read_body(option: str, text: str) -> bytes:
    """Return the bytes an option's value stands for: ``@file``, ``@-`` (stdin) or the text itself."""
    if not text.startswith("@"):
        return text.encode("utf-8")
    source = text[1:]
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        with open(source, "rb") as file:
            return file.read()
    except OSError as exc:
        raise UsageError(f"{option} {text!r}: cannot read {source!r}: {exc.strerror or exc}") from exc


def _request_body(args: argparse.Namespace, headers: dict[str, Any]) -> bytes | None:
    """Build the body of -d/--data or --json and set its Content-Type unless -H did."""
    given = {name.lower() for name in headers}
    if args.data and args.json is not None:
        raise UsageError("-d/--data and --json cannot be combined: give one body")
    if args.json is not None:
        body = _read_body("--json", args.json)
        try:
            json.loads(body)
        except ValueError as exc:
            raise UsageError(f"--json body is not valid JSON: {exc}") from exc
        if "content-type" not in given:
            headers["Content-Type"] = "application/json"
        if "accept" not in given:
            headers["Accept"] = "application/json"
        return body
    if args.data:
        body = b"&".join(_read_body("-d", text) for text in args.data)
        if "content-type" not in given:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return body
    return None


def _status_block(response: requests.Response) -> bytes:
    version = {10: "1.0", 11: "1.1", 20: "2"}.get(getattr(response.raw, "version", 11), "1.1")
    lines = [f"HTTP/{version} {response.status_code} {response.reason or ''}".rstrip()]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def _config_with(preset: str, args: argparse.Namespace) -> PresetConfig:
    """The preset's effective configuration with the command line's options applied."""
    changes: dict[str, Any] = {}
    if getattr(args, "timeout", None) is not None:
        changes["total_timeout"] = args.timeout
    if getattr(args, "retries", None) is not None:
        changes["retries"] = args.retries
    if getattr(args, "insecure", False):
        changes["verify"] = False
    if getattr(args, "max_redirs", None) is not None:
        changes["max_redirects"] = args.max_redirs
    config = get_preset(preset)
    return config.replace(**changes) if changes else config


def _check_url(url: str) -> str:
    lowered = url.lower()
    if not lowered.startswith(("http://", "https://")):
        scheme = url.split("://", 1)[0]
        raise UsageError(f"{safe_url(url)!r} is not an http(s) URL: scheme {scheme!r} is not supported")
    return url


def _write_body(out: IO[bytes], response: requests.Response, first: bytes) -> None:
    try:
        if first:
            out.write(first)
        for chunk in response.iter_content(_BODY_CHUNK):
            out.write(chunk)
        out.flush()
    except BrokenPipeError as exc:
        raise _WriteError(None) from exc
    except OSError as exc:
        if isinstance(exc, requests.RequestException):  # pragma: no cover - requests' own errors are not OSError
            raise
        raise _WriteError(f"cannot write the body: {exc.strerror or exc}") from exc


class _OutputFile:
    """``get -o FILE``: a temporary file beside FILE, renamed over it once the body is complete.

    The rename replaces FILE itself: a symbolic link at FILE is replaced, never
    written through (nor its missing target created), and a failed transfer
    leaves FILE as it was. A device, FIFO or socket (``-o /dev/null``, or a link
    to one such as ``/dev/stdout``) is written in place: it cannot be replaced.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._target = os.path.abspath(path)
        self._temp: str | None = None
        try:
            if _is_special(self._target):
                self.file: IO[bytes] = open(self._target, "wb")  # noqa: SIM115 - closed by commit/discard
                return
            if os.path.isdir(self._target):
                raise UsageError(f"-o {path!r} is a directory; give a file path")
            # Short enough for any file system's name limit, and hidden while it is incomplete.
            prefix = f".{os.path.basename(self._target)[:64]}."
            fd, self._temp = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=os.path.dirname(self._target))
        except OSError as exc:
            raise UsageError(f"cannot write {path!r}: {exc.strerror or exc}") from exc
        umask = os.umask(0o022)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # what open() would have made, not mkstemp's 0600
        self.file = os.fdopen(fd, "wb")

    def commit(self) -> None:
        """Close the file and put it in place of FILE."""
        self.file.close()
        if self._temp is None:
            return
        try:
            os.replace(self._temp, self._target)
        except OSError as exc:
            self.discard()
            raise _WriteError(f"cannot write {self.path!r}: {exc.strerror or exc}") from exc
        self._temp = None

    def discard(self) -> None:
        """Close and remove the temporary file; FILE is left as it was."""
        self.file.close()
        if self._temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp)
            self._temp = None


def _is_special(path: str) -> bool:
    """True if ``path`` is (or links to) something other than a regular file or a directory."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _fetch(args: argparse.Namespace, preset: str) -> int:
    """Send one request and write the response; the body of ``get`` and of ``download -o -``."""
    headers: dict[str, Any] = dict(_parse_header(text) for text in getattr(args, "header", []))
    body = _request_body(args, headers)
    method = (args.request or ("POST" if body is not None else "GET")).upper()
    url = _check_url(_with_scheme(args.url))
    config = _config_with(preset, args)
    # The output is checked (and its temporary file made) before anything is sent.
    output = _OutputFile(args.output) if args.output not in (None, "-") else None
    try:
        return _fetch_to(args, config, method=method, url=url, headers=headers, body=body, output=output)
    finally:
        if output is not None:
            output.discard()


def _fetch_to(
    args: argparse.Namespace,
    config: PresetConfig,
    *,
    method: str,
    url: str,
    headers: dict[str, Any],
    body: Any,
    output: _OutputFile | None,
) -> int:
    """Send the request of :func:`_fetch` and write its response to ``output`` (else standard output)."""
    with PresetSession(config) as session:
        try:
            response = session.request(
                method, url, headers=headers, data=body, stream=True, allow_redirects=args.location
            )
        except requests.exceptions.InvalidURL as exc:
            if isinstance(exc, InsecureRedirectError):
                return _network_error(url, exc, config)
            raise UsageError(f"{safe_url(url)!r} is not a valid URL ({exc})") from exc
        except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema) as exc:
            raise UsageError(f"{safe_url(url)!r} is not an http(s) URL ({exc})") from exc
        except requests.RequestException as exc:
            return _network_error(url, exc, config)
        with response:
            try:
                status = _output(args, response, url, config, output)
            except requests.RequestException as exc:
                return _network_error(url, exc, config)
            if output is not None and status is None:
                output.commit()
        if getattr(args, "timing", False):
            # After the body (and its close): body and total are filled in by then.
            sys.stderr.write(format_timing(getattr(response, "metrics", None)))
        if status is not None:
            return status
        if response.status_code >= 400:
            retries = session.stats.retries
            after = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
            _err(f"HTTP {response.status_code} {response.reason or ''}".rstrip()
                 + f" from {safe_url(response.url)}{after}")
            return EXIT_HTTP
    return EXIT_OK


def _output(
    args: argparse.Namespace,
    response: requests.Response,
    url: str,
    config: PresetConfig,
    output: _OutputFile | None = None,
) -> int | None:
    """Write the status block and body to ``output`` (else standard output); None when all went out."""
    out: IO[bytes] = output.file if output is not None else _binary_stdout()
    if args.include:
        try:
            out.write(_status_block(response))
        except BrokenPipeError as exc:
            raise _WriteError(None) from exc
    first = b""
    if args.output is None and _stdout_is_terminal():
        first = next(response.iter_content(_SNIFF), b"")
        if b"\x00" in first:
            kind = response.headers.get("Content-Type", "unknown type")
            length = response.headers.get("Content-Length")
            size = f", {length} bytes" if length else ""
            _err(f"warning: binary body ({kind}{size}) not printed to the terminal; "
                 "use -o FILE to save it, or -o - to print it anyway")
            return None
    _write_body(out, response, first)
    return None


def _cmd_get(args: argparse.Namespace) -> int:
    return _fetch(args, args.preset)


# -- download ------------------------------------------------------------------------


def default_identifier(output: str) -> str:
    """Return the background identifier derived from ``output``'s absolute path.

    The same output path always gives the same identifier, so a rerun finds the
    journal and the ``.part`` file of an interrupted download.
    """
    digest = hashlib.sha256(os.path.abspath(output).encode("utf-8", "surrogateescape")).hexdigest()
    return f"cli-{digest[:16]}"


class _Progress:
    """Progress on stderr: tqdm when installed, a plain percentage line otherwise.

    Once closed it stays closed: the worker thread may still report progress
    after an interrupt, and no second bar must appear.
    """

    def __init__(self, label: str, *, enabled: bool) -> None:
        self._label = label
        self._enabled = enabled
        self._lock = threading.Lock()
        self._bar: Any = None
        self._last = 0.0
        self._shown = False
        self._closed = False
        try:
            import tqdm

            self._tqdm: Any = tqdm.tqdm
        except ImportError:
            self._tqdm = None

    def __call__(self, task: Any) -> None:
        if not self._enabled:
            return
        done = int(getattr(task, "bytes_done", 0) or 0)
        total = getattr(task, "bytes_total", None)
        with self._lock:
            if self._closed:
                return
            if self._tqdm is not None:
                if self._bar is None:
                    self._bar = self._tqdm(
                        total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                        desc=self._label, file=sys.stderr, leave=True,
                    )
                if total is not None and self._bar.total != total:
                    self._bar.total = total
                self._bar.n = done
                self._bar.refresh()
                return
            now = time.monotonic()
            if now - self._last < _PROGRESS_INTERVAL and (total is None or done < total):
                return
            self._last = now
            mib = done / (1 << 20)
            text = f"{self._label}: {mib:.1f} MiB" if not total else (
                f"{self._label}: {100 * done / total:3.0f}% ({mib:.1f} of {total / (1 << 20):.1f} MiB)"
            )
            sys.stderr.write("\r" + text)
            sys.stderr.flush()
            self._shown = True

    def message(self, line: str) -> None:
        """Print one ``session-presets:`` line on stderr without breaking the bar; nothing once closed.

        After close() the command prints its own last line (interrupted, gave
        up, saved): a retry the worker thread reports meanwhile must not follow
        it, nor land in the middle of it.
        """
        text = f"{PROG}: {line}"
        with self._lock:
            if self._closed:
                return
            if self._bar is not None:
                self._bar.write(text, file=sys.stderr)
                return
            if self._shown:
                sys.stderr.write("\r\x1b[K")
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the bar or the line for good."""
        with self._lock:
            self._closed = True
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            elif self._shown:
                sys.stderr.write("\n")
                sys.stderr.flush()
                self._shown = False


class _RetryReporter(logging.Handler):
    """Prints each retry the background engine decides on: attempt, reason, next try.

    The engine reports a retry as a debug record ``task %d attempt %d: %s;
    retrying in %.2fs``; this handler listens to the ``session_presets.background``
    logger while the command runs.
    """

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.DEBUG)
        self._say = say
        self.task_id: int | None = None
        self.last_reason: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if "retrying in" not in str(record.msg) or not isinstance(args, tuple) or len(args) != 4:
            return
        task_id, attempt, reason, delay = args
        if self.task_id is not None and task_id != self.task_id:
            return
        self.last_reason = _short_reason(str(reason))
        try:
            seconds = float(delay)  # type: ignore[arg-type]
        except (TypeError, ValueError):  # pragma: no cover - the engine logs a number
            seconds = 0.0
        self._say(f"attempt {attempt} failed: {self.last_reason}; next try in {seconds:.1f} s")


@contextlib.contextmanager
def _reporting_retries(reporter: _RetryReporter) -> Iterator[None]:
    logger = logging.getLogger("session_presets.background")
    level = logger.level
    logger.addHandler(reporter)
    if not logger.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(reporter)
        logger.setLevel(level)


def _task_dest(task: Any) -> str | None:
    value = getattr(task, "dest", None)
    return None if value is None else os.path.abspath(os.fspath(str(value)))


def _state(task: Any) -> str:
    state = getattr(task, "state", "")
    return str(getattr(state, "value", state))


def _same_source(task: Any, args: argparse.Namespace) -> bool:
    same_url = without_userinfo(task.url) == without_userinfo(args.url)
    return bool(same_url and getattr(task, "sha256", None) == args.sha256)


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _current_because(args: argparse.Namespace, output: str, record: Any) -> str | None:
    """Say why the complete file at ``output`` is current, or None to download it again.

    With ``--sha256`` the file's digest decides, with no request. Otherwise the
    validators recorded by the run that completed it (ETag, Last-Modified,
    length) are sent in a conditional GET: 304, or a 200 with the same strong
    ETag (or the same Last-Modified and length), means the file is current.
    """
    try:
        size = os.path.getsize(output)
    except OSError:
        return None
    if args.sha256 is not None:
        try:
            return "its sha256 matches" if _sha256_of(output) == args.sha256 else None
        except OSError:
            return None
    if record is None or getattr(record, "bytes_total", None) not in (None, size):
        return None
    etag = getattr(record, "etag", None)
    last_modified = getattr(record, "last_modified", None)
    headers = {"Accept-Encoding": "identity"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    config = _config_with("background", args).replace(
        retries=0, total_timeout=min(args.timeout or _CHECK_TIMEOUT, _CHECK_TIMEOUT)
    )
    try:
        with PresetSession(config) as session, session.get(args.url, headers=headers, stream=True) as response:
            if response.status_code == 304:
                return "the server answered 304 Not Modified"
            if response.status_code != 200:
                return None
            length = response.headers.get("Content-Length")
            same_length = length == str(size)
            if etag and not etag.startswith("W/") and response.headers.get("ETag") == etag:
                return f"ETag {etag} is unchanged"
            if not etag and last_modified and response.headers.get("Last-Modified") == last_modified and same_length:
                return "Last-Modified and length are unchanged"
            if not etag and not last_modified and same_length and not response.headers.get("ETag") \
                    and not response.headers.get("Last-Modified"):
                return "its length matches (the server sends no ETag or Last-Modified)"
    except requests.RequestException as exc:
        log.debug("the already-complete check failed: %r", exc)
    return None


def _find_or_start(
    bg: Any, args: argparse.Namespace, output: str, progress: _Progress
) -> tuple[Any, str | None, bool]:
    """Return the task that writes ``output`` (None if the file is current), why not, and if it resumes."""
    completed = None
    for existing in bg.tasks():
        if _task_dest(existing) != output:
            continue
        if _state(existing) in ("pending", "running"):
            if _same_source(existing, args):
                existing.progress = progress
                return existing, None, True  # an interrupted run of the same command: its .part resumes
            existing.cancel()
            existing.wait()
        elif _state(existing) == "completed" and _same_source(existing, args) and completed is None:
            completed = existing
            continue
        with contextlib.suppress(Exception):
            bg.forget(existing)
    if os.path.isfile(output):
        because = _current_because(args, output, completed)
        if because is not None:
            return None, because, False
    if completed is not None:
        with contextlib.suppress(Exception):
            bg.forget(completed)
    return bg.download(args.url, output, sha256=args.sha256, progress=progress), None, False


def _transfer_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The preset fields that ``--retries`` and ``-k`` override for a download or an upload."""
    overrides: dict[str, Any] = {}
    if args.retries is not None:
        overrides["retries"] = args.retries
    if args.insecure:
        overrides["verify"] = False
    return overrides


def _follow_transfer(
    task: Any, progress: Any, reporter: Any, args: argparse.Namespace, deadline: float | None, note: Callable[[], str]
) -> tuple[bool, int] | None:
    """Show ``task``'s progress until it ends; the early exit (``--timeout`` passed, or Ctrl-C), else None.

    On either early exit the transfer is left live: at exit the session suspends it and keeps
    the journal (and a download's .part file), like a kill would, for the next run to resume.
    ``note`` says how to resume, read when it is printed.
    """
    try:
        while not task.done:
            if deadline is not None and time.monotonic() >= deadline:
                task.progress = None
                progress.close()
                last = f"; last error: {reporter.last_reason}" if reporter.last_reason else ""
                _err(f"{safe_url(args.url)}: gave up after --timeout {format_duration(args.timeout)}{last}; {note()}")
                return True, EXIT_NETWORK
            task.wait(_PROGRESS_INTERVAL)
            progress(task)
    except KeyboardInterrupt:
        task.progress = None
        progress.close()
        _err(f"interrupted; {note()}")
        return True, EXIT_INTERRUPTED
    progress(task)
    progress.close()
    return None


def _part_note(output: str) -> str:
    part = output + ".part"
    try:
        size = os.path.getsize(part)
    except OSError:
        size = 0
    if size:
        return f"{size} bytes kept in {part}: run the same command again to resume"
    return "no data had arrived, so nothing was kept"


def _cmd_download(args: argparse.Namespace) -> int:
    from .background import background_session

    if args.output == "-" and args.detach:
        raise UsageError("--detach needs -o FILE: the agent cannot write to this command's standard output")
    if args.output == "-":
        # Standard output cannot be resumed into: stream it as get does, with the background preset.
        args.include, args.header, args.data, args.json, args.request = False, [], [], None, None
        args.location, args.max_redirs = True, None
        return _fetch(args, "background")
    args.url = _check_url(_with_scheme(args.url))
    output = os.path.abspath(args.output)
    if os.path.isdir(output):
        raise UsageError(f"-o {args.output!r} is a directory; give a file path")
    if args.sha256 is not None:
        text = args.sha256.strip().lower()
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise UsageError(f"--sha256 {args.sha256!r} is invalid: expected 64 hexadecimal digits")
        args.sha256 = text
    identifier = args.identifier or default_identifier(output)
    overrides = _transfer_overrides(args)
    if args.detach:
        from ._cli_transfers import run_detached_download

        return run_detached_download(args, identifier, output, overrides)
    progress = _Progress(os.path.basename(output), enabled=sys.stderr.isatty())
    reporter = _RetryReporter(progress.message)
    # Measured before the session opens: it resumes an interrupted task at once.
    started = time.monotonic()
    part_before = os.path.getsize(output + ".part") if os.path.isfile(output + ".part") else 0
    with _reporting_retries(reporter):
        bg: Any = background_session(identifier, **overrides)
        detached = False
        try:
            detached, status = _run_download(bg, args, output, progress, reporter, started, part_before)
            return status
        finally:
            progress.close()
            if not detached:
                bg.finish_tasks_and_invalidate()


def _run_download(
    bg: Any,
    args: argparse.Namespace,
    output: str,
    progress: _Progress,
    reporter: _RetryReporter,
    started: float,
    part_before: int,
) -> tuple[bool, int]:
    """Run the download to its end; return (left running for a later resume, exit status)."""
    deadline = None if args.timeout is None else started + args.timeout
    task, because, reattached = _find_or_start(bg, args, output, progress)
    if task is None:
        _summary(f"{output} is already complete: {because}; nothing downloaded")
        return False, EXIT_OK
    reporter.task_id = task.id
    # The journal's committed offset, not bytes_done (a reattached task resumes at
    # once and may be finished by now) nor the .part's size (the engine cuts it back
    # to what the journal committed).
    resumed_from = int(getattr(task, "resumed_from", part_before) or 0) if reattached else 0
    early = _follow_transfer(task, progress, reporter, args, deadline, lambda: _part_note(output))
    if early is not None:
        return early
    state = _state(task)
    if state != "completed":
        return False, _transfer_failed(args.url, getattr(task, "error", None), state, task)
    elapsed = max(time.monotonic() - started, 1e-6)
    size = int(task.bytes_done)
    fetched = max(size - resumed_from, 0)
    how = f"resumed from byte {resumed_from}" if resumed_from else "not resumed"
    _summary(f"saved {output}: {size} bytes in {elapsed:.1f} s ({_human_bytes(fetched / elapsed)}/s), {how}")
    return False, EXIT_OK


def _transfer_failed(url: str, error: BaseException | None, state: str, task: Any) -> int:
    attempts = int(getattr(task, "attempts", 0) or 0)
    after = f" (after {attempts} attempt{'s' if attempts != 1 else ''})" if attempts > 1 else ""
    if error is None:
        _err(f"{safe_url(url)}: download {state}")
        return EXIT_HTTP
    if _debug.enabled:
        traceback.print_exception(type(error), error, error.__traceback__)
    if any(isinstance(item, (requests.RequestException, ssl.SSLError)) and not isinstance(item, TransferError)
           for item in _causes(error)):
        _err(f"{safe_url(url)}: {network_reason(error, url=url)}{after}")
        return EXIT_NETWORK
    message = str(error).strip().splitlines()
    _err(message[0] if message else f"{safe_url(url)}: download {state}")
    return EXIT_HTTP


# -- upload -----------------------------------------------------------------------------


def upload_identifier(src: str, url: str) -> str:
    """Return the background identifier of uploading ``src`` to ``url``: the same pair, the same journal."""
    key = f"{os.path.abspath(src)}\0{without_userinfo(url)}"
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
    return f"cli-up-{digest[:16]}"


def _identity_now(src: str) -> str | None:
    try:
        info = os.stat(src)
    except OSError:
        return None
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"


def find_upload(bg: Any, src: str, url: str) -> tuple[Any, bool]:
    """The task of this session that uploads ``src`` to ``url`` and whether it is already complete.

    A pending or running task is reattached (it resumes); a completed one whose
    source is unchanged means there is nothing to send. Any other task for the
    same file (failed, cancelled, or completed with another version of the
    file) is forgotten, and (None, False) says to start a new upload.
    """
    for existing in bg.tasks():
        if existing.src is None or os.path.abspath(existing.src) != src:
            continue
        same_url = without_userinfo(existing.url) == without_userinfo(url)
        state = _state(existing)
        if same_url and state in ("pending", "running"):
            return existing, False
        now = _identity_now(src)
        if same_url and state == "completed" and now is not None and existing.source_identity == now:
            return existing, True
        if state in ("pending", "running"):
            existing.cancel()
            existing.wait()
        with contextlib.suppress(Exception):
            bg.forget(existing)
    return None, False


def _cmd_upload(args: argparse.Namespace) -> int:
    from .background import background_session

    args.url = _check_url(_with_scheme(args.url))
    src = os.path.abspath(args.file)
    if not os.path.isfile(src):
        raise UsageError(f"FILE {args.file!r} is not an existing file")
    identifier = args.identifier or upload_identifier(src, args.url)
    overrides = _transfer_overrides(args)
    if args.detach:
        from ._cli_transfers import run_detached_upload

        return run_detached_upload(args, identifier, src, overrides)
    progress = _Progress(os.path.basename(src), enabled=sys.stderr.isatty())
    reporter = _RetryReporter(progress.message)
    started = time.monotonic()
    with _reporting_retries(reporter):
        bg: Any = background_session(identifier, **overrides)
        left_running = False
        try:
            task, complete = find_upload(bg, src, args.url)
            if complete:
                _summary(f"{src} is already uploaded to {safe_url(args.url)} (unchanged since); nothing sent")
                return EXIT_OK
            reattached = task is not None
            if task is None:
                task = bg.upload(args.url, src, protocol=args.protocol, progress=progress)
            else:
                task.progress = progress
            left_running, status = _run_upload(task, args, progress, reporter, started, reattached)
            return status
        finally:
            progress.close()
            if not left_running:
                bg.finish_tasks_and_invalidate()


def _run_upload(
    task: Any, args: argparse.Namespace, progress: _Progress, reporter: _RetryReporter, started: float,
    reattached: bool,
) -> tuple[bool, int]:
    """Wait for the upload to end; return (left running for a later resume, exit status)."""
    reporter.task_id = task.id
    deadline = None if args.timeout is None else started + args.timeout
    resumable = "run the same command again to resume"
    early = _follow_transfer(task, progress, reporter, args, deadline, lambda: resumable)
    if early is not None:
        return early
    state = _state(task)
    if state != "completed":
        return False, _transfer_failed(args.url, getattr(task, "error", None), state, task)
    elapsed = max(time.monotonic() - started, 1e-6)
    size = int(task.bytes_done)
    resumed_from = int(task.resumed_from) if reattached else 0
    how = f"resumed from byte {resumed_from}" if resumed_from else "not resumed"
    _summary(
        f"uploaded {task.src}: {size} bytes in {elapsed:.1f} s "
        f"({_human_bytes(max(size - resumed_from, 0) / elapsed)}/s), protocol {task.protocol}, {how}"
    )
    return False, EXIT_OK


# -- bench ------------------------------------------------------------------------------


def _bench_epilog() -> str:
    from .bench.scenarios import SCENARIOS

    return "scenarios (for --scenarios, in the order they run):\n  " + "\n  ".join(SCENARIOS)


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BenchOptions, BenchSetupError, format_table, run_bench

    scenarios = None
    if args.scenarios:
        scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    options = BenchOptions(
        requests=args.requests,
        slow_requests=args.slow_requests,
        scheme=args.scheme,
        download_mib=args.download_mib,
        scenarios=scenarios,
        download_rounds=args.download_rounds,
        comparison_requests=args.comparison_requests,
        comparison_rounds=args.comparison_rounds,
        cert_key=args.cert_key,
        import_runs=args.import_runs if args.import_runs is not None else (0 if scenarios else None),
    )
    announce: Callable[[str], None] | None = None
    if not args.json and sys.stderr.isatty():

        def announce(name: str) -> None:
            sys.stderr.write(f"\r\x1b[Krunning {name} ...")
            sys.stderr.flush()

    try:
        report = run_bench(options, on_scenario=announce)
    except BenchSetupError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        if announce is not None:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
    return EXIT_OK


# -- parser and main --------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def _duration(text: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30, 30s, 500ms, 2m, 1h") from None
    if value is None or not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def _add_transfer_options(parser: argparse.ArgumentParser, *, timeout_help: str) -> None:
    parser.add_argument("--timeout", type=_duration, metavar="DURATION", help=timeout_help)
    parser.add_argument("--retries", type=_whole, metavar="N",
                        help="retries after a network error or a retryable status (default: the preset's)")
    parser.add_argument("-k", "--insecure", action="store_true",
                        help="do not verify TLS certificates (a warning says so, once)")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``session-presets`` command."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="log the library's debug messages and show tracebacks",
    )
    parser = _Parser(prog=PROG, description="Named presets, shared sessions and a bench for requests.",
                     parents=[common], epilog=EXIT_TABLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    raw = argparse.RawDescriptionHelpFormatter
    url_help = f"an http:// or https:// URL; without a scheme, {DEFAULT_SCHEME}:// is assumed"

    presets = sub.add_parser("presets", parents=[common], help="print every preset's effective configuration")
    presets.add_argument("--show-origin", action="store_true", help="say where each value comes from")
    presets.add_argument("--json", action="store_true", help="print JSON")
    presets.set_defaults(run=_cmd_presets)

    doctor = sub.add_parser("doctor", parents=[common],
                            help="print versions, the fast path's state, hooks and environment (for a bug report)")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.set_defaults(run=_cmd_doctor)

    get = sub.add_parser("get", parents=[common], help="send a request with a preset and print the response",
                         epilog=EXIT_TABLE, formatter_class=raw)
    get.add_argument("url", metavar="URL", help=url_help)
    get.add_argument("--preset", default="default", help="preset name (default: %(default)s)")
    get.add_argument("-X", "--request", metavar="METHOD",
                     help="the request method (default: GET, or POST with -d/--json)")
    get.add_argument("-d", "--data", action="append", default=[], metavar="DATA",
                     help="send DATA as the body (form-encoded); @FILE reads a file, @- standard input; "
                          "repeated values are joined with &")
    get.add_argument("--json", metavar="JSON",
                     help="send JSON as the body with Content-Type and Accept application/json; @FILE, @- work")
    get.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'",
                     help="add a request header (repeatable); 'Name:' removes one")
    get.add_argument("-i", "--include", action="store_true", help="print the status line and headers first")
    get.add_argument("-o", "--output", metavar="FILE",
                     help="write the body to FILE; '-' forces standard output even for a binary body")
    get.add_argument("-L", "--location", action=argparse.BooleanOptionalAction, default=True,
                     help="follow redirects, as the preset does (default); --no-location prints the 3xx itself")
    get.add_argument("--max-redirs", type=_whole, metavar="N",
                     help="follow at most N redirects (default: the preset's max_redirects)")
    _add_transfer_options(get, timeout_help="give up after DURATION, retries and body included "
                                            "(the preset's total_timeout); 30, 30s, 2m")
    get.add_argument("-w", "--timing", action="store_true",
                     help="after the body, print the time of each phase to stderr (like curl -w)")
    get.set_defaults(run=_cmd_get)

    download = sub.add_parser("download", parents=[common], help="resumable background download with progress",
                              epilog=EXIT_TABLE, formatter_class=raw)
    download.add_argument("url", metavar="URL", help=url_help)
    download.add_argument("-o", "--output", metavar="FILE", required=True,
                          help="where to save the file; '-' streams it to standard output (no resume)")
    download.add_argument("--identifier", metavar="ID",
                          help="background session identifier (default: derived from the output path)")
    download.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the complete file")
    _add_transfer_options(download, timeout_help="stop waiting after DURATION and keep the .part for a rerun "
                                                 "(default: retry until the background preset's total_timeout)")
    download.add_argument("--detach", action="store_true",
                          help="hand the download to the per-user agent, print its identifier and return at once")
    download.set_defaults(run=_cmd_download)

    upload = sub.add_parser("upload", parents=[common], help="resumable background upload (tus, IETF draft)",
                            epilog=EXIT_TABLE, formatter_class=raw)
    upload.add_argument("file", metavar="FILE", help="the file to send")
    upload.add_argument("url", metavar="URL", help=url_help)
    upload.add_argument("--protocol", choices=("auto", "tus", "ietf", "none"), default="auto",
                        help="resume protocol: auto asks the server (OPTIONS) and falls back to none, a plain "
                             "PUT sent again from the start (default: %(default)s)")
    upload.add_argument("--identifier", metavar="ID",
                        help="background session identifier (default: derived from FILE and URL)")
    _add_transfer_options(upload, timeout_help="stop waiting after DURATION; a rerun resumes "
                                               "(default: retry until the background preset's total_timeout)")
    upload.add_argument("--detach", action="store_true",
                        help="hand the upload to the per-user agent, print its identifier and return at once")
    upload.set_defaults(run=_cmd_upload)

    bench = sub.add_parser("bench", parents=[common], help="compare request patterns on a loopback server",
                           formatter_class=raw)
    bench.epilog_factory = _bench_epilog
    bench.add_argument("--requests", type=_positive_int, default=None, metavar="N",
                       help="requests per pooled scenario (default: 2000)")
    bench.add_argument("--slow-requests", type=_positive_int, default=None, metavar="N",
                       help="requests per connection-per-call scenario (default: min(N, 300))")
    bench.add_argument("--scheme", choices=("https", "http"), default="https")
    bench.add_argument("--cert-key", choices=("rsa", "ecdsa"), default="rsa",
                       help="key type of the HTTPS server's certificate: rsa (RSA-2048, what most servers "
                            "present; default) or ecdsa (P-256, cheaper full handshakes)")
    bench.add_argument("--download-mib", type=_positive_float, default=None, metavar="MIB",
                       help="size of the download scenarios' file (default: 256)")
    bench.add_argument("--scenarios", metavar="NAME,...", help="run only these scenarios (listed below)")
    bench.add_argument("--download-rounds", type=_positive_int, default=3, metavar="N",
                       help="interleaved rounds of the download scenarios; the median is reported (default: 3)")
    bench.add_argument("--comparison-requests", type=_positive_int, default=None, metavar="N",
                       help="requests per pass of each client in a comparison scenario such as api_client "
                            "(default: min(N, 200))")
    bench.add_argument("--comparison-rounds", type=_positive_int, default=5, metavar="N",
                       help="interleaved rounds of the comparison scenarios; medians are reported (default: 5)")
    bench.add_argument("--import-runs", type=_whole, default=None, metavar="N",
                       help="fresh interpreters timing `import session_presets` (default: 7; "
                            "0 with --scenarios; 0 skips)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(run=_cmd_bench)
    from ._cli_transfers import add_parsers

    add_parsers(sub, common)
    return parser


def _fill_bench_defaults(args: argparse.Namespace) -> None:
    if getattr(args, "command", None) != "bench":
        return
    from .bench import DEFAULT_DOWNLOAD_MIB, DEFAULT_REQUESTS

    if args.requests is None:
        args.requests = DEFAULT_REQUESTS
    if args.download_mib is None:
        args.download_mib = DEFAULT_DOWNLOAD_MIB


@contextlib.contextmanager
def _debug_logging(enabled: bool) -> Iterator[None]:
    """Send the library's log records to stderr at DEBUG while the command runs."""
    _debug.enabled = enabled
    if not enabled:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    package = logging.getLogger("session_presets")
    level = package.level
    package.addHandler(handler)
    package.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)
        _debug.enabled = False


def _config_error_text(exc: ConfigError, args: argparse.Namespace) -> str:
    """The ConfigError's text, naming the environment variable that set the bad value."""
    text = str(exc)
    match = re.match(r"^(\w+)=", text)
    if match is None or match.group(1) not in PresetConfig.field_names():
        return text
    transfer = getattr(args, "command", None) in ("download", "upload")
    preset = "background" if transfer else getattr(args, "preset", "default")
    try:
        origin = get_preset(preset).origin(match.group(1))
    except ConfigError:
        return text
    if origin.startswith("env "):
        return f"{origin[4:]}: {text} (fix or unset {origin[4:]})"
    return text


def _in_use(exc: TransferError) -> bool:
    """True when another process or task holds the transfer: its identifier or its destination."""
    return isinstance(exc, (IdentifierInUseError, DestinationInUseError))


def _local_setup_error(exc: TransferError) -> bool:
    """True when the state directory is unusable: a local configuration error, not a network one."""
    from .background.lockfile import StateDirectoryError

    return isinstance(exc, StateDirectoryError)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that Python's exit flush cannot complain about the closed pipe."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``session-presets`` command and return its exit status.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` if None.

    Returns:
        An exit status from the table in the module docstring.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    debug = bool(getattr(args, "debug", False))
    _fill_bench_defaults(args)
    try:
        with _debug_logging(debug), _library_warnings_as_messages():
            status: int = args.run(args)
            return status
    except UsageError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    except TransferError as exc:
        if debug:
            traceback.print_exc()
        if _local_setup_error(exc):
            _err(str(exc))
            return EXIT_CONFIG
        if not _in_use(exc):
            return _network_error(getattr(args, "url", ""), exc)
        output = getattr(args, "output", None)
        target = f" to {os.path.abspath(output)}" if output else ""
        _err(f"{exc} Another session-presets download{target} is running: wait for it to finish, "
             "or download to another file.")
        return EXIT_IN_USE
    except ConfigError as exc:
        if debug:
            traceback.print_exc()
        _err(_config_error_text(exc, args))
        return EXIT_CONFIG
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except _WriteError as exc:
        if exc.message is None:
            _quiet_stdout()  # the reader went away (| head): say nothing
        else:
            _err(exc.message)
        return EXIT_WRITE
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_WRITE
    except requests.RequestException as exc:
        if debug:
            traceback.print_exc()
        return _network_error(getattr(args, "url", ""), exc)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        else:
            _err(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                 "(run again with --debug for details)")
        return EXIT_INTERNAL
