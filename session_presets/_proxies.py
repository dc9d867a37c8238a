"""Proxies per preset: the environment's read once, and NO_PROXY matched per URL."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

from requests.utils import address_in_network, is_ipv4_address, is_valid_cidr

from ._redact import userinfo_secrets

__all__ = ["ProxySnapshot", "proxy_secrets"]


class ProxySnapshot:
    """The proxies a preset's ``proxies`` setting names, read once; NO_PROXY is applied per URL.

    Args:
        setting: ``"env"`` (the environment's, read now), ``"none"``, or a mapping
            of scheme to proxy URL, optionally with a ``no_proxy`` entry.
    """

    __slots__ = ("no_proxy", "proxies")

    def __init__(self, setting: str | Mapping[str, str]) -> None:
        self.no_proxy: list[str] = []
        if setting == "none":
            self.proxies: dict[str, str] = {}
        elif isinstance(setting, Mapping):
            self.proxies = {k: v for k, v in setting.items() if k != "no_proxy"}
            self.no_proxy = _split_no_proxy(setting.get("no_proxy", ""))
        else:
            found = urllib.request.getproxies_environment()
            self.no_proxy = _split_no_proxy(found.pop("no", ""))
            self.proxies = {k: v for k, v in found.items() if k in ("http", "https", "all")}

    def bypass(self, url: str) -> bool:
        """Whether NO_PROXY exempts ``url``: ``*``, a CIDR or address, a host, host:port or domain suffix."""
        if not self.no_proxy:
            return False
        parts = urlsplit(url)
        host = parts.hostname or ""
        if "*" in self.no_proxy:
            return True
        if is_ipv4_address(host):
            for entry in self.no_proxy:
                if is_valid_cidr(entry) and address_in_network(host, entry):
                    return True
                if entry == host:
                    return True
            return False
        with_port = f"{host}:{parts.port}" if parts.port else host
        for entry in self.no_proxy:
            bare = entry.lstrip(".")
            if bare in (host, with_port) or host.endswith("." + bare):
                return True
        return False


def proxy_secrets(*proxies: object) -> tuple[str, ...]:
    """The userinfo of every proxy URL in ``proxies`` (mappings, or None), to mask in errors."""
    return userinfo_secrets(
        url for mapping in proxies if isinstance(mapping, Mapping) for url in mapping.values()
    )


def _split_no_proxy(value: str) -> list[str]:
    return [item.strip().lower() for item in value.replace(" ", ",").split(",") if item.strip()]
