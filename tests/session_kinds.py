"""The kinds of session the compatibility tests run every library with, and their fixtures.

The fixtures ``session`` and ``owned_session`` are registered by tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

import session_presets as sp

#: The sessions every row runs with: two from session_presets and the control.
KINDS = ("get_session", "default_session", "plain")
#: Caller-owned sessions only, for libraries that mount adapters, resize pools or set attributes.
OWNED_KINDS = ("default_session", "plain")


def make(kind: str, **overrides: Any) -> requests.Session:
    """A session of ``kind``; ``overrides`` go to default_session()."""
    if kind == "get_session":
        return sp.get_session()
    if kind == "default_session":
        return sp.default_session(**overrides)
    return requests.Session()


def is_preset(session: requests.Session) -> bool:
    """True for a session of session_presets, False for the plain control."""
    return isinstance(session, sp.PresetSession)


@pytest.fixture(params=KINDS)
def session(request: pytest.FixtureRequest) -> Iterator[requests.Session]:
    """A session of each kind; the shared one is closed by the autouse fixture's close_all."""
    made = make(request.param)
    yield made
    if request.param != "get_session":
        made.close()


@pytest.fixture(params=OWNED_KINDS)
def owned_session(request: pytest.FixtureRequest) -> Iterator[requests.Session]:
    """A caller-owned session: default_session() or the plain control."""
    with make(request.param) as made:
        yield made
