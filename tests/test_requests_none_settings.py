"""Session attributes and per-call arguments set to None: a PresetSession does what requests.Session does.

Real client libraries set ``session.proxies = None`` (and ``cert``, ``verify``)
in their constructors; requests' ``merge_setting`` takes a None session
setting. Each test runs the same steps on a plain ``requests.Session`` and on
PresetSessions, and compares what the loopback server received.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any, Final

import pytest
import requests
import urllib3

import session_presets as sp

from .servers import LoopbackServer, Seen
from .session_kinds import make

#: Steps that set a session attribute: run on caller-owned sessions (a shared one refuses them).
Configure = Callable[[requests.Session], None]


def _seen_by(kind: str, server: LoopbackServer, configure: Configure, path: str = "/echo", **call: Any) -> list[Seen]:
    """What ``server`` received from one GET by a session of ``kind`` after ``configure``."""
    before = len(server.requests)
    session = make(kind)
    try:
        configure(session)
        response = session.get(server.url(path), timeout=10, **call)
        assert response.status_code == 200
    finally:
        if kind != "get_session":
            session.close()
    return server.requests[before:]


#: Headers in which a PresetSession differs from requests by design (see docs/migrating.md).
_DIFFER: Final = frozenset({"user-agent", "cache-control", "pragma"})


def _request_line_and_headers(seen: list[Seen]) -> list[tuple[str, str, dict[str, str]]]:
    """The method, target and headers of each request, minus the headers in which the kinds differ by design."""
    return [(s.method, s.path, {k.lower(): v for k, v in s.headers.items() if k.lower() not in _DIFFER}) for s in seen]


def _set(name: str, value: Any) -> Configure:
    def configure(session: requests.Session) -> None:
        setattr(session, name, value)

    return configure


@pytest.mark.parametrize("name", ["proxies", "params", "hooks", "cert", "verify", "stream", "auth", "trust_env"])
def test_session_attribute_set_to_none_sends_as_requests_does(name: str, http_server: LoopbackServer) -> None:
    """session.<attribute> = None: the server receives the same request from default_session() as from requests."""
    plain = _seen_by("plain", http_server, _set(name, None), "/echo?a=1")
    preset = _seen_by("default_session", http_server, _set(name, None), "/echo?a=1")
    assert len(preset) == len(plain) == 1
    assert _request_line_and_headers(preset) == _request_line_and_headers(plain)


@pytest.mark.parametrize("kind", ["default_session", "plain"])
def test_session_proxies_none_with_a_proxy_in_the_environment_goes_through_it(
    kind: str, http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """session.proxies = None leaves the environment's proxy in use (read at build time here), as in requests."""
    monkeypatch.setenv("HTTP_PROXY", http_server.url("/"))
    before = len(http_server.requests)
    with make(kind) as session:
        session.proxies = None
        assert session.get("http://origin.invalid/echo", timeout=10).status_code == 200
    # The proxy got the absolute-form target a client sends to a proxy.
    assert [s.path for s in http_server.requests[before:]] == ["http://origin.invalid/echo"]


def test_session_proxies_none_then_per_call_proxies_apply(http_server: LoopbackServer) -> None:
    """With session.proxies = None, a per-call proxies= mapping is used, as requests uses it."""
    proxy = {"http": http_server.url("/")}
    plain = _seen_by("plain", http_server, _set("proxies", None), "/echo", proxies=proxy)
    preset = _seen_by("default_session", http_server, _set("proxies", None), "/echo", proxies=proxy)
    assert [s.path for s in preset] == [s.path for s in plain] == [http_server.url("/echo")]


def test_session_headers_none_sends_only_what_requests_sends(http_server: LoopbackServer) -> None:
    """session.headers = None: the preset's default headers go too, and the server sees requests' own header set."""
    plain = _seen_by("plain", http_server, _set("headers", None))
    preset = _seen_by("default_session", http_server, _set("headers", None))
    assert _request_line_and_headers(preset) == _request_line_and_headers(plain)
    assert {k.lower(): v for k, v in preset[0].headers.items()} == {k.lower(): v for k, v in plain[0].headers.items()}


def test_session_header_values_none_are_not_sent(http_server: LoopbackServer) -> None:
    """A session header set to None is dropped, default ones included, as requests drops it."""

    def configure(session: requests.Session) -> None:
        session.headers["X-Team"] = "payments"
        session.headers["X-Dropped"] = None  # type: ignore[assignment]
        session.headers["Accept"] = None  # type: ignore[assignment]
        session.headers["Cache-Control"] = None  # type: ignore[assignment]

    plain = _seen_by("plain", http_server, configure)
    preset = _seen_by("default_session", http_server, configure)
    assert _request_line_and_headers(preset) == _request_line_and_headers(plain)
    names = {name.lower() for name in preset[0].headers}
    assert "x-dropped" not in names and "accept" not in names and "cache-control" not in names
    assert preset[0].header("X-Team") == "payments"


