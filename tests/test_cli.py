"""The session-presets command line: exit statuses, the console script, errors that carry their fix.

Every behaviour of issue 15 has a test that runs the command as a user does (a
child process: ``python -m session_presets`` or the installed console script)
against a loopback server, and checks what the server saw and the exit status.
The commands have files of their own: test_cli_presets, test_cli_get,
test_cli_download (progress included) and test_cli_output (``get -o``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from session_presets import cli

from .cli_support import (
    CLI_PAGE,
    console_script,
    refused_port,
    run_cli,
)
from .servers import LoopbackServer

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
    assert status("get", "--retries", "0", f"http://127.0.0.1:{refused_port()}/") == 3
    assert [r.path for r in http_server.requests] == ["/ok", "/status/404"]


def test_console_script_and_module_agree() -> None:
    """`python -m session_presets` runs the same CLI: --version and exit statuses."""
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("session-presets ")
    assert run_cli("nonsense").returncode == 2


def test_bench_help_lists_the_scenarios() -> None:
    """`bench --help` names every scenario that --scenarios accepts."""
    from session_presets.bench.scenarios import SCENARIOS

    result = run_cli("bench", "--help")
    assert result.returncode == 0
    for name in SCENARIOS:
        assert re.search(rf"^  {name}$", result.stdout, re.MULTILINE), name


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
