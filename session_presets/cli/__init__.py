"""The ``session-presets`` command line: presets, fetch a URL, download or upload a file, bench, doctor.

One module per command group: ``_inspect`` (presets, doctor), ``_get``, ``_download``,
``_upload`` (with ``_transfer``, what the two share), ``_bench`` and ``_agent`` (detached
transfers, ``transfers``, ``stop-agent``); ``_base`` and ``_reasons`` serve them all.

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
library imports this package.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from typing import TextIO

import requests

from .._config import PresetConfig
from .._errors import (
    ConfigError,
    DestinationInUseError,
    IdentifierInUseError,
    SessionPresetsWarning,
    TransferError,
)
from .._presets import get_preset
from .._version import __version__
from . import _bench, _download, _get, _inspect, _upload
from ._base import (
    DEFAULT_SCHEME,
    EXIT_CONFIG,
    EXIT_HTTP,
    EXIT_IN_USE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_TABLE,
    EXIT_WRITE,
    PROG,
    Parser,
    UsageError,
    WriteError,
    debugging,
    err,
    format_duration,
    handling_debug_records,
)
from ._download import default_identifier
from ._reasons import network_error

__all__ = [
    "DEFAULT_SCHEME",
    "EXIT_CONFIG",
    "EXIT_HTTP",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_IN_USE",
    "EXIT_NETWORK",
    "EXIT_OK",
    "EXIT_TABLE",
    "EXIT_WRITE",
    "build_parser",
    "default_identifier",
    "format_duration",
    "main",
]


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
                err(f"warning: {message}")

        warnings.showwarning = show
        yield


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``session-presets`` command."""
    common = Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="log the library's debug messages and show tracebacks",
    )
    parser = Parser(prog=PROG, description="Named presets, shared sessions and a bench for requests.",
                     parents=[common], epilog=EXIT_TABLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    _inspect.add_parsers(sub, common)
    _get.add_parser(sub, common)
    _download.add_parser(sub, common)
    _upload.add_parser(sub, common)
    _bench.add_parser(sub, common)
    from ._agent import add_parsers  # the background engine, imported when the parser is built

    add_parsers(sub, common)
    return parser


@contextlib.contextmanager
def _debug_logging(enabled: bool) -> Iterator[None]:
    """Send the library's log records to stderr at DEBUG while the command runs."""
    debugging.enabled = enabled
    if not enabled:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    try:
        with handling_debug_records("session_presets", handler):
            yield
    finally:
        debugging.enabled = False


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
    from ..background.lockfile import StateDirectoryError

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
        err(str(exc))
        return EXIT_CONFIG
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    debug = bool(getattr(args, "debug", False))
    _bench.fill_bench_defaults(args)
    try:
        with _debug_logging(debug), _library_warnings_as_messages():
            status: int = args.run(args)
            return status
    except UsageError as exc:
        err(str(exc))
        return EXIT_CONFIG
    except TransferError as exc:
        if debug:
            traceback.print_exc()
        if _local_setup_error(exc):
            err(str(exc))
            return EXIT_CONFIG
        if not _in_use(exc):
            return network_error(getattr(args, "url", ""), exc)
        output = getattr(args, "output", None)
        target = f" to {os.path.abspath(output)}" if output else ""
        err(f"{exc} Another session-presets download{target} is running: wait for it to finish, "
             "or download to another file.")
        return EXIT_IN_USE
    except ConfigError as exc:
        if debug:
            traceback.print_exc()
        err(_config_error_text(exc, args))
        return EXIT_CONFIG
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except WriteError as exc:
        if exc.message is None:
            _quiet_stdout()  # the reader went away (| head): say nothing
        else:
            err(exc.message)
        return EXIT_WRITE
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_WRITE
    except requests.RequestException as exc:
        if debug:
            traceback.print_exc()
        return network_error(getattr(args, "url", ""), exc)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        else:
            err(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                 "(run again with --debug for details)")
        return EXIT_INTERNAL
