"""One shared SSLContext per trust configuration, built once per process.

requests hands urllib3 a CA bundle path for every new HTTPS connection, and
urllib3 loads it into a fresh context each time. Here the bundle is loaded once,
into a context that every session and adapter with the same trust
configuration shares. A shared context is never mutated after it is built.

Contexts are built lazily, on the first HTTPS connection that needs one, from
``ssl.SSLContext`` as it is at that moment, and they are keyed by that class
too. ``truststore.inject_into_ssl()`` and gevent's ``patch_all()`` replace
``ssl.SSLContext``; a context built from the class they replaced would recurse in
the stdlib's setters (urllib3 sets ``verify_mode`` on every connect), so after a
patch the next connection gets a context built from the patched class. This is
the same reason truststore replaces requests' preloaded context (requests PR 6667).
Nothing here subclasses ``ssl.SSLContext``: CA loads are counted where they happen.
When a session is built, its CA bundle and client certificate are only checked
(:func:`check_trust`), without building a context.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import ssl
from dataclasses import dataclass
from typing import Any, Final

import certifi

from . import _process
from ._config import TLS_VERSIONS
from ._errors import ConfigError
from ._tls_sessions import enable_resumption

__all__ = ["TrustConfig", "ca_loads", "check_trust", "contexts_built", "get_ssl_context"]


@dataclass(frozen=True, slots=True)
class TrustConfig:
    """The key of a shared context: everything that changes how peers are trusted."""

    verify: bool = True
    trust_store: str = "certifi"
    ca_bundle: str | None = None
    client_cert: str | tuple[str, str] | None = None
    tls_min_version: str = "TLSv1.2"


#: A PEM block: its label and its base64 body.
_PEM_BLOCK: Final = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)

#: The key of a built context: the trust configuration and the ``ssl.SSLContext`` class it was built from.
_Key = tuple[TrustConfig, type]

_lock = _process.fork_safe_lock()
_contexts: dict[_Key, ssl.SSLContext] = {}
_ca_loads: dict[_Key, int] = {}
_checked: set[TrustConfig] = set()


def ca_loads() -> int:
    """Return how many CA bundles the shared contexts loaded in this process."""
    return sum(list(_ca_loads.values()))


def contexts_built() -> int:
    """Return how many shared contexts exist in this process (none before the first HTTPS connection)."""
    return len(_contexts)


def get_ssl_context(trust: TrustConfig) -> ssl.SSLContext:
    """Return the process-wide context for ``trust``, building it on first use.

    The context is built from ``ssl.SSLContext`` as it is now; after
    ``truststore.inject_into_ssl()`` or gevent's patching, a new one is built
    from the patched class.

    Raises:
        ConfigError: the CA bundle or client certificate cannot be loaded, or
            ``trust_store='system'`` is asked for without truststore installed.
    """
    key = (trust, ssl.SSLContext)
    context = _contexts.get(key)
    if context is not None:
        return context
    with _lock:
        context = _contexts.get(key)
        if context is None:
            context = _build(trust, key)
            _contexts[key] = context
        return context


def check_trust(trust: TrustConfig) -> None:
    """Check that ``trust`` can be loaded, without building an SSLContext.

    Paths must exist and be readable, and PEM files must hold well-formed PEM
    blocks of the right kind. OpenSSL itself reads them on the first HTTPS
    connection, where anything this check cannot see still fails with ConfigError.

    Raises:
        ConfigError: naming the field, the value and the accepted form.
    """
    if trust in _checked:
        return
    if trust.verify and trust.ca_bundle is None and trust.trust_store == "system":
        _import_truststore()
    if trust.verify and trust.ca_bundle is not None and not os.path.isdir(trust.ca_bundle):
        _check_pem("ca_bundle", trust.ca_bundle, trust.ca_bundle, "CERTIFICATE", _CA_FORM)
    if trust.client_cert is not None:
        cert, key = trust.client_cert if isinstance(trust.client_cert, tuple) else (trust.client_cert, None)
        labels = _check_pem("client_cert", trust.client_cert, cert, "CERTIFICATE", _CERT_FORM)
        if key is not None:
            _check_pem("client_cert", trust.client_cert, key, "PRIVATE KEY", _CERT_FORM)
        elif not any(label.endswith("PRIVATE KEY") for label in labels):
            raise ConfigError(
                f"client_cert={trust.client_cert!r} is invalid: {cert!r} holds no private key; {_CERT_FORM}"
            )
    with _lock:
        _checked.add(trust)


_CA_FORM: Final = "expected a path to a PEM CA bundle file or directory"
_CERT_FORM: Final = "expected a PEM certificate, with its key in the same file or as the second path"


def _check_pem(field: str, value: object, path: str, wanted: str, form: str) -> list[str]:
    try:
        with open(path, "rb") as file:
            text = file.read().decode("ascii", "replace")
    except OSError as exc:
        raise ConfigError(f"{field}={value!r} is invalid: cannot load it ({exc}); {form}") from exc
    labels = []
    for label, body in _PEM_BLOCK.findall(text):
        if label.endswith(wanted):
            try:
                # Lines with a colon are RFC 1421 headers (Proc-Type, DEK-Info), not base64.
                lines = [line.strip() for line in body.splitlines() if ":" not in line]
                der = base64.b64decode("".join(lines), validate=True)
            except (binascii.Error, ValueError):
                der = b""
            if not der.startswith(b"\x30"):  # every certificate and key is a DER SEQUENCE
                raise ConfigError(f"{field}={value!r} is invalid: {path!r} holds a malformed {label} block; {form}")
        labels.append(label)
    if not any(label.endswith(wanted) for label in labels):
        raise ConfigError(f"{field}={value!r} is invalid: {path!r} holds no PEM {wanted} block; {form}")
    return labels


def _build(trust: TrustConfig, key: _Key) -> ssl.SSLContext:
    context: ssl.SSLContext
    if not trust.verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif trust.ca_bundle is None and trust.trust_store == "system":
        context = _system_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _load_ca(context, trust.ca_bundle or certifi.where(), key)
    context.minimum_version = TLS_VERSIONS[trust.tls_min_version]
    enable_resumption(context)
    if trust.client_cert is not None:
        cert, keyfile = trust.client_cert if isinstance(trust.client_cert, tuple) else (trust.client_cert, None)
        try:
            context.load_cert_chain(cert, keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"client_cert={trust.client_cert!r} is invalid: cannot load it ({exc}); {_CERT_FORM}"
            ) from exc
    return context


def _import_truststore() -> Any:
    try:
        import truststore
    except ImportError:
        raise ConfigError(
            "trust_store='system' needs the truststore package: "
            "pip install 'session-presets[truststore]', or use trust_store='certifi'"
        ) from None
    return truststore


def _system_context() -> ssl.SSLContext:
    context: ssl.SSLContext = _import_truststore().SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return context


def _load_ca(context: ssl.SSLContext, location: str, key: _Key) -> None:
    _ca_loads[key] = _ca_loads.get(key, 0) + 1
    try:
        if os.path.isdir(location):
            context.load_verify_locations(capath=location)
        else:
            context.load_verify_locations(cafile=location)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"ca_bundle={location!r} is invalid: cannot load it ({exc}); {_CA_FORM}") from exc


def _clear_contexts() -> None:
    with _lock:
        _contexts.clear()
        _ca_loads.clear()
        _checked.clear()


_process.on_reset(_clear_contexts, order=_process.ORDER_TLS)
