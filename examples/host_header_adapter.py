"""Keep the preset when you need a custom adapter: the toolbelt host-header case.

requests-toolbelt's ``HostHeaderSSLAdapter`` connects to an address but checks
the TLS certificate against the ``Host`` header (a load balancer's IP with the
service's name). Mounted on a PresetSession as it is, it replaces the preset's
adapter: its timeouts still come from the session, but retries, total_timeout,
the shared TLS context and the stats are gone, and ``mount()`` says so with a
ForeignAdapterWarning.

The way to keep the preset is a PresetAdapter subclass. This one adds the
``Host`` name as ``server_hostname`` to the connection pool settings, the
requests hook for per-request pool settings, so SNI and the hostname check use
it. The shared SSLContext is left untouched (toolbelt's route, urllib3's
``assert_hostname``, would switch its ``check_hostname`` off).

Run it with no arguments (it needs trustme, from the ``test`` extra). It starts
a loopback HTTPS server whose certificate names only ``api.example.test``.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path
from typing import Any

import requests
import trustme
from _loopback import LoopbackHandler, LoopbackServer
from requests.models import PreparedRequest

from session_presets import PresetAdapter, default_session

SERVICE_NAME = "api.example.test"


class HostHeaderPresetAdapter(PresetAdapter):
    """A PresetAdapter that verifies TLS against the request's Host header, like HostHeaderSSLAdapter."""

    def build_connection_pool_key_attributes(
        self, request: PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        host = request.headers.get("Host")
        if host and host_params.get("scheme") == "https":
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            # Part of the pool key: each name gets pools of its own.
            pool_kwargs = {**pool_kwargs, "server_hostname": name}
        return host_params, pool_kwargs


class Hello(LoopbackHandler):
    """Answers with the Host header it received."""

    def respond(self) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, f"hello from {self.headers.get('Host')}".encode()


def main() -> int:
    """Show that the plain preset adapter refuses the IP, and the subclass verifies the Host name."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(SERVICE_NAME).configure_cert(server_context)
    with tempfile.TemporaryDirectory() as scratch, LoopbackServer(Hello, context=server_context) as server:
        bundle = Path(scratch) / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        url = server.url("/").replace("http://", "https://")
        headers = {"Host": SERVICE_NAME}

        with default_session(ca_bundle=str(bundle)) as session:
            try:
                session.get(url, headers=headers)
            except requests.exceptions.SSLError:
                print(f"preset adapter alone: the certificate is for {SERVICE_NAME}, not 127.0.0.1: refused")
            else:  # pragma: no cover - would mean the hostname was not checked
                raise AssertionError("the hostname check did not run")

            adapter = HostHeaderPresetAdapter(session.config)
            session.mount("https://", adapter)  # a PresetAdapter: no ForeignAdapterWarning
            for _ in range(2):
                reply = session.get(url, headers=headers)
                reply.raise_for_status()
            print(f"HostHeaderPresetAdapter: verified {SERVICE_NAME} at 127.0.0.1: {reply.text!r}")
            print(f"the preset still applies: read_timeout {adapter.preset.read_timeout:g}s, "
                  f"total_timeout {adapter.preset.total_timeout:g}s, "
                  f"{adapter.counters.connections_opened} connection for 2 calls")
            assert adapter.counters.connections_opened == 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
