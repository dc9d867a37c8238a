"""Hostile input: arbitrary environment text and field values, CR/LF, bad URLs, corrupt cookie files."""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from session_presets import (
    ConfigError,
    PresetConfig,
    SessionPresetsError,
    SessionRegistry,
    UnknownVariableWarning,
    default_session,
    ephemeral_session,
    get_preset,
    get_session,
    preset_names,
    register_preset,
)
from session_presets import _sessions as sp_sessions
from session_presets._env import variable_name

from .servers import LoopbackServer

FIELDS = PresetConfig.field_names()

#: Text an attacker or a typo might put in a variable: arbitrary, near-valid, and JSON.
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)
ENV_TEXT = st.one_of(
    st.text(),
    st.text(alphabet="0123456789.,- smhdSMHDnoeoftrulimadTLSv{}[]\":", max_size=12),
    st.sampled_from(["none", "off", "unlimited", "env", "file", "memory", "TLSv1.3", "1e400", "-1", "0",
                     "99999999999999999999d", "nan", "inf", " 5s ", "5 s", "500ms", "1" * 5000]),
    _json.map(json.dumps),
)

#: Any value code might pass for a field.
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(),
    st.text(),
    st.binary(max_size=10),
    st.lists(st.integers() | st.text(max_size=5), max_size=4),
    st.tuples(st.text(max_size=8), st.text(max_size=8)),
    st.frozensets(st.integers(), max_size=4),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8) | st.integers() | st.none(), max_size=3),
    _json,
)

HYPOTHESIS = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _names_the_culprit(message: str, *culprits: str) -> bool:
    return any(culprit in message for culprit in culprits)


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore::session_presets.InsecureSessionWarning")
@pytest.mark.parametrize("field", FIELDS)
@HYPOTHESIS
@given(text=ENV_TEXT, per_preset=st.booleans())
def test_env_values_only_raise_config_error_naming_the_variable(field: str, text: str, per_preset: bool) -> None:
    """Any SESSION_PRESETS_<FIELD> text builds a session or raises ConfigError naming the variable or field."""
    variable = variable_name(field, "default" if per_preset else None)
    registry = SessionRegistry(environ={variable: text})
    try:
        session = registry.get("default")
    except ConfigError as exc:
        assert _names_the_culprit(str(exc), variable, field), str(exc)
    else:
        assert session.state == "active"
    finally:
        registry.close_all(timeout=5)


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore::session_presets.InsecureSessionWarning")
@pytest.mark.parametrize("field", FIELDS)
@HYPOTHESIS
@given(value=ANY_VALUE)
def test_field_values_only_raise_config_error_naming_the_field(field: str, value: Any) -> None:
    """Any value for any PresetConfig field builds a session or raises ConfigError naming the field."""
    sp_sessions._clear_reuse_counts()
    try:
        PresetConfig(**{field: value})
    except ConfigError as exc:
        assert field in str(exc), str(exc)
    try:
        session = default_session(**{field: value})
    except ConfigError as exc:
        assert field in str(exc), str(exc)
    else:
        session.close()


@HYPOTHESIS
@given(value=ANY_VALUE)
def test_preset_name_values_only_raise_config_error(value: Any) -> None:
    """Any value for PresetConfig.name is accepted or refused with a ConfigError naming 'name'."""
    try:
        PresetConfig(name=value)
    except ConfigError as exc:
        assert "name" in str(exc)


