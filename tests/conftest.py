"""Shared fixtures: a clean environment, reset process state, loopback MockServers with trustme TLS."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import trustme

from session_presets import _upstream, testing

from .servers import LoopbackServer

#: ``session`` and ``owned_session``: each compatibility row runs with every kind of session.
pytest_plugins = ["tests.session_kinds"]

_CLEANED = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "NETRC",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Remove proxy, CA-bundle, netrc and SESSION_PRESETS_* variables (but the fast-path switch); reset global state."""
    for name in list(os.environ):
        if name in _CLEANED or (name.startswith("SESSION_PRESETS_") and name != _upstream.FAST_PATH_VARIABLE):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SESSION_PRESETS_STATE_DIR", str(home / "state"))
    testing.reset()
    yield
    # Cancels transfers a test left running, closes shared sessions (5 s grace), then the reset hooks.
    testing.reset(timeout=5)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path to a PEM file holding the throwaway CA."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def server_context(ca: trustme.CA):  # type: ignore[no-untyped-def]
    """A server-side SSLContext for 127.0.0.1 and localhost signed by the CA."""
    import ssl

    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    """A plain HTTP loopback server."""
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def https_server(server_context) -> Iterator[LoopbackServer]:  # type: ignore[no-untyped-def]
    """An HTTPS loopback server whose certificate the ``ca_bundle`` fixture trusts."""
    with LoopbackServer(server_context) as server:
        yield server
