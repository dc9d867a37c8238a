"""The ``session-presets`` command line: inspect presets, fetch a URL, download a file, bench.

Exit statuses:

- 0: success (for ``get``, a final status below 400).
- 1: ``get`` received a status of 400 or more; or an unexpected internal error.
- 2: usage or configuration error (bad option, bad ``SESSION_PRESETS_*`` value,
  unknown preset, unwritable output file).
- 3: network, TLS or timeout error, reported on one line.
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
import socket
import ssl
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Final, NoReturn, TextIO

import requests

from ._redact import safe_url, without_userinfo
from ._version import __version__
from .config import PresetConfig, check_header
from .env import collected_error
from .errors import ConfigError, InsecureRedirectError, SessionPresetsWarning, TransferError
from .presets import get_preset, preset_names
from .registry import get_session

__all__ = ["EXIT_CONFIG", "EXIT_HTTP", "EXIT_INTERRUPTED", "EXIT_NETWORK", "EXIT_OK", "main"]

#: Success.
EXIT_OK: Final = 0
#: The server answered with a status of 400 or more (or an internal error).
EXIT_HTTP: Final = 1
#: Usage or configuration error.
EXIT_CONFIG: Final = 2
#: Network, TLS or timeout error.
EXIT_NETWORK: Final = 3
#: Interrupted by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED: Final = 130

PROG: Final = "session-presets"
#: Bytes read from a response body at a time.
_BODY_CHUNK: Final = 64 * 1024
#: Seconds between two plain-text progress lines.
_PROGRESS_INTERVAL: Final = 0.1

log = logging.getLogger(__name__)


class _Debug(threading.local):
    """Whether the running command was given --debug."""

    enabled = False


_debug = _Debug()


class UsageError(Exception):
    """A command-line argument is invalid; exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so ``main`` returns a status."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)


# -- output helpers ----------------------------------------------------------------


def _err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    _err(f"warning: {message}")


@contextlib.contextmanager
def _library_warnings_as_messages() -> Iterator[None]:
    """Print the library's warnings as one ``session-presets: warning:`` line each."""
    with warnings.catch_warnings():
        warnings.simplefilter("default", SessionPresetsWarning)
        original = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
            if issubclass(category, SessionPresetsWarning):
                _show_warning(message, category, filename, lineno, file, line)
            else:
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def _binary_stdout() -> IO[bytes]:
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # pragma: no cover - a replaced stdout without a byte layer
        raise UsageError("standard output cannot take binary data; use -o FILE")
    return buffer  # type: ignore[no-any-return]


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


def network_reason(exc: BaseException) -> str:
    """Return a short, one-line reason for a network, TLS or timeout error."""
    chain = list(_causes(exc))
    for item in chain:
        if isinstance(item, ssl.SSLCertVerificationError):
            return f"TLS certificate verify failed: {item.verify_message or item.reason}"
    for item in chain:
        if isinstance(item, ssl.SSLError):
            return f"TLS error: {item.reason or item.strerror or item}"
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, socket.gaierror):
            return f"cannot resolve host name ({item.strerror})"
    for item in chain:
        if isinstance(item, (TimeoutError, socket.timeout, requests.Timeout)) and not isinstance(
            item, requests.ConnectionError
        ):
            return "timed out"
        if isinstance(item, ConnectionResetError):
            return "connection reset by peer"
    for item in reversed(chain):
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _network_error(url: str, exc: BaseException) -> int:
    if _debug.enabled:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    if isinstance(exc, InsecureRedirectError):
        _err(str(exc).splitlines()[0])
    elif isinstance(exc, requests.Timeout) and not isinstance(exc, requests.ConnectionError):
        first = str(exc).strip().splitlines()
        detail = first[0] if first and "total_timeout" in first[0] else network_reason(exc)
        _err(f"{safe_url(url)}: timed out: {detail}" if detail != "timed out" else f"{safe_url(url)}: timed out")
    else:
        _err(f"{safe_url(url)}: {network_reason(exc)}")
    return EXIT_NETWORK


# -- presets --------------------------------------------------------------------------


def _shown(value: Any) -> str:
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
            if args.show_origin:
                out[name] = {key: {"value": value, "origin": config.origin(key)} for key, value in values.items()}
            else:
                out[name] = values
        print(json.dumps(out, indent=2))
        return EXIT_OK
    width = max(len(field) for field in PresetConfig.field_names())
    blocks = []
    for name, config in configs.items():
        values = {key: _shown(value) for key, value in config.as_dict().items()}
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


