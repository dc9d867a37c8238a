"""diagnostics(): what a bug report needs to know about this installation, without a secret in it."""

from __future__ import annotations

import os
import platform
import ssl
from dataclasses import asdict, dataclass
from typing import Any, Final

import requests
import urllib3

from . import _upstream
from ._env import PREFIX
from ._errors import ConfigError
from ._presets import get_preset, preset_names
from ._version import __version__

__all__ = ["Diagnostics", "diagnostics"]

#: Variables outside the SESSION_PRESETS_ family that change what a session does.
_OTHER_VARIABLES: Final = (
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
)


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """Versions, the fast path's state, the hooks in use, the trust store and the environment's bindings.

    ``session-presets doctor`` prints it; it names variables, never their values.

    Attributes:
        python, requests, urllib3, openssl, session_presets: versions.
        fast_path: whether the fast path runs (docs/fast-path.md).
        fast_path_reason: why it does not ("" when it does).
        fast_path_forced_off: True when ``SESSION_PRESETS_FAST_PATH=off`` turned it off.
        fingerprint_mismatches: the upstream functions whose installed source differs from the one checked.
        hooks_in_use, hooks_unused: the private upstream hooks in use, and those that are not: missing
            upstream, or (header_lines, body_readinto) part of a fast path that is off. Their fallback runs.
        trust_store: the ``default`` preset's trust store, or its ``ca_bundle`` when it has one.
        environment: (variable, what it sets) for each variable that binds a preset field or a setting.
        environment_error: why the environment's configuration cannot be read, or None.
    """

    python: str
    requests: str
    urllib3: str
    openssl: str
    session_presets: str
    fast_path: bool
    fast_path_reason: str
    fast_path_forced_off: bool
    fingerprint_mismatches: tuple[str, ...]
    hooks_in_use: tuple[str, ...]
    hooks_unused: tuple[str, ...]
    trust_store: str
    environment: tuple[tuple[str, str], ...]
    environment_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields as JSON-friendly values (pairs become lists)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            out[key] = [list(i) if isinstance(i, tuple) else i for i in value] if isinstance(value, tuple) else value
        return out

    def format(self) -> str:
        """The report as aligned text lines, as ``session-presets doctor`` prints it."""
        state = ("on" if self.fast_path else "off") + (f" ({self.fast_path_reason})" if self.fast_path_reason else "")
        rows = [
            ("session-presets", self.session_presets),
            ("python", self.python),
            ("requests", self.requests),
            ("urllib3", self.urllib3),
            ("openssl", self.openssl),
            ("fast path", state),
            ("hooks in use", ", ".join(self.hooks_in_use) or "none"),
            ("hooks unused", ", ".join(self.hooks_unused) or "none"),
            ("trust store", self.trust_store),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
        if self.fingerprint_mismatches:
            lines.append("fingerprints that differ:")
            lines.extend(f"  {name}" for name in self.fingerprint_mismatches)
        lines.append("environment:" if self.environment else "environment: nothing set")
        lines.extend(f"  {variable} -> {target}" for variable, target in self.environment)
        if self.environment_error is not None:
            lines.append(f"environment error: {self.environment_error}")
        return "\n".join(lines)


def _bindings() -> tuple[list[tuple[str, str]], str | None, str]:
    """The environment's bindings, an error reading them (or None), and the default preset's trust store."""
    found: dict[str, str] = {}
    error = None
    trust = "unknown"
    try:
        for name in preset_names():
            config = get_preset(name)
            for field in config.field_names():
                origin = config.origin(field)
                if origin.startswith("env "):
                    variable = origin.removeprefix("env ")
                    found[variable] = ", ".join(filter(None, (found.get(variable), f"{name}.{field}")))
            if name == "default":
                trust = f"ca_bundle {config.ca_bundle}" if config.ca_bundle else str(config.trust_store)
                if not config.verify:
                    trust += " (verify=False)"
    except ConfigError as exc:
        error = str(exc)
    for variable in sorted(os.environ):
        if variable in found:
            continue
        if variable.startswith(PREFIX):
            found[variable] = "a setting" if error is None else "unread (see the error)"
        elif variable in _OTHER_VARIABLES:
            found[variable] = "requests' environment (read once per session)"
    return sorted(found.items()), error, trust


def diagnostics() -> Diagnostics:
    """Report this installation: versions, the fast path and why it is off, hooks, trust store, environment.

    It names the environment variables that are set and what they bind, never
    their values: the report is meant to be pasted into a bug report.

    Returns:
        A frozen :class:`Diagnostics`.
    """
    try:
        state = _upstream.gate()
    except ConfigError as exc:  # a bad SESSION_PRESETS_FAST_PATH: every session refuses to start
        state = _upstream.GateState(active=False, forced_off=False, mismatched=(), reason=str(exc))
    hooks = _upstream.hooks_in_use(state)
    environment, error, trust = _bindings()
    return Diagnostics(
        python=f"{platform.python_implementation()} {platform.python_version()}",
        requests=str(getattr(requests, "__version__", "unknown")),
        urllib3=str(getattr(urllib3, "__version__", "unknown")),
        openssl=ssl.OPENSSL_VERSION,
        session_presets=__version__,
        fast_path=state.active,
        fast_path_reason=state.reason,
        fast_path_forced_off=state.forced_off,
        fingerprint_mismatches=state.mismatched,
        hooks_in_use=tuple(name for name, used in hooks.items() if used),
        hooks_unused=tuple(name for name, used in hooks.items() if not used),
        trust_store=trust,
        environment=tuple(environment),
        environment_error=error,
    )
