"""Lazy TLS: no SSLContext before the first https:// connection; trust files are checked when a session is built."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

import session_presets as sp
from session_presets import ConfigError
from session_presets import _tls as tls

from .servers import LoopbackServer


def test_http_only_builds_no_context(http_server: LoopbackServer, https_server: LoopbackServer, ca_bundle: str) -> None:
    """http:// calls from shared, owned and insecure sessions build no SSLContext; the first https:// builds one."""
    with pytest.warns(sp.InsecureSessionWarning):
        insecure = sp.ephemeral_session(verify=False)
    with sp.default_session(ca_bundle=ca_bundle) as owned, insecure:
        for session in (sp.get_session(), owned, insecure):
            assert session.get(http_server.url("/ok")).text == "ok"
        assert len(http_server.requests) == 3
        assert (tls.contexts_built(), tls.ca_loads()) == (0, 0)
        assert owned.get(https_server.url("/ok")).text == "ok"
        assert (tls.contexts_built(), tls.ca_loads()) == (1, 1)
    assert len(https_server.requests) == 1


def test_context_is_built_once_for_many_connections(https_server: LoopbackServer, ca_bundle: str) -> None:
    """Five sessions sharing a trust configuration open five connections over one lazily built context."""
    for _ in range(5):
        with sp.default_session(ca_bundle=ca_bundle) as session:
            assert session.get(https_server.url("/ok")).text == "ok"
    assert https_server.connections == 5
    assert (tls.contexts_built(), tls.ca_loads()) == (1, 1)


def _write(path: Path, *parts: bytes) -> str:
    path.write_bytes(b"".join(parts))
    return str(path)


def test_client_cert_without_a_key_is_refused_when_built(ca: trustme.CA, tmp_path: Path) -> None:
    """A client_cert file holding no private key, or a key path holding none, is a ConfigError at build time."""
    leaf = ca.issue_cert("client@example.org")
    cert_only = _write(tmp_path / "cert.pem", leaf.cert_chain_pems[0].bytes())
    with pytest.raises(ConfigError, match=r"client_cert=.*cert\.pem' holds no private key"):
        sp.default_session(client_cert=cert_only)
    with pytest.raises(ConfigError, match=r"holds no PEM PRIVATE KEY block"):
        sp.default_session(client_cert=(cert_only, cert_only))
    key = _write(tmp_path / "key.pem", leaf.private_key_pem.bytes())
    with pytest.raises(ConfigError, match=r"holds no PEM CERTIFICATE block"):
        sp.default_session(client_cert=key)
    assert tls.contexts_built() == 0


def test_malformed_pem_block_is_refused_when_built(tmp_path: Path) -> None:
    """A CA bundle whose CERTIFICATE block is not base64 DER is a ConfigError naming the field, without a context."""
    bad = _write(tmp_path / "bad.pem", b"-----BEGIN CERTIFICATE-----\nMIIB!!!!\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"ca_bundle=.*bad\.pem' holds a malformed CERTIFICATE block"):
        sp.default_session(ca_bundle=bad)
    assert tls.contexts_built() == 0


def test_mismatched_key_fails_on_the_first_https_call(
    ca: trustme.CA, https_server: LoopbackServer, ca_bundle: str, tmp_path: Path
) -> None:
    """A certificate with another certificate's key passes the build check, then fails before any request."""
    cert = ca.issue_cert("one@example.org").cert_chain_pems[0].bytes()
    other_key = ca.issue_cert("two@example.org").private_key_pem.bytes()
    mismatched = _write(tmp_path / "mismatched.pem", cert, other_key)
    expected = r"preset 'default': client_cert=.*mismatched\.pem' is invalid"
    with sp.default_session(ca_bundle=ca_bundle, client_cert=mismatched) as session, pytest.raises(
        OSError, match=expected
    ) as info:
        session.get(https_server.url("/ok"))
    assert isinstance(info.value.__cause__, ConfigError)
    assert https_server.requests == []


def test_per_call_verify_with_unreadable_bundle(https_server: LoopbackServer) -> None:
    """A per-call verify= path that cannot be loaded fails that call with an OSError naming it, lazily."""
    with sp.default_session() as session, pytest.raises(OSError, match="/nonexistent-ca.pem"):
        session.get(https_server.url("/ok"), verify="/nonexistent-ca.pem")
    assert https_server.requests == []
