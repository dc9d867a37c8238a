"""MkDocs hook: fill each ``<!-- generated: NAME -->`` line of a page from tools/docgen.py at build time."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docgen  # beside this file
from mkdocs.exceptions import PluginError

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace every marker with what its generator renders now; an unknown name fails the build."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        generator = docgen.GENERATORS.get(name)
        if generator is None:
            raise PluginError(f"{page.file.src_path}: no generator {name!r}; known: {sorted(docgen.GENERATORS)}")
        return generator()

    return MARKER.sub(fill, markdown)
