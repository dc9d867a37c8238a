"""The session-presets command line: presets, get, download; in-process and as a real process."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from session_presets import cli
from session_presets.cli import default_identifier, main

from .servers import Handler, LoopbackServer

BINARY = bytes(range(256)) * 4


def run_cli(*args: str, timeout: float = 30, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m session_presets ARGS`` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "session_presets", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch, ca_bundle: str) -> str:
    """Make every preset trust the test CA through the environment."""
    monkeypatch.setenv("SESSION_PRESETS_CA_BUNDLE", ca_bundle)
    return ca_bundle


def _binary(h: Handler) -> None:
    h.reply(200, BINARY, {"Content-Type": "application/octet-stream", "X-Served-By": "loopback"})


# -- presets --------------------------------------------------------------------------


def test_presets_lists_every_builtin_preset(capsys: pytest.CaptureFixture[str]) -> None:
    """`presets` prints a block per built-in preset with its effective values."""
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("[default]", "[ephemeral]", "[background]"):
        assert name in out
    assert "read_timeout" in out
    assert "connect_timeout" in out


def test_presets_show_origin_names_the_environment_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--show-origin says a value came from its SESSION_PRESETS_<PRESET>_<FIELD> variable."""
    monkeypatch.setenv("SESSION_PRESETS_DEFAULT_READ_TIMEOUT", "5s")
    assert main(["presets", "--show-origin"]) == 0
    out = capsys.readouterr().out
    default_block = out.split("[default]")[1].split("[")[0]
    line = next(text for text in default_block.splitlines() if "read_timeout" in text)
    assert "5" in line
    assert "(env SESSION_PRESETS_DEFAULT_READ_TIMEOUT)" in line
    assert "(built-in)" in default_block


