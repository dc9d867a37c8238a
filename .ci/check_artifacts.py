"""Check what the built artifacts carry: the wheel the package and py.typed only, the sdist tests and docs too.

Usage: python .ci/check_artifacts.py DIST_FILE...  (run by ``nox -s package``)
"""

from __future__ import annotations

import sys
import tarfile
import zipfile


def check_wheel(path: str) -> None:
    """The package with py.typed, the license, and no tests, docs or tooling."""
    names = zipfile.ZipFile(path).namelist()
    assert "session_presets/py.typed" in names, "the wheel lacks session_presets/py.typed"
    assert "session_presets/__init__.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names), names
    stray = [n for n in names if n.split("/")[0] in {"tests", "docs", "tools", "examples", ".ci"}]
    assert not stray, f"the wheel carries files outside the package: {stray[:5]}"


def check_sdist(path: str) -> None:
    """Everything needed to rebuild, test and document: tests, docs, tools, examples, license, changelog."""
    with tarfile.open(path) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for required in ("LICENSE", "CHANGELOG.md", "README.md", "mkdocs.yml", "setup.cfg", "pyproject.toml",
                     "session_presets/py.typed", "tests/conftest.py", "docs/index.md", "docs/design.md",
                     "tools/docgen.py", "docs/assets/bench.json", ".ci/constraints.txt"):
        assert required in names, f"the sdist lacks {required}"


def main(paths: list[str]) -> int:
    """Check each artifact by its kind; fail when a kind is missing."""
    wheels = [p for p in paths if p.endswith(".whl")]
    sdists = [p for p in paths if p.endswith(".tar.gz")]
    assert wheels, f"no wheel among {paths}"
    assert sdists, f"no sdist among {paths}"
    for path in wheels:
        check_wheel(path)
    for path in sdists:
        check_sdist(path)
    print(f"checked {len(wheels)} wheel(s) and {len(sdists)} sdist(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
