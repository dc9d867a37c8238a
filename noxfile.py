"""CI sessions: lint once, the README's test command on every supported Python, then the range checks.

``nox`` lists them; ``nox -s tests-3.12`` runs one. A Python that is not installed is
skipped with a printed warning locally, and fails the run where ``CI`` is set
(``.ci/run`` passes ``--error-on-missing-interpreters`` there). docs/compatibility.md
says what each session proves.
"""

from __future__ import annotations

import configparser
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import nox

#: Every Python the package supports (setup.cfg ``python_requires`` and classifiers).
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

#: The one Python of the sessions that check the dependency range, the fallback, compat and downstream.
RANGE_PYTHON = "3.12"

#: Pinned test dependencies (README: ``pip install -e '.[test]' -c .ci/constraints.txt``).
CONSTRAINTS = ["-c", ".ci/constraints.txt"]

#: The README's test command, verbatim: what a user runs is what CI runs.
TEST_COMMAND = ["pytest", "-W", "error", "--cov=session_presets", "--cov-branch", "--cov-fail-under=90"]

#: The one-Python range sessions (deps-min, deps-latest, fallback): the suite without coverage, which
#: the four-Python matrix measures; CI's 90 minutes do not fit coverage in every session.
RANGE_COMMAND = ["pytest", "-W", "error"]

#: The tests that run third-party libraries (gevent, eventlet, vcrpy, ...): once, in the compat session.
COMPAT_TESTS = ["tests/test_compat.py", "tests/test_compat_libraries.py"]

#: What the core matrix adds to TEST_COMMAND: everything but the compat tests (marked ``compat``).
CORE_SELECTION = ["-m", "not compat"]

#: The environment variable that forces upstream's own code instead of the fast path.
FALLBACK_ENV = {"SESSION_PRESETS_FAST_PATH": "off"}

#: requests' own suite runs twice: PresetSession for requests.Session, and PresetAdapter on plain sessions.
DOWNSTREAM_MODES = ["session", "adapter"]

# The one-Python sessions first: they check what differs from a developer's machine (the range, the
# fallback, upstream's suite, the artifacts), so a break there shows early in a long run.
nox.options.sessions = [
    "lint", "deps-min", "deps-latest", "fallback", "downstream", "docs", "package", "compat", "tests",
]
# Sessions run one after another: they share the checkout's coverage data files.
nox.options.reuse_existing_virtualenvs = False

ROOT = Path(__file__).resolve().parent


