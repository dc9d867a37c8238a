"""Proxy passwords holding '#', '/', '?', '@' or spaces, or scheme-less, never show in errors (issue 22 §2)."""

from __future__ import annotations

import traceback

import pytest
import requests

from session_presets import ConfigError, PresetConfig, default_session, get_preset, register_preset
from session_presets._redact import mask_text, mask_url, redact_text, safe_url, userinfo_secrets, without_userinfo
from session_presets.testing import MockServer

#: Pieces of each password: none of them may show anywhere.
PIECES = ("Zq9xK", "Wv7tR")
PASSWORDS = {
    "hash": f"{PIECES[0]}#{PIECES[1]}",
    "slash": f"{PIECES[0]}/{PIECES[1]}",
    "question": f"{PIECES[0]}?{PIECES[1]}",
    "space": f"{PIECES[0]} {PIECES[1]}",
    "at": f"{PIECES[0]}@{PIECES[1]}",
    "all": f"{PIECES[0]}#/?@ {PIECES[1]}",
}


def _everything(exc: BaseException) -> str:
    """Every text the exception and its chain can show."""
    parts = ["".join(traceback.format_exception(exc))]
    current: BaseException | None = exc
    while current is not None:
        parts += [str(current), repr(current), repr(current.args)]
        for attribute in ("value", "problems"):
            parts.append(repr(getattr(current, attribute, None)))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def _assert_hidden(text: str) -> None:
    for piece in PIECES:
        assert piece not in text, text


@pytest.mark.parametrize("password", PASSWORDS.values(), ids=PASSWORDS.keys())
@pytest.mark.parametrize(
    "template", ["http://user:{}@proxy.invalid:3128", "user:{}@proxy.invalid:3128"], ids=["scheme", "no-scheme"]
)
def test_config_error_for_a_proxy_never_shows_its_password(password: str, template: str) -> None:
    """ConfigError's text, value and problems mask the whole userinfo, whatever it holds."""
    url = template.format(password) + "\n"  # a newline makes every one of them invalid
    with pytest.raises(ConfigError) as info:
        PresetConfig(proxies={"http": url})
    assert "proxies['http']" in str(info.value)
    assert "***@proxy.invalid:3128" in str(info.value)
    _assert_hidden(_everything(info.value))


@pytest.mark.parametrize("password", ["Zq9xK#Wv7tR", "Zq9xK/Wv7tR", "Zq9xK?Wv7tR"], ids=["hash", "slash", "question"])
def test_a_proxy_password_that_breaks_the_url_is_refused_with_a_hint(password: str) -> None:
    """An unencoded '#', '/' or '?' is refused naming percent-encoding, the password masked."""
    with pytest.raises(ConfigError) as info:
        PresetConfig(proxies={"https": f"http://user:{password}@proxy.invalid:3128"})
    assert "percent-encoded" in str(info.value)
    _assert_hidden(_everything(info.value))


@pytest.mark.parametrize("password", PASSWORDS.values(), ids=PASSWORDS.keys())
def test_environment_proxies_error_never_shows_the_password(monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    """SESSION_PRESETS_PROXIES holding such a URL: the ConfigError and its problems mask it."""
    escaped = password.replace("\\", "\\\\")
    monkeypatch.setenv("SESSION_PRESETS_PROXIES", '{"http": "http://user:' + escaped + '@proxy.invalid:x"}')
    monkeypatch.setenv("SESSION_PRESETS_DEFAULT_PROXIES", "user:" + password + "@proxy.invalid:x")
    with pytest.raises(ConfigError) as info:
        get_preset("default")
    assert len(info.value.problems) == 2
    _assert_hidden(_everything(info.value))


def test_repr_of_a_preset_masks_a_password_with_a_space() -> None:
    """repr(get_preset(...)) and as_dict() mask a valid proxy URL whose password holds a space."""
    register_preset("spaced", proxies={"http": f"http://user:{PIECES[0]} {PIECES[1]}@proxy.invalid:3128"})
    config = get_preset("spaced")
    assert config.proxies["http"].endswith("@proxy.invalid:3128")
    for text in (repr(config), str(config), repr(config.as_dict())):
        assert "http://***@proxy.invalid:3128" in text
        _assert_hidden(text)


@pytest.mark.timeout(30)
def test_invalid_url_from_http_proxy_never_shows_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """A '#' in HTTP_PROXY's password: the InvalidURL of each request masks it, and nothing is sent."""
    with MockServer() as proxy, MockServer() as origin:
        monkeypatch.setenv("HTTP_PROXY", f"http://user:{PASSWORDS['hash']}@127.0.0.1:{proxy.port}")
        with default_session(retries=0) as session, pytest.raises(requests.exceptions.InvalidURL) as info:
            session.get(origin.url("/x"))
        assert proxy.request_count == 0
        assert origin.request_count == 0
    _assert_hidden(_everything(info.value))


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("http://u:p#w@h:1", "http://***@h:1"),
        ("http://u:p/w@h:1/x", "http://***@h:1/x"),
        ("http://u:p?w@h", "http://***@h"),
        ("http://u:p w@h", "http://***@h"),
        ("http://u:p@w@h", "http://***@h"),
        ("u:p#w@h:1", "***@h:1"),
        ("socks5h://u:p@[::1]:1080", "socks5h://***@[::1]:1080"),
        ("http://h:1", "http://h:1"),
        ("https://registry.example/@scope/pkg", "https://registry.example/@scope/pkg"),
    ],
)
def test_mask_url_parses_the_authority(url: str, masked: str) -> None:
    """mask_url splits at the last '@' that a host follows and masks the whole userinfo."""
    assert mask_url(url) == masked
    assert without_userinfo(url) == masked.replace("***@", "")


def test_mask_text_masks_json_and_broken_json() -> None:
    """Environment texts: a JSON object's URLs are masked, and so are URLs in broken JSON."""
    assert mask_text('{"http": "http://u:p#w@h:1"}') == '{"http": "http://***@h:1"}'
    assert mask_text('{"http": "http://u:p#w@h:1"') == '{"http": "http://h:1"'
    assert mask_text("u:p/w@h:1") == "***@h:1"


def test_redact_text_and_secrets() -> None:
    """Free text loses each URL's whole userinfo; known secrets are masked even outside URLs."""
    assert redact_text("bad 'http://u:p#w@h:1/x?y=1' here") == "bad 'http://h:1/x' here"
    assert redact_text("bad 'http://u:p/w@h:1/x'") == "bad 'http://h:1/x'"
    secrets = userinfo_secrets(["http://user:p#w@h:1", "http://h:2", None])
    assert secrets == ("user:p#w", "user:p")
    assert redact_text("Failed to parse: 'user:p' is not a valid host", secrets=secrets) == (
        "Failed to parse: '***' is not a valid host"
    )
    assert safe_url("http://u:p#w@h:1/x?y") == "http://h:1/x"


@pytest.mark.parametrize("password", PASSWORDS.values(), ids=PASSWORDS.keys())
def test_an_origin_never_holds_the_userinfo(password: str) -> None:
    """origin_of (the key of limits, breakers and Redis) drops the whole userinfo, whatever it holds."""
    from session_presets import _resilience

    _resilience._origins.clear()
    assert _resilience.origin_of(f"http://user:{password}@Host.invalid:81/x?y=1") == "http://host.invalid:81"
    assert _resilience.origin_of(f"https://user:{password}@host.invalid/x") == "https://host.invalid:443"
    _assert_hidden(repr(_resilience._origins))
    assert _resilience.origin_of("http://host.invalid/p?mail=a@b.invalid") == "http://host.invalid:80"
