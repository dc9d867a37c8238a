"""The gated fast path: an upstream change or a runtime patch of any copied function reaches every session kind."""

from __future__ import annotations

import collections
import importlib
import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import requests
import requests.adapters
import requests.utils
from requests.structures import CaseInsensitiveDict

import session_presets as sp
from session_presets import _upstream
from session_presets.cli import main

from . import test_background, test_connect_phase, test_pool_policy, test_upstream_hot_path
from .fast_path import requires_fast_path
from .servers import LoopbackServer

#: What the simulated upstream change adds to every request, where the server can see it.
MARK = "X-Upstream-Change"


def _kind_get_session() -> requests.Session:
    return sp.get_session()


def _kind_default_session() -> requests.Session:
    return sp.default_session()


def _kind_plain_session() -> requests.Session:
    session = requests.Session()
    adapter = sp.PresetAdapter(sp.get_preset("default"))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


#: Every kind of session a user sends through.
KINDS: dict[str, Callable[[], requests.Session]] = {
    "get_session": _kind_get_session,
    "default_session": _kind_default_session,
    "PresetAdapter on requests.Session": _kind_plain_session,
}


def _marking(piece: _upstream.Replaced, calls: list[str]) -> Callable[..., Any]:
    """A new version of ``piece``'s function: it does what the old one did, notes the call, and marks the request."""
    old = piece.original
    name = piece.qualname

    def mark(request: Any) -> None:
        headers = getattr(request, "headers", None)
        if headers is not None and hasattr(headers, "__setitem__"):
            # Numbered: a value computed once and copied later would repeat.
            headers[MARK] = f"{name} #{len(calls)}"

    if name == "Session.request":

        def new(self: Any, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            bound = inspect.signature(old).bind(self, method, url, *args, **kwargs)
            bound.arguments["headers"] = {**(bound.arguments.get("headers") or {}), MARK: f"{name} #{len(calls)}"}
            return old(*bound.args, **bound.kwargs)

    elif name == "Session.prepare_request":

        def new(self: Any, request: Any) -> Any:
            calls.append(name)
            prepared = old(self, request)
            mark(prepared)
            return prepared

    elif name in ("Session.send", "HTTPAdapter.send", "HTTPAdapter.get_connection_with_tls_context"):

        def new(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            mark(request)
            return old(self, request, *args, **kwargs)

    elif name.startswith("PreparedRequest.prepare_"):

        def new(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            old(self, *args, **kwargs)
            mark(self)

    elif name == "HTTPAdapter.request_url":

        def new(self: Any, request: Any, proxies: Any) -> Any:
            calls.append(name)
            url: str = old(self, request, proxies)
            return url + ("&" if "?" in url else "?") + "upstream=changed"

    elif name == "merge_setting":

        def new(request_setting: Any, session_setting: Any, dict_class: Any = collections.OrderedDict) -> Any:
            calls.append(name)
            merged = old(request_setting, session_setting, dict_class=dict_class)
            if dict_class is CaseInsensitiveDict:  # the headers' merge
                merged = CaseInsensitiveDict(merged or {})
                merged[MARK] = f"{name} #{len(calls)}"
            return merged

    elif name == "to_key_val_list":

        def new(value: Any) -> Any:
            calls.append(name)
            pairs = old(value)
            # The headers' merge and the params' encoding both list this pair, which the server sees.
            return None if pairs is None else [*pairs, (MARK, f"{name} #{len(calls)}")]

    elif name == "PreparedRequest._encode_params":

        def encode(data: Any) -> Any:
            calls.append(name)
            encoded = old(data)
            return f"{encoded}&upstream=changed" if encoded else "upstream=changed"

        return staticmethod(encode)  # type: ignore[return-value]

    elif name.endswith("putheader"):

        def new(self: Any, header: Any, *values: Any) -> Any:
            if header == "User-Agent":
                calls.append(name)
                values = (f"{values[0]} upstream-changed",)
            return old(self, header, *values)

    else:

        def new(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return old(*args, **kwargs)

    return new


def _server_saw_the_change(piece: _upstream.Replaced, server: LoopbackServer) -> bool:
    """Whether the requests the server received carry what ``piece``'s new version adds (True where it adds nothing)."""
    seen = server.requests
    if piece.qualname in ("Session.request", "Session.prepare_request", "Session.send", "HTTPAdapter.send",
                          "HTTPAdapter.get_connection_with_tls_context") or piece.qualname.startswith(
                          "PreparedRequest.prepare_"):
        marks = [request.header(MARK) for request in seen]
        return None not in marks and len(set(marks)) == len(marks)
    if piece.qualname == "merge_setting" or piece.name == "requests.sessions.to_key_val_list":
        # A new merge (or the listing it calls) marks each request's headers.
        marks = [request.header(MARK) for request in seen]
        return None not in marks and len(set(marks)) == len(marks)
    if piece.name == "requests.models.to_key_val_list":
        # The params' encoding lists the mark into the query, even of a request without params.
        return all(f"{MARK}=to_key_val_list" in request.path for request in seen)
    if piece.qualname in ("HTTPAdapter.request_url", "PreparedRequest._encode_params"):
        return all(request.path.endswith("upstream=changed") for request in seen)
    if piece.qualname.endswith("putheader"):
        return all((request.header("User-Agent") or "").endswith("upstream-changed") for request in seen)
    return True


@pytest.fixture
def upstream_change(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[_upstream.Replaced, bool], list[str]]]:
    """Install a new version of a copied function: as an upgrade (fingerprint differs) or as a runtime patch."""
    changed: list[_upstream.Replaced] = []

    def install(piece: _upstream.Replaced, upgrade: bool) -> list[str]:
        calls: list[str] = []
        new = _marking(piece, calls)
        monkeypatch.setattr(piece.owner, piece.attribute, new)
        if upgrade and piece.qualname == "get_encoding_from_headers":
            # An upgraded requests has the new function wherever it is imported.
            monkeypatch.setattr(requests.utils, "get_encoding_from_headers", new)
        if upgrade:
            # What an upgrade looks like: the function captured at import *is* the new one.
            monkeypatch.setattr(piece, "original", new)
            _upstream._installed.pop(piece.name, None)
            changed.append(piece)
        _upstream.reset_gate()
        return calls

    yield install
    monkeypatch.undo()
    for piece in changed:
        _upstream._installed.pop(piece.name, None)
    _upstream.reset_gate()


PIECES = {piece.name: piece for piece in _upstream.REPLACED}


@pytest.mark.parametrize("how", ["upgrade", "runtime patch"])
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("name", sorted(PIECES))
def test_a_changed_upstream_function_reaches_every_session_kind(
    http_server: LoopbackServer,
    upstream_change: Callable[[_upstream.Replaced, bool], list[str]],
    name: str,
    kind: str,
    how: str,
) -> None:
    """A new version of any copied function runs for every request of every session kind: the server sees it."""
    piece = PIECES[name]
    calls = upstream_change(piece, how == "upgrade")
    if how == "upgrade":
        # A standalone copy (the header-line memo) turns off alone; any other turns off the whole fast path
        # (as does any other copy whose source differs already: requests at the declared minimum, say).
        state = _upstream.gate()
        others_alone = all(PIECES[other].standalone for other in state.mismatched)
        assert state.active is (piece.standalone and others_alone and not state.forced_off)
        assert piece.name in _upstream.gate().mismatched
        assert not piece.live()
    session = KINDS[kind]()
    try:
        for path in ("/ok", "/ok"):  # twice: the second call must not take a remembered shortcut
            assert session.get(http_server.url(path)).status_code == 200
    finally:
        session.close()
    assert len(http_server.requests) == 2
    assert _server_saw_the_change(piece, http_server), [r.headers for r in http_server.requests]
    assert calls, f"{piece.name} was never called"


@pytest.mark.parametrize(
    "name",
    [
        "requests.adapters.HTTPAdapter.send",
        "requests.sessions.merge_setting",
        "requests.models.PreparedRequest.prepare_headers",
        "http.client.HTTPConnection.putheader",
    ],
)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_function_patched_between_two_calls_reaches_the_second(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, kind: str, name: str
) -> None:
    """Which copies run is taken once per call: a function patched after one call runs for the whole next one."""
    piece = PIECES[name]
    calls: list[str] = []
    session = KINDS[kind]()
    try:
        session.get(http_server.url(), headers={"X-Call": "1"})
        monkeypatch.setattr(piece.owner, piece.attribute, _marking(piece, calls))
        session.get(http_server.url(), headers={"X-Call": "2"})
    finally:
        session.close()
    first, second = http_server.requests
    assert calls, f"{name} was never called"
    if name.endswith("putheader"):
        assert not first.header("User-Agent").endswith("upstream-changed")  # type: ignore[union-attr]
        assert second.header("User-Agent").endswith("upstream-changed")  # type: ignore[union-attr]
    else:
        assert (first.header(MARK), second.header(MARK) is not None) == (None, True)


@requires_fast_path
def test_a_shared_session_looks_at_its_copies_once_per_call(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A get_session() call takes which copies are live once, however many it runs, and none one by one."""
    taken: list[int] = []
    one_by_one: list[str] = []
    live_copies, live_now = _upstream.live_copies, _upstream.Replaced.live_now

    def counting_all() -> frozenset[_upstream.Replaced]:
        taken.append(1)
        return live_copies()

    def counting_one(piece: _upstream.Replaced) -> bool:
        one_by_one.append(piece.name)
        return live_now(piece)

    monkeypatch.setattr(_upstream, "live_copies", counting_all)
    monkeypatch.setattr(_upstream.Replaced, "live_now", counting_one)
    session = sp.get_session()
    for index in range(3):
        session.get(http_server.url(f"/items/{index}"), params={"page": "1"}, headers={"X-Request-Id": str(index)})
    session.post(http_server.url("/items"), json={"id": 1}, headers={"Authorization": "Bearer t"})
    assert (len(taken), one_by_one) == (4, [])
    assert [request.path for request in http_server.requests] == ["/items/0?page=1", "/items/1?page=1",
                                                                  "/items/2?page=1", "/items"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_upgraded_adapter_send_that_refuses_nul_in_the_url_is_obeyed(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A requests release whose HTTPAdapter.send refuses %00 in a URL refuses it through every session kind."""
    piece = PIECES["requests.adapters.HTTPAdapter.send"]
    old = piece.original

    def stricter(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if "%00" in (request.url or ""):
            raise requests.exceptions.InvalidURL("NUL in URL", request=request)
        return old(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", stricter)
    monkeypatch.setattr(piece, "original", stricter)
    monkeypatch.delitem(_upstream._installed, piece.name, raising=False)
    _upstream.reset_gate()
    try:
        session = KINDS[kind]()
        with session, pytest.raises(requests.exceptions.InvalidURL):
            session.get(http_server.url("/ok%00x"))
        assert http_server.requests == []
    finally:
        monkeypatch.undo()
        _upstream._installed.pop(piece.name, None)
        _upstream.reset_gate()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_patched_prepare_runs_for_every_request_of_a_repeated_url(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """PreparedRequest.prepare, patched, runs for each call of the same URL (no prepared-URL shortcut)."""
    original = requests.models.PreparedRequest.prepare

    def prepare(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.headers[MARK] = "prepare"

    monkeypatch.setattr(requests.models.PreparedRequest, "prepare", prepare)
    with KINDS[kind]() as session:
        for _ in range(3):
            session.get(http_server.url())
    assert [request.header(MARK) for request in http_server.requests] == ["prepare"] * 3


def test_every_fingerprint_matches_the_checked_versions_or_the_gate_is_closed() -> None:
    """The fast path is on exactly when every installed function has a fingerprint its copy was checked against."""
    state = _upstream.gate()
    differing = [p.name for p in _upstream.REPLACED if _upstream.installed_fingerprint(p) not in p.fingerprints]
    # A standalone copy that differs (a putheader of another Python) turns off alone; any other closes the gate.
    blocking = [name for name in state.mismatched if not PIECES[name].standalone]
    assert state.active == (not blocking and not state.forced_off)
    assert set(differing) <= set(state.mismatched)
    for piece in _upstream.REPLACED:
        assert piece.checked_against and piece.used_by


def test_fingerprints_ignore_layout_and_comments_but_not_code() -> None:
    """Indentation, blank lines and whole-line comments leave a fingerprint alone; a new statement changes it."""
    namespace: dict[str, Any] = {}
    sources = {
        "plain": "def f(x):\n    y = x + 1\n    return y\n",
        "layout": "def f(x):\n\n    # a comment\n    y = x + 1   \n\n    return y\n",
        "changed": "def f(x):\n    y = x + 1\n    assert y\n    return y\n",
    }
    prints = {}
    for name, source in sources.items():
        path = Path(__file__).parent / f"_fingerprint_{name}.py"
        try:
            path.write_text(source)
            code = compile(source, str(path), "exec")
            exec(code, namespace)
            prints[name] = _upstream.fingerprint(namespace["f"])
        finally:
            path.unlink()
    assert prints["plain"] == prints["layout"] != prints["changed"]
    assert _upstream.fingerprint(len) is None  # no Python source: never taken for a match


@pytest.mark.parametrize("value", ["off", "OFF", "0", "false", "no"])
def test_the_variable_forces_the_fallback(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """SESSION_PRESETS_FAST_PATH=off turns every copy off: a runtime-unpatched requests function runs for each call."""
    monkeypatch.setenv(_upstream.FAST_PATH_VARIABLE, value)
    _upstream.reset_gate()
    calls: list[str] = []
    original = requests.adapters.HTTPAdapter.build_response

    def counted(self: Any, req: Any, resp: Any) -> Any:
        calls.append("build_response")
        return original(self, req, resp)

    # Installed as the upgrade would be, so that only the variable can make it run.
    piece = PIECES["requests.adapters.HTTPAdapter.build_response"]
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "build_response", counted)
    monkeypatch.setattr(piece, "original", counted)
    monkeypatch.setitem(_upstream._installed, piece.name, next(iter(piece.fingerprints)))
    state = _upstream.gate()
    assert (state.active, state.forced_off) == (False, True)
    # The variable comes first; a requests whose source differs too (the declared minimum) adds that after it.
    assert state.reason.split("; ")[0] == f"{_upstream.FAST_PATH_VARIABLE}=off"
    sp.get_session().get(http_server.url())
    assert calls == ["build_response"]
    monkeypatch.undo()
    _upstream.reset_gate()


def test_a_bad_value_of_the_variable_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """SESSION_PRESETS_FAST_PATH=maybe is a ConfigError naming the variable, the value and the accepted ones."""
    monkeypatch.setenv(_upstream.FAST_PATH_VARIABLE, "maybe")
    _upstream.reset_gate()
    with pytest.raises(sp.ConfigError, match=r"SESSION_PRESETS_FAST_PATH='maybe' is invalid: expected 'off'"):
        sp.default_session()
    report = sp.diagnostics()
    assert not report.fast_path and "'maybe' is invalid" in report.fast_path_reason


def test_diagnostics_report_versions_gate_hooks_and_bindings(monkeypatch: pytest.MonkeyPatch) -> None:
    """diagnostics() names versions, the gate's state, the hooks, the trust store and each bound variable, no value."""
    monkeypatch.setenv("SESSION_PRESETS_READ_TIMEOUT", "7")
    monkeypatch.setenv("HTTPS_PROXY", "http://user:hunter2@proxy.invalid:3128")
    report = sp.diagnostics()
    assert report.requests == requests.__version__
    assert report.session_presets == sp.__version__
    assert report.fast_path == _upstream.gate().active
    assert set(report.hooks_in_use) | set(report.hooks_unused) == set(_upstream.HOOKS)
    assert report.trust_store == "certifi"
    bindings = dict(report.environment)
    assert "default.read_timeout" in bindings["SESSION_PRESETS_READ_TIMEOUT"]
    assert "HTTPS_PROXY" in bindings
    assert "hunter2" not in report.format() and "hunter2" not in json.dumps(report.as_dict())
    with pytest.raises(AttributeError):
        report.fast_path = False  # type: ignore[misc]


@requires_fast_path
def test_a_standalone_copy_that_differs_turns_off_alone(http_server: LoopbackServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A putheader of another Python version turns off the header-line memo only; the report says so."""
    _upstream.reset_gate()
    # What differs already on this Python (urllib3's putheader on 3.10, say): standalone copies only, or no gate.
    already = set(_upstream.gate().mismatched) - {"http.client.HTTPConnection.putheader"}
    monkeypatch.setattr(PIECES["http.client.HTTPConnection.putheader"], "fingerprints", frozenset({"0" * 16}))
    _upstream.reset_gate()
    report = sp.diagnostics()
    assert report.fast_path is all(PIECES[name].standalone for name in already)
    assert set(report.fingerprint_mismatches) == already | {"http.client.HTTPConnection.putheader"}
    assert "except the copies of http.client.HTTPConnection.putheader" in report.format()
    assert not _upstream.header_lines_usable() and "header_lines" in report.hooks_unused
    with sp.default_session() as session:
        session.get(http_server.url())
        assert not session.adapter._header_lines
    assert http_server.requests[0].header("User-Agent") == session.headers["User-Agent"]
    monkeypatch.undo()
    _upstream.reset_gate()


def test_diagnostics_name_the_fingerprint_that_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    """With one fingerprint unknown, the report says the fast path is off and names that function."""
    piece = PIECES["requests.adapters.HTTPAdapter.send"]
    _upstream.reset_gate()
    # What differs already on this install (none with the pinned versions; some at the declared minimum).
    already = set(_upstream.gate().mismatched) - {piece.name}
    monkeypatch.setattr(piece, "fingerprints", frozenset({"0" * 16}))
    _upstream.reset_gate()
    report = sp.diagnostics()
    assert report.fast_path is False
    assert set(report.fingerprint_mismatches) == already | {"requests.adapters.HTTPAdapter.send"}
    assert "requests.adapters.HTTPAdapter.send" in report.fast_path_reason
    assert "header_lines" in report.hooks_unused
    monkeypatch.undo()
    _upstream.reset_gate()


@pytest.mark.parametrize("as_json", [False, True])
def test_doctor_prints_the_report(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                  as_json: bool) -> None:
    """session-presets doctor prints what diagnostics() returns, as text or JSON, and exits 0."""
    monkeypatch.setenv(_upstream.FAST_PATH_VARIABLE, "off")
    _upstream.reset_gate()
    assert main(["doctor", "--json"] if as_json else ["doctor"]) == 0
    out = capsys.readouterr().out
    if as_json:
        report = json.loads(out)
        assert report["fast_path"] is False and report["fast_path_forced_off"] is True
        assert report["requests"] == requests.__version__
        assert ["SESSION_PRESETS_FAST_PATH", "a setting"] in report["environment"]
    else:
        assert f"fast path        off ({_upstream.FAST_PATH_VARIABLE}=off" in out
        assert f"requests         {requests.__version__}" in out


# -- each hook turned off: its behaviour tests still pass through the fallback -----------------------


def test_without_the_pool_queue_hook_calls_beyond_pool_maxsize_still_wait(http_server: LoopbackServer) -> None:
    """Without the pool_queue hook, urllib3's own blocking pool keeps 8 threads on 2 connections."""
    with _upstream.hook_disabled("pool_queue"):
        test_pool_policy.test_threads_beyond_pool_maxsize_wait_instead_of_opening_connections(http_server)


def test_without_the_header_lines_hook_the_same_lines_are_sent(http_server: LoopbackServer) -> None:
    """Without the header_lines hook, the server gets the header lines plain requests sends."""
    with _upstream.hook_disabled("header_lines"):
        test_upstream_hot_path.test_header_lines_reach_the_server_as_requests_sends_them(http_server)
        test_upstream_hot_path.test_only_the_presets_own_header_lines_are_kept(http_server)


def test_without_the_cuttable_connect_hook_urllib3_connects(http_server: LoopbackServer) -> None:
    """Without the cuttable_connect hook, urllib3 makes the socket: its options, one connection, metrics kept."""
    with _upstream.hook_disabled("cuttable_connect"):
        test_connect_phase.test_new_connections_keep_urllib3_socket_options(http_server)
        with sp.default_session() as session:
            metrics = session.get(http_server.url()).metrics
        assert metrics.connect is not None and metrics.reused is False


def test_without_the_body_readinto_hook_downloads_read_through_urllib3(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    """Without the body_readinto hook, a background download still ends with the source's bytes."""
    served = test_background.FileRoute(test_background.make_data(3 * test_background.MIB))
    http_server.route("/file", served)
    with _upstream.hook_disabled("body_readinto"):
        assert _upstream.readinto_target(object()) is None
        test_background.test_download_writes_dest_and_removes_part(http_server, served, tmp_path)


@pytest.mark.parametrize("maximum", ["TLSv1.3", "TLSv1.2"])
def test_without_the_tls_resumption_hook_every_handshake_is_full(ca: Any, ca_bundle: str, maximum: str) -> None:
    """Without the tls_resumption hook, five sessions make five full handshakes and every call succeeds."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.maximum_version = getattr(ssl.TLSVersion, maximum.replace(".", "_"))
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with LoopbackServer(context) as server, _upstream.hook_disabled("tls_resumption"):
        for _ in range(5):
            with sp.default_session(ca_bundle=ca_bundle) as session:
                assert session.get(server.url()).text == "ok"
                assert session.stats.connections_resumed == 0
        assert (server.full_handshakes, server.resumed_handshakes) == (5, 0)
        assert "tls_resumption" in sp.diagnostics().hooks_unused


def test_an_unknown_hook_name_is_refused() -> None:
    """hook_disabled() names the known hooks when given another name."""
    with pytest.raises(KeyError, match="known: body_readinto"), _upstream.hook_disabled("nope"):
        pass


@requires_fast_path
def test_memos_are_per_adapter_bounded_and_emptied_on_close(http_server: LoopbackServer) -> None:
    """The pool and encoding memos live in the adapter, keep at most their bound, and are emptied by close()."""
    with sp.default_session() as session:
        adapter = session.adapter
        for port_path in range(3):
            session.get(http_server.url(f"/ok?n={port_path}"))
        assert len(adapter._pool_cache) == 1 and len(adapter._encodings) <= 1
        # The header-line memo fills only where its putheader copy matches this Python's (not on 3.10).
        assert bool(adapter._header_lines) is _upstream.header_lines_usable()
    assert len(adapter._pool_cache) == 0 and len(adapter._encodings) == 0 and not adapter._header_lines
    memo = _upstream.LRUMemo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1
    memo.put("c", 3)  # "b" was used least recently
    assert ("a" in memo, "b" in memo, "c" in memo, len(memo)) == (True, False, True, 2)


#: The private methods our pool and connection classes override without a hook, each with the upstream
#: method that must still call it for the override to run (docs/fast-path.md, "Overrides without a hook").
_OVERRIDE_SEAMS: Final = (
    ("urllib3.connectionpool", "HTTPConnectionPool.urlopen", "_get_conn"),
    ("urllib3.connectionpool", "HTTPConnectionPool.urlopen", "_put_conn"),
    ("urllib3.connectionpool", "HTTPConnectionPool._make_request", "_validate_conn"),
    ("urllib3.connectionpool", "HTTPConnectionPool._get_conn", "_new_conn"),
    ("urllib3.connection", "HTTPConnection.getresponse", "getresponse"),
    ("http.client", "HTTPConnection.getresponse", "response_class"),
)


@pytest.mark.parametrize(("module", "caller", "callee"), _OVERRIDE_SEAMS)
def test_upstream_still_calls_each_overridden_seam(module: str, caller: str, callee: str) -> None:
    """The installed urllib3 and http.client still reach each private method or attribute our classes override."""
    owner: Any = importlib.import_module(module)
    for part in caller.split("."):
        owner = getattr(owner, part)
    code = inspect.unwrap(owner).__code__
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names.update(const.co_names)
    assert callee in names, f"{module}.{caller} no longer uses {callee}: see docs/fast-path.md"
