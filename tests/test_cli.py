"""The session-presets command line: presets, get, download, bench; in-process and as a real process.

Every behaviour of issue 15 has a test that runs the command as a user does (a
child process: ``python -m session_presets`` or the installed console script)
against a loopback server, and checks what the server saw and the exit status.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pty
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from session_presets import cli, get_preset, register_preset
from session_presets.cli import default_identifier, main
from session_presets.cli._reasons import short_reason
from session_presets.cli._transfer import Progress

from .servers import Handler, LoopbackServer

BINARY = bytes(range(256)) * 4
CLI_PAGE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def run_cli(
    *args: str,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    input: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m session_presets ARGS`` in a child process; text output."""
    environ = {key: value for key, value in {**os.environ, **(env or {})}.items() if key not in unset}
    return subprocess.run(
        [sys.executable, "-m", "session_presets", *args],
        capture_output=True,
        timeout=timeout,
        env=environ,
        check=False,
        input=input.decode("latin-1") if input is not None else None,
        text=True,
    )


def console_script() -> str:
    """The installed ``session-presets`` console script (next to this Python, or on PATH)."""
    beside = Path(sys.executable).with_name("session-presets")
    found = str(beside) if beside.exists() else shutil.which("session-presets")
    if found is None:  # pragma: no cover - the test extra installs the package with its script
        pytest.skip("the session-presets console script is not installed")
    return found


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch, ca_bundle: str) -> str:
    """Make every preset trust the test CA through the environment."""
    monkeypatch.setenv("SESSION_PRESETS_CA_BUNDLE", ca_bundle)
    return ca_bundle


def _binary(h: Handler) -> None:
    h.reply(200, BINARY, {"Content-Type": "application/octet-stream", "X-Served-By": "loopback"})


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BlobHit:
    """One request as the blob route saw it."""

    method: str
    range: str | None
    if_none_match: str | None
    if_modified_since: str | None
    status: int
    sent: int


@dataclass
class Blob:
    """A file route: ETag, Last-Modified, Range/If-Range, If-None-Match → 304, throttling, a log."""

    data: bytes
    etag: str | None = '"v1"'
    last_modified: str | None = "Wed, 21 Oct 2015 07:28:00 GMT"
    delay: float = 0.0
    chunk: int = 64 * 1024
    log: list[BlobHit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: When set, the body pauses after ``hold_after`` bytes until the event is set (30 s at most),
    #: so a download is certainly still running however loaded the machine is.
    gate: threading.Event | None = None
    hold_after: int = 0

    def validators(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["ETag"] = self.etag
        if self.last_modified:
            headers["Last-Modified"] = self.last_modified
        return headers

    def note(self, h: Handler, status: int, sent: int) -> None:
        with self.lock:
            self.log.append(BlobHit(h.command, h.headers.get("Range"), h.headers.get("If-None-Match"),
                                    h.headers.get("If-Modified-Since"), status, sent))

    def __call__(self, h: Handler) -> None:
        inm = h.headers.get("If-None-Match")
        ims = h.headers.get("If-Modified-Since")
        if (inm is not None and inm == self.etag) or (inm is None and ims and ims == self.last_modified):
            self.note(h, 304, 0)
            h.send_response(304)
            for key, value in self.validators().items():
                h.send_header(key, value)
            h.end_headers()
            return
        start, status = 0, 200
        match = re.match(r"^bytes=(\d+)-$", h.headers.get("Range", ""))
        if_range = h.headers.get("If-Range")
        if match and (if_range is None or if_range in (self.etag, self.last_modified)):
            start, status = int(match.group(1)), 206
        h.send_response(status)
        for key, value in self.validators().items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(self.data) - start))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(self.data) - 1}/{len(self.data)}")
        h.end_headers()
        sent = 0
        if h.command != "HEAD":
            with contextlib.suppress(OSError):
                for position in range(start, len(self.data), self.chunk):
                    if self.gate is not None and sent >= self.hold_after:
                        self.gate.wait(30)
                    piece = self.data[position : position + self.chunk]
                    h.wfile.write(piece)
                    h.wfile.flush()
                    sent += len(piece)
                    if self.delay:
                        time.sleep(self.delay)
        self.note(h, status, sent)

    def bodies_sent(self) -> list[BlobHit]:
        """Requests that were sent body bytes."""
        with self.lock:
            return [hit for hit in self.log if hit.sent]


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        into.put(line)
    into.put("")


