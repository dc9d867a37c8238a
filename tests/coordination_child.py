"""A worker process for tests/test_resilience_coordination.py: calls one URL through a coordinated session.

Usage: python -m tests.coordination_child CONFIG_JSON URL COUNT; prints one JSON list of outcomes
(the status code, "open" for CircuitOpenError, "limited: <state>" for RateLimitedError).
"""

from __future__ import annotations

import json
import sys

import session_presets as sp


def main(argv: list[str]) -> int:
    """Make COUNT calls and print what each one gave."""
    config, url, count = json.loads(argv[0]), argv[1], int(argv[2])
    outcomes: list[object] = []
    with sp.default_session(**config) as session:
        for _ in range(count):
            try:
                outcomes.append(session.get(url).status_code)
            except sp.CircuitOpenError:
                outcomes.append("open")
            except sp.RateLimitedError as refused:
                outcomes.append(f"limited: {refused.state}")
    print(json.dumps(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
