"""Every comparison scenario of the bench, by name.

A comparison runs one piece of work through several variants side by side
(see :mod:`.compare`). To add one:

1. Write its module beside :mod:`.api_client`. Each variant is a factory
   ``(ctx, pass_number) -> (warm, body)``: ``warm(ctx)`` runs on throwaway
   clients, ``body(ctx)`` runs on the clock and returns ``(count, close,
   extra)``. A transfer puts ``"bytes"`` in ``extra`` and gets ``mib_per_s``;
   set the comparison's ``figure`` and ``ratio_figures`` to match.
2. Give it a ``check`` that reads what the server recorded, when the server
   can tell whether the pass sent what it claims.
3. List its ``Comparison`` in the tuple below and its name in
   ``scenarios.COMPARISON_SCENARIOS``, which sets where it runs.

For example ``resil`` (a preset with its resilience fields on, and off) can
reuse :func:`.api_client.plan` for its traffic, with the fields set per variant
by ``register_preset`` in the factory or by ``Variant.environment``; and
``upload`` (a resumable upload against ``requests.put(data=file)``) needs an
upload route on the bench server (:mod:`.server`) and ``figure="mib_per_s"``.
"""

from __future__ import annotations

from typing import Final

from .api_client import API_CLIENT
from .compare import Comparison

__all__ = ["COMPARISONS"]

#: The comparison scenarios, by name.
COMPARISONS: Final[dict[str, Comparison]] = {comparison.name: comparison for comparison in (API_CLIENT,)}
