"""pytest plugin: requests' own test suite, run through session_presets (``nox -s downstream``).

Loaded into requests' suite with ``-p requests_presets --presets-mode=session|adapter``:

- ``session``: ``requests.Session`` (and the one behind ``requests.get``) is a
  ``PresetSession`` of the ``default`` preset;
- ``adapter``: every plain ``requests.Session`` mounts a ``PresetAdapter`` of the
  ``default`` preset on ``http://`` and ``https://``.

Tests that need the internet are deselected, and tests on the allow-list
(``allowlist.py``, each with its reason) are expected to fail: strictly, so a
test that starts passing must leave the list.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
import requests.sessions
from allowlist import ALLOWED, NEEDS_INTERNET

from session_presets import PresetAdapter, PresetSession, get_preset

MODES = ("session", "adapter")


def pytest_addoption(parser: pytest.Parser) -> None:
    """--presets-mode: how session_presets stands in for requests."""
    parser.addoption(
        "--presets-mode", choices=MODES, required=True, help="session: PresetSession; adapter: PresetAdapter"
    )


def pytest_configure(config: pytest.Config) -> None:
    """Put session_presets in place before requests' test modules import requests."""
    mode = config.getoption("presets_mode")
    if mode == "session":
        requests.Session = requests.sessions.Session = PresetSession  # type: ignore[misc]
        return
    plain_init = requests.sessions.Session.__init__

    def mount_preset_adapter(self: requests.Session, *args: Any, **kwargs: Any) -> None:
        plain_init(self, *args, **kwargs)
        adapter = PresetAdapter(get_preset("default"))
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    requests.sessions.Session.__init__ = mount_preset_adapter  # type: ignore[method-assign]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests that need the internet; mark the allow-listed ones as strict expected failures."""
    allowed = ALLOWED[config.getoption("presets_mode")]
    kept, dropped = [], []
    for item in items:
        if item.nodeid in NEEDS_INTERNET:
            dropped.append(item)
            continue
        reason = allowed.get(item.nodeid)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    unknown = (set(allowed) | set(NEEDS_INTERNET)) - {item.nodeid for item in kept + dropped}
    if unknown:
        raise pytest.UsageError(f"allow-list entries that match no collected test: {sorted(unknown)}")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which way session_presets stands in, and what is deselected and allowed, with the reasons."""
    mode = config.getoption("presets_mode")
    lines = [f"session_presets downstream mode: {mode} (requests {requests.__version__})"]
    lines += [f"deselected, needs the internet: {nodeid}: {why}" for nodeid, why in NEEDS_INTERNET.items()]
    lines += [f"allowed to fail: {nodeid}: {why}" for nodeid, why in ALLOWED[mode].items()]
    return lines
