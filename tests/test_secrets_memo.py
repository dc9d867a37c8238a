"""No per-call header or query value outlives its session in the library's memory (issue 22 §1)."""

from __future__ import annotations

import gc
import json
import secrets
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
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


def _reachable_from_library() -> Iterator[tuple[Any, str]]:
    """Every object reachable from the globals of the session_presets modules, not going through other
    packages' code, with the path it was reached by."""
    library = [module for name, module in sys.modules.items() if _ours(name) and module is not None]
    foreign_dicts = {
        id(vars(module)) for name, module in list(sys.modules.items()) if module is not None and not _ours(name)
    }
    seen: set[int] = set()
    todo: list[tuple[Any, str]] = [(vars(module), module.__name__) for module in library]
    while todo:
        obj, path = todo.pop()
        if id(obj) in seen or id(obj) in foreign_dicts:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.ModuleType) and not _ours(obj.__name__):
            continue
        if _foreign_code(obj):
            continue  # another package's classes and functions: what they hold is theirs
        if isinstance(obj, (types.FrameType, types.CodeType)):
            continue
        yield obj, path
        kind = type(obj).__name__
        todo.extend((child, f"{path} > {kind}") for child in gc.get_referents(obj))


def _leaks(values: list[str]) -> dict[str, str]:
    """The values found in any str or bytes reachable from the library, with the path to each."""
    found: dict[str, str] = {}
    for obj, path in _reachable_from_library():
        if isinstance(obj, str):
            text = obj
        elif isinstance(obj, (bytes, bytearray)):
            text = bytes(obj).decode("latin-1")
        else:
            continue
        for value in values:
            if value in text:
                found.setdefault(value, path[-400:])
    return found


def _send_secrets(session: requests.Session, base: str, tokens: dict[str, str]) -> None:
    for _ in range(3):  # more than once: a memo keeps what it saw before
        response = session.get(
            f"{base}/ok?api_key={tokens['query']}",
            headers={name: tokens[name] for name in SECRET_HEADERS},
            params={"token": tokens["params"]},
        )
        assert response.status_code == 200
        session.post(f"{base}/ok", json={"a": 1}, headers={"X-Api-Key": tokens["X-Api-Key"]})


def _build(kind: str) -> requests.Session:
    if kind == "default_session":
        return sp.default_session()
    if kind == "get_session":
        return sp.get_session()
    session = requests.Session()
    session.mount("http://", sp.PresetAdapter(sp.get_preset("default")))
    return session


def leaks_after_close(base: str, kind: str, tokens: dict[str, str]) -> dict[str, str]:
    """Send the secrets through a session of ``kind``, close it, collect, and return what the library still holds."""
    session = _build(kind)
    _send_secrets(session, base, tokens)
    session.close()
    if kind == "get_session":
        _registry.close_all()
        testing.reset()
    del session
    gc.collect()
    return _leaks(list(tokens.values()))


#: Runs leaks_after_close in a fresh interpreter: what other tests left in this process is not the library's.
_CHILD = """
import json, sys
from tests.test_secrets_memo import leaks_after_close
print(json.dumps(leaks_after_close(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
"""


@pytest.mark.parametrize("kind", ["default_session", "get_session", "plain"])
def test_no_per_call_value_is_reachable_after_close(http_server: LoopbackServer, kind: str) -> None:
    """After close (and registry reset) and gc.collect(), no secret header, query or params value is in the library."""
    tokens = {name: f"{name.lower()}-{secrets.token_hex(12)}" for name in (*SECRET_HEADERS, "query", "params")}
    base = http_server.url("/ok").removesuffix("/ok")
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, base, kind, json.dumps(tokens)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent, check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    seen = http_server.requests[0]
    assert (seen.header("X-Api-Key"), seen.header("Private-Token")) == (tokens["X-Api-Key"], tokens["Private-Token"])
    assert tokens["query"] in seen.path and tokens["params"] in seen.path
    assert json.loads(child.stdout.strip().splitlines()[-1]) == {}


def test_the_walk_finds_a_value_the_library_keeps() -> None:
    """The reachability walk does find a value held by a library module (it is not blind)."""
    value = f"kept-{secrets.token_hex(8)}"
    sp._upstream._installed["test.kept"] = value
    try:
        assert list(_leaks([value])) == [value]
    finally:
        del sp._upstream._installed["test.kept"]