# -- get ------------------------------------------------------------------------------


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


def _status_block(response: requests.Response) -> bytes:
    version = {10: "1.0", 11: "1.1", 20: "2"}.get(getattr(response.raw, "version", 11), "1.1")
    lines = [f"HTTP/{version} {response.status_code} {response.reason or ''}".rstrip()]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def _cmd_get(args: argparse.Namespace) -> int:
    headers: dict[str, Any] = dict(_parse_header(text) for text in args.header)
    session = get_session(args.preset)
    url: str = args.url
    try:
        response = session.get(url, headers=headers, stream=True)
    except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema) as exc:
        raise UsageError(f"{url!r} is not an http(s) URL ({exc})") from exc
    except requests.exceptions.InvalidURL as exc:
        if isinstance(exc, InsecureRedirectError):
            return _network_error(url, exc)
        raise UsageError(f"{url!r} is not a valid URL ({exc})") from exc
    except requests.RequestException as exc:
        return _network_error(url, exc)
    with response:
        to_file = args.output not in (None, "-")
        try:
            out: IO[bytes] = open(args.output, "wb") if to_file else _binary_stdout()  # noqa: SIM115
        except OSError as exc:
            raise UsageError(f"cannot write {args.output!r}: {exc.strerror or exc}") from exc
        try:
            if args.include:
                out.write(_status_block(response))
            for chunk in response.iter_content(_BODY_CHUNK):
                out.write(chunk)
            out.flush()
        except requests.RequestException as exc:
            return _network_error(url, exc)
        finally:
            if to_file:
                out.close()
    if response.status_code >= 400:
        _err(f"HTTP {response.status_code} {response.reason or ''}".rstrip() + f" from {safe_url(response.url)}")
        return EXIT_HTTP
    return EXIT_OK


# -- download ------------------------------------------------------------------------


def default_identifier(output: str) -> str:
    """Return the background identifier derived from ``output``'s absolute path.

    The same output path always gives the same identifier, so a rerun finds the
    journal and the ``.part`` file of an interrupted download.
    """
    digest = hashlib.sha256(os.path.abspath(output).encode("utf-8", "surrogateescape")).hexdigest()
    return f"cli-{digest[:16]}"


