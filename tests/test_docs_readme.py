"""The README is short and points at the docs: what it is first, install, example, Try it, links."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

#: Every page a reader should be able to reach from the README.
DOCS_PAGES = (
    "getting-started.md",
    "presets.md",
    "lifecycle.md",
    "background.md",
    "testing.md",
    "observability.md",
    "cli.md",
    "migrating.md",
    "performance.md",
    "design.md",
    "api.md",
)


def _text() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_is_short_and_opens_with_what_the_library_is() -> None:
    """At most about 200 lines; the title, then a paragraph saying what it is, before any code."""
    text = _text()
    assert len(text.splitlines()) <= 210
    lines = text.splitlines()
    assert lines[0] == "# session_presets"
    first_paragraph = text.split("\n\n", 2)[1]
    assert "requests" in first_paragraph
    assert "```" not in first_paragraph


def test_readme_installs_from_the_index_and_shows_an_example() -> None:
    """`pip install session-presets` and a python example come before the first section."""
    head = _text().split("\n## ", 1)[0]
    assert "```bash\npip install session-presets\n```" in head
    example = re.search(r"```python\n(.*?)```", head, re.S)
    assert example is not None
    assert "get_session" in example.group(1)
    assert len(example.group(1).splitlines()) <= 12
    compile(example.group(1), "README example", "exec")


def test_readme_links_every_docs_page_and_the_links_resolve() -> None:
    """Each docs page, the changelog and the license are linked, and every relative link names a file."""
    text = _text()
    for page in DOCS_PAGES:
        assert f"(docs/{page})" in text, f"README.md does not link docs/{page}"
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (ROOT / target).exists(), f"README.md links {target}, which does not exist"
    assert "(CHANGELOG.md)" in text
    assert "(LICENSE)" in text


def test_readme_keeps_engineering_notes_out() -> None:
    """No issue numbers, instruction counts or VM notes: those belong to the docs, or nowhere."""
    text = _text()
    assert not re.search(r"\bissue \d+", text, re.I)
    assert "callgrind" not in text
    assert not re.search(r"\bVM\b", text)
    assert "instructions" not in text
