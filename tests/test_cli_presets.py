"""``session-presets presets``: every preset, durations, origins, JSON, bad environment values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from session_presets import cli, get_preset, register_preset
from session_presets.cli import main

from .cli_support import (
    run_cli,
)

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