@pytest.mark.timeout(60)
@HYPOTHESIS
@given(value=st.text(max_size=30), agent=st.text(max_size=30))
def test_accepted_header_and_agent_reach_the_server_verbatim(http_server: LoopbackServer, value: str,
                                                            agent: str) -> None:
    """A header value or User-Agent a preset accepts is sent as is; a refused one raises ConfigError."""
    sp_sessions._clear_reuse_counts()
    try:
        session = ephemeral_session(headers={"X-Hostile": value}, user_agent=agent, retries=0)
    except ConfigError as exc:
        assert _names_the_culprit(str(exc), "headers", "user_agent"), str(exc)
        return
    with session:
        before = len(http_server.requests)
        assert session.get(http_server.url("/ok")).status_code == 200
    [seen] = http_server.requests[before:]
    # A server may drop trailing blanks, as HTTP allows.
    assert seen.header("X-Hostile") in (value, value.rstrip(" \t"))
    assert seen.header("User-Agent") in (agent, agent.rstrip(" \t"))


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Evil": "a\r\nInjected: 1"},
        {"X-Evil": "a\nInjected: 1"},
        {"X-Evil": "a\rb"},
        {"X-Evil\r\nInjected": "1"},
        {"X-Evil\n": "1"},
        {"X-Evil": "a\x00b"},
    ],
)
def test_crlf_in_headers_from_code_is_refused(http_server: LoopbackServer, headers: dict[str, str]) -> None:
    """CR/LF/NUL in a header name or value given in code raise ConfigError; nothing is sent."""
    with pytest.raises(ConfigError, match="headers"):
        ephemeral_session(headers=headers)
    with pytest.raises(ConfigError, match="headers"):
        register_preset("crlf-test", headers=headers)
    assert "crlf-test" not in preset_names()
    with pytest.raises(ConfigError, match="user_agent"):
        ephemeral_session(user_agent="agent\r\nInjected: 1")
    assert http_server.requests == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SESSION_PRESETS_HEADERS", json.dumps({"X-Evil": "a\r\nInjected: 1"})),
        ("SESSION_PRESETS_DEFAULT_HEADERS", json.dumps({"X-Evil\r\nInjected": "1"})),
        ("SESSION_PRESETS_HEADERS", json.dumps({"X-Evil": "a\nb"})),
        ("SESSION_PRESETS_USER_AGENT", "agent\r\nInjected: 1"),
        ("SESSION_PRESETS_DEFAULT_USER_AGENT", "agent\rInjected: 1"),
    ],
)
def test_crlf_in_headers_from_env_is_refused(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """CR/LF in header names/values or the User-Agent from the environment raise ConfigError naming the variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        get_session().get(http_server.url("/ok"))
    assert variable in str(info.value)
    with pytest.raises(ConfigError):
        default_session()
    assert http_server.requests == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://", requests.exceptions.InvalidURL),
        ("https://", requests.exceptions.InvalidURL),
        ("http:///path", requests.exceptions.InvalidURL),
        ("http://[::1", requests.exceptions.InvalidURL),
        ("http://127.0.0.1:99999/", requests.exceptions.InvalidURL),
        ("http://127.0.0.1:abc/", requests.exceptions.InvalidURL),
        ("http://exa mple/", requests.exceptions.InvalidURL),
        ("http://host\x00name/", requests.exceptions.InvalidURL),
        ("http://*", requests.exceptions.InvalidURL),
        ("ftp://127.0.0.1/file", requests.exceptions.InvalidSchema),
        ("file:///etc/passwd", requests.exceptions.InvalidSchema),
        ("gopher://127.0.0.1/", requests.exceptions.InvalidSchema),
        ("127.0.0.1/ok", requests.exceptions.MissingSchema),
        ("//127.0.0.1/ok", requests.exceptions.MissingSchema),
        ("", requests.exceptions.MissingSchema),
    ],
)
@pytest.mark.parametrize("proxied", [False, True])
def test_invalid_urls_give_requests_own_errors(
    http_server: LoopbackServer, url: str, expected: type[Exception], proxied: bool
) -> None:
    """Invalid URLs raise requests' own errors, never ours (as plain requests, where urllib3 < 2.8 takes the host)."""
    proxies: Any = "none"
    if proxied:
        proxies = {"http": http_server.url(""), "https": http_server.url(""), "no_proxy": "localhost"}
    if expected is requests.exceptions.InvalidURL and _urllib3_parses_host(url):
        _assert_sent_as_plain_requests_sends(http_server, url, proxies if proxied else {})
        return
    with ephemeral_session(proxies=proxies, retries=0) as session:
        with pytest.raises(expected) as info:
            session.get(url)
        assert not isinstance(info.value, SessionPresetsError)
        assert http_server.requests == []
        assert session.get(http_server.url("/ok")).content == b"ok"
    assert len(http_server.requests) == 1


def _urllib3_parses_host(url: str) -> bool:
    """True when the installed urllib3 takes the URL's host: before 2.8 a space or NUL in a host passes."""
    try:
        parse_url(url)
    except LocationParseError:
        return False
    return True


def _outcome(session: requests.Session, url: str, proxies: dict[str, str]) -> object:
    """The exception type a GET raises, or the status it gets."""
    try:
        return session.get(url, proxies=proxies).status_code
    # Proxied, http.client's Host header code asserts on a '%' outside an IPv6 literal (AssertionError).
    except Exception as exc:
        return type(exc)


def _assert_sent_as_plain_requests_sends(http_server: LoopbackServer, url: str, proxies: dict[str, str]) -> None:
    """A host urllib3 accepts is percent-encoded by requests and sent on: the same outcome and the same request."""
    with requests.Session() as plain:
        plain.trust_env = False
        expected = _outcome(plain, url, proxies)
    by_plain = [(seen.method, seen.path, seen.header("Host")) for seen in http_server.requests]
    with ephemeral_session(proxies=proxies or "none", retries=0) as session:
        assert _outcome(session, url, proxies) == expected
        assert not isinstance(expected, type) or not issubclass(expected, SessionPresetsError)
        by_preset = [(seen.method, seen.path, seen.header("Host")) for seen in http_server.requests[len(by_plain) :]]
        assert by_preset == by_plain
        assert all("%" in path for _, path, _ in by_preset)
        assert session.get(http_server.url("/ok")).content == b"ok"


@pytest.fixture
def cookie_path(tmp_path: Any) -> str:
    """Where a cookie file lives for one test."""
    return str(tmp_path / "cookies.txt")


@pytest.mark.parametrize(
    "content",
    [
        b"garbage, not a cookie file\n",
        b"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\n",
        b"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\tnot-a-number\tsid\tv\n",
        b"\xff\xfe\x00\x01binary garbage",
        b"",
    ],
    ids=["garbage", "truncated-line", "bad-expiry", "binary", "empty"],
)
def test_corrupt_cookie_file_is_a_config_error_and_kept(cookie_path: str, content: bytes) -> None:
    """A truncated or garbage cookie file raises ConfigError naming the file, and the file is left as it was."""
    with open(cookie_path, "wb") as handle:
        handle.write(content)
    with pytest.raises(ConfigError) as info:
        ephemeral_session(cookies="file", cookie_file=cookie_path)
    assert cookie_path in str(info.value)
    assert "cookie_file" in str(info.value)
    with open(cookie_path, "rb") as handle:
        assert handle.read() == content


def test_unknown_variable_warns_once_with_a_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt SESSION_PRESETS_ variable gives one UnknownVariableWarning with a did-you-mean."""
    monkeypatch.setenv("SESSION_PRESETS_READ_TIMOUT", "5s")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        get_preset("default")
        get_preset("ephemeral")
        get_session()
        with ephemeral_session():
            pass
    ours = [w for w in caught if issubclass(w.category, UnknownVariableWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    message = str(ours[0].message)
    assert "SESSION_PRESETS_READ_TIMOUT" in message
    assert "did you mean SESSION_PRESETS_READ_TIMEOUT" in message
    assert get_preset("default").read_timeout == 20.0


def test_every_bad_variable_is_listed_in_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several bad variables raise a single ConfigError that lists every one of them."""
    bad = {
        "SESSION_PRESETS_READ_TIMEOUT": "soon",
        "SESSION_PRESETS_RETRIES": "-3",
        "SESSION_PRESETS_DEFAULT_VERIFY": "perhaps",
        "SESSION_PRESETS_HEADERS": "{not json",
        "SESSION_PRESETS_DEFAULT_POOL_MAXSIZE": "0",
    }
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SESSION_PRESETS_CONNECT_TIMEOUT", "3s")  # a good one, not listed
    with pytest.raises(ConfigError) as info:
        get_session()
    message = str(info.value)
    for name, value in bad.items():
        assert f"{name}={value!r}" in message
    assert "CONNECT_TIMEOUT" not in message
    assert len(info.value.problems) == len(bad)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("my_api", "collide"),
        ("MY.API", "collide"),
        ("Default", "collide"),
        ("DEFAULT", "collide"),
        ("bad name", "invalid"),
        ("-leading", "invalid"),
        ("trailing_", "invalid"),
        ("a__b", None),
        ("", "invalid"),
        ("ünïcode", "invalid"),
        ("default", "already defined"),
    ],
)
def test_register_preset_refuses_ambiguous_names(name: str, why: str | None) -> None:
    """register_preset refuses names whose variables would collide or be unreadable, and registers nothing."""
    register_preset("my-api")
    before = preset_names()
    if why is None:
        register_preset(name)
        assert name in preset_names()
        return
    with pytest.raises(ConfigError) as info:
        register_preset(name)
    assert why in str(info.value)
    assert preset_names() == before


def test_variable_of_a_refused_name_stays_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """After my-api is registered, SESSION_PRESETS_MY_API_* binds to it and only it."""
    register_preset("my-api")
    monkeypatch.setenv("SESSION_PRESETS_MY_API_READ_TIMEOUT", "7s")
    assert get_preset("my-api").read_timeout == 7.0
    assert get_preset("my-api").origin("read_timeout") == "env SESSION_PRESETS_MY_API_READ_TIMEOUT"
    assert get_preset("default").read_timeout == 20.0
    with pytest.raises(ConfigError):
        register_preset("my_api")
    assert os.environ["SESSION_PRESETS_MY_API_READ_TIMEOUT"] == "7s"