def _wait_for_line(lines: queue.Queue[str], needle: str, seen: list[str], timeout: float = 30) -> None:
    """Read lines until one holds ``needle`` (bounded by ``timeout``)."""
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        try:
            line = lines.get(timeout=max(0.0, ends - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if needle in line:
            return
        if line == "":
            break
    raise AssertionError(f"never saw {needle!r}; stderr so far: {''.join(seen)!r}")


def _wait_for_size(path: Path, size: int, timeout: float = 30) -> None:
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        if path.exists() and path.stat().st_size >= size:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {size} bytes")


@contextlib.contextmanager
def child_process(command: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[Any]]:
    """Popen that kills the child if the test fails first, so a broken command cannot hang the suite.

    The child starts with SIGINT at its default, as under a terminal. A suite started in the
    background by a non-interactive shell (``cmd &`` in a script, nohup) inherits SIGINT ignored,
    and a Python started with SIGINT ignored never raises KeyboardInterrupt: the Ctrl-C tests
    would then see the download finish instead. An installed handler is reset to the default
    by exec, so one is installed for the moment of the fork.
    """
    inherited = signal.getsignal(signal.SIGINT)
    if inherited is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        started = subprocess.Popen(command, **kwargs)
    finally:
        if inherited is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    with started as child:
        try:
            yield child
        finally:
            if child.poll() is None:
                child.kill()


@contextlib.contextmanager
def pty_reader() -> Iterator[tuple[int, list[bytes]]]:
    """A pseudo-terminal: yields the child's end and a list that fills with what the child writes."""
    master, slave = pty.openpty()
    # A new pty is 0x0: give it a real terminal's size, or tqdm draws a bar 0 columns wide.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield slave, chunks
    finally:
        os.close(slave)
        reader.join(10)
        assert not reader.is_alive(), "the pty reader never saw the terminal close"
        os.close(master)


# -- exit statuses: one table, in --help and on the command-line page --------------------


def test_help_and_docs_show_the_same_exit_table() -> None:
    """`--help`, `get --help` and the command-line page (as built) show one exit-status table."""
    from tools import docgen

    top = run_cli("--help")
    get_help = run_cli("get", "--help")
    assert top.returncode == 0
    assert get_help.returncode == 0
    page = CLI_PAGE.read_text(encoding="utf-8")
    assert "<!-- generated: exit-table -->" in page
    assert "<!-- generated: cli-reference -->" in page
    built = page.replace("<!-- generated: exit-table -->", docgen.render_exit_table())
    built = built.replace("<!-- generated: cli-reference -->", docgen.render_cli_reference())
    for line in cli.EXIT_TABLE.splitlines()[1:]:
        assert line in top.stdout
        assert line in get_help.stdout
        assert line in built, f"docs/cli.md lacks the exit-table row {line!r}"
    for code in ("0", "1", "2", "3", "4", "23", "70", "130"):
        assert re.search(rf"^  {code} ", cli.EXIT_TABLE, re.MULTILINE), code


def test_console_script_exit_statuses(http_server: LoopbackServer, tmp_path: Path) -> None:
    """The installed console script: 0 ok, 1 for 404, 2 for usage, 3 for a refused connection."""
    script = console_script()

    def status(*args: str) -> int:
        return subprocess.run([script, *args], capture_output=True, timeout=60, check=False).returncode

    assert status("get", http_server.url("/ok")) == 0
    assert status("get", http_server.url("/status/404")) == 1
    assert status("get", "--no-such-option", http_server.url("/ok")) == 2
    assert status("get", "--retries", "0", f"http://127.0.0.1:{_refused_port()}/") == 3
    assert [r.path for r in http_server.requests] == ["/ok", "/status/404"]


def test_console_script_and_module_agree() -> None:
    """`python -m session_presets` runs the same CLI: --version and exit statuses."""
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("session-presets ")
    assert run_cli("nonsense").returncode == 2


# -- presets --------------------------------------------------------------------------


def test_presets_lists_every_builtin_preset(capsys: pytest.CaptureFixture[str]) -> None:
    """`presets` prints a block per built-in preset with its effective values."""
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("[default]", "[ephemeral]", "[background]"):
        assert name in out
    assert "read_timeout" in out
    assert "connect_timeout" in out


def _block(out: str, name: str) -> dict[str, str]:
    block = out.split(f"[{name}]")[1].split("\n\n", maxsplit=1)[0]
    return {line.split()[0]: line.split(None, 1)[1] for line in block.strip().splitlines()}


def test_presets_shows_durations_and_the_real_state_dir(tmp_path: Path) -> None:
    """Durations read 7d, 20s, 500ms; the background state_dir is the platform directory, not 'none'."""
    state = tmp_path / "xdg-state"
    result = run_cli("presets", env={"XDG_STATE_HOME": str(state)}, unset=("SESSION_PRESETS_STATE_DIR",))
    assert result.returncode == 0, result.stderr
    background = _block(result.stdout, "background")
    assert background["total_timeout"] == "7d"
    assert background["connect_timeout"] == "30s"
    assert background["backoff_max"] == "5m"
    assert background["state_dir"] == str(state / "session-presets")
    default = _block(result.stdout, "default")
    assert default["backoff_factor"] == "500ms"
    assert default["total_timeout"] == "1m"


def test_format_duration_round_trips_through_the_environment_parser() -> None:
    """Every duration shown is one the environment accepts, with the same value."""
    from session_presets._env import parse_duration

    for seconds in (0.0, 0.25, 0.5, 1.0, 1.5, 20.0, 60.0, 90.0, 300.0, 3600.0, 5400.0, 86400.0, 7 * 86400.0):
        assert parse_duration(cli.format_duration(seconds)) == seconds


def test_presets_show_origin_names_the_environment_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--show-origin says a value came from its SESSION_PRESETS_<PRESET>_<FIELD> variable."""
    monkeypatch.setenv("SESSION_PRESETS_DEFAULT_READ_TIMEOUT", "5s")
    assert main(["presets", "--show-origin"]) == 0
    out = capsys.readouterr().out
    default_block = out.split("[default]")[1].split("[")[0]
    line = next(text for text in default_block.splitlines() if "read_timeout" in text)
    assert "5s" in line
    assert "(env SESSION_PRESETS_DEFAULT_READ_TIMEOUT)" in line
    assert "(built-in)" in default_block


def test_derived_preset_origin_is_not_blamed_on_a_base_that_never_set_it() -> None:
    """origin() on a derived preset names the base only for values that base (or its base) set."""
    register_preset("api", read_timeout=5)
    register_preset("api-bulk", base="api", pool_maxsize=32)
    register_preset("bulk-bg", base="background")
    bulk = get_preset("api-bulk")
    assert bulk.origin("read_timeout") == "base preset 'api'"
    assert bulk.origin("pool_maxsize") == "code"
    assert bulk.origin("connect_timeout") == "built-in"
    assert get_preset("bulk-bg").origin("total_timeout") == "base preset 'background'"
    assert get_preset("bulk-bg").origin("cookies") == "built-in"
    register_preset("api-bulk-2", base="api-bulk")
    assert get_preset("api-bulk-2").origin("read_timeout") == "base preset 'api'"
    assert get_preset("api-bulk-2").origin("pool_maxsize") == "base preset 'api-bulk'"


def test_derived_preset_origin_through_the_command() -> None:
    """`presets --show-origin` in a process that registered derived presets shows the true origins."""
    code = (
        "import sys; from session_presets import register_preset; from session_presets.cli import main; "
        "register_preset('api', read_timeout=5); register_preset('child', base='api', retries=1); "
        "sys.exit(main(['presets', '--show-origin']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    child = _block(result.stdout, "child")
    assert child["read_timeout"].endswith("(base preset 'api')")
    assert child["retries"].endswith("(code)")
    assert child["connect_timeout"].endswith("(built-in)")


def test_presets_json_with_origin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """--json --show-origin gives each value with its origin, and masks proxy passwords."""
    monkeypatch.setenv("SESSION_PRESETS_RETRIES", "5")
    monkeypatch.setenv("SESSION_PRESETS_EPHEMERAL_PROXIES", '{"https": "http://user:secret@proxy:3128"}')
    assert main(["presets", "--json", "--show-origin"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["default"]["retries"] == {"value": 5, "origin": "env SESSION_PRESETS_RETRIES"}
    assert data["default"]["read_timeout"] == {"value": 20.0, "origin": "built-in"}
    assert "secret" not in json.dumps(data)
    assert set(data) == {"default", "ephemeral", "background", "resilient"}


def test_presets_json_plain_values(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """--json keeps durations in seconds, and gives the state directory actually used."""
    monkeypatch.delenv("SESSION_PRESETS_STATE_DIR")
    assert main(["presets", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["background"]["total_timeout"] == 7 * 86400
    assert data["background"]["state_dir"].endswith("session-presets")


def test_presets_bad_environment_exits_2_listing_every_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad variables give exit 2 and one message naming each of them, in-process."""
    monkeypatch.setenv("SESSION_PRESETS_READ_TIMEOUT", "soon")
    monkeypatch.setenv("SESSION_PRESETS_DEFAULT_RETRIES", "-1")
    assert main(["presets"]) == 2
    err = capsys.readouterr().err
    assert "SESSION_PRESETS_READ_TIMEOUT" in err
    assert "SESSION_PRESETS_DEFAULT_RETRIES" in err
    assert "Traceback" not in err


def test_presets_bad_environment_in_a_real_process() -> None:
    """As a process: exit status 2, the ConfigError text on stderr and no traceback."""
    result = run_cli("presets", env={"SESSION_PRESETS_CONNECT_TIMEOUT": "fast"})
    assert result.returncode == 2
    assert "SESSION_PRESETS_CONNECT_TIMEOUT='fast' is invalid" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unknown_variable_warns_on_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown SESSION_PRESETS_* variable is a one-line warning, not an error."""
    monkeypatch.setenv("SESSION_PRESETS_READ_TIMEOUTT", "5")
    assert main(["presets"]) == 0
    err = capsys.readouterr().err
    assert "session-presets: warning: SESSION_PRESETS_READ_TIMEOUTT" in err
    assert "did you mean" in err


# -- get: output ------------------------------------------------------------------------------


def test_get_writes_the_body_to_stdout_byte_for_byte(
    capsysbinary: pytest.CaptureFixture[bytes], https_server: LoopbackServer, trusted: str
) -> None:
    """get sends a binary body to stdout unchanged, over HTTPS through the preset's trust."""
    https_server.route("/binary", _binary)
    assert main(["get", https_server.url("/binary")]) == 0
    assert capsysbinary.readouterr().out == BINARY


def test_get_include_prints_status_line_and_headers(
    capsysbinary: pytest.CaptureFixture[bytes], https_server: LoopbackServer, trusted: str
) -> None:
    """-i puts the status line and the response headers before the body."""
    https_server.route("/binary", _binary)
    assert main(["get", "-i", https_server.url("/binary")]) == 0
    out = capsysbinary.readouterr().out
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"X-Served-By: loopback" in head
    assert body == BINARY


def test_get_output_file(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], http_server: LoopbackServer
) -> None:
    """-o writes the body to the file and nothing to stdout."""
    http_server.route("/binary", _binary)
    target = tmp_path / "body.bin"
    assert main(["get", "-o", str(target), http_server.url("/binary")]) == 0
    assert target.read_bytes() == BINARY
    assert capsysbinary.readouterr().out == b""


def test_get_output_file_that_cannot_be_written_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], http_server: LoopbackServer
) -> None:
    """-o into a missing directory exits 2 and names the file."""
    assert main(["get", "-o", str(tmp_path / "no" / "such"), http_server.url("/ok")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_binary_body_is_not_dumped_on_a_terminal(http_server: LoopbackServer) -> None:
    """On a terminal a binary body is withheld with a warning naming -o; -o - prints it anyway."""
    http_server.route("/binary", _binary)
    command = [sys.executable, "-m", "session_presets", "get", http_server.url("/binary")]
    with pty_reader() as (terminal, shown):
        result = subprocess.run(command, stdout=terminal, stderr=subprocess.PIPE, timeout=60, check=False)
    assert result.returncode == 0
    assert b"\x00\x01\x02" not in b"".join(shown)
    assert b"binary body (application/octet-stream, 1024 bytes) not printed" in result.stderr
    assert b"-o FILE" in result.stderr
    with pty_reader() as (terminal, shown):
        forced = subprocess.run([*command, "-o", "-"], stdout=terminal, stderr=subprocess.PIPE, timeout=60,
                                check=False)
    assert forced.returncode == 0
    assert b"binary body" not in forced.stderr
    assert len(b"".join(shown)) >= len(BINARY)


def test_text_body_is_printed_on_a_terminal(http_server: LoopbackServer) -> None:
    """A text body goes to the terminal as usual, without a warning."""
    command = [sys.executable, "-m", "session_presets", "get", http_server.url("/ok?size=50")]
    with pty_reader() as (terminal, shown):
        result = subprocess.run(command, stdout=terminal, stderr=subprocess.PIPE, timeout=60, check=False)
    assert result.returncode == 0
    assert result.stderr == b""
    assert b"x" * 50 in b"".join(shown)


def test_broken_pipe_exits_23_quietly(http_server: LoopbackServer) -> None:
    """`get URL | head -c 10`: the command exits 23 (curl's write error) and prints nothing on stderr."""
    command = [sys.executable, "-m", "session_presets", "get", http_server.url("/ok?size=4000000")]
    with child_process(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stderr is not None
        assert child.stdout.read(10) == b"x" * 10
        child.stdout.close()
        err = child.stderr.read()
        child.wait(timeout=60)
    assert child.returncode == 23
    assert err == b""


def test_get_sends_extra_headers(capsysbinary: pytest.CaptureFixture[bytes], http_server: LoopbackServer) -> None:
    """-H headers reach the server, and the preset's own headers are still sent."""
    assert main(["get", "-H", "X-Trace: abc 123", "-H", "Accept: text/plain", http_server.url("/ok")]) == 0
    seen = http_server.requests[-1]
    assert seen.header("X-Trace") == "abc 123"
    assert seen.header("Accept") == "text/plain"
    assert (seen.header("User-Agent") or "").startswith("session-presets/")
    assert capsysbinary.readouterr().out == b"ok"


def test_get_with_a_named_preset(capsysbinary: pytest.CaptureFixture[bytes], http_server: LoopbackServer) -> None:
    """--preset picks the preset: ephemeral's cache policy sends no-cache like default."""
    assert main(["get", "--preset", "ephemeral", http_server.url("/ok")]) == 0
    assert http_server.requests[-1].header("Cache-Control") == "no-cache"


# -- get: request options ---------------------------------------------------------------------


def _echoed(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_request_method_option(http_server: LoopbackServer) -> None:
    """-X/--request sets the method the server sees."""
    assert _echoed(run_cli("get", "-X", "DELETE", http_server.url("/echo")))["method"] == "DELETE"
    assert _echoed(run_cli("get", "--request", "put", http_server.url("/echo")))["method"] == "PUT"
    assert [r.method for r in http_server.requests] == ["DELETE", "PUT"]


def test_data_option_posts_form_data(http_server: LoopbackServer, tmp_path: Path) -> None:
    """-d sends a form-encoded POST; repeated -d join with &; @file and @- read a file and stdin."""
    echoed = _echoed(run_cli("get", "-d", "a=1", "-d", "b=2", http_server.url("/echo")))
    assert echoed["method"] == "POST"
    assert echoed["body"] == "a=1&b=2"
    assert http_server.requests[-1].header("Content-Type") == "application/x-www-form-urlencoded"
    body = tmp_path / "body.txt"
    body.write_bytes(b"from=file\n")
    assert _echoed(run_cli("get", "-d", f"@{body}", http_server.url("/echo")))["body"] == "from=file\n"
    assert _echoed(run_cli("get", "-d", "@-", http_server.url("/echo"), input=b"from=stdin"))["body"] == "from=stdin"
    assert _echoed(run_cli("get", "-X", "PUT", "-d", "x", "-H", "Content-Type: text/plain",
                           http_server.url("/echo")))["method"] == "PUT"
    assert http_server.requests[-1].header("Content-Type") == "text/plain"
    missing = run_cli("get", "-d", f"@{tmp_path / 'missing'}", http_server.url("/echo"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr


def test_json_option_sets_body_and_content_type(http_server: LoopbackServer) -> None:
    """--json sends the body with JSON Content-Type and Accept; invalid JSON exits 2 before sending."""
    echoed = _echoed(run_cli("get", "--json", '{"a": 1}', http_server.url("/echo")))
    assert echoed["method"] == "POST"
    assert json.loads(str(echoed["body"])) == {"a": 1}
    seen = http_server.requests[-1]
    assert seen.header("Content-Type") == "application/json"
    assert seen.header("Accept") == "application/json"
    bad = run_cli("get", "--json", "{not json", http_server.url("/echo"))
    assert bad.returncode == 2
    assert "not valid JSON" in bad.stderr
    both = run_cli("get", "--json", "{}", "-d", "a", http_server.url("/echo"))
    assert both.returncode == 2
    assert len(http_server.requests) == 1


def test_default_scheme_is_https(https_server: LoopbackServer, trusted: str) -> None:
    """A URL without a scheme is fetched over https://, the documented default."""
    result = run_cli("get", f"127.0.0.1:{https_server.port}/ok")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok"
    assert https_server.requests[-1].path == "/ok"


def test_unsupported_scheme_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A URL with a scheme other than http(s) exits 2 and names the scheme."""
    assert main(["get", "ftp://example.invalid/file"]) == 2
    assert "scheme 'ftp' is not supported" in capsys.readouterr().err


def test_redirect_options(http_server: LoopbackServer) -> None:
    """Redirects are followed as the preset says (-L); --no-location shows the 3xx; --max-redirs bounds them."""
    url = http_server.url("/redirect?to=/ok")
    followed = run_cli("get", "-L", url)
    assert followed.returncode == 0
    assert followed.stdout == "ok"
    shown = run_cli("get", "-i", "--no-location", url)
    assert shown.returncode == 0
    assert shown.stdout.startswith("HTTP/1.1 302")
    assert "Location: /ok" in shown.stdout
    limited = run_cli("get", "--max-redirs", "0", url)
    assert limited.returncode == 3
    assert "too many redirects (max_redirects=0" in limited.stderr
    assert [r.path for r in http_server.requests] == ["/redirect?to=/ok", "/ok", "/redirect?to=/ok",
                                                      "/redirect?to=/ok"]


def test_insecure_option_warns_once(https_server: LoopbackServer) -> None:
    """-k reaches an untrusted server and prints the library's insecure-session warning once."""
    result = run_cli("get", "-k", https_server.url("/ok"), https_server.url("/ok"))
    assert result.returncode == 2  # one URL only
    result = run_cli("get", "-k", https_server.url("/redirect?to=/ok"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok"
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.stderr
    assert "verify=False" in warnings[0]
    assert len(https_server.requests) == 2


def test_bad_header_is_a_usage_error(capsys: pytest.CaptureFixture[str], http_server: LoopbackServer) -> None:
    """A -H value without a colon exits 2 and sends nothing."""
    assert main(["get", "-H", "no colon here", http_server.url("/ok")]) == 2
    assert "expected 'Name: value'" in capsys.readouterr().err
    assert http_server.requests == []


def test_unknown_preset_exits_2_with_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown preset name exits 2 and suggests the nearest one."""
    assert main(["get", "--preset", "defualt", "http://127.0.0.1:9/"]) == 2
    assert "did you mean 'default'" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown commands, missing arguments and bad option values exit 2 through main()."""
    assert main(["frobnicate"]) == 2
    assert main(["get"]) == 2
    assert main(["bench", "--requests", "0"]) == 2
    assert main(["get", "--timeout", "soon", "http://127.0.0.1:9/"]) == 2
    assert main(["get", "--timeout", "0", "http://127.0.0.1:9/"]) == 2
    assert main(["get", "--retries", "-1", "http://127.0.0.1:9/"]) == 2
    assert main(["get", "--retries", "x", "http://127.0.0.1:9/"]) == 2
    assert main(["bench", "--download-mib", "x"]) == 2
    assert main(["bench", "--download-mib", "-1"]) == 2
    assert main(["bench", "--requests", "x"]) == 2
    err = capsys.readouterr().err
    assert "usage:" in err
    assert "is not a duration" in err


def test_bench_help_lists_the_scenarios() -> None:
    """`bench --help` names every scenario that --scenarios accepts."""
    from session_presets.bench.scenarios import SCENARIOS

    result = run_cli("bench", "--help")
    assert result.returncode == 0
    for name in SCENARIOS:
        assert re.search(rf"^  {name}$", result.stdout, re.MULTILINE), name


# -- get: HTTP errors, retries, timeouts --------------------------------------------------------


def test_get_404_exits_1_with_status_on_stderr(
    capfdbinary: pytest.CaptureFixture[bytes], http_server: LoopbackServer
) -> None:
    """A 404 answer exits 1 and names the status on stderr; the body still goes to stdout."""
    assert main(["get", http_server.url("/status/404")]) == 1
    captured = capfdbinary.readouterr()
    assert b"HTTP 404 Not Found" in captured.err
    assert captured.out == b"status 404"


def test_503_after_retries_exits_1_with_the_body(http_server: LoopbackServer) -> None:
    """A URL that keeps answering 503: every retry reaches the server, then exit 1 with the body."""
    result = run_cli("get", http_server.url("/status/503"), env={"SESSION_PRESETS_BACKOFF_FACTOR": "0"})
    assert result.returncode == 1
    assert result.stdout == "status 503"
    assert result.stderr.strip().splitlines() == [
        f"session-presets: HTTP 503 Service Unavailable from {http_server.url('/status/503')} after 2 retries"
    ]
    assert [r.path for r in http_server.requests] == ["/status/503"] * 3


def test_retries_option_sets_the_number_of_tries(http_server: LoopbackServer) -> None:
    """--retries 0 sends a retryable status's request once; --retries 1 twice."""
    assert run_cli("get", "--retries", "0", http_server.url("/status/502")).returncode == 1
    assert len(http_server.requests) == 1
    assert run_cli("get", "--retries", "1", http_server.url("/status/502"),
                   env={"SESSION_PRESETS_BACKOFF_FACTOR": "0"}).returncode == 1
    assert len(http_server.requests) == 3


def test_timeout_option_bounds_the_call(http_server: LoopbackServer) -> None:
    """--timeout is the call's total deadline: exit 3, naming total_timeout and --timeout."""
    result = run_cli("get", "--timeout", "500ms", http_server.url("/slow?delay=10"))
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"session-presets: {http_server.url('/slow')}: timed out: total_timeout=500ms, "
        "set by --timeout (retries and body included)"
    ]


def test_read_timeout_names_the_timeout_and_its_value(http_server: LoopbackServer) -> None:
    """A read timeout says read_timeout fired, its value, and the variable that set it."""
    result = run_cli("get", http_server.url("/slow?delay=5"),
                     env={"SESSION_PRESETS_READ_TIMEOUT": "200ms", "SESSION_PRESETS_RETRIES": "0"})
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"session-presets: {http_server.url('/slow')}: timed out: no data for read_timeout=200ms, "
        "set by SESSION_PRESETS_READ_TIMEOUT"
    ]


def test_read_timeout_of_a_builtin_value_says_how_to_change_it(
    capsys: pytest.CaptureFixture[str], http_server: LoopbackServer
) -> None:
    """With the preset's own read_timeout the message names the variable that changes it."""
    register_preset("hasty", read_timeout=0.2, retries=0)
    assert main(["get", "--preset", "hasty", http_server.url("/slow?delay=3")]) == 3
    err = capsys.readouterr().err
    assert "no data for read_timeout=200ms, preset 'hasty' code; change it with SESSION_PRESETS_READ_TIMEOUT" in err


def test_connection_refused_exits_3_on_one_line() -> None:
    """Connection refused: exit 3 and exactly one line on stderr, no traceback (real process)."""
    url = f"http://127.0.0.1:{_refused_port()}/ok"
    result = run_cli("get", url, env={"SESSION_PRESETS_RETRIES": "0"})
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [f"session-presets: {url}: connection refused"]


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """--debug prints the traceback that is otherwise hidden."""
    monkeypatch.setenv("SESSION_PRESETS_RETRIES", "0")
    assert main(["get", "--debug", f"http://127.0.0.1:{_refused_port()}/"]) == 3
    assert "Traceback" in capsys.readouterr().err


# -- errors that carry the fix ----------------------------------------------------------------


def test_https_to_a_plain_http_port_asks_if_the_port_is_plain_http(http_server: LoopbackServer) -> None:
    """https:// to a plain-HTTP port: exit 3, and the message asks about plain HTTP and gives the http:// URL."""
    url = f"https://127.0.0.1:{http_server.port}/ok"
    result = run_cli("get", "--retries", "0", url)
    assert result.returncode == 3
    (line,) = result.stderr.strip().splitlines()
    assert "TLS error" in line
    assert f"is this port plain HTTP? If so, use http://127.0.0.1:{http_server.port}/ok" in line


def test_unknown_ca_hints_at_the_ca_bundle_settings(https_server: LoopbackServer) -> None:
    """An untrusted certificate: exit 3 with one line naming SESSION_PRESETS_CA_BUNDLE and ca_bundle."""
    result = run_cli("get", https_server.url("/ok"))
    assert result.returncode == 3
    (line,) = result.stderr.strip().splitlines()
    assert "TLS certificate verify failed" in line
    assert "set SESSION_PRESETS_CA_BUNDLE=/path/to/ca.pem (or ca_bundle= in the preset)" in line


def test_bad_requests_ca_bundle_is_named_as_the_source(
    tmp_path: Path, http_server: LoopbackServer, https_server: LoopbackServer
) -> None:
    """REQUESTS_CA_BUNDLE=/nonexistent: exit 2 naming REQUESTS_CA_BUNDLE, for https:// and http:// alike."""
    missing = str(tmp_path / "nonexistent.pem")
    for url in (https_server.url("/ok"), http_server.url("/ok")):
        result = run_cli("get", url, env={"REQUESTS_CA_BUNDLE": missing})
        assert result.returncode == 2
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"session-presets: REQUESTS_CA_BUNDLE: ca_bundle={missing!r} is invalid")
        assert "fix or unset REQUESTS_CA_BUNDLE" in line
    assert http_server.requests == []


# -- download -----------------------------------------------------------------------------------


@pytest.fixture
def blob(http_server: LoopbackServer) -> Blob:
    """A 300 kB file with validators at /file on a loopback server."""
    route = Blob(os.urandom(300_000))
    http_server.route("/file", route)
    return route


def test_default_identifier_is_deterministic(tmp_path: Path) -> None:
    """The default identifier depends only on the absolute output path."""
    first = default_identifier(str(tmp_path / "a.bin"))
    assert first == default_identifier(os.path.relpath(tmp_path / "a.bin"))
    assert first != default_identifier(str(tmp_path / "b.bin"))


def test_download_prints_a_summary_when_stdout_is_not_a_terminal(
    tmp_path: Path, blob: Blob, http_server: LoopbackServer
) -> None:
    """download saves the file, checks --sha256, and prints one summary line: bytes, time, rate, resumed."""
    target = tmp_path / "file.bin"
    digest = hashlib.sha256(blob.data).hexdigest()
    result = run_cli("download", http_server.url("/file"), "-o", str(target), "--sha256", digest)
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == blob.data
    assert not (tmp_path / "file.bin.part").exists()
    assert re.fullmatch(rf"saved {re.escape(str(target))}: 300000 bytes in \d+\.\d s \([\d.]+ \w+/s\), "
                        r"not resumed\n", result.stdout), result.stdout
    assert result.stderr == ""


def test_download_sha256_mismatch_fails(tmp_path: Path, blob: Blob, http_server: LoopbackServer) -> None:
    """A wrong --sha256 fails the download with one line and never creates the destination."""
    target = tmp_path / "file.bin"
    result = run_cli("download", http_server.url("/file"), "-o", str(target), "--sha256", "0" * 64)
    assert result.returncode == 1
    assert "sha256 mismatch" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not target.exists()


def test_download_bad_sha256_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--sha256 must be 64 hex digits: exit 2 before anything starts."""
    assert main(["download", "http://127.0.0.1:9/x", "-o", str(tmp_path / "x"), "--sha256", "xyz"]) == 2
    assert "64 hexadecimal digits" in capsys.readouterr().err
    assert main(["download", "http://127.0.0.1:9/x", "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_rerun_of_a_complete_download_says_already_complete(
    tmp_path: Path, blob: Blob, http_server: LoopbackServer
) -> None:
    """A rerun sends one conditional GET with the stored ETag, gets 304, and downloads nothing."""
    target = tmp_path / "file.bin"
    assert run_cli("download", http_server.url("/file"), "-o", str(target)).returncode == 0
    before = target.stat().st_mtime_ns
    blob.log.clear()
    result = run_cli("download", http_server.url("/file"), "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{target} is already complete: the server answered 304 Not Modified; nothing downloaded\n"
    assert [(hit.method, hit.if_none_match, hit.status) for hit in blob.log] == [("GET", '"v1"', 304)]
    assert target.stat().st_mtime_ns == before


def test_rerun_after_the_file_changed_downloads_it_again(
    tmp_path: Path, blob: Blob, http_server: LoopbackServer
) -> None:
    """When the ETag changed, the rerun downloads the new version in full."""
    target = tmp_path / "file.bin"
    assert run_cli("download", http_server.url("/file"), "-o", str(target)).returncode == 0
    blob.data, blob.etag = os.urandom(1000), '"v2"'
    blob.log.clear()
    result = run_cli("download", http_server.url("/file"), "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert "already complete" not in result.stdout
    assert target.read_bytes() == blob.data
    assert [hit.status for hit in blob.log] == [200, 200]  # the check (body unread), then the download


def test_rerun_checks_last_modified_and_length_without_an_etag(
    tmp_path: Path, http_server: LoopbackServer
) -> None:
    """Without an ETag, a server that ignores If-Modified-Since is checked by Last-Modified and length."""
    route = Blob(b"z" * 5000, etag=None)
    http_server.route("/file", route)
    target = tmp_path / "file.bin"
    assert run_cli("download", http_server.url("/file"), "-o", str(target)).returncode == 0
    route.last_modified = "Thu, 22 Oct 2015 07:28:00 GMT"  # the server's answer now ignores the old date
    route.log.clear()
    changed = run_cli("download", http_server.url("/file"), "-o", str(target))
    assert "already complete" not in changed.stdout
    assert [hit.status for hit in route.log] == [200, 200]


def test_rerun_with_sha256_needs_no_request(tmp_path: Path, blob: Blob, http_server: LoopbackServer) -> None:
    """With --sha256, a file whose digest matches is complete without any request."""
    target = tmp_path / "file.bin"
    digest = hashlib.sha256(blob.data).hexdigest()
    assert run_cli("download", http_server.url("/file"), "-o", str(target), "--sha256", digest).returncode == 0
    blob.log.clear()
    result = run_cli("download", http_server.url("/file"), "-o", str(target), "--sha256", digest)
    assert result.returncode == 0
    assert "already complete: its sha256 matches" in result.stdout
    assert blob.log == []


def test_download_to_stdout(blob: Blob, http_server: LoopbackServer, tmp_path: Path) -> None:
    """-o - writes the body to stdout, and no file named '-' appears."""
    result = subprocess.run([sys.executable, "-m", "session_presets", "download", http_server.url("/file"), "-o", "-"],
                            capture_output=True, timeout=60, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == blob.data
    assert not (tmp_path / "-").exists()


def test_download_http_error_exits_1(tmp_path: Path, http_server: LoopbackServer) -> None:
    """A 404 fails the download with exit 1 and the status on one stderr line."""
    target = tmp_path / "missing.bin"
    result = run_cli("download", http_server.url("/nothing-here"), "-o", str(target))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "404" in line
    assert not target.exists()


def test_unreachable_host_shows_each_retry_and_timeout_bounds_it(tmp_path: Path) -> None:
    """A refused connection: each retry is shown (attempt, reason, next try), and --timeout ends it with exit 3."""
    url = f"http://127.0.0.1:{_refused_port()}/x"
    result = run_cli("download", url, "-o", str(tmp_path / "x"), "--timeout", "3s",
                     env={"SESSION_PRESETS_BACKGROUND_BACKOFF_FACTOR": "200ms"})
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    retries = [line for line in lines if "failed" in line]
    assert len(retries) >= 2, result.stderr
    assert re.fullmatch(r"session-presets: attempt 1 failed: connection refused; next try in \d+\.\d s", retries[0])
    assert retries[1].startswith("session-presets: attempt 2 failed: connection refused")
    assert lines[-1] == (f"session-presets: {url}: gave up after --timeout 3s; last error: connection refused; "
                         "no data had arrived, so nothing was kept")
    assert not (tmp_path / "x.part").exists() or (tmp_path / "x.part").stat().st_size == 0


def test_refused_until_total_timeout_is_a_network_failure(tmp_path: Path) -> None:
    """Giving up at total_timeout on a host that refused every connection: exit 3, the cause kept (not exit 1)."""
    url = f"http://127.0.0.1:{_refused_port()}/x"
    result = run_cli("download", url, "-o", str(tmp_path / "x"),
                     env={"SESSION_PRESETS_BACKGROUND_TOTAL_TIMEOUT": "1s",
                          "SESSION_PRESETS_BACKGROUND_BACKOFF_FACTOR": "50ms"})
    assert result.returncode == 3, result.stderr
    assert "connection refused" in result.stderr.strip().splitlines()[-1]


def test_unreachable_host_with_retries_option_fails_on_its_own(tmp_path: Path) -> None:
    """--retries bounds the background retries: a refused connection fails with exit 3 after 1 + N attempts."""
    url = f"http://127.0.0.1:{_refused_port()}/x"
    result = run_cli("download", url, "-o", str(tmp_path / "x"), "--retries", "1",
                     env={"SESSION_PRESETS_BACKGROUND_BACKOFF_FACTOR": "50ms"})
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("session-presets: attempt 1 failed: connection refused; next try in")
    assert lines[-1] == f"session-presets: {url}: connection refused (after 2 attempts)"


def test_ctrl_c_before_any_data_claims_no_part_file(tmp_path: Path) -> None:
    """SIGINT while the first attempts fail: exit 130, and no claim of a .part that does not exist."""
    command = [sys.executable, "-m", "session_presets", "download", f"http://127.0.0.1:{_refused_port()}/x",
               "-o", str(tmp_path / "x")]
    environ = {**os.environ, "SESSION_PRESETS_BACKGROUND_BACKOFF_FACTOR": "200ms"}
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    with child_process(command, stderr=subprocess.PIPE, text=True, env=environ) as child:
        threading.Thread(target=_lines, args=(child.stderr, lines), daemon=True).start()
        _wait_for_line(lines, "attempt 1 failed", seen)
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
    _wait_for_line(lines, "interrupted", seen)
    assert child.returncode == 130
    assert seen[-1].strip() == "session-presets: interrupted; no data had arrived, so nothing was kept"
    assert ".part" not in "".join(seen)
    assert not (tmp_path / "x.part").exists() or (tmp_path / "x.part").stat().st_size == 0


@pytest.fixture
def slow_blob(http_server: LoopbackServer) -> Blob:
    """A 2 MB file sent in 16 kB pieces every 20 ms (about 0.8 MB/s, so an interrupt lands mid-way)."""
    route = Blob(os.urandom(2_000_000), chunk=16 * 1024, delay=0.02)
    http_server.route("/slow-file", route)
    return route


def test_ctrl_c_keeps_part_then_rerun_resumes(tmp_path: Path, slow_blob: Blob, http_server: LoopbackServer) -> None:
    """SIGINT exits 130 and keeps the .part; the same command resumes with a Range request and says so."""
    target = tmp_path / "slow.bin"
    part = tmp_path / "slow.bin.part"
    url = http_server.url("/slow-file")
    command = [sys.executable, "-m", "session_presets", "download", url, "-o", str(target)]
    with child_process(command, stderr=subprocess.PIPE, text=True) as child:
        _wait_for_size(part, 200_000)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    assert child.returncode == 130
    assert re.search(rf"interrupted; \d+ bytes kept in {re.escape(str(part))}: run the same command again", err)
    assert "Traceback" not in err
    assert not target.exists()
    kept = part.stat().st_size
    assert 0 < kept < len(slow_blob.data)
    ends = time.monotonic() + 20
    while not slow_blob.log and time.monotonic() < ends:  # the interrupted response is logged when it ends
        time.sleep(0.02)
    slow_blob.log.clear()
    slow_blob.delay = 0
    result = run_cli("download", url, "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == slow_blob.data
    assert not part.exists()
    assert [hit.range for hit in slow_blob.log] == [f"bytes={kept}-"]
    assert f", resumed from byte {kept}\n" in result.stdout


def test_no_second_progress_bar_after_interrupted(tmp_path: Path, slow_blob: Blob, http_server: LoopbackServer) -> None:
    """On a terminal, Ctrl-C closes the bar and prints 'interrupted'; no bar is drawn after it."""
    target = tmp_path / "slow.bin"
    command = [sys.executable, "-m", "session_presets", "download", http_server.url("/slow-file"), "-o", str(target)]
    with pty_reader() as (terminal, shown), child_process(
        command, stderr=terminal, stdout=subprocess.DEVNULL
    ) as child:
        _wait_for_size(tmp_path / "slow.bin.part", 200_000)
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
    # pty_reader's exit closed our end of the terminal and joined its reader, which reads until EIO:
    # everything the child wrote is in ``shown`` now.
    screen = b"".join(shown).decode("utf-8", "replace")
    assert child.returncode == 130
    assert "slow.bin" in screen
    assert "%" in screen or "B/s" in screen, screen  # a bar was drawn while downloading
    after = screen.split("interrupted", 1)[1]
    assert "B/s" not in after and "%|" not in after, repr(after)


def test_second_download_of_a_running_transfer_exits_4(
    tmp_path: Path, slow_blob: Blob, http_server: LoopbackServer
) -> None:
    """A second process on a transfer in use exits 4 and names the other process, not EAGAIN."""
    slow_blob.delay = 0.1  # about 20 s in all: the first download is still running when the second starts
    target = tmp_path / "slow.bin"
    url = http_server.url("/slow-file")
    command = [sys.executable, "-m", "session_presets", "download", url, "-o", str(target)]
    slow_blob.gate, slow_blob.hold_after = threading.Event(), 1_500_000  # the first is still running
    with child_process(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL) as first:
        try:
            _wait_for_size(tmp_path / "slow.bin.part", 1)
            second = run_cli("download", url, "-o", str(target))
        finally:
            slow_blob.gate.set()
            first.send_signal(signal.SIGINT)
            first.communicate(timeout=30)
    assert second.returncode == 4
    (line,) = second.stderr.strip().splitlines()
    assert f"in use by another process (pid {first.pid})" in line
    assert "Resource temporarily unavailable" not in line
    assert "wait for it to finish" in line


def test_second_download_to_a_file_being_written_exits_4(
    tmp_path: Path, slow_blob: Blob, http_server: LoopbackServer
) -> None:
    """Another identifier writing the same file is 'in use' too: exit 4, and the first download's bytes survive."""
    slow_blob.delay = 0.1  # about 20 s in all: the first download is still running when the second starts
    target = tmp_path / "slow.bin"
    url = http_server.url("/slow-file")
    command = [sys.executable, "-m", "session_presets", "download", url, "-o", str(target)]
    slow_blob.gate, slow_blob.hold_after = threading.Event(), 1_500_000  # the first is still running
    with child_process(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL) as first:
        try:
            _wait_for_size(tmp_path / "slow.bin.part", 32 * 1024)
            second = run_cli("download", url, "-o", str(target), "--identifier", "another-id")
            assert (tmp_path / "slow.bin.part").stat().st_size >= 32 * 1024
        finally:
            slow_blob.gate.set()
            first.send_signal(signal.SIGINT)
            first.communicate(timeout=30)
    assert second.returncode == 4, second.stderr
    (line,) = second.stderr.strip().splitlines()
    assert "is already being written" in line
    assert "wait for it to finish" in line


# -- progress ------------------------------------------------------------------------------------


def test_progress_plain_line_without_tqdm(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without tqdm the progress is one rewritten percentage line, ended by close(), silent afterwards."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    progress = Progress("file.bin", enabled=True)

    class Task:
        bytes_done = 512 * 1024
        bytes_total = 1024 * 1024

    progress(Task())
    progress.message("attempt 1 failed: timed out; next try in 1.0 s")
    progress.close()
    progress(Task())
    err = capsys.readouterr().err
    assert "\rfile.bin:  50% (0.5 of 1.0 MiB)" in err
    assert "\r\x1b[Ksession-presets: attempt 1 failed" in err
    assert err.endswith("\n")
    assert err.count("file.bin:") == 1


@pytest.mark.parametrize("enabled", [True, False])
def test_no_retry_line_after_the_progress_is_closed(capsys: pytest.CaptureFixture[str], enabled: bool) -> None:
    """A retry the worker reports after close() prints nothing: the command's own last line stays last and whole."""
    progress = Progress("file.bin", enabled=enabled)
    progress.message("attempt 1 failed: connection refused; next try in 0.2 s")
    progress.close()
    progress.message("attempt 2 failed: connection refused; next try in 0.5 s")
    err = capsys.readouterr().err
    assert "attempt 1 failed" in err
    assert "attempt 2" not in err


def test_progress_uses_tqdm_when_installed(capsys: pytest.CaptureFixture[str]) -> None:
    """With tqdm installed the progress is a tqdm bar on stderr; messages go above it; none after close."""
    pytest.importorskip("tqdm")
    progress = Progress("file.bin", enabled=True)

    class Task:
        bytes_done = 1024 * 1024
        bytes_total = 2 * 1024 * 1024

    progress(Task())
    progress.message("attempt 1 failed")
    Task.bytes_done = Task.bytes_total
    progress(Task())
    progress.close()
    closed = capsys.readouterr().err
    progress(Task())
    assert "file.bin" in closed
    assert "100%" in closed
    assert "session-presets: attempt 1 failed" in closed
    assert capsys.readouterr().err == ""


def test_retry_reasons_are_shortened_to_what_a_person_needs() -> None:
    """The engine's long retry reasons become 'connection refused', 'cannot resolve host name'..."""
    shorten = short_reason
    assert shorten("ConnectionError: HTTPConnectionPool(host='h', port=1): Max retries exceeded ... "
                   "[Errno 111] Connection refused')") == "connection refused"
    assert shorten("ConnectionError: ... NameResolutionError(\"...: Failed to resolve 'nosuch.invalid' "
                   "([Errno -2] Name or service not known)\")") == "cannot resolve host name"
    assert shorten("connection lost after 100 bytes: ReadTimeoutError: Read timed out.") == (
        "connection lost after 100 bytes: timed out"
    )
    assert shorten("HTTP 503") == "HTTP 503"
    assert shorten("") == "unknown error"
    assert shorten("x" * 300) == "x" * 117 + "..."


def test_download_insecure_warns_once_and_reaches_an_untrusted_server(
    tmp_path: Path, https_server: LoopbackServer
) -> None:
    """download -k saves from an untrusted server with one warning; a rerun's check warns once too."""
    route = Blob(b"secret-free bytes" * 100)
    https_server.route("/file", route)
    target = tmp_path / "file.bin"
    first = run_cli("download", "-k", https_server.url("/file"), "-o", str(target))
    assert first.returncode == 0, first.stderr
    assert target.read_bytes() == route.data
    assert [line for line in first.stderr.splitlines() if "warning" in line] == [
        "session-presets: warning: preset 'background' has verify=False: TLS certificates are not checked "
        "for this session"
    ]
    again = run_cli("download", "-k", https_server.url("/file"), "-o", str(target))
    assert again.returncode == 0
    assert "already complete" in again.stdout
    assert len([line for line in again.stderr.splitlines() if "warning" in line]) == 1
    untrusted = run_cli("download", https_server.url("/file"), "-o", str(tmp_path / "other.bin"))
    assert untrusted.returncode == 3
    assert "TLS certificate verify failed" in untrusted.stderr


def test_in_process_download_and_get_paths(
    tmp_path: Path, http_server: LoopbackServer, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """main() in-process: download, rerun, -o - and a 404 download give the documented statuses."""
    route = Blob(b"0123456789" * 1000)
    http_server.route("/file", route)
    target = tmp_path / "file.bin"
    assert main(["download", http_server.url("/file"), "-o", str(target)]) == 0
    assert main(["download", http_server.url("/file"), "-o", str(target)]) == 0
    assert main(["download", http_server.url("/file"), "-o", "-"]) == 0
    out = capsysbinary.readouterr().out
    assert out.startswith(b"saved ")
    assert b"is already complete" in out
    assert out.endswith(route.data)
    assert main(["download", http_server.url("/missing"), "-o", str(tmp_path / "missing")]) == 1
