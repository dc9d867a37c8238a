"""``session-presets download``: resume, reruns, sha256, Ctrl-C, transfers in use, progress."""

from __future__ import annotations

import hashlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from session_presets.cli import default_identifier, main
from session_presets.cli._reasons import short_reason
from session_presets.cli._transfer import Progress

from .cli_support import (
    Blob,
    child_process,
    pty_reader,
    read_lines,
    refused_port,
    run_cli,
    wait_for_line,
    wait_for_size,
)
from .servers import LoopbackServer
from .waiting import wait_until

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
    url = f"http://127.0.0.1:{refused_port()}/x"
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
    url = f"http://127.0.0.1:{refused_port()}/x"
    result = run_cli("download", url, "-o", str(tmp_path / "x"),
                     env={"SESSION_PRESETS_BACKGROUND_TOTAL_TIMEOUT": "1s",
                          "SESSION_PRESETS_BACKGROUND_BACKOFF_FACTOR": "50ms"})
    assert result.returncode == 3, result.stderr
    assert "connection refused" in result.stderr.strip().splitlines()[-1]


def test_unreachable_host_with_retries_option_fails_on_its_own(tmp_path: Path) -> None:
    """--retries bounds the background retries: a refused connection fails with exit 3 after 1 + N attempts."""
    url = f"http://127.0.0.1:{refused_port()}/x"
    result = run_cli("download", url, "-o", str(tmp_path / "x"), "--retries", "1",
                     env={"SESSION_PRESETS_BACKGROUND_BACKOFF_FACTOR": "50ms"})
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("session-presets: attempt 1 failed: connection refused; next try in")
    assert lines[-1] == f"session-presets: {url}: connection refused (after 2 attempts)"


def test_ctrl_c_before_any_data_claims_no_part_file(tmp_path: Path) -> None:
    """SIGINT while the first attempts fail: exit 130, and no claim of a .part that does not exist."""
    command = [sys.executable, "-m", "session_presets", "download", f"http://127.0.0.1:{refused_port()}/x",
               "-o", str(tmp_path / "x")]
    environ = {**os.environ, "SESSION_PRESETS_BACKGROUND_BACKOFF_FACTOR": "200ms"}
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    with child_process(command, stderr=subprocess.PIPE, text=True, env=environ) as child:
        threading.Thread(target=read_lines, args=(child.stderr, lines), daemon=True).start()
        wait_for_line(lines, "attempt 1 failed", seen)
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
    wait_for_line(lines, "interrupted", seen)
    assert child.returncode == 130
    assert seen[-1].strip() == "session-presets: interrupted; no data had arrived, so nothing was kept"
    assert ".part" not in "".join(seen)
    assert not (tmp_path / "x.part").exists() or (tmp_path / "x.part").stat().st_size == 0


@pytest.fixture
def slow_blob(http_server: LoopbackServer) -> Iterator[Blob]:
    """A 2 MB file in 16 kB pieces every 20 ms that stops after 1.5 MB until its gate opens.

    The gate makes sure an interrupt lands mid-way, however loaded the machine is. The pacing
    makes the body arrive in pieces, so that the .part grows as it goes: a download writes what
    each batch of reads brought, and a read left waiting on a held body holds its batch back.
    """
    route = Blob(os.urandom(2_000_000), chunk=16 * 1024, delay=0.02, gate=threading.Event(), hold_after=1_500_000)
    http_server.route("/slow-file", route)
    yield route
    if route.gate is not None:
        route.gate.set()  # a response still held ends now, not after the gate's 30 s


def test_ctrl_c_keeps_part_then_rerun_resumes(tmp_path: Path, slow_blob: Blob, http_server: LoopbackServer) -> None:
    """SIGINT exits 130 and keeps the .part; the same command resumes with a Range request and says so."""
    target = tmp_path / "slow.bin"
    part = tmp_path / "slow.bin.part"
    url = http_server.url("/slow-file")
    command = [sys.executable, "-m", "session_presets", "download", url, "-o", str(target)]
    with child_process(command, stderr=subprocess.PIPE, text=True) as child:
        wait_for_size(part, 200_000)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    assert child.returncode == 130
    assert re.search(rf"interrupted; \d+ bytes kept in {re.escape(str(part))}: run the same command again", err)
    assert "Traceback" not in err
    assert not target.exists()
    kept = part.stat().st_size
    assert 0 < kept < len(slow_blob.data)
    assert slow_blob.gate is not None
    slow_blob.gate.set()  # the interrupted response ends, and is logged, once the server may send again
    wait_until(lambda: slow_blob.log, 20, "the server to log the interrupted response")
    slow_blob.log.clear()
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
        wait_for_size(tmp_path / "slow.bin.part", 200_000)
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
    target = tmp_path / "slow.bin"
    url = http_server.url("/slow-file")
    command = [sys.executable, "-m", "session_presets", "download", url, "-o", str(target)]
    with child_process(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL) as first:
        try:
            wait_for_size(tmp_path / "slow.bin.part", 1)
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
    target = tmp_path / "slow.bin"
    url = http_server.url("/slow-file")
    command = [sys.executable, "-m", "session_presets", "download", url, "-o", str(target)]
    with child_process(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL) as first:
        try:
            wait_for_size(tmp_path / "slow.bin.part", 32 * 1024)
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
