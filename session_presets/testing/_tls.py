"""MockServer's HTTPS: a certificate for loopback from a trustme CA, and the CA bundle a client trusts."""

from __future__ import annotations

import os
import ssl
import tempfile
from typing import Any, Final

#: Hosts the TLS certificate is issued for.
_TLS_IDENTITIES: Final = ("127.0.0.1", "localhost", "::1")


def trustme_context(ca: Any) -> tuple[ssl.SSLContext, str, str]:
    """Build a server-side SSLContext with a certificate for loopback from ``ca`` (a new trustme CA when None).

    Returns:
        The context, a new temporary directory, and the path of the CA's PEM file in it
        (the caller removes the directory).

    Raises:
        ImportError: trustme is missing (install ``session-presets[testing]``).
    """
    try:
        import trustme
    except ImportError as exc:  # pragma: no cover - trustme is in the test extra
        raise ImportError("MockServer(tls=True) needs trustme: pip install 'session-presets[testing]'") from exc
    if ca is None:
        ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*_TLS_IDENTITIES).configure_cert(context)
    tmpdir = tempfile.mkdtemp(prefix="session-presets-mock-")
    ca_bundle = os.path.join(tmpdir, "ca.pem")
    ca.cert_pem.write_to_path(ca_bundle)
    return context, tmpdir, ca_bundle
