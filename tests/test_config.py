"""PresetConfig: validation when built, replace(), origins, masked repr, built-in presets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from session_presets import ConfigError, PresetConfig, get_preset, preset_names
from session_presets._config import DEFAULT_USER_AGENT, FIELD_FORMS
from tests.servers import LoopbackServer


def test_builtin_presets_match_the_design_table() -> None:
    """The default, ephemeral and background presets carry the values of docs/presets.md's table."""
    default, ephemeral, background = (get_preset(n) for n in ("default", "ephemeral", "background"))
    assert (default.connect_timeout, default.read_timeout, default.total_timeout) == (10, 20, 60)
    assert (default.retries, default.backoff_factor, default.backoff_max) == (2, 0.5, 30)
    assert default.retry_statuses == frozenset({429, 502, 503, 504})
    assert (default.pool_connections, default.pool_maxsize, default.max_connection_age) == (10, 10, 300)
    assert (default.cache_policy, default.cookies, default.store_credentials) == ("reload", "memory", False)
    assert (default.verify, default.ca_bundle, default.trust_store, default.tls_min_version) == (
        True, None, "certifi", "TLSv1.2")
    assert (default.proxies, default.max_redirects, default.allow_insecure_redirects) == ("env", 10, False)
    assert default.user_agent == DEFAULT_USER_AGENT
    assert (ephemeral.pool_connections, ephemeral.pool_maxsize) == (4, 4)
    assert (background.connect_timeout, background.read_timeout, background.total_timeout) == (30, 60, 7 * 86400)
    assert (background.retries, background.backoff_factor, background.backoff_max) == (None, 1, 300)
    assert background.max_concurrent_transfers == 4
    assert preset_names()[:3] == ["background", "default", "ephemeral"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connect_timeout", 0), ("connect_timeout", -1), ("connect_timeout", True), ("connect_timeout", None),
        ("read_timeout", float("nan")), ("read_timeout", "20 parsecs"), ("read_timeout", "off"),
        ("total_timeout", float("inf")),
        ("retries", -1), ("retries", 1.5), ("backoff_factor", -0.1), ("backoff_max", 0),
        ("retry_statuses", [99]), ("retry_statuses", "503"), ("retry_statuses", [True]),
        ("pool_connections", 0), ("pool_maxsize", "4"), ("max_connection_age", 0),
        ("cache_policy", "never"), ("cookies", "disk"), ("store_credentials", 1),
        ("headers", ["x"]), ("user_agent", ""), ("verify", "yes"), ("ca_bundle", 3), ("client_cert", ("a",)),
        ("trust_store", "os"), ("tls_min_version", "TLSv1.0"), ("proxies", "auto"), ("proxies", 5),
        ("max_redirects", -1), ("allow_insecure_redirects", None), ("max_concurrent_transfers", 0),
        ("state_dir", ""),
    ],
)
def test_invalid_field_names_field_value_and_form(field: str, value: object) -> None:
    """An invalid value raises ConfigError naming the field, the value and the accepted form."""
    with pytest.raises(ConfigError) as info:
        PresetConfig(**{field: value})
    message = str(info.value)
    assert field in message
    assert "expected" in message or "invalid" in message


def test_replace_returns_validated_copy_marked_override() -> None:
    """replace() returns a new validated object; the original is unchanged and frozen."""
    base = get_preset("default")
    changed = base.replace(read_timeout=5)
    assert changed.read_timeout == 5 and base.read_timeout == 20
    assert changed.origin("read_timeout") == "override"
    assert base.origin("read_timeout") == "built-in"
    with pytest.raises(ConfigError, match="read_timeout"):
        base.replace(read_timeout=0)
    with pytest.raises(ConfigError, match="did you mean 'read_timeout'"):
        base.replace(read_timout=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.read_timeout = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="unknown preset field"):
        base.origin("nope")


@pytest.mark.parametrize("name", ["Authorization", "proxy-authorization"])
def test_authorization_header_is_refused(name: str) -> None:
    """Credentials never live in a preset: Authorization in headers is a ConfigError."""
    with pytest.raises(ConfigError, match="refused"):
        PresetConfig(headers={name: "Bearer x"})


