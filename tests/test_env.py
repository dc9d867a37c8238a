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
    get_session,
    register_preset,
)
from session_presets._env import parse_bool, parse_duration
from tests.servers import LoopbackServer


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


def test_variable_of_a_preset_registered_later_is_not_reported(
    monkeypatch: pytest.MonkeyPatch, http_server: LoopbackServer
) -> None:
    """SESSION_PRESETS_PAYMENTS_HEADERS gives no warning before 'payments' is registered, then applies."""
    monkeypatch.setenv("SESSION_PRESETS_PAYMENTS_HEADERS", '{"X-Team": "payments"}')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_session().get(http_server.url("/first"))
        register_preset("payments")
        get_session("payments").get(http_server.url("/paid"))
    seen = {r.path: r.headers.get("X-Team") for r in http_server.requests}
    assert seen == {"/first": None, "/paid": "payments"}


def test_typo_of_a_preset_variable_warns_once_suggesting_that_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    """A near miss of a known preset's variable warns once, and never suggests the every-preset variable."""
    monkeypatch.setenv("SESSION_PRESETS_PAYMNETS_HEADERS", '{"X-Team": "payments"}')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_preset("default")  # 'payments' is not registered yet: it may be a preset to come
    with pytest.warns(UnknownVariableWarning) as record:
        register_preset("payments")
        get_preset("payments")
    assert len(record) == 1
    message = str(record[0].message)
    assert message.endswith("did you mean SESSION_PRESETS_PAYMENTS_HEADERS?")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_preset("payments")


@pytest.mark.parametrize(
    ("variable", "hint"),
    [
        ("SESSION_PRESETS_PAYMENTS_HEADRS", "did you mean SESSION_PRESETS_PAYMENTS_HEADERS?"),
        ("SESSION_PRESETS_DEFALT_READ_TIMEOUT", "did you mean SESSION_PRESETS_DEFAULT_READ_TIMEOUT?"),
        ("SESSION_PRESETS_DEFAULT_READ_TIMOUT", "did you mean SESSION_PRESETS_DEFAULT_READ_TIMEOUT?"),
        ("SESSION_PRESETS_STRICT_REUS", "did you mean SESSION_PRESETS_STRICT_REUSE?"),
    ],
)
def test_true_typo_suggests_a_variable_of_the_same_scope(
    monkeypatch: pytest.MonkeyPatch, variable: str, hint: str
) -> None:
    """A typo in a field or in a known preset's name warns at once, suggesting a variable of the same scope."""
    register_preset("payments")
    monkeypatch.setenv(variable, "1")
    with pytest.warns(UnknownVariableWarning) as record:
        get_preset("default")
    assert [str(w.message) for w in record] == [f"{variable} matches no preset and field and is ignored; {hint}"]


def test_field_typo_before_its_preset_is_registered_never_suggests_the_global_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SESSION_PRESETS_PAYMENTS_HEADRS can never be valid: it warns, but not towards SESSION_PRESETS_HEADERS."""
    monkeypatch.setenv("SESSION_PRESETS_PAYMENTS_HEADRS", "{}")
    with pytest.warns(UnknownVariableWarning) as record:
        get_preset("default")
    assert [str(w.message) for w in record] == [
        "SESSION_PRESETS_PAYMENTS_HEADRS matches no preset and field and is ignored"
    ]


@pytest.mark.parametrize("build", ["get_session", "default_session", "get_preset", "register_preset"])
def test_unknown_variable_warning_points_at_the_callers_line(monkeypatch: pytest.MonkeyPatch, build: str) -> None:
    """UnknownVariableWarning is attributed to the user's line, whatever the path into the library."""
    monkeypatch.setenv("SESSION_PRESETS_READ_TIMOUT", "5")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        if build == "get_session":
            get_session()
        elif build == "default_session":
            default_session().close()
        elif build == "get_preset":
            get_preset("default")
        else:
            register_preset("later")
    assert [w.category for w in record] == [UnknownVariableWarning]
    assert record[0].filename == __file__


def test_session_warnings_point_at_the_callers_line() -> None:
    """InsecureSessionWarning and SessionReuseWarning are attributed to the user's line, not the library's."""
    from session_presets import InsecureSessionWarning, SessionReuseWarning

    register_preset("insecure", verify=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        default_session(verify=False).close()
        get_session("insecure")
        for _ in range(33):
            default_session().close()
    assert [w.category for w in record] == [InsecureSessionWarning, InsecureSessionWarning, SessionReuseWarning]
    assert {w.filename for w in record} == {__file__}