@pytest.mark.parametrize("hooks", [{"response": None}, {"response": []}, {}], ids=["none", "empty", "no-event"])
def test_session_hooks_mappings_requests_accepts(hooks: dict[str, Any], http_server: LoopbackServer) -> None:
    """session.hooks with None, empty or missing events sends as requests does."""
    plain = _seen_by("plain", http_server, _set("hooks", hooks))
    preset = _seen_by("default_session", http_server, _set("hooks", hooks))
    assert _request_line_and_headers(preset) == _request_line_and_headers(plain)


@pytest.mark.parametrize("kind", ["default_session", "plain"])
def test_session_hook_as_one_callable_runs(kind: str, http_server: LoopbackServer) -> None:
    """session.hooks = {"response": callable} (not a list) calls the hook once per response, as requests does."""
    statuses: list[int] = []

    def configure(session: requests.Session) -> None:
        session.hooks = {"response": lambda r, **kwargs: statuses.append(r.status_code)}  # type: ignore[dict-item]

    assert len(_seen_by(kind, http_server, configure)) == 1
    assert statuses == [200]


def test_session_verify_none_still_verifies(https_server: LoopbackServer, ca_bundle: str) -> None:
    """session.verify = None keeps verifying on a PresetSession; per-call verify= still applies."""
    with sp.default_session(retries=0) as session:
        session.verify = None
        with pytest.raises(requests.exceptions.SSLError):
            session.get(https_server.url("/echo"), timeout=10)
        assert https_server.requests == []
        assert session.get(https_server.url("/echo"), timeout=10, verify=ca_bundle).status_code == 200
    assert [s.path for s in https_server.requests] == ["/echo"]


def test_requests_takes_session_verify_none_as_no_verification(https_server: LoopbackServer) -> None:
    """The documented difference: without a CA-bundle variable, requests sends over an unverified connection."""
    with requests.Session() as session:
        session.verify = None
        with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
            assert session.get(https_server.url("/echo"), timeout=10).status_code == 200
    assert [s.path for s in https_server.requests] == ["/echo"]


def test_preset_ca_bundle_applies_when_verify_is_none(https_server: LoopbackServer, ca_bundle: str) -> None:
    """On a PresetSession with a ca_bundle, session.verify = None keeps verifying against that bundle."""
    with sp.default_session(ca_bundle=ca_bundle) as session:
        session.verify = None
        session.cert = None
        assert session.get(https_server.url("/echo"), timeout=10).status_code == 200
    assert [s.path for s in https_server.requests] == ["/echo"]


@pytest.mark.parametrize("kind", ["get_session", "default_session", "plain"])
def test_per_call_none_arguments(kind: str, http_server: LoopbackServer) -> None:
    """Per-call params/proxies/hooks/verify/cert/cookies/auth/stream=None and None header values, as requests."""
    call = {
        "params": None, "proxies": None, "hooks": None, "verify": None, "cert": None,
        "cookies": None, "auth": None, "stream": None, "headers": {"X-Dropped": None, "Accept": None, "X-Kept": "1"},
    }
    seen = _seen_by(kind, http_server, lambda session: None, "/echo?a=1", **call)
    plain = _seen_by("plain", http_server, lambda session: None, "/echo?a=1", **call)
    assert _request_line_and_headers(seen) == _request_line_and_headers(plain)
    assert seen[0].header("X-Kept") == "1" and seen[0].header("X-Dropped") is None


def test_pickled_session_keeps_none_attributes(http_server: LoopbackServer) -> None:
    """A default_session() with None attributes pickles, and its copy sends as the original does."""
    with sp.default_session() as session:
        for name in ("proxies", "params", "hooks", "headers", "cert", "verify"):
            setattr(session, name, None)
        copy = pickle.loads(pickle.dumps(session))
    with copy:
        assert (copy.proxies, copy.params, copy.hooks, copy.headers) == (None, None, None, None)
        assert copy.get(http_server.url("/echo"), timeout=10).status_code == 200
    assert http_server.requests[-1].header("Cache-Control") is None


@pytest.mark.parametrize("kind", ["default_session", "plain"])
def test_session_send_with_proxies_none_uses_the_environment_proxy(
    kind: str, http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """session.send(prepared) with session.proxies = None goes through the environment's proxy, as in requests."""
    monkeypatch.setenv("HTTP_PROXY", http_server.url("/"))
    before = len(http_server.requests)
    with make(kind) as session:
        session.proxies = None
        prepared = session.prepare_request(requests.Request("GET", "http://origin.invalid/echo"))
        assert session.send(prepared, timeout=10).status_code == 200
    assert [s.path for s in http_server.requests[before:]] == ["http://origin.invalid/echo"]
