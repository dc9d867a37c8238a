"""Mounting adapters on a PresetSession: which keep the preset, and a factory for those that should."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import requests.adapters

from ._adapters import Counters, PresetAdapter, preset_adapter_class
from ._errors import ForeignAdapterWarning
from ._lifecycle import SessionState
from ._metrics import SessionMetrics

if TYPE_CHECKING:
    from ._config import PresetConfig

    _SessionBase = requests.Session
else:
    _SessionBase = object

__all__ = ["AdapterMounts"]


def _takes_http_urls(prefix: str) -> bool:
    """Whether a mount at ``prefix`` serves some http:// or https:// URLs (requests matches prefixes, case-blind)."""
    prefix = prefix.lower()
    return any(scheme.startswith(prefix) or prefix.startswith(scheme) for scheme in ("http://", "https://"))


class AdapterMounts(_SessionBase):
    """Session mixin: ``mount()`` warns about a transport without the preset; ``adapter_factory`` builds one with it.

    The class using it sets ``config``, ``adapter`` (its PresetAdapter),
    ``_counters``, ``_metrics``, ``_state`` and ``_warned_adapters`` (ids of the
    adapters already warned about).
    """

    config: PresetConfig
    adapter: PresetAdapter
    _counters: Counters
    _metrics: SessionMetrics
    _warned_adapters: set[int]

    def mount(self, prefix: str, adapter: Any) -> None:
        """Mount ``adapter`` for URLs starting with ``prefix``, as requests does.

        An HTTPAdapter that is not a PresetAdapter gets the preset's default
        headers and connect/read timeouts, but not its retries, total_timeout,
        shared TLS context, max_connection_age or stats: that is warned once per
        adapter (``adapter_factory`` builds one that keeps them). Adapters that
        open no connection of their own (mocks and recorders built on
        ``BaseAdapter``), and adapters for URLs the preset's adapter never
        serves (``http+unix://``), are mounted without a warning.

        Raises:
            SharedSessionError: this is a shared session (read-only).
        """
        if (
            # Only a network transport that lacks the preset is worth a warning:
            # mocks and recorders (requests-mock, betamax) are BaseAdapters that
            # open no connection, and betamax sends what it records through the
            # PresetAdapter it wraps.
            isinstance(adapter, requests.adapters.HTTPAdapter)
            and not isinstance(adapter, PresetAdapter)
            # requests-unixsocket's http+unix:// takes nothing from the preset's adapter.
            and _takes_http_urls(prefix)
            # requests.Session.__init__ mounts its own adapters, which this one replaces.
            and getattr(self, "_state", None) is SessionState.ACTIVE
            and id(adapter) not in self._warned_adapters
        ):
            self._warned_adapters.add(id(adapter))
            warnings.warn(
                f"{type(adapter).__name__} mounted for {prefix!r} on a session of preset "
                f"{self.config.name!r} is not a PresetAdapter: requests through it get the preset's "
                "default headers and connect/read timeouts, but not its retries, total_timeout, "
                "shared TLS context, max_connection_age or stats. To keep them, build it with "
                f"session.adapter_factory({type(adapter).__name__})(...) (for a library that takes an "
                "adapter class, pass that as the class: CacheControl(session, adapter_class=...)), or "
                "subclass session_presets.PresetAdapter (see examples/host_header_adapter.py)",
                ForeignAdapterWarning,
                stacklevel=3,
            )
        super().mount(prefix, adapter)

    def adapter_factory(self, base: type[requests.adapters.HTTPAdapter]) -> Callable[..., PresetAdapter]:
        """Return a callable that builds ``base`` adapters on this session's preset, for ``mount()``.

        What it builds is a ``base`` and a PresetAdapter (see
        ``preset_adapter_class``): ``base`` adds its feature (a cache, a source
        address), and the preset's timeouts, retries, total_timeout, TLS context
        and stats stay, counted in this session's ``stats``. Mounting it warns
        nothing. Pass it where a library takes an adapter class::

            session = default_session(cache_policy="protocol")
            CacheControl(session, adapter_class=session.adapter_factory(CacheControlAdapter))

        or call it with ``base``'s arguments and mount the result yourself.

        Args:
            base: an ``HTTPAdapter`` subclass that passes extra keyword arguments on to ``HTTPAdapter.__init__``.

        Returns:
            A callable taking ``base``'s arguments and returning the adapter.

        Raises:
            TypeError: ``base`` is not an HTTPAdapter subclass.
        """
        cls: Any = preset_adapter_class(base)
        config, counters, metrics = self.config, self._counters, self._metrics

        def build(*args: Any, **kwargs: Any) -> PresetAdapter:
            adapter: PresetAdapter = cls(*args, config=config, counters=counters, metrics=metrics, **kwargs)
            return adapter

        build.__qualname__ = build.__name__ = cls.__name__
        return build

    def _distinct_adapters(self) -> list[Any]:
        """The mounted adapters, each once (one adapter serves http:// and https://)."""
        return list({id(adapter): adapter for adapter in self.adapters.values()}.values())
