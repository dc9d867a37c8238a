"""Environment binding: value forms, precedence, provenance, one error for every bad variable."""

from __future__ import annotations

import warnings

import pytest

from session_presets import (
    ConfigError,
    UnknownPresetError,
    UnknownVariableWarning,
    default_session,
    get_preset,
    register_preset,
)
from session_presets.env import parse_bool, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20", 20), ("20s", 20), ("500ms", 0.5), ("2m", 120), ("1h", 3600), ("7d", 604800), (" 1.5S ", 1.5), (".5", 0.5)],
)
def test_duration_forms(text: str, seconds: float) -> None:
    """Durations accept bare seconds and the ms/s/m/h/d units."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "-1", "1w", "1 2", "nan", "inf", "none"])
def test_duration_rejects(text: str) -> None:
    """Anything else is rejected, including none where the field does not allow it."""
    with pytest.raises(ValueError):
        parse_duration(text)


def test_duration_none_where_allowed() -> None:
    """none/off mean 'no limit' where the field allows it."""
    assert parse_duration("off", allow_none=True) is None
    assert parse_duration("NONE", allow_none=True) is None


@pytest.mark.parametrize(("text", "value"), [("1", True), ("yes", True), ("On", True), ("true", True),
                                             ("0", False), ("no", False), ("off", False), ("FALSE", False)])
def test_booleans(text: str, value: bool) -> None:
    """Booleans accept 1/0/true/false/yes/no/on/off in any case."""
    assert parse_bool(text) is value


def test_every_form_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each kind of field is set from its text form."""
    values = {
        "READ_TIMEOUT": "5s", "TOTAL_TIMEOUT": "off", "RETRIES": "unlimited", "RETRY_STATUSES": "503, 429",
        "POOL_MAXSIZE": "3", "COOKIES": "NONE", "VERIFY": "no", "HEADERS": '{"X-Team": "core"}',
        "PROXIES": '{"https": "http://127.0.0.1:9"}', "CLIENT_CERT": '["c.pem", "k.pem"]',
        "TLS_MIN_VERSION": "1.3", "MAX_CONNECTION_AGE": "none", "STATE_DIR": "/tmp/sp-state",
    }
    for key, text in values.items():
        monkeypatch.setenv(f"SESSION_PRESETS_{key}", text)
    monkeypatch.setenv("SESSION_PRESETS_TOTAL_TIMEOUT", "2h")
    config = get_preset("default")
    assert config.read_timeout == 5
    assert config.total_timeout == 7200
    assert config.retries is None
    assert config.retry_statuses == {503, 429}
    assert config.pool_maxsize == 3
    assert config.cookies == "none"
    assert config.verify is False
    assert dict(config.headers) == {"X-Team": "core"}
    assert dict(config.proxies) == {"https": "http://127.0.0.1:9"}  # type: ignore[arg-type]
    assert config.client_cert == ("c.pem", "k.pem")
    assert config.tls_min_version == "TLSv1.3"
    assert config.max_connection_age is None
    assert config.state_dir == "/tmp/sp-state"


def test_precedence_and_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Layers apply lowest to highest, and origin() names the layer that won."""
    register_preset("api", base="ephemeral", read_timeout=7, connect_timeout=3)
    config = get_preset("api")
    assert config.origin("pool_maxsize") == "base preset 'ephemeral'"
    assert config.origin("read_timeout") == "code"
    monkeypatch.setenv("SESSION_PRESETS_READ_TIMEOUT", "8")
    assert get_preset("api").read_timeout == 8
    assert get_preset("api").origin("read_timeout") == "env SESSION_PRESETS_READ_TIMEOUT"
    monkeypatch.setenv("SESSION_PRESETS_API_READ_TIMEOUT", "9")
    assert get_preset("api").read_timeout == 9
    assert get_preset("api").origin("read_timeout") == "env SESSION_PRESETS_API_READ_TIMEOUT"
    assert get_preset("default").read_timeout == 8  # the API variable is preset-specific
    with default_session(read_timeout=1) as session:
        assert session.config.read_timeout == 1
        assert session.config.origin("read_timeout") == "override"


def test_preset_name_normalised_in_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Preset names are upper-cased with '-' and '.' turned into '_'."""
    register_preset("my-api.v2", read_timeout=4)
    monkeypatch.setenv("SESSION_PRESETS_MY_API_V2_READ_TIMEOUT", "250ms")
    assert get_preset("my-api.v2").read_timeout == 0.25