@pytest.mark.parametrize(("name", "value"), [("X-A", "a\r\nX-Evil: 1"), ("X-A\n", "a"), ("X A", "a"), ("X-A", 3)])
def test_header_injection_is_refused(name: str, value: object) -> None:
    """CR/LF or invalid characters in header names or values raise ConfigError."""
    with pytest.raises(ConfigError, match="headers"):
        PresetConfig(headers={name: value})


def test_repr_masks_proxy_password() -> None:
    """The repr of a config never shows a proxy password."""
    config = PresetConfig(proxies={"https": "http://user:s3cret@proxy.example:3128"})
    assert "s3cret" not in repr(config)
    assert "***@proxy.example" in repr(config)
    with pytest.raises(ConfigError) as info:
        PresetConfig(proxies={"https": "http://user:s3cret@proxy\r\n"})
    assert "s3cret" not in str(info.value)


def test_combinations_are_checked() -> None:
    """cookies='file' needs cookie_file, and unlimited retries need a total_timeout."""
    with pytest.raises(ConfigError, match="cookie_file"):
        PresetConfig(cookies="file")
    with pytest.raises(ConfigError, match="cookies='file'"):
        PresetConfig(cookie_file="/tmp/x")
    with pytest.raises(ConfigError, match="total_timeout"):
        PresetConfig(retries=None, total_timeout=None)
    assert PresetConfig(cookies="file", cookie_file="/tmp/c.txt").cookie_file == "/tmp/c.txt"


def test_values_are_normalised() -> None:
    """Numbers become floats, collections frozen, client_cert lists become tuples."""
    config = PresetConfig(connect_timeout=3, retry_statuses=[503, 503], client_cert=["c.pem", "k.pem"],
                          headers={"X-Trace": "1"})
    assert isinstance(config.connect_timeout, float)
    assert config.retry_statuses == frozenset({503})
    assert config.client_cert == ("c.pem", "k.pem")
    with pytest.raises(TypeError):
        config.headers["X-Other"] = "2"  # type: ignore[index]
    assert config.as_dict()["retry_statuses"] == [503]
    assert config == PresetConfig(connect_timeout=3.0, retry_statuses={503}, client_cert=("c.pem", "k.pem"),
                                  headers={"X-Trace": "1"})


@pytest.mark.parametrize("field", ["pool_maxsize", "pool_connections"])
def test_pool_sizes_are_bounded(field: str) -> None:
    """A pool size urllib3 would allocate up front (10**9 slots) is refused when the preset is built."""
    assert getattr(PresetConfig(**{field: 1024}), field) == 1024
    with pytest.raises(ConfigError, match=f"{field}=1000000000 is invalid: expected a whole number from 1 to 1024"):
        PresetConfig(**{field: 10**9})


def test_pickle_and_deepcopy_keep_values_and_origins() -> None:
    """A config survives pickle (multiprocessing) and deepcopy, with its origins."""
    import copy
    import pickle

    from session_presets import register_preset

    config = register_preset("pickled", headers={"X-A": "1"}, proxies={"https": "http://u:p@proxy:1"})
    for clone in (pickle.loads(pickle.dumps(config)), copy.deepcopy(config)):
        assert clone == config
        assert clone.origin("headers") == "code"
        assert clone.origin("read_timeout") == "built-in"  # default never set it
        assert dict(clone.headers) == {"X-A": "1"}


@pytest.mark.parametrize(
    "url",
    ["not a url", "ftp://proxy.example:21", "http://", "http://proxy.example:99999", "gopher://proxy:70", "0@",
     "http://a b:3128", "http://proxy\texample:3128", "http://pro<xy>:3128"],
)
def test_proxy_that_is_not_a_usable_url_is_refused_at_build(url: str) -> None:
    """A proxy that is not a URL, or has a scheme urllib3 cannot use, is a ConfigError when built."""
    from session_presets import default_session

    with pytest.raises(ConfigError) as info:
        default_session(proxies={"http": url, "https": "http://127.0.0.1:3128"})
    message = str(info.value)
    shown = "***@" if url == "0@" else url  # "0" is a userinfo: masked like any other
    assert f"proxies['http']={shown!r} is invalid" in message
    assert "socks5h" in message


