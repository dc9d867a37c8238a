"""Which TLS context a request of a preset uses: the preset's trust, a call's verify= and cert=, requests' TLS hook."""

from __future__ import annotations

import inspect
import os
import ssl
from typing import TYPE_CHECKING, Any, Final

import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest

from ._config import PresetConfig
from ._errors import ConfigError
from ._tls import TrustConfig, get_ssl_context

__all__ = ["TLS_HOOK", "TrustMixin", "refuse_dropped_trust", "tls_hook_problem", "trust_config"]

if TYPE_CHECKING:
    # What TrustMixin is mixed into: its super() calls are checked against requests' adapter.
    _Adapter = HTTPAdapter
else:
    _Adapter = object

#: The variables through which requests' merge_environment_settings hands a CA bundle to the adapter.
_ENV_CA_BUNDLE_VARIABLES: Final = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")

#: The requests hook through which a preset's TLS settings reach urllib3's pool (public since requests 2.32.3).
TLS_HOOK: Final = "build_connection_pool_key_attributes"


def tls_hook_problem(adapter_class: type[HTTPAdapter]) -> str | None:
    """Say why ``adapter_class`` would not pass a preset's TLS settings to its pools, or None when it would.

    requests 2.32.0 to 2.32.2 look pools up without calling the hook, so an
    override of it is never called: the preset's CA bundle, client certificate
    and minimum TLS version would be dropped without a sign.

    Args:
        adapter_class: requests' ``HTTPAdapter`` (a parameter so that tests can
            hand it a class shaped like an older release).

    Returns:
        What is missing, naming the installed requests version; None when the hook is there and used.
    """
    lookup = getattr(adapter_class, "get_connection_with_tls_context", None)
    version = getattr(requests, "__version__", "?")
    if getattr(adapter_class, TLS_HOOK, None) is None or lookup is None:
        return f"requests {version} has no HTTPAdapter.{TLS_HOOK} (requests 2.32.3 added it)"
    code = getattr(inspect.unwrap(lookup), "__code__", None)
    if code is not None and TLS_HOOK not in code.co_names:
        return f"requests {version}'s HTTPAdapter.get_connection_with_tls_context does not call {TLS_HOOK}"
    return None


#: Checked once, at import: why this requests would drop a preset's TLS settings, or None.
_TLS_HOOK_PROBLEM: str | None = tls_hook_problem(HTTPAdapter)


def refuse_dropped_trust(trust: TrustConfig) -> None:
    """Raise ConfigError when ``trust`` sets anything that requests without the TLS hook would drop."""
    if _TLS_HOOK_PROBLEM is None:
        return
    default = TrustConfig()
    changed = [name for name in TrustConfig.__slots__ if getattr(trust, name) != getattr(default, name)]
    if changed:
        settings = ", ".join(f"{name}={getattr(trust, name)!r}" for name in changed)
        raise ConfigError(
            f"{settings} cannot be applied: {_TLS_HOOK_PROBLEM}, so the TLS settings would be silently "
            "dropped; install requests>=2.32.3",
            field=changed[0],
            value=getattr(trust, changed[0]),
            expected="requests>=2.32.3",
            reason=_TLS_HOOK_PROBLEM,
        )

#: What a missing per-call verify=/cert= path error adds after requests' own text.
_PATH_ADVICE: Final = (
    "session_presets: verify= takes a PEM CA bundle file or directory (or a bool), cert= a PEM file or a "
    "(cert, key) pair; a CA bundle for every call belongs in the preset's ca_bundle"
)


def _path_error(text: str) -> OSError:
    # str() stays requests' exact text, which callers compare; the advice follows
    # it as a note (Python 3.11+), printed after it in a traceback.
    error = OSError(text)
    if hasattr(error, "add_note"):
        error.add_note(_PATH_ADVICE)
    return error


def check_paths(verify: Any, cert: Any) -> None:
    """Raise requests' OSError for a per-call CA bundle or client certificate path that does not exist."""
    if isinstance(verify, str) and not os.path.exists(verify):
        raise _path_error(f"Could not find a suitable TLS CA certificate bundle, invalid path: {verify}")
    if cert is None:
        return
    cert_file, key_file = (cert[0], cert[1]) if isinstance(cert, (list, tuple)) else (cert, None)
    if not os.path.exists(cert_file):
        raise _path_error(f"Could not find the TLS certificate file, invalid path: {cert_file}")
    if key_file and not os.path.exists(key_file):
        raise _path_error(f"Could not find the TLS key file, invalid path: {key_file}")


