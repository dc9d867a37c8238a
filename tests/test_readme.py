"""The README's preset table is the field spec's: a test keeps them equal.

Refresh the table after changing a field with ``python -m tests.test_readme``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from requests.__version__ import __version__ as requests_version

from session_presets import __version__
from session_presets._config import FIELD_SPECS
from session_presets._presets import BUILTIN_PRESETS

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- preset table: generated from session_presets._config.FIELD_SPECS; python -m tests.test_readme -->"
END = "<!-- end of preset table -->"
COLUMNS = ("default", "ephemeral", "background")


def render_preset_table() -> str:
    """Return the README's preset table: one row per field, values as the environment writes them."""
    rows = [
        "| field | " + " | ".join(COLUMNS) + " | meaning |",
        "|---|" + "---|" * len(COLUMNS) + "---|",
    ]
    for name, spec in FIELD_SPECS.items():
        cells = [spec.show(getattr(BUILTIN_PRESETS[preset], name)) for preset in COLUMNS]
        # Versions change with every release; the table does not.
        cells = [
            cell.replace(__version__, "VERSION").replace(requests_version, "VERSION").replace("|", "\\|")
            for cell in cells
        ]
        rows.append(f"| `{name}` | " + " | ".join(f"`{cell}`" for cell in cells) + f" | {spec.doc} |")
    return "\n".join(rows)


def readme_table(text: str) -> str:
    """Return the generated block of ``text``, between its markers."""
    match = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, re.DOTALL)
    assert match is not None, f"README.md lacks the preset table markers {BEGIN!r} ... {END!r}"
    return match.group(1)


def test_readme_preset_table_matches_the_field_spec() -> None:
    """Every field, its built-in values and its meaning appear in the README exactly as the spec says."""
    assert readme_table(README.read_text(encoding="utf-8")) == render_preset_table(), (
        "README.md's preset table is out of date: run python -m tests.test_readme"
    )


def main() -> int:
    """Rewrite the README's preset table from the spec."""
    text = README.read_text(encoding="utf-8")
    old = readme_table(text)
    README.write_text(text.replace(old, render_preset_table(), 1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
