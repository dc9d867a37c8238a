"""CI sessions: lint once, then the README's test command on every supported Python.

``nox`` lists them; ``nox -s tests-3.12`` runs one. A Python that is not installed is
skipped with a printed warning locally, and fails the run where ``CI`` is set
(``.ci/run`` passes ``--error-on-missing-interpreters`` there).
"""

from __future__ import annotations

import nox

#: Every Python the package supports (setup.cfg ``python_requires`` and classifiers).
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

#: Pinned test dependencies (README: ``pip install -e '.[test]' -c .ci/constraints.txt``).
CONSTRAINTS = ["-c", ".ci/constraints.txt"]

#: The README's test command, verbatim: what a user runs is what CI runs.
TEST_COMMAND = ["pytest", "-W", "error", "--cov=session_presets", "--cov-branch", "--cov-fail-under=90"]

nox.options.sessions = ["lint", "tests"]
# Sessions run one after another: they share the checkout's coverage data files.
nox.options.reuse_existing_virtualenvs = False


@nox.session(python=None)
def lint(session: nox.Session) -> None:
    """Ruff, mypy --strict and the import-layer contract, once, on the running Python."""
    session.install("-e", ".[test]", *CONSTRAINTS)
    session.run("ruff", "check", ".")
    session.run("mypy")
    session.run("lint-imports")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite with branch coverage; any non-zero pytest exit (5: no tests) fails."""
    session.install("-e", ".[test]", *CONSTRAINTS)
    session.run(*TEST_COMMAND, *session.posargs)


# -- docs and package: the documentation site, and the artifacts a user installs -------------------
# (Imports are local to this block so that it stays separate from the sessions above.)
import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

#: One Python for the docs and package sessions: what they check does not vary by interpreter.
DOCS_PYTHON = "3.12"

nox.options.sessions += ["docs", "package"]


@nox.session(python=DOCS_PYTHON)
def docs(session: nox.Session) -> None:
    """Build the MkDocs site with --strict: a broken link, reference or generated part fails."""
    session.install("-e", ".[docs]", *CONSTRAINTS)
    session.run("mkdocs", "build", "--strict", "--site-dir", str(Path(session.create_tmp()) / "site"),
                env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(python=DOCS_PYTHON)
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
