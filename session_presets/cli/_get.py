"""``get``: one request with a preset, the response written to stdout or to ``-o FILE``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
import sys
import tempfile
from typing import IO, Any, Final

import requests

from .._config import PresetConfig, check_header
from .._errors import ConfigError, InsecureRedirectError
from .._metrics import format_timing
from .._redact import safe_url
from .._sessions import PresetSession
from ._base import (
    EXIT_HTTP,
    EXIT_OK,
    EXIT_TABLE,
    URL_HELP,
    UsageError,
    WriteError,
    add_transfer_options,
    check_url,
    config_with,
    err,
    stdout_is_terminal,
    whole_number,
    with_scheme,
)
from ._reasons import network_error

#: Bytes read from a response body at a time.
_BODY_CHUNK: Final = 64 * 1024
#: Bytes of a body looked at to tell text from binary (NUL bytes mean binary, as curl and httpie decide).
_SNIFF: Final = 1024


def _binary_stdout() -> IO[bytes]:
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # pragma: no cover - a replaced stdout without a byte layer
        raise UsageError("standard output cannot take binary data; use -o FILE")
    return buffer  # type: ignore[no-any-return]


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


def _write_body(out: IO[bytes], response: requests.Response, first: bytes) -> None:
    try:
        if first:
            out.write(first)
        for chunk in response.iter_content(_BODY_CHUNK):
            out.write(chunk)
        out.flush()
    except BrokenPipeError as exc:
        raise WriteError(None) from exc
    except OSError as exc:
        if isinstance(exc, requests.RequestException):  # pragma: no cover - requests' own errors are not OSError
            raise
        raise WriteError(f"cannot write the body: {exc.strerror or exc}") from exc


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
            raise WriteError(f"cannot write {self.path!r}: {exc.strerror or exc}") from exc
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


def fetch(args: argparse.Namespace, preset: str) -> int:
    """Send one request and write the response; the body of ``get`` and of ``download -o -``."""
    headers: dict[str, Any] = dict(_parse_header(text) for text in getattr(args, "header", []))
    body = _request_body(args, headers)
    method = (args.request or ("POST" if body is not None else "GET")).upper()
    url = check_url(with_scheme(args.url))
    config = config_with(preset, args)
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
    """Send the request of :func:`fetch` and write its response to ``output`` (else standard output)."""
    with PresetSession(config) as session:
        try:
            response = session.request(
                method, url, headers=headers, data=body, stream=True, allow_redirects=args.location
            )
        except requests.exceptions.InvalidURL as exc:
            if isinstance(exc, InsecureRedirectError):
                return network_error(url, exc, config)
            raise UsageError(f"{safe_url(url)!r} is not a valid URL ({exc})") from exc
        except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema) as exc:
            raise UsageError(f"{safe_url(url)!r} is not an http(s) URL ({exc})") from exc
        except requests.RequestException as exc:
            return network_error(url, exc, config)
        with response:
            try:
                status = _output(args, response, url, config, output)
            except requests.RequestException as exc:
                return network_error(url, exc, config)
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
            err(f"HTTP {response.status_code} {response.reason or ''}".rstrip()
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
            raise WriteError(None) from exc
    first = b""
    if args.output is None and stdout_is_terminal():
        first = next(response.iter_content(_SNIFF), b"")
        if b"\x00" in first:
            kind = response.headers.get("Content-Type", "unknown type")
            length = response.headers.get("Content-Length")
            size = f", {length} bytes" if length else ""
            err(f"warning: binary body ({kind}{size}) not printed to the terminal; "
                 "use -o FILE to save it, or -o - to print it anyway")
            return None
    _write_body(out, response, first)
    return None


def _cmd_get(args: argparse.Namespace) -> int:
    return fetch(args, args.preset)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``get`` to the command's subparsers."""
    get = sub.add_parser("get", parents=[common], help="send a request with a preset and print the response",
                         epilog=EXIT_TABLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    get.add_argument("url", metavar="URL", help=URL_HELP)
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
    get.add_argument("--max-redirs", type=whole_number, metavar="N",
                     help="follow at most N redirects (default: the preset's max_redirects)")
    add_transfer_options(get, timeout_help="give up after DURATION, retries and body included "
                                           "(the preset's total_timeout); 30, 30s, 2m")
    get.add_argument("-w", "--timing", action="store_true",
                     help="after the body, print the time of each phase to stderr (like curl -w)")
    get.set_defaults(run=_cmd_get)
