"""One shared SSLContext per trust configuration, built once per process.

requests hands urllib3 a CA bundle path for every new HTTPS connection, and
urllib3 loads it into a fresh context each time. Here the bundle is loaded once,
into a context that every session and adapter with the same trust
configuration shares. A shared context is never mutated after it is built.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any

import certifi

from . import _process
from .config import TLS_VERSIONS
from .errors import ConfigError

__all__ = ["TrustConfig", "ca_loads", "get_ssl_context"]


@dataclass(frozen=True, slots=True)
class TrustConfig:
    """The key of a shared context: everything that changes how peers are trusted."""

    verify: bool = True
    trust_store: str = "certifi"
    ca_bundle: str | None = None
    client_cert: str | tuple[str, str] | None = None
    tls_min_version: str = "TLSv1.2"


class _CountingContext(ssl.SSLContext):
    """An SSLContext that counts CA loads, so tests can prove there is one per context."""

    ca_loads: int = 0

    def load_verify_locations(self, *args: Any, **kwargs: Any) -> None:
        self.ca_loads += 1
        super().load_verify_locations(*args, **kwargs)


_lock = _process.fork_safe_lock()
_contexts: dict[TrustConfig, ssl.SSLContext] = {}


def ca_loads() -> int:
    """Return how many CA bundles the shared contexts loaded in this process."""
    return sum(getattr(ctx, "ca_loads", 0) for ctx in list(_contexts.values()))


def get_ssl_context(trust: TrustConfig) -> ssl.SSLContext:
    """Return the process-wide context for ``trust``, building it on first use.

    Raises:
        ConfigError: the CA bundle or client certificate cannot be loaded, or
            ``trust_store='system'`` is asked for without truststore installed.
    """
    context = _contexts.get(trust)
    if context is not None:
        return context
    with _lock:
        context = _contexts.get(trust)
        if context is None:
            context = _build(trust)
            _contexts[trust] = context
        return context


def _build(trust: TrustConfig) -> ssl.SSLContext:
    context: ssl.SSLContext
    if not trust.verify:
        context = _CountingContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif trust.ca_bundle is None and trust.trust_store == "system":
        context = _system_context()
    else:
        context = _CountingContext(ssl.PROTOCOL_TLS_CLIENT)
        _load_ca(context, trust.ca_bundle or certifi.where(), trust)
    context.minimum_version = TLS_VERSIONS[trust.tls_min_version]
    if trust.client_cert is not None:
        cert, key = trust.client_cert if isinstance(trust.client_cert, tuple) else (trust.client_cert, None)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"client_cert={trust.client_cert!r} is invalid: cannot load it ({exc}); "
                "expected a PEM certificate, with its key in the same file or as the second path"
            ) from exc
    return context


def _system_context() -> ssl.SSLContext:
    try:
        import truststore
    except ImportError:
        raise ConfigError(
            "trust_store='system' needs the truststore package: "
            "pip install 'session-presets[truststore]', or use trust_store='certifi'"
        ) from None
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _load_ca(context: ssl.SSLContext, location: str, trust: TrustConfig) -> None:
    try:
        if os.path.isdir(location):
            context.load_verify_locations(capath=location)
        else:
            context.load_verify_locations(cafile=location)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"ca_bundle={location!r} is invalid: cannot load it ({exc}); "
            "expected a path to a PEM CA bundle file or directory"
        ) from exc


def _clear_contexts() -> None:
    with _lock:
        _contexts.clear()


_process.on_reset(_clear_contexts, order=_process.ORDER_TLS)
