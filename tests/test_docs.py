"""The docs site: generated parts come from the code, pages exist, and the code cites only docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from session_presets import __all__ as public_names
from session_presets._config import FIELD_SPECS
from session_presets._env import variable_name
from session_presets._presets import BUILTIN_PRESETS
from tools import docgen

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def _nav_files() -> list[str]:
    """The Markdown files mkdocs.yml's nav names (read as text: PyYAML would need mkdocs' tags)."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text.split("\nnav:\n", 1)[1]
    return re.findall(r":\s*([\w./-]+\.md)\s*$", nav, re.MULTILINE)


def _code_files() -> list[Path]:
    return [*sorted((ROOT / "session_presets").rglob("*.py")), ROOT / "pytest_session_presets.py"]


def test_nav_names_existing_pages_and_every_page_has_a_title() -> None:
    """Every page in the nav exists (mkdocs --strict fails otherwise) and opens with a level-one title."""
    files = _nav_files()
    assert {"index.md", "design.md", "api.md", "cli.md", "presets.md", "performance.md"} <= set(files)
    for name in files:
        page = DOCS / name
        assert page.exists(), f"mkdocs.yml names docs/{name}, which does not exist"
        first = page.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# ") or first.startswith("--8<--"), name


def test_every_marker_names_a_generator() -> None:
    """A `<!-- generated: NAME -->` line with no generator would fail the build: catch it here first."""
    seen = set()
    for page in DOCS.glob("*.md"):
        for name in MARKER.findall(page.read_text(encoding="utf-8")):
            assert name in docgen.GENERATORS, f"{page.name}: unknown generator {name!r}"
            seen.add(name)
    assert seen == set(docgen.GENERATORS), f"generators no page uses: {set(docgen.GENERATORS) - seen}"


def test_preset_table_has_every_field_with_its_builtin_values() -> None:
    """One row per field of the spec, with the value of each built-in preset as the environment writes it."""
    table = docgen.render_preset_table()
    rows = table.splitlines()[2:]
    assert [row.split("|")[1].strip() for row in rows] == [f"`{name}`" for name in FIELD_SPECS]
    read_timeout = next(row for row in rows if row.startswith("| `read_timeout` "))
    shown = [FIELD_SPECS["read_timeout"].show(BUILTIN_PRESETS[p].read_timeout) for p in docgen.PRESET_COLUMNS]
    assert read_timeout.split("|")[2:5] == [f" `{value}` " for value in shown]
    assert "<!-- generated: preset-table -->" in (DOCS / "presets.md").read_text(encoding="utf-8")


def test_env_table_names_every_field_variable_and_its_form() -> None:
    """Every field's SESSION_PRESETS_ variable appears with the form its value takes."""
    table = docgen.render_env_table()
    for name, spec in FIELD_SPECS.items():
        assert f"| `{variable_name(name)}` | `{name}` | {spec.form.replace('|', chr(92) + '|')} |" in table
    assert "SESSION_PRESETS_STRICT_REUSE" in table
    assert "<!-- generated: env-table -->" in (DOCS / "presets.md").read_text(encoding="utf-8")


def test_cli_reference_covers_every_command() -> None:
    """The generated reference has a section for each command the parser knows, with its options."""
    reference = docgen.render_cli_reference()
    for command in ("presets", "get", "download", "bench", "transfers", "stop-agent"):
        assert f"### `session-presets {command}`" in reference
    assert "--show-origin" in reference
    assert "--scenarios" in reference


def test_api_reference_lists_every_public_name() -> None:
    """Each name in session_presets.__all__ gets an API entry (a new public name cannot be left out)."""
    entries = docgen.render_api_reference()
    documented = set(re.findall(r"^::: [\w.]+\.(\w+)$", entries, re.MULTILINE))
    assert documented == {name for name in public_names if not name.startswith("_")}


def test_bench_chart_is_drawn_from_the_kept_run() -> None:
    """The chart has one bar per ratio the kept bench run can give, labelled with its value."""
    run = docgen._load_bench()
    ratios = docgen.bench_ratios(run)
    assert len(ratios) >= 5
    svg = docgen.render_bench_chart()
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    for label, ratio, _target in ratios:
        assert f"{ratio:.2f}x" in svg
        assert label in svg


def test_bench_chart_refuses_a_run_without_the_scenarios() -> None:
    """A JSON file from something else is refused with a message, not drawn as an empty chart."""
    with pytest.raises(ValueError, match="none of the charted scenario pairs"):
        docgen.render_bench_chart_svg({"scenarios": {}})


def test_otel_export_shows_what_the_server_answered() -> None:
    """The Observability page's export holds the four metric names and a point per status the server sent."""
    pytest.importorskip("opentelemetry.sdk")
    rendered = docgen.render_otel_export()
    for name in ("http.client.request.duration", "http.client.active_requests",
                 "http.client.open_connections", "http.client.connection.duration"):
        assert f"`{name}`" in rendered
    assert '"http.response.status_code": 200' in rendered
    assert '"http.response.status_code": 404' in rendered
    assert "status=404" in rendered  # the picture's second bar


def test_code_cites_no_document_outside_the_repository() -> None:
    """No comment or docstring in the package cites DESIGN.md or "DESIGN §"; cited docs pages and titles exist."""
    design_titles = {
        line.lstrip("#").strip()
        for line in (DOCS / "design.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for path in _code_files():
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        assert "DESIGN.md" not in text, where
        assert "DESIGN §" not in text, where
        assert not re.search(r"\(issue \d+", text), where
        for page in re.findall(r"docs/([\w-]+\.md)", text):
            assert (DOCS / page).exists(), f"{where} cites docs/{page}, which does not exist"
        for title in re.findall(r'docs/design\.md, "([^"]+)"', text):
            assert title in design_titles, f"{where} cites a design.md section {title!r} that does not exist"
