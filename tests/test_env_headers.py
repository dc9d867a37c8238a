"""Headers from the environment: CR/LF refused wherever it stands, and a documented size limit (issue 22 §7)."""

from __future__ import annotations

import json

import pytest

from session_presets import ConfigError, default_session, get_session
from session_presets._env import MAX_ENV_HEADER_VALUE
from session_presets.testing import MockServer


@pytest.mark.parametrize("variable", ["SESSION_PRESETS_USER_AGENT", "SESSION_PRESETS_DEFAULT_USER_AGENT"])
@pytest.mark.parametrize("value", ["agent\r\n", "\r\nagent", "agent\n", "\nagent", "agent\r", " agent\r\n "])
def test_user_agent_with_a_leading_or_trailing_newline_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """A CR or LF at either end of the User-Agent variable is refused as embedded ones are; nothing is sent."""
    monkeypatch.setenv(variable, value)
    with MockServer() as server:
        with pytest.raises(ConfigError) as info:
            get_session().get(server.url("/"))
        assert server.request_count == 0
    assert variable in str(info.value)
    assert "CR, LF and NUL are not allowed" in str(info.value)


def test_user_agent_spaces_around_are_still_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spaces and tabs around the variable's value are trimmed; the server sees the value alone."""
    monkeypatch.setenv("SESSION_PRESETS_USER_AGENT", " \tmy-agent/1 ")
    with MockServer() as server, default_session() as session:
        session.get(server.url("/"))
        assert server.take_request().header("User-Agent") == "my-agent/1"


@pytest.mark.parametrize("value", ["v\r\n", "\r\nv", "v\n"])
def test_headers_variable_with_a_newline_at_either_end_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """A header value from SESSION_PRESETS_HEADERS with CR/LF at either end is refused, naming the variable."""
    monkeypatch.setenv("SESSION_PRESETS_HEADERS", json.dumps({"X-Trace": value}))
    with pytest.raises(ConfigError, match="SESSION_PRESETS_HEADERS"):
        default_session()


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("SESSION_PRESETS_HEADERS", json.dumps({"X-Big": "a" * 100_000})),
        ("SESSION_PRESETS_DEFAULT_HEADERS", json.dumps({"X-Big": "a" * (MAX_ENV_HEADER_VALUE + 1)})),
        ("SESSION_PRESETS_USER_AGENT", "a" * (MAX_ENV_HEADER_VALUE + 1)),
    ],
    ids=["100k", "headers-one-over", "user-agent-one-over"],
)
def test_header_value_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch, variable: str, text: str) -> None:
    """A header value longer than MAX_ENV_HEADER_VALUE from a variable is refused; the error stays short."""
    monkeypatch.setenv(variable, text)
    with MockServer() as server:
        with pytest.raises(ConfigError) as info:
            get_session().get(server.url("/"))
        assert server.request_count == 0
    message = str(info.value)
    assert variable in message and f"at most {MAX_ENV_HEADER_VALUE}" in message
    assert len(message) < 1000


def test_header_value_at_the_limit_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value of exactly MAX_ENV_HEADER_VALUE characters is accepted and reaches the server whole."""
    monkeypatch.setenv("SESSION_PRESETS_HEADERS", json.dumps({"X-Big": "a" * MAX_ENV_HEADER_VALUE}))
    with MockServer() as server, default_session() as session:
        session.get(server.url("/"))
        assert server.take_request().header("X-Big") == "a" * MAX_ENV_HEADER_VALUE
