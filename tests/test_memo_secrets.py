"""No per-call header or query value outlives its session in the library's memory (issue 22 §1)."""

from __future__ import annotations

import gc
import secrets
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

import session_presets as sp
from session_presets import _registry, testing

from .servers import LoopbackServer

#: The header names API clients put their credentials in.
SECRET_HEADERS = ("X-Api-Key", "X-Auth-Token", "Private-Token")


def _ours(name: str) -> bool:
    return name == "session_presets" or name.startswith("session_presets.")


def _foreign_code(obj: Any) -> bool:
    """A class or function of another package (the standard library's lru_cache'd urlsplit among them)."""
    code = isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) or hasattr(obj, "cache_info")
    return code and not _ours(getattr(obj, "__module__", "") or "")


def _reachable_from_library() -> Iterator[Any]:
    """Every object reachable from the globals of the session_presets modules, not going through other packages."""
    library = [module for name, module in sys.modules.items() if _ours(name) and module is not None]
    foreign_dicts = {
        id(vars(module)) for name, module in list(sys.modules.items()) if module is not None and not _ours(name)
    }
    seen: set[int] = set()
    todo: list[Any] = [vars(module) for module in library]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or id(obj) in foreign_dicts:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.ModuleType) and not _ours(obj.__name__):
            continue
        if _foreign_code(obj):
            continue  # another package's classes and functions: what they hold is theirs
        if isinstance(obj, (types.FrameType, types.CodeType)):
            continue
        yield obj
        todo.extend(gc.get_referents(obj))


def _leaks(values: list[str]) -> list[str]:
    """The values found in any str or bytes reachable from the library."""
    found = set()
    for obj in _reachable_from_library():
        if isinstance(obj, str):
            text = obj
        elif isinstance(obj, (bytes, bytearray)):
            text = bytes(obj).decode("latin-1")
        else:
            continue
        found.update(value for value in values if value in text)
    return sorted(found)


def _send_secrets(session: requests.Session, server: LoopbackServer, tokens: dict[str, str]) -> None:
    for _ in range(3):  # more than once: a memo keeps what it saw before
        response = session.get(
            server.url(f"/ok?api_key={tokens['query']}"),
            headers={name: tokens[name] for name in SECRET_HEADERS},
            params={"token": tokens["params"]},
        )
        assert response.status_code == 200
        session.post(server.url("/ok"), json={"a": 1}, headers={"X-Api-Key": tokens["X-Api-Key"]})


def _default(_: LoopbackServer) -> requests.Session:
    return sp.default_session()


def _shared(_: LoopbackServer) -> requests.Session:
    return sp.get_session()


def _plain(_: LoopbackServer) -> requests.Session:
    session = requests.Session()
    session.mount("http://", sp.PresetAdapter(sp.get_preset("default")))
    return session


@pytest.mark.parametrize("build", [_default, _shared, _plain], ids=["default_session", "get_session", "plain"])
def test_no_per_call_value_is_reachable_after_close(
    http_server: LoopbackServer, build: Callable[[LoopbackServer], requests.Session]
) -> None:
    """After close (and registry reset) and gc.collect(), no secret header, query or params value is in the library."""
    tokens = {name: f"{name.lower()}-{secrets.token_hex(12)}" for name in (*SECRET_HEADERS, "query", "params")}
    session = build(http_server)
    _send_secrets(session, http_server, tokens)
    seen = http_server.requests[0]
    assert (seen.header("X-Api-Key"), seen.header("Private-Token")) == (tokens["X-Api-Key"], tokens["Private-Token"])
    assert tokens["query"] in seen.path and tokens["params"] in seen.path
    session.close()
    if build is _shared:
        _registry.close_all()
        testing.reset()
    del session, seen
    gc.collect()
    assert _leaks(list(tokens.values())) == []


def test_the_walk_finds_a_value_the_library_keeps() -> None:
    """The reachability walk does find a value held by a library module (it is not blind)."""
    value = f"kept-{secrets.token_hex(8)}"
    sp._upstream._installed["test.kept"] = value
    try:
        assert _leaks([value]) == [value]
    finally:
        del sp._upstream._installed["test.kept"]
