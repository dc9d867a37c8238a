"""Every script in examples/ runs on its own, against the loopback server it starts, and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: The scripts of section 9 of the design; others found in examples/ run too.
EXPECTED = ("sync_script.py", "shared_registry.py", "env_config.py", "custom_preset.py")
SCRIPTS = sorted({*EXPECTED, *(path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("_"))})

#: What each script must print, proving it showed what it is for.
MUST_SHOW = {
    "sync_script.py": "server saw 1 connection(s)",
    "shared_registry.py": "the worker got a new session object: True",
    "env_config.py": "from env SESSION_PRESETS_DEFAULT_READ_TIMEOUT",
    "custom_preset.py": "from base preset 'api'",
    "host_header_adapter.py": "HostHeaderPresetAdapter: verified api.example.test at 127.0.0.1",
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_and_exits_0(script: str, tmp_path: Path) -> None:
    """The example runs with no arguments, prints what it demonstrates and exits 0."""
    path = EXAMPLES / script
    assert path.is_file(), f"examples/{script} is missing"
    result = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert MUST_SHOW.get(script, "") in result.stdout
