"""CI runs what the README tells a user to run: the same test command, on every supported Python."""

from __future__ import annotations

import ast
import configparser
import re
import runpy
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


def _noxfile_default_sessions() -> list[str]:
    """The sessions a bare ``nox`` (so .ci/run) runs: noxfile's ``nox.options.sessions``."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "nox.options.sessions":
            return list(ast.literal_eval(node.value))
    raise AssertionError("noxfile.py sets no nox.options.sessions")


def test_ci_runs_the_range_sessions() -> None:
    """.ci/run runs nox's defaults, which include compat, deps-min, deps-latest, fallback and downstream on 3.12."""
    sessions = _noxfile_default_sessions()
    assert set(sessions) >= {"lint", "tests", "compat", "deps-min", "deps-latest", "fallback", "downstream"}
    assert _noxfile_constant("RANGE_PYTHON") == "3.12"
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert not re.search(r"^nox .*(-s|--sessions)", run, re.MULTILINE)
    assert _noxfile_constant("FALLBACK_ENV") == {"SESSION_PRESETS_FAST_PATH": "off"}
    assert _noxfile_constant("DOWNSTREAM_MODES") == ["session", "adapter"]


def test_compat_tests_leave_the_core_matrix_for_their_session() -> None:
    """The core matrix deselects the compat marker, and exactly the compat session's files carry it."""
    assert _noxfile_constant("CORE_SELECTION") == ["-m", "not compat"]
    marked = sorted(
        f"tests/{path.name}" for path in (ROOT / "tests").glob("test_*.py")
        if re.search(r"^pytestmark = pytest\.mark\.compat$", path.read_text(encoding="utf-8"), re.MULTILINE)
    )
    assert marked == sorted(_noxfile_constant("COMPAT_TESTS"))


def test_declared_minimums_are_the_ones_that_work() -> None:
    """setup.cfg's lower bounds: requests 2.32.3 (first with the TLS hook), urllib3 2.2.0 (first with read1)."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    requirements = parser["options"]["install_requires"].split()
    assert "requests>=2.32.3" in requirements
    assert "urllib3>=2.2.0" in requirements


def test_ci_installs_redis_server_when_missing() -> None:
    """.ci/run installs Debian's redis-server (after apt-get update) before the sessions that start one."""
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    update, install, nox_call = run.index("apt-get update"), run.index("apt-get install -y"), run.index('nox "$')
    assert update < install < nox_call
    assert "command -v redis-server" in run


def test_downstream_allow_list_names_documented_reasons() -> None:
    """Every allowed downstream failure and deselection has a reason, and docs/compatibility.md lists each test."""
    values = runpy.run_path(str(ROOT / "tests" / "downstream" / "allowlist.py"))
    assert set(values["ALLOWED"]) == set(_noxfile_constant("DOWNSTREAM_MODES"))
    doc = (ROOT / "docs" / "compatibility.md").read_text(encoding="utf-8")
    entries = [values["NEEDS_INTERNET"], *values["ALLOWED"].values()]
    for entry in entries:
        for nodeid, reason in entry.items():
            assert reason.strip(), nodeid
            assert nodeid.split("::", 1)[1] in doc, nodeid
    pins = [line for line in (ROOT / ".ci" / "downstream-requirements.txt").read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")]
    assert pins and all("==" in line for line in pins)