@pytest.mark.parametrize(
    "url",
    ["http://proxy:3128", "https://proxy:3128", "socks4://proxy:1080", "socks4a://proxy:1080",
     "socks5://u:p@proxy:1080", "socks5h://proxy:1080", "proxy.example:3128", "http://[::1]:3128",
     "http://my_proxy.example:3128", "http://xn--bcher-kva.example:3128"],
)
def test_proxy_schemes_requests_can_use_are_accepted(url: str) -> None:
    """http, https and the four socks schemes are accepted; a bare host:port means http, as in requests."""
    assert PresetConfig(proxies={"all": url}).proxies == {"all": url}


def test_proxy_password_is_masked_in_the_refusal() -> None:
    """A refused proxy URL is shown without its password."""
    with pytest.raises(ConfigError) as info:
        PresetConfig(proxies={"https": "ftp://user:s3cret@proxy.example:21"})
    assert "s3cret" not in str(info.value)
    assert "***@proxy.example" in str(info.value)


def test_duration_strings_are_accepted_in_code() -> None:
    """Code accepts the duration forms the environment accepts, none/off where a limit can be lifted."""
    from session_presets import register_preset

    config = register_preset(
        "textual", read_timeout="5s", connect_timeout="500ms", total_timeout="off", backoff_max="2m",
        backoff_factor="0", max_connection_age="none",
    )
    assert (config.read_timeout, config.connect_timeout, config.total_timeout) == (5.0, 0.5, None)
    assert (config.backoff_max, config.backoff_factor, config.max_connection_age) == (120.0, 0.0, None)
    assert config.origin("read_timeout") == "code"
    assert PresetConfig(read_timeout="20").read_timeout == 20.0
    assert get_preset("default").replace(total_timeout="7d").total_timeout == 7 * 86400
    with pytest.raises(ConfigError, match=r"read_timeout='none' is invalid: expected a duration > 0"):
        register_preset("textual2", read_timeout="none")


@pytest.mark.parametrize(("name", "value"), [("X A", "1"), ("X-A", "a\r\nX-Evil: 1"), ("X-A", "caf\u20ac")])
def test_one_header_check_for_presets_background_and_cli(
    name: str, value: str, http_server: LoopbackServer, tmp_path: Path
) -> None:
    """Presets, background downloads and the CLI's -H refuse the same headers, before anything is sent."""
    from session_presets import background_session
    from session_presets.cli import main

    with pytest.raises(ConfigError, match="headers"):
        PresetConfig(headers={name: value})
    bg = background_session("header-check")
    with pytest.raises(ConfigError, match="headers"):
        bg.download(http_server.url("/ok"), tmp_path / "out", headers={name: value})
    bg.invalidate_and_cancel()
    assert main(["get", "-H", f"{name}: {value}", http_server.url("/ok")]) == 2
    assert http_server.requests == []


def test_config_error_carries_field_value_and_expected_form() -> None:
    """A refused value gives a ConfigError with structured field, value and expected (password masked)."""
    with pytest.raises(ConfigError) as info:
        PresetConfig(read_timeout="soon")
    error = info.value
    assert (error.field, error.value, error.expected) == ("read_timeout", "soon", FIELD_FORMS["read_timeout"])
    assert error.reason == f"expected {FIELD_FORMS['read_timeout']}"
    with pytest.raises(ConfigError) as info:
        PresetConfig(proxies={"https": "ftp://user:s3cret@proxy:21"})
    error = info.value
    assert (error.field, error.value) == ("proxies['https']", "ftp://***@proxy:21")
    with pytest.raises(ConfigError) as info:
        PresetConfig(headers={"X-A": "a\nb"})
    assert (info.value.field, info.value.value) == ("headers['X-A']", "a\nb")
    assert info.value.reason == f"CR, LF and NUL are not allowed ({FIELD_FORMS['headers']})"


def test_every_field_has_one_spec_and_the_tables_follow_it() -> None:
    """Each PresetConfig field carries its spec; forms, parsers and validators are derived from it."""
    from session_presets._config import FIELD_PARSERS, FIELD_SPECS, validate_field

    assert tuple(FIELD_SPECS) == PresetConfig.field_names()
    assert {f.name for f in dataclasses.fields(PresetConfig)} == {*FIELD_SPECS, "name", "_origins"}
    for name, spec in FIELD_SPECS.items():
        assert FIELD_FORMS[name] == spec.form and FIELD_PARSERS[name] is spec.parse
        default = getattr(PresetConfig(), name)
        assert validate_field(name, default) == default
        assert spec.doc and spec.form