class _Progress:
    """Progress on stderr: tqdm when installed, a plain percentage line otherwise."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._lock = threading.Lock()
        self._bar: Any = None
        self._last = 0.0
        self._shown = False
        try:
            import tqdm

            self._tqdm: Any = tqdm.tqdm
        except ImportError:
            self._tqdm = None

    def __call__(self, task: Any) -> None:
        done = int(getattr(task, "bytes_done", 0) or 0)
        total = getattr(task, "bytes_total", None)
        with self._lock:
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

    def close(self) -> None:
        """End the bar or the line."""
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            elif self._shown:
                sys.stderr.write("\n")
                sys.stderr.flush()
                self._shown = False


def _task_dest(task: Any) -> str | None:
    value = getattr(task, "dest", None)
    return None if value is None else os.path.abspath(os.fspath(str(value)))


def _state(task: Any) -> str:
    state = getattr(task, "state", "")
    return str(getattr(state, "value", state))


def _find_or_start(bg: Any, args: argparse.Namespace, output: str, progress: _Progress | None) -> tuple[Any, bool]:
    """Return the task that writes ``output`` and whether it was reattached from an earlier run."""
    for existing in bg.tasks():
        if _task_dest(existing) != output:
            continue
        if _state(existing) in ("pending", "running"):
            same_url = without_userinfo(existing.url) == without_userinfo(args.url)
            if same_url and getattr(existing, "sha256", None) == args.sha256:
                return existing, True  # an interrupted run of the same command: its .part resumes
            existing.cancel()
            existing.wait()
        with contextlib.suppress(Exception):
            bg.forget(existing)
    return bg.download(args.url, output, sha256=args.sha256, progress=progress), False


def _cmd_download(args: argparse.Namespace) -> int:
    from .background import background_session

    output = os.path.abspath(args.output)
    if os.path.isdir(output):
        raise UsageError(f"-o {args.output!r} is a directory; give a file path")
    if args.sha256 is not None:
        text = args.sha256.strip().lower()
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise UsageError(f"--sha256 {args.sha256!r} is invalid: expected 64 hexadecimal digits")
        args.sha256 = text
    identifier = args.identifier or default_identifier(output)
    try:
        bg: Any = background_session(identifier)
    except NotImplementedError:
        _err("background downloads are not available in this build of session-presets")
        return EXIT_CONFIG
    progress = _Progress(os.path.basename(output)) if sys.stderr.isatty() else None
    interrupted = False
    try:
        task, reattached = _find_or_start(bg, args, output, progress)
        try:
            while not task.done:
                task.wait(_PROGRESS_INTERVAL)
                if reattached and progress is not None:
                    progress(task)  # a reattached task has no callback of this run
        except KeyboardInterrupt:
            interrupted = True
            if progress is not None:
                progress.close()
            _err(f"interrupted; partial data kept in {output}.part: run the same command again to resume")
            # The session is left live: at exit it suspends the transfer and keeps the
            # journal and the .part file, like a kill would, for the next run to resume.
            return EXIT_INTERRUPTED
        if progress is not None:
            progress(task)
            progress.close()
        state = _state(task)
        if state != "completed":
            return _transfer_failed(args.url, getattr(task, "error", None), state)
        with contextlib.suppress(Exception):
            bg.forget(task)
        if sys.stderr.isatty():
            _err(f"saved {output} ({task.bytes_done} bytes)")
        return EXIT_OK
    finally:
        if progress is not None:
            progress.close()
        if not interrupted:
            bg.finish_tasks_and_invalidate()


def _transfer_failed(url: str, error: BaseException | None, state: str) -> int:
    if error is None:
        _err(f"{safe_url(url)}: download {state}")
        return EXIT_HTTP
    if any(isinstance(item, (requests.RequestException, ssl.SSLError)) and not isinstance(item, TransferError)
           for item in _causes(error)):
        return _network_error(url, error)
    message = str(error).strip().splitlines()
    _err(message[0] if message else f"{safe_url(url)}: download {state}")
    return EXIT_HTTP


# -- bench ------------------------------------------------------------------------------


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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``session-presets`` command."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="log the library's debug messages and show tracebacks",
    )
    parser = _Parser(prog=PROG, description="Named presets, shared sessions and a bench for requests.",
                     parents=[common])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    presets = sub.add_parser("presets", parents=[common], help="print every preset's effective configuration")
    presets.add_argument("--show-origin", action="store_true", help="say where each value comes from")
    presets.add_argument("--json", action="store_true", help="print JSON")
    presets.set_defaults(run=_cmd_presets)

    get = sub.add_parser("get", parents=[common], help="fetch a URL with a preset's shared session")
    get.add_argument("url", metavar="URL")
    get.add_argument("--preset", default="default", help="preset name (default: %(default)s)")
    get.add_argument("-i", "--include", action="store_true", help="print the status line and headers first")
    get.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE instead of stdout")
    get.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'",
                     help="add a request header (repeatable); 'Name:' removes one")
    get.set_defaults(run=_cmd_get)

    download = sub.add_parser("download", parents=[common], help="resumable background download with progress")
    download.add_argument("url", metavar="URL")
    download.add_argument("-o", "--output", metavar="FILE", required=True, help="where to save the file")
    download.add_argument("--identifier", metavar="ID",
                          help="background session identifier (default: derived from the output path)")
    download.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the complete file")
    download.set_defaults(run=_cmd_download)

    bench = sub.add_parser("bench", parents=[common], help="compare request patterns on a loopback server")
    bench.add_argument("--requests", type=_positive_int, default=None, metavar="N",
                       help="requests per pooled scenario (default: 2000)")
    bench.add_argument("--slow-requests", type=_positive_int, default=None, metavar="N",
                       help="requests per connection-per-call scenario (default: min(N, 300))")
    bench.add_argument("--scheme", choices=("https", "http"), default="https")
    bench.add_argument("--download-mib", type=_positive_float, default=None, metavar="MIB",
                       help="size of the download scenarios' file (default: 256)")
    bench.add_argument("--scenarios", metavar="NAME,...", help="run only these scenarios")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(run=_cmd_bench)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``session-presets`` command and return its exit status.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` if None.

    Returns:
        0, 1 (HTTP status >= 400), 2 (usage or configuration), 3 (network,
        TLS, timeout) or 130 (interrupted).
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
    except ConfigError as exc:
        if debug:
            traceback.print_exc()
        _err(str(exc))
        return EXIT_CONFIG
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``| head``): say nothing, and keep Python from complaining at exit.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_HTTP
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
        return EXIT_HTTP
