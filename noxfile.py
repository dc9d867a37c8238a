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
