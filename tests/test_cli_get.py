"""``session-presets get``: output, request options, HTTP errors, retries and timeouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from session_presets import register_preset
from session_presets.cli import main

from .cli_support import (
    BINARY,
    binary_route,
    child_process,
    pty_reader,
    refused_port,
    run_cli,
)
from .servers import LoopbackServer


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch, ca_bundle: str) -> str:
    """Make every preset trust the test CA through the environment."""
    monkeypatch.setenv("SESSION_PRESETS_CA_BUNDLE", ca_bundle)
    return ca_bundle


# -- get: output ------------------------------------------------------------------------------


def test_get_writes_the_body_to_stdout_byte_for_byte(
    capsysbinary: pytest.CaptureFixture[bytes], https_server: LoopbackServer, trusted: str
) -> None:
    """get sends a binary body to stdout unchanged, over HTTPS through the preset's trust."""
    https_server.route("/binary", binary_route)
    assert main(["get", https_server.url("/binary")]) == 0
    assert capsysbinary.readouterr().out == BINARY


def test_get_include_prints_status_line_and_headers(
    capsysbinary: pytest.CaptureFixture[bytes], https_server: LoopbackServer, trusted: str
) -> None:
    """-i puts the status line and the response headers before the body."""
    https_server.route("/binary", binary_route)
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
    http_server.route("/binary", binary_route)
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
    http_server.route("/binary", binary_route)
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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["get", "--retries", "-1"], "argument --retries: '-1' is not a whole number"),
        (["get", "--max-redirs", "+3"], "argument --max-redirs: '+3' is not a whole number"),
        (["get", "--retries", "1_000"], "argument --retries: '1_000' is not a whole number"),
        (["get", "--timeout", "0s"], "argument --timeout: '0s' must be above 0"),
        (["get", "--timeout", "soon"], "argument --timeout: 'soon' is not a duration such as 30, 30s, 500ms, 2m, 1h"),
        (["bench", "--requests", "0"], "argument --requests: '0' must be at least 1"),
        (["bench", "--download-mib", "inf"], "argument --download-mib: 'inf' is not a number"),
        (["bench", "--download-mib", "1e3"], "argument --download-mib: '1e3' is not a number"),
        (["bench", "--download-mib", "0"], "argument --download-mib: '0' must be above 0"),
    ],
)
def test_option_values_are_parsed_as_the_environment_parses_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Number and duration options refuse what the environment refuses (parse_whole, parse_number), and say why."""
    url = ["http://127.0.0.1:9/"] if argv[0] == "get" else []
    assert main([*argv, *url]) == 2
    assert f"session-presets: {message}\n" in capsys.readouterr().err


def test_option_values_take_the_environment_forms(http_server: LoopbackServer) -> None:
    """--retries ' 2 ', --max-redirs 0 and --timeout 1.5m are taken; the server sees the one request."""
    result = run_cli("get", "--retries", " 2 ", "--max-redirs", "0", "--timeout", "1.5m", http_server.url("/ok"))
    assert result.returncode == 0, result.stderr
    assert [entry.path for entry in http_server.requests] == ["/ok"]


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
    url = f"http://127.0.0.1:{refused_port()}/ok"
    result = run_cli("get", url, env={"SESSION_PRESETS_RETRIES": "0"})
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [f"session-presets: {url}: connection refused"]


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """--debug prints the traceback that is otherwise hidden."""
    monkeypatch.setenv("SESSION_PRESETS_RETRIES", "0")
    assert main(["get", "--debug", f"http://127.0.0.1:{refused_port()}/"]) == 3
    assert "Traceback" in capsys.readouterr().err
