"""The ``pytest11`` entry point of session-presets: registers :mod:`session_presets.testing.plugin`.

It lives outside the package and imports nothing from it at import time on
purpose. pytest imports entry-point plugins before pytest-cov starts
measuring, so a plugin inside ``session_presets`` would import the whole
package unmeasured and hide every module-level line from coverage, in this
project and in any project that measures its own use of the library. The
real plugin is registered once pytest is configured, after that.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the fixtures of session_presets.testing.plugin."""
    from session_presets.testing import plugin

    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "session_presets.testing.plugin")