def trust_config(
    *,
    verify: bool,
    trust_store: str,
    ca_bundle: str | None,
    client_cert: str | tuple[str, str] | None,
    tls_min_version: str,
) -> TrustConfig:
    if not verify:
        # Trust anchors mean nothing without verification: one insecure context each.
        return TrustConfig(verify=False, client_cert=client_cert, tls_min_version=tls_min_version)
    return TrustConfig(
        verify=True,
        trust_store=trust_store,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        tls_min_version=tls_min_version,
    )


def _cert_reqs(context: ssl.SSLContext) -> str:
    return "CERT_NONE" if context.verify_mode == ssl.CERT_NONE else "CERT_REQUIRED"


class TrustMixin(_Adapter):
    """Picks each request's shared SSLContext: the preset's own, or one for the call's ``verify=`` and ``cert=``.

    Every HTTPS pool gets its context through requests' TLS hook
    (``build_connection_pool_key_attributes``), so no new connection reloads a
    CA bundle; ``cert_verify``, where requests would hand urllib3 the bundle
    path, does nothing.
    """

    preset: PresetConfig
    #: The trust configuration of the preset itself.
    _trust: TrustConfig

    @property
    def _context(self) -> ssl.SSLContext:
        """The shared context of the preset's own trust configuration, built on first use.

        Raises:
            OSError: OpenSSL refused what the build-time check let through (a key
                that does not match its certificate); the call fails as requests
                fails one for a bad certificate, with the ConfigError chained.
        """
        try:
            return get_ssl_context(self._trust)
        except ConfigError as exc:
            raise OSError(f"cannot use the TLS configuration of preset {self.preset.name!r}: {exc}") from exc

    def context_for(self, verify: Any, cert: Any) -> ssl.SSLContext:
        """Return the shared SSLContext for a call's merged ``verify`` and ``cert``.

        Raises:
            OSError: ``verify`` or ``cert`` names a file that does not exist
                (requests' own message, then ours) or cannot be loaded.
        """
        if cert is None and verify is self.preset.verify:
            return self._context
        check_paths(verify, cert)
        client = self._trust.client_cert
        if cert is not None:
            client = (str(cert[0]), str(cert[1])) if isinstance(cert, (list, tuple)) else str(cert)
        trust = trust_config(
            verify=verify is not False,
            trust_store=self._trust.trust_store,
            ca_bundle=verify if isinstance(verify, str) else self._trust.ca_bundle,
            client_cert=client,
            tls_min_version=self._trust.tls_min_version,
        )
        if trust == self._trust:
            return self._context
        try:
            return get_ssl_context(trust)
        except ConfigError as exc:
            # A per-call verify= or cert= is not configuration: fail the call the
            # way requests does for a bad path, with an OSError naming it.
            raise OSError(f"cannot use verify={verify!r} / cert={cert!r} for this call: {exc}") from exc

    def _is_environment_bundle(self, verify: str) -> bool:
        """True when ``verify`` is the environment's CA bundle handed over by requests; ca_bundle beats it."""
        if self._trust.ca_bundle is None:
            return False
        return any(verify == os.environ.get(name) for name in _ENV_CA_BUNDLE_VARIABLES)

    def build_connection_pool_key_attributes(
        self, request: PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") == "https":
            if (
                isinstance(verify, str)
                # A PresetSession never reads the environment per call: its verify= is the caller's.
                and not getattr(request, "preset_session_prepared", False)
                and self._is_environment_bundle(verify)
            ):
                verify = self.preset.verify
            context = self.context_for(verify, cert)
            pool_kwargs = {"ssl_context": context, "cert_reqs": _cert_reqs(context)}
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # Deliberately empty: requests would set ca_certs on the pool here, and
        # urllib3 would then load that bundle on every new connection. The shared
        # context already holds the trust anchors and the client certificate.
        return None

