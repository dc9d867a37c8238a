"""The pytest plugin of session-presets: ``mock_server``, ``mock_tls_server`` and ``session_presets_isolation``.

pytest loads it by itself once session-presets is installed (the ``pytest11``
entry point). The fixtures:

- ``mock_server``: a started plain-HTTP :class:`MockServer`, closed after the
  test, whose :meth:`~MockServer.check_assertions` runs at teardown.
- ``mock_tls_server``: the same over HTTPS; pass ``**server.preset_overrides``
  to a session factory to trust it (the CA is shared by the whole test session).
- ``session_presets_isolation``: the library's process state (shared sessions,
  registered presets, environment memo, TLS contexts, background sessions) is
  reset before and after the test, and background journals go to a temporary
  directory. Make it automatic with
  ``pytestmark = pytest.mark.usefixtures("session_presets_isolation")`` or an
  autouse fixture of your own that requests it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ._reset import reset
from ._server import MockServer

__all__ = ["mock_server", "mock_tls_server", "session_presets_ca", "session_presets_isolation"]


@pytest.fixture(scope="session")
def session_presets_ca() -> Any:
    """The trustme CA that signs every ``mock_tls_server`` certificate of the test session."""
    try:
        import trustme
    except ImportError:  # pragma: no cover - trustme is in the test extra
        pytest.fail("mock_tls_server needs trustme: pip install 'session-presets[testing]'")
    return trustme.CA()


@pytest.fixture
def mock_server() -> Iterator[MockServer]:
    """A plain-HTTP MockServer on 127.0.0.1, checked and closed after the test."""
    with MockServer() as server:
        yield server
        server.check_assertions()


@pytest.fixture
def mock_tls_server(session_presets_ca: Any) -> Iterator[MockServer]:
    """An HTTPS MockServer on 127.0.0.1; ``preset_overrides`` make a session trust it."""
    with MockServer(tls=True, ca=session_presets_ca) as server:
        yield server
        server.check_assertions()


@pytest.fixture
def session_presets_isolation(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Reset the library's process state before and after the test; background journals in a temporary directory."""
    monkeypatch.setenv("SESSION_PRESETS_STATE_DIR", str(tmp_path_factory.mktemp("session-presets-state")))
    reset()
    yield
    reset()
