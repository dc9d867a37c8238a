"""Marks for tests of the fast path's own mechanisms, which the fallback does not have (docs/fast-path.md)."""

from __future__ import annotations

import pytest

from session_presets import _upstream

#: A test of a fast-path mechanism (a memo, a shortcut): skipped where the fallback runs.
requires_fast_path = pytest.mark.skipif(
    not _upstream.gate().active, reason=f"the fast path is off: {_upstream.gate().reason}"
)