def _name(requirement: str) -> str:
    """A requirement's project name, normalised: ``PyYAML==6.0; ...`` -> ``pyyaml``."""
    return re.split(r"[\s=<>!~;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def declared_minimums() -> list[str]:
    """setup.cfg's install_requires with each lower bound pinned exactly: ``requests>=2.32.3`` -> ``==2.32.3``."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    lines = [line.strip() for line in parser["options"]["install_requires"].splitlines()]
    return [line.replace(">=", "==") for line in lines if ">=" in line]


def pinned_version(name: str) -> str:
    """The version .ci/constraints.txt pins for ``name``."""
    for line in (ROOT / ".ci" / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#") and _name(line) == name:
            return line.split("==", 1)[1].split(";", 1)[0].strip()
    raise LookupError(f".ci/constraints.txt pins no {name}")


def _constraints_without(session: nox.Session, names: set[str]) -> list[str]:
    """The pinned constraints less ``names`` (pip refuses a requirement that a constraint contradicts)."""
    lines = (ROOT / ".ci" / "constraints.txt").read_text(encoding="utf-8").splitlines()
    path = Path(session.create_tmp()) / "constraints-without-runtime.txt"
    path.write_text("\n".join(line for line in lines if _name(line) not in names) + "\n", encoding="utf-8")
    return ["-c", str(path)]


@nox.session(python=None)
def lint(session: nox.Session) -> None:
    """Ruff, mypy --strict and the import-layer contract, once, on the running Python."""
    session.install("-e", ".[test]", *CONSTRAINTS)
    session.run("ruff", "check", ".")
    session.run("mypy")
    session.run("lint-imports")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The suite but the compat tests, with branch coverage; any non-zero pytest exit (5: no tests) fails."""
    session.install("-e", ".[test]", *CONSTRAINTS)
    session.run(*TEST_COMMAND, *CORE_SELECTION, *session.posargs)


@nox.session(python=RANGE_PYTHON)
def compat(session: nox.Session) -> None:
    """The tests that run gevent, eventlet, vcrpy, responses, sentry and the others, at their pinned versions."""
    session.install("-e", ".[test,compat]", *CONSTRAINTS)
    session.run("pytest", "-W", "error", *COMPAT_TESTS, *session.posargs)


@nox.session(name="deps-min", python=RANGE_PYTHON)
def deps_min(session: nox.Session) -> None:
    """The whole suite on the declared minimums exactly (setup.cfg), other test dependencies pinned."""
    minimums = declared_minimums()
    session.install("-e", ".[test]", *_constraints_without(session, {_name(m) for m in minimums}), *minimums)
    check = "; ".join(
        f"assert version({name!r}) == {wanted!r}, ({name!r}, version({name!r}))"
        for name, wanted in (minimum.split("==") for minimum in minimums)
    )
    session.run("python", "-c", f"from importlib.metadata import version; {check}")
    session.run(*RANGE_COMMAND, *CORE_SELECTION, *session.posargs)


@nox.session(name="deps-latest", python=RANGE_PYTHON)
def deps_latest(session: nox.Session) -> None:
    """The whole suite on the newest release of everything, no constraints: what a new user installs today."""
    session.install("--upgrade", "-e", ".[test,compat]")
    session.run("pip", "list", silent=False)
    # The compat tests too: the newest releases of those libraries are what breaks first (sentry-sdk 3).
    session.run(*RANGE_COMMAND, *session.posargs)


@nox.session(python=RANGE_PYTHON)
def fallback(session: nox.Session) -> None:
    """The whole suite with the fast path forced off: upstream's own methods must pass it too."""
    session.install("-e", ".[test]", *CONSTRAINTS)
    session.run(*RANGE_COMMAND, *CORE_SELECTION, *session.posargs, env=FALLBACK_ENV)


@nox.session(python=RANGE_PYTHON)
def downstream(session: nox.Session) -> None:
    """requests' own test suite (sdist of the pinned version), through PresetSession and through PresetAdapter."""
    version = pinned_version("requests")
    session.install("-e", ".", "pytest", "pytest-timeout", "trustme", "PySocks", *CONSTRAINTS,
                    "-r", ".ci/downstream-requirements.txt")
    tmp = Path(session.create_tmp())
    session.run("pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps", "--dest", str(tmp),
                f"requests=={version}")
    with tarfile.open(tmp / f"requests-{version}.tar.gz") as sdist:
        # The "data" filter (Python 3.12, and 3.10.12/3.11.4 backports) refuses links and paths out of tmp.
        sdist.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else sdist.extractall(tmp)
    session.chdir(tmp / f"requests-{version}")
    env = {"PYTHONPATH": str(ROOT / "tests" / "downstream")}
    for mode in DOWNSTREAM_MODES:
        session.run("pytest", "-p", "no:cacheprovider", "-p", "requests_presets", f"--presets-mode={mode}",
                    "--timeout=120", "-ra", "tests", *session.posargs, env=env)


# -- docs and package: the documentation site, and the artifacts a user installs -------------------


@nox.session(python=RANGE_PYTHON)
def docs(session: nox.Session) -> None:
    """Build the MkDocs site with --strict: a broken link, reference or generated part fails."""
    session.install("-e", ".[docs]", *CONSTRAINTS)
    session.run("mkdocs", "build", "--strict", "--site-dir", str(Path(session.create_tmp()) / "site"),
                env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(python=RANGE_PYTHON)
def package(session: nox.Session) -> None:
    """Build the sdist and wheel, check them, install the wheel in a fresh venv, smoke-test it outside the checkout."""
    session.install("build", "twine", *CONSTRAINTS)
    dist = Path(session.create_tmp()).resolve() / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist))
    artifacts = sorted(str(p) for p in dist.iterdir())
    session.run("twine", "check", "--strict", *artifacts)
    session.run("python", ".ci/check_artifacts.py", *artifacts)
    wheel = next(a for a in artifacts if a.endswith(".whl"))
    venv = Path(session.create_tmp()).resolve() / "wheel-venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("python", "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    session.run(python, "-m", "pip", "install", "-q", wheel, *CONSTRAINTS, external=True)
    outside = tempfile.mkdtemp(prefix="session-presets-smoke-")
    smoke = str(Path(".ci/smoke_test.py").resolve())
    with session.chdir(outside):
        session.run(python, "-I", smoke, external=True)
    shutil.rmtree(outside, ignore_errors=True)
