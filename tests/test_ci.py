"""CI runs what the README tells a user to run: the same test command, on every supported Python."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _noxfile_constant(name: str) -> Any:
    """A literal assigned at the top of noxfile.py (read, not imported: nox is not a test dependency)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"noxfile.py assigns no {name}")


def _readme_commands() -> list[str]:
    """The README's "Try it" commands: install and bench, then install and test."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "\n## Try it\n" in text, "README.md has no 'Try it' section"
    section = text.split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_try_it_shows_the_bench_and_the_test_command() -> None:
    """The README's "Try it" section, near the top, holds exactly two commands: install and bench, install and test."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.index("\n## Try it\n") < len(text) // 2
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[0].startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -U pip && ")
    assert commands[0].endswith("pip install '.[cli,bench]' && session-presets bench")
    assert "pip install -e '.[test]' -c .ci/constraints.txt" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """noxfile's test session runs the README's pytest command word for word, on 3.10 to 3.13."""
    pytest_part = _readme_commands()[1].split(" && ")[-1]
    assert shlex.split(pytest_part) == _noxfile_constant("TEST_COMMAND")
    assert _noxfile_constant("PYTHONS") == ["3.10", "3.11", "3.12", "3.13"]
    assert "nox " in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_ci_installs_the_pinned_test_dependencies() -> None:
    """CI installs the test extra with the constraints file the README names, and that file pins exact versions."""
    constraints = _noxfile_constant("CONSTRAINTS")
    assert constraints == ["-c", ".ci/constraints.txt"]
    assert " ".join(constraints) in _readme_commands()[1]
    pins = [line for line in (ROOT / ".ci" / "constraints.txt").read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")]
    assert pins and all("==" in line for line in pins)
    assert any(line.startswith("sentry-sdk==") for line in pins)
