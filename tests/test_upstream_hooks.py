"""A TLS setting that requests cannot pass on is refused when the session is built, never dropped."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import trustme
from requests.adapters import HTTPAdapter

from session_presets import ConfigError, PresetAdapter, PresetConfig
from session_presets import _trust as trust

from .servers import LoopbackServer


class _Requests2322Adapter:
    """Shaped like requests 2.32.2's HTTPAdapter: pools looked up without the public hook."""

    def get_connection_with_tls_context(self, request: Any, verify: Any, proxies: Any = None, cert: Any = None) -> Any:
        """Look the pool up as 2.32.2 did, through a private module function."""
        return _urllib3_request_context(request, verify, cert)


def _urllib3_request_context(request: Any, verify: Any, cert: Any) -> Any:
    """Stand-in for requests 2.32.2's private helper."""
    return (request, verify, cert)


class _UnusedHookAdapter(_Requests2322Adapter):
    """A hook that exists but that the pool lookup never calls."""

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
        """Never called by the lookup above."""
        return ({}, {})


def test_installed_requests_has_and_calls_the_tls_hook() -> None:
    """The installed requests calls the hook at import (the declared minimum, 2.32.3, is the first that does)."""
    assert trust.tls_hook_problem(HTTPAdapter) is None
    assert trust._TLS_HOOK_PROBLEM is None


def test_requests_without_the_hook_is_detected() -> None:
    """A requests shaped like 2.32.2 (no hook) and one whose lookup skips the hook are both named."""
    missing = trust.tls_hook_problem(_Requests2322Adapter)  # type: ignore[arg-type]
    assert missing is not None
    assert "no HTTPAdapter.build_connection_pool_key_attributes" in missing
    assert requests.__version__ in missing
    unused = trust.tls_hook_problem(_UnusedHookAdapter)  # type: ignore[arg-type]
    assert unused is not None
    assert "does not call build_connection_pool_key_attributes" in unused


@pytest.fixture
def hook_missing(monkeypatch: pytest.MonkeyPatch) -> str:
    """The import-time finding of a requests that lacks the hook."""
    problem = trust.tls_hook_problem(_Requests2322Adapter)  # type: ignore[arg-type]
    assert problem is not None
    monkeypatch.setattr(trust, "_TLS_HOOK_PROBLEM", problem)
    return problem


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ca_bundle", "CA"),
        ("client_cert", "CERT"),
        ("tls_min_version", "TLSv1.3"),
        ("verify", False),
        ("trust_store", "system"),
    ],
)
def test_tls_setting_is_refused_without_the_hook(
    hook_missing: str, field: str, value: object, ca_bundle: str, ca: trustme.CA, tmp_path: Any
) -> None:
    """Each TLS field is refused at construction, naming the field, the missing hook and the fix."""
    if value == "CA":
        value = ca_bundle
    elif value == "CERT":
        path = tmp_path / "client.pem"
        ca.issue_cert("client.example").private_key_and_cert_chain_pem.write_to_path(str(path))
        value = str(path)
    config = PresetConfig(name="hookless").replace(**{field: value})
    with pytest.raises(ConfigError) as caught:
        PresetAdapter(config)
    message = str(caught.value)
    assert message.startswith(f"{field}=")
    assert "build_connection_pool_key_attributes" in message
    assert "silently dropped" in message
    assert "requests>=2.32.3" in message
    assert caught.value.field == field


def test_default_trust_still_works_without_the_hook(hook_missing: str, http_server: LoopbackServer) -> None:
    """Default trust is requests' own (certifi, TLS 1.2), so it is not refused: the server sees the request."""
    with requests.Session() as session:
        session.mount("http://", PresetAdapter(PresetConfig(name="hookless")))
        assert session.get(http_server.url("/ok")).status_code == 200
    assert [seen.path for seen in http_server.requests] == ["/ok"]


def test_preset_ca_bundle_reaches_the_pool_through_the_hook(https_server: LoopbackServer, ca_bundle: str) -> None:
    """With the hook, a plain Session trusts the server only through the preset's ca_bundle: the server is served."""
    with requests.Session() as session:
        with pytest.raises(requests.exceptions.SSLError):
            session.get(https_server.url("/ok"))
        session.mount("https://", PresetAdapter(PresetConfig(name="bundle", ca_bundle=ca_bundle)))
        assert session.get(https_server.url("/ok")).content == b"ok"
    assert [seen.path for seen in https_server.requests] == ["/ok"]