def test_every_bad_variable_listed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several bad variables give one ConfigError naming each variable, value and form."""
    monkeypatch.setenv("SESSION_PRESETS_READ_TIMEOUT", "soon")
    monkeypatch.setenv("SESSION_PRESETS_DEFAULT_POOL_MAXSIZE", "0")
    monkeypatch.setenv("SESSION_PRESETS_HEADERS", "[1]")
    with pytest.raises(ConfigError) as info:
        default_session()
    error = info.value
    assert len(error.problems) == 3
    text = str(error)
    assert "SESSION_PRESETS_READ_TIMEOUT='soon'" in text and "duration" in text
    assert "SESSION_PRESETS_DEFAULT_POOL_MAXSIZE='0'" in text and "whole number" in text
    assert "SESSION_PRESETS_HEADERS='[1]'" in text and "JSON object" in text


def test_bad_header_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """CR/LF in a header from the environment is a ConfigError naming the variable."""
    monkeypatch.setenv("SESSION_PRESETS_HEADERS", '{"X-A": "a\\r\\nX-Evil: 1"}')
    with pytest.raises(ConfigError, match="SESSION_PRESETS_HEADERS"):
        get_preset("default")


def test_unknown_variable_warns_once_with_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable matching no preset and field warns once, with a did-you-mean."""
    monkeypatch.setenv("SESSION_PRESETS_READ_TIMOUT", "5")
    with pytest.warns(UnknownVariableWarning, match="did you mean SESSION_PRESETS_READ_TIMEOUT"):
        get_preset("default")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_preset("default")


def test_combination_error_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fields are checked one by one, then together: cookies=file needs cookie_file."""
    monkeypatch.setenv("SESSION_PRESETS_COOKIES", "file")
    with pytest.raises(ConfigError, match="environment: cookies='file' needs cookie_file"):
        get_preset("default")
    monkeypatch.setenv("SESSION_PRESETS_COOKIE_FILE", "/tmp/cookies.txt")
    assert get_preset("default").cookie_file == "/tmp/cookies.txt"


def test_ca_bundle_env_is_below_code(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """REQUESTS_CA_BUNDLE applies only when no ca_bundle was set in code (requests issue 3829)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/bundle.pem")
    assert get_preset("default").ca_bundle == "/env/bundle.pem"
    assert get_preset("default").origin("ca_bundle") == "env REQUESTS_CA_BUNDLE"
    register_preset("pinned", ca_bundle="/code/bundle.pem")
    assert get_preset("pinned").ca_bundle == "/code/bundle.pem"
    monkeypatch.setenv("SESSION_PRESETS_PINNED_CA_BUNDLE", "/sp/bundle.pem")
    assert get_preset("pinned").ca_bundle == "/sp/bundle.pem"


def test_register_preset_refusals() -> None:
    """register_preset refuses taken, ambiguous, malformed names and bad fields."""
    with pytest.raises(ConfigError, match="already defined"):
        register_preset("default")
    register_preset("reports")
    with pytest.raises(ConfigError, match="already defined"):
        register_preset("reports")
    with pytest.raises(ConfigError, match="collide with preset 'reports'"):
        register_preset("REPORTS")
    with pytest.raises(ConfigError, match="ambiguous"):
        register_preset("read-timeout")  # SESSION_PRESETS_READ_TIMEOUT is a global variable
    with pytest.raises(ConfigError, match="ambiguous"):
        register_preset("strict_reuse")
    with pytest.raises(ConfigError, match="invalid"):
        register_preset("-x")
    with pytest.raises(ConfigError, match="invalid"):
        register_preset("")
    with pytest.raises(UnknownPresetError):
        register_preset("x1", base="nope")
    with pytest.raises(ConfigError, match="read_timeout"):
        register_preset("x2", read_timeout=-1)
    with pytest.raises(ConfigError, match="unknown preset field"):
        register_preset("x3", bogus=1)


@pytest.mark.parametrize("text", ['{"https": "ftp://proxy.example:21"}', '{"http": "not a url"}'])
def test_unusable_proxy_from_environment_is_refused(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """SESSION_PRESETS_PROXIES with a non-URL or unsupported scheme is a ConfigError naming the variable."""
    monkeypatch.setenv("SESSION_PRESETS_PROXIES", text)
    with pytest.raises(ConfigError) as info:
        default_session()
    message = str(info.value)
    assert message.startswith(f"SESSION_PRESETS_PROXIES={text!r} is invalid")
    assert "socks5h" in message
