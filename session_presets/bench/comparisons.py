"""Every comparison scenario of the bench, by name.

A comparison runs one piece of work through several variants side by side
(see :mod:`.compare`). To add one (``resil``: a preset with its resilience
fields on and off; ``upload``: a resumable upload against ``requests.put``),
write its module beside :mod:`.api_client`, list its ``Comparison`` here, and
add its name to ``scenarios.COMPARISON_SCENARIOS``, which sets where it runs.
"""

from __future__ import annotations

from typing import Final

from .api_client import API_CLIENT
from .compare import Comparison

__all__ = ["COMPARISONS"]

#: The comparison scenarios, by name.
COMPARISONS: Final[dict[str, Comparison]] = {comparison.name: comparison for comparison in (API_CLIENT,)}
