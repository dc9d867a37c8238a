"""What every command shares: exit statuses, the parser class, output helpers and option types."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final, NoReturn, TypeVar

from .._config import PresetConfig
from .._forms import parse_duration, parse_number, parse_whole
from .._presets import get_preset
from .._redact import safe_url

_T = TypeVar("_T")

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

#: The help of every command's URL argument.
URL_HELP: Final = f"an http:// or https:// URL; without a scheme, {DEFAULT_SCHEME}:// is assumed"

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


class _Debug(threading.local):
    """Whether the running command was given --debug."""

    enabled = False


#: Read by the error reports: show a traceback too.
debugging = _Debug()


class UsageError(Exception):
    """A command-line argument is invalid; exit status 2."""


class WriteError(Exception):
    """The output could not be written; exit status 23 (quietly for a closed pipe)."""

    def __init__(self, message: str | None) -> None:
        super().__init__(message or "")
        self.message = message


class Parser(argparse.ArgumentParser):
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


def err(message: str) -> None:
    """Print one ``session-presets: MESSAGE`` line on stderr."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def handling_debug_records(logger_name: str, handler: logging.Handler) -> Iterator[None]:
    """Give ``handler`` the DEBUG records of the logger ``logger_name`` while the block runs; then restore it."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def stdout_is_terminal() -> bool:
    """True when standard output is a terminal (a person reads it), False for a pipe or a file."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # pragma: no cover - a closed or replaced stdout
        return False


def summary(line: str) -> None:
    """Print a command's closing line: on stdout for scripts and logs, on stderr for a person."""
    if stdout_is_terminal():
        err(line)
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


def human_bytes(count: float) -> str:
    """Return a byte count or rate in binary units: 5 B, 2.0 KiB, 3.0 MiB, 5.0 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"  # pragma: no cover - the loop always returns


# -- URLs and options --------------------------------------------------------------------


def with_scheme(url: str) -> str:
    """Give a URL typed without a scheme the default one (``example.com/x`` → ``https://example.com/x``)."""
    if "://" in url:
        return url
    return f"{DEFAULT_SCHEME}://{url.lstrip('/')}"


def config_with(preset: str, args: argparse.Namespace) -> PresetConfig:
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


def check_url(url: str) -> str:
    """Return ``url`` if it is http(s); otherwise raise UsageError naming its scheme."""
    lowered = url.lower()
    if not lowered.startswith(("http://", "https://")):
        scheme = url.split("://", 1)[0]
        raise UsageError(f"{safe_url(url)!r} is not an http(s) URL: scheme {scheme!r} is not supported")
    return url


# -- option types: the forms and parsers of _config, with argparse's error ---------------------


def _option_type(
    parse: Callable[[str], _T], *, form: str = "", minimum: Callable[[_T], bool] | None = None, below: str = ""
) -> Callable[[str], _T]:
    """An argparse ``type=``: ``parse``'s value, refused with ``below`` unless ``minimum`` holds.

    ``parse`` raises ValueError for text that is not of its form; its message, then ``form``
    (examples of the form), is what the user reads.
    """

    def convert(text: str) -> _T:
        try:
            value = parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}{form}") from None
        if minimum is not None and not minimum(value):
            raise argparse.ArgumentTypeError(f"{text!r} {below}")
        return value

    return convert


def _duration(text: str) -> float:
    return parse_duration(text) or 0.0  # None only with allow_none; 0 is refused as not above 0


#: A whole number >= 0 (``--retries``, ``--max-redirs``): digits only, so never below 0.
whole_number = _option_type(parse_whole)
#: A whole number >= 1 (``--requests``).
positive_whole_number = _option_type(parse_whole, minimum=lambda value: value >= 1, below="must be at least 1")
#: A number above 0 (``--download-mib``).
positive_number = _option_type(parse_number, minimum=lambda value: value > 0, below="must be above 0")
#: A duration above 0 (``--timeout``): 30, 30s, 500ms, 2m, 1h.
positive_duration = _option_type(
    _duration, form=" such as 30, 30s, 500ms, 2m, 1h", minimum=lambda value: value > 0, below="must be above 0"
)


def add_transfer_options(parser: argparse.ArgumentParser, *, timeout_help: str) -> None:
    """Add ``--timeout``, ``--retries`` and ``-k`` (shared by get, download and upload) to ``parser``."""
    parser.add_argument("--timeout", type=positive_duration, metavar="DURATION", help=timeout_help)
    parser.add_argument("--retries", type=whole_number, metavar="N",
                        help="retries after a network error or a retryable status (default: the preset's)")
    parser.add_argument("-k", "--insecure", action="store_true",
                        help="do not verify TLS certificates (a warning says so, once)")
