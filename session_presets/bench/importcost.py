"""What ``import session_presets`` costs a script that already imports requests.

Each run is a fresh interpreter started with ``-X importtime`` that imports
requests and then the library; the figure is the library's cumulative import
time from that output, so requests' own cost is not counted. The median of
several runs is reported, since one run on a shared machine can be off by
several times.

The runs use the bytecode cache, as every installed package does: a warm-up
process writes it first. With ``PYTHONDONTWRITEBYTECODE`` set (some CI images
and containers set it), every module would be compiled from source on every
import, which costs several times more and says nothing about the library.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

__all__ = ["DEFAULT_IMPORT_RUNS", "IMPORT_TARGET_MS", "measure_import_cost", "parse_importtime"]

#: Fresh interpreters measured; the median is reported.
DEFAULT_IMPORT_RUNS: Final = 7
#: What ``import session_presets`` may cost on top of ``import requests`` (docs/performance.md).
IMPORT_TARGET_MS: Final = 15.0

_SCRIPT: Final = "import requests, session_presets"


def parse_importtime(stderr: str) -> dict[str, int]:
    """Return ``{module: cumulative microseconds}`` for the top-level imports in ``-X importtime`` output.

    Nested imports (indented names) are left out: their time is part of their parent's.
    """
    found: dict[str, int] = {}
    for line in stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not line.startswith("import time:"):
            continue
        name = parts[2].rstrip()
        if name.startswith(" " * 2) or not parts[1].strip().isdigit():
            continue  # nested, or the header line
        found[name.strip()] = int(parts[1])
    return found


def _bytecode_cached() -> bool:
    spec = importlib.util.find_spec("session_presets")
    if spec is None or spec.origin is None:
        return False
    return Path(importlib.util.cache_from_source(spec.origin)).exists()


def measure_import_cost(runs: int = DEFAULT_IMPORT_RUNS) -> dict[str, Any]:
    """Time ``import session_presets`` after ``import requests`` in ``runs`` fresh interpreters.

    Returns:
        ``ms_over_requests`` (the median), ``runs_ms`` (each run), ``requests_ms``
        (the median of requests' own import, for scale), ``bytecode_cached`` and
        ``target_ms``.

    Raises:
        ValueError: ``runs`` is below 1.
        RuntimeError: an interpreter failed to import the library.
    """
    if runs < 1:
        raise ValueError("import runs must be at least 1")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    command = [sys.executable, "-X", "importtime", "-c", _SCRIPT]
    subprocess.run([sys.executable, "-c", _SCRIPT], env=env, check=False, capture_output=True)  # writes bytecode
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(runs):
        done = subprocess.run(command, env=env, check=False, capture_output=True, text=True)
        found = parse_importtime(done.stderr)
        if done.returncode != 0 or "session_presets" not in found:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}): {last}")
        ours.append(found["session_presets"] / 1000)
        theirs.append(found.get("requests", 0) / 1000)
    return {
        "ms_over_requests": statistics.median(ours),
        "runs_ms": ours,
        "requests_ms": statistics.median(theirs),
        "bytecode_cached": _bytecode_cached(),
        "target_ms": IMPORT_TARGET_MS,
    }
