"""A comparison variant's child process: ``python -m session_presets.bench.child``.

It runs one pass of one variant for a parent bench process, which set the
variables the variant names (see :mod:`.compare`) in its environment.
"""

from __future__ import annotations

import gc
import json
import sys
import warnings
from collections.abc import Callable
from typing import IO

from .._errors import SessionReuseWarning
from .compare import fast_path_state
from .comparisons import COMPARISONS
from .scenarios import BenchContext, ScenarioSkipped, timed_run
from .server import ServerAddress

__all__ = ["child_main"]


def child_main(stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Run one pass of a variant for a parent bench process (the child side of :func:`run_comparison`).

    Reads one JSON line describing the pass, warms up, writes ``ready``, waits
    for ``go``, runs on the clock, writes ``result <json>``, waits for
    ``close``, closes its client and writes ``closed``.

    Returns:
        The exit status: 0, or 2 when the protocol was not followed.
    """
    source = stdin or sys.stdin
    sink = stdout or sys.stdout

    def say(line: str) -> None:
        sink.write(line + "\n")
        sink.flush()

    spec = json.loads(source.readline())
    ctx = BenchContext(
        server=ServerAddress(spec["scheme"], tuple(spec["ports"])),
        bundle=spec["bundle"],
        requests=spec["requests"],
        slow_requests=spec["slow_requests"],
        download_bytes=spec["download_bytes"],
        scratch=spec["scratch"],
        warmup=spec["warmup"],
        run_id=spec["run_id"],
    )
    variant = COMPARISONS[spec["comparison"]].variant(spec["variant"])
    close: Callable[[], None] = _nothing
    ready = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SessionReuseWarning)
        try:
            warm, body = variant.factory(ctx, int(spec["pass"]))
            warm(ctx)
            gc.collect()
            say("ready")
            ready = True
            if source.readline().strip() != "go":
                return 2
            answer, close = timed_run(ctx, body)
            answer["fast_path"] = fast_path_state()
        except ScenarioSkipped as exc:
            answer = {"skipped": str(exc)}
        except Exception as exc:  # reported to the parent, which reports it as the variant's error
            answer = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    if not ready:
        say("ready")
        if source.readline().strip() != "go":
            return 2
    say("result " + json.dumps(answer))
    if source.readline().strip() != "close":
        close()
        return 2
    close()
    say("closed")
    return 0


def _nothing() -> None:
    return None


if __name__ == "__main__":
    sys.exit(child_main())
