"""A comparison variant's child process: ``python -m session_presets.bench.child``.

It runs one pass of one variant for a parent bench process, which set the
variables the variant names (see :mod:`.compare`) in its environment.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import warnings
from collections.abc import Callable
from typing import IO, Any

from .._errors import SessionReuseWarning
from .compare import fast_path_state
from .comparisons import COMPARISONS
from .scenarios import BenchContext, ScenarioSkipped, timed_run
from .server import ServerAddress

__all__ = ["child_main"]


def child_main(stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Run passes of comparison variants for a parent bench process (the child side of ``run_comparison``).

    For each JSON line describing a pass: warm up, write ``ready``, wait for
    ``go``, run on the clock, write ``result <json>``, wait for ``close``,
    close the client and write ``closed``. End of input ends the process.

    Returns:
        The exit status: 0, or 2 when the parent broke the protocol.
    """
    source = stdin or sys.stdin
    sink = stdout or sys.stdout
    preset = ""
    for line in source:
        spec = json.loads(line)
        ctx = BenchContext(
            server=ServerAddress(spec["scheme"], tuple(spec["ports"])),
            bundle=spec["bundle"],
            requests=spec["requests"],
            slow_requests=spec["slow_requests"],
            download_bytes=spec["download_bytes"],
            scratch=spec["scratch"],
            warmup=spec["warmup"],
            run_id=spec["run_id"],
            preset=preset,
        )
        preset = ctx.preset
        if not _one_pass(ctx, spec, source, sink):
            return 2
    return 0


def _one_pass(ctx: BenchContext, spec: dict[str, Any], source: IO[str], sink: IO[str]) -> bool:
    """Run the pass ``spec`` describes; return False when the parent broke the protocol."""

    def say(line: str) -> None:
        sink.write(line + "\n")
        sink.flush()

    variant = COMPARISONS[spec["comparison"]].variant(spec["variant"])
    close: Callable[[], None] = _nothing
    ready = False
    answer: dict[str, Any]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SessionReuseWarning)
        try:
            warm, body = variant.factory(ctx, int(spec["pass"]))
            warm(ctx)
            gc.collect()
            say("ready")
            ready = True
            if source.readline().strip() != "go":
                return False
            answer, close = timed_run(ctx, body)
            answer["fast_path"] = fast_path_state()
            # As this process saw them: the parent's claim is checked, not repeated.
            answer["child"] = {
                "pid": os.getpid(),
                "environment": {name: os.environ.get(name) for name in variant.environment},
            }
        except ScenarioSkipped as exc:
            answer = {"skipped": str(exc)}
        except Exception as exc:  # reported to the parent, which reports it as the variant's error
            answer = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    if not ready:
        say("ready")
        if source.readline().strip() != "go":
            return False
    say("result " + json.dumps(answer))
    told = source.readline().strip()
    close()
    if told != "close":
        return False
    say("closed")
    return True


def _nothing() -> None:
    return None


if __name__ == "__main__":
    sys.exit(child_main())