def test_presets_json_with_origin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """--json --show-origin gives each value with its origin, and masks proxy passwords."""
    monkeypatch.setenv("SESSION_PRESETS_RETRIES", "5")
    monkeypatch.setenv("SESSION_PRESETS_EPHEMERAL_PROXIES", '{"https": "http://user:secret@proxy:3128"}')
    assert main(["presets", "--json", "--show-origin"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["default"]["retries"] == {"value": 5, "origin": "env SESSION_PRESETS_RETRIES"}
    assert data["default"]["read_timeout"] == {"value": 20.0, "origin": "built-in"}
    assert "secret" not in json.dumps(data)
    assert set(data) == {"default", "ephemeral", "background"}


def test_presets_json_plain_values(capsys: pytest.CaptureFixture[str]) -> None:
    """--json without --show-origin maps each preset to its plain values."""
    assert main(["presets", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["background"]["total_timeout"] == 7 * 86400


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


# -- get ------------------------------------------------------------------------------------


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


def test_get_sends_extra_headers(capsysbinary: pytest.CaptureFixture[bytes], http_server: LoopbackServer) -> None:
    """-H headers reach the server, and the preset's own headers are still sent."""
    assert main(["get", "-H", "X-Trace: abc 123", "-H", "Accept: text/plain", http_server.url("/ok")]) == 0
    seen = http_server.requests[-1]
    assert seen.header("X-Trace") == "abc 123"
    assert seen.header("Accept") == "text/plain"
    assert (seen.header("User-Agent") or "").startswith("session-presets/")
    assert capsysbinary.readouterr().out == b"ok"


def test_get_with_a_named_preset_uses_the_shared_session(
    capsysbinary: pytest.CaptureFixture[bytes], http_server: LoopbackServer
) -> None:
    """--preset picks the preset: ephemeral's cache policy sends no-cache like default."""
    assert main(["get", "--preset", "ephemeral", http_server.url("/ok")]) == 0
    assert http_server.requests[-1].header("Cache-Control") == "no-cache"


def test_get_404_exits_1_with_status_on_stderr(
    capfdbinary: pytest.CaptureFixture[bytes], http_server: LoopbackServer
) -> None:
    """A 404 answer exits 1 and names the status on stderr; the body still goes to stdout."""
    assert main(["get", http_server.url("/status/404")]) == 1
    captured = capfdbinary.readouterr()
    assert b"HTTP 404 Not Found" in captured.err
    assert captured.out == b"status 404"


def test_get_bad_header_is_a_usage_error(capsys: pytest.CaptureFixture[str], http_server: LoopbackServer) -> None:
    """A -H value without a colon exits 2 and sends nothing."""
    assert main(["get", "-H", "no colon here", http_server.url("/ok")]) == 2
    assert "expected 'Name: value'" in capsys.readouterr().err
    assert http_server.requests == []


def test_get_unknown_preset_exits_2_with_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown preset name exits 2 and suggests the nearest one."""
    assert main(["get", "--preset", "defualt", "http://127.0.0.1:9/"]) == 2
    assert "did you mean 'default'" in capsys.readouterr().err


def test_get_not_a_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A URL without a scheme exits 2."""
    assert main(["get", "example"]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err


def _refused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_get_connection_refused_exits_3_on_one_line() -> None:
    """Connection refused: exit 3 and exactly one line on stderr, no traceback (real process)."""
    url = f"http://127.0.0.1:{_refused_port()}/ok"
    result = run_cli("get", url, env={"SESSION_PRESETS_RETRIES": "0"})
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [f"session-presets: {url}: connection refused"]


def test_get_tls_failure_exits_3_on_one_line(capsys: pytest.CaptureFixture[str], https_server: LoopbackServer) -> None:
    """An untrusted certificate: exit 3 with a one-line TLS reason."""
    assert main(["get", https_server.url("/ok")]) == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "TLS certificate verify failed" in lines[0]


def test_get_timeout_exits_3(capsys: pytest.CaptureFixture[str], http_server: LoopbackServer,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A read timeout exits 3 and says it timed out."""
    monkeypatch.setenv("SESSION_PRESETS_READ_TIMEOUT", "200ms")
    monkeypatch.setenv("SESSION_PRESETS_RETRIES", "0")
    assert main(["get", http_server.url("/slow?delay=2")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "timed out" in err[0]


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """--debug prints the traceback that is otherwise hidden."""
    monkeypatch.setenv("SESSION_PRESETS_RETRIES", "0")
    assert main(["get", "--debug", f"http://127.0.0.1:{_refused_port()}/"]) == 3
    assert "Traceback" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown commands and missing arguments exit 2 through main()."""
    assert main(["frobnicate"]) == 2
    assert main(["get"]) == 2
    assert main(["bench", "--requests", "0"]) == 2
    assert "usage:" in capsys.readouterr().err


def test_console_script_and_module_agree() -> None:
    """`python -m session_presets` runs the same CLI: --version and exit statuses."""
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("session-presets ")
    assert run_cli("nonsense").returncode == 2


# -- download --------------------------------------------------------------------------------


@pytest.fixture
def needs_background(tmp_path: Path) -> None:
    """Skip the test while background sessions are not built yet."""
    from session_presets import background_session

    try:
        background_session("probe-availability", state_dir=str(tmp_path / "probe")).finish_tasks_and_invalidate()
    except NotImplementedError:
        pytest.skip("background sessions are not built yet")


def test_default_identifier_is_deterministic(tmp_path: Path) -> None:
    """The default identifier depends only on the absolute output path."""
    first = default_identifier(str(tmp_path / "a.bin"))
    assert first == default_identifier(os.path.relpath(tmp_path / "a.bin"))
    assert first != default_identifier(str(tmp_path / "b.bin"))


def test_download_without_background_support_is_clear(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """If background sessions cannot be built, download exits 2 with a message."""
    from session_presets import background

    def unavailable(identifier: str, **overrides: object) -> object:
        raise NotImplementedError("not here")

    monkeypatch.setattr(background, "background_session", unavailable)
    assert main(["download", "http://127.0.0.1:9/x", "-o", str(tmp_path / "x")]) == 2
    assert "not available" in capsys.readouterr().err


@pytest.fixture
def blob_server():  # type: ignore[no-untyped-def]
    """The bench's out-of-process server: blobs with ETag and Range support."""
    from session_presets.bench.server import ServerProcess

    with ServerProcess() as server:
        yield server


@pytest.mark.usefixtures("needs_background")
def test_download_writes_the_file_and_checks_sha256(tmp_path: Path, blob_server, capsys) -> None:  # type: ignore[no-untyped-def]
    """download saves the whole file, verifies --sha256 and leaves no .part behind."""
    from session_presets.bench.server import blob_bytes

    size = 300_000
    expected = blob_bytes(0, size)
    target = tmp_path / "blob.bin"
    digest = hashlib.sha256(expected).hexdigest()
    assert main(["download", blob_server.url(f"/blob/{size}"), "-o", str(target), "--sha256", digest]) == 0
    assert target.read_bytes() == expected
    assert not (tmp_path / "blob.bin.part").exists()
    assert capsys.readouterr().out == ""


@pytest.mark.usefixtures("needs_background")
def test_download_sha256_mismatch_fails(tmp_path: Path, blob_server, capsys) -> None:  # type: ignore[no-untyped-def]
    """A wrong --sha256 fails the download and never creates the destination."""
    target = tmp_path / "blob.bin"
    status = main(["download", blob_server.url("/blob/5000"), "-o", str(target), "--sha256", "0" * 64])
    assert status != 0
    assert not target.exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_download_bad_sha256_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--sha256 must be 64 hex digits: exit 2 before anything starts."""
    assert main(["download", "http://127.0.0.1:9/x", "-o", str(tmp_path / "x"), "--sha256", "xyz"]) == 2
    assert "64 hexadecimal digits" in capsys.readouterr().err


@pytest.mark.usefixtures("needs_background")
def test_download_ctrl_c_keeps_part_then_rerun_resumes(tmp_path: Path, blob_server) -> None:  # type: ignore[no-untyped-def]
    """SIGINT exits 130 and keeps the .part; the same command then resumes with a Range request."""
    from session_presets.bench.server import blob_bytes

    size = 2_000_000
    target = tmp_path / "slow.bin"
    part = tmp_path / "slow.bin.part"
    url = blob_server.url(f"/blob/{size}?rate=2000000")
    command = [sys.executable, "-m", "session_presets", "download", url, "-o", str(target)]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as child:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < 200_000):
            time.sleep(0.02)
        assert part.exists(), "download never started"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
    assert child.returncode == 130
    assert "resume" in err
    assert "Traceback" not in err
    assert part.exists()
    assert not target.exists()
    kept = part.stat().st_size
    assert 0 < kept < size
    blob_server.reset()
    result = run_cli("download", url, "-o", str(target), timeout=60)
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == blob_bytes(0, size)
    assert not part.exists()
    starts = blob_server.blob_starts()
    assert starts, "the rerun made no request"
    assert all(0 < start <= kept for start in starts), f"the rerun did not resume: {starts}"


@pytest.mark.usefixtures("needs_background")
def test_download_http_error_exits_1(tmp_path: Path, blob_server, capsys) -> None:  # type: ignore[no-untyped-def]
    """A 404 fails the download with exit 1 and the status on one stderr line."""
    target = tmp_path / "missing.bin"
    assert main(["download", blob_server.url("/nothing-here"), "-o", str(target)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "404" in err[0]
    assert not target.exists()


@pytest.mark.usefixtures("needs_background")
def test_download_connection_refused_exits_3(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With retries bounded by a short total_timeout, a refused connection exits 3 on one line."""
    monkeypatch.setenv("SESSION_PRESETS_BACKGROUND_TOTAL_TIMEOUT", "1s")
    monkeypatch.setenv("SESSION_PRESETS_BACKGROUND_BACKOFF_FACTOR", "50ms")
    status = main(["download", f"http://127.0.0.1:{_refused_port()}/x", "-o", str(tmp_path / "x")])
    assert status == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "connection refused" in err[0]


def test_progress_plain_line_without_tqdm(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without tqdm the progress is one rewritten percentage line, ended by close()."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    progress = cli._Progress("file.bin")

    class Task:
        bytes_done = 512 * 1024
        bytes_total = 1024 * 1024

    progress(Task())
    progress.close()
    err = capsys.readouterr().err
    assert "\rfile.bin:  50% (0.5 of 1.0 MiB)" in err
    assert err.endswith("\n")


def test_progress_uses_tqdm_when_installed(capsys: pytest.CaptureFixture[str]) -> None:
    """With tqdm installed the progress is a tqdm bar on stderr, closed at the end."""
    pytest.importorskip("tqdm")
    progress = cli._Progress("file.bin")

    class Task:
        bytes_done = 1024 * 1024
        bytes_total = 2 * 1024 * 1024

    progress(Task())
    Task.bytes_done = Task.bytes_total
    progress(Task())
    progress.close()
    err = capsys.readouterr().err
    assert "file.bin" in err
    assert "100%" in err
