"""Comparison scenarios: one piece of work through several variants, side by side, in one run.

A :class:`Comparison` names its variants (a client, or the library with a
switch on or off), the ratios to report, and a check of what the server
received. :func:`run_comparison` runs every variant once per round, the order
alternating between rounds so that no variant always goes first on a busy
machine, and reports each variant's median round and, for each ratio, the
median of the rounds' own ratios (each round's variants met the same machine).

A variant with ``environment`` runs in a child process with those variables
set (``SESSION_PRESETS_FAST_PATH=off``, say): the library reads such switches
once per process. A comparison with ``isolate`` runs every variant so, each
in a process of its own kept for all rounds. For each pass the child warms
up, waits while the parent zeroes the server's counters, runs on the clock,
reports its figures on stdout and closes its client when told, so it is
measured exactly as an in-process variant is. The child runs :mod:`.child`, given one JSON line on stdin.

To add a comparison, write a module beside :mod:`.api_client` that builds a
``Comparison`` and list it in :mod:`.comparisons` and in
``scenarios.COMPARISON_SCENARIOS``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .._errors import SessionReuseWarning
from .scenarios import BenchContext, Body, ScenarioSkipped, Warm, measure, server_figures

__all__ = ["CHILD_MODULE", "CHILD_TIMEOUT", "Comparison", "PassCheck", "Variant", "VariantFactory",
           "fast_path_state", "run_comparison"]

#: The module a variant's child process runs (see :mod:`.child`).
CHILD_MODULE: Final = "session_presets.bench.child"
#: How long a variant's child process may take for any one step (start and warm-up, run, close).
CHILD_TIMEOUT: Final = 600.0

#: How long a child process may take to exit once its input is closed, before it is killed.
_CLOSE_TIMEOUT: Final = 10.0

#: Builds a variant's warm-up and timed run for one pass; the int is the pass number,
#: unique within a bench run, so each pass can send values no earlier pass sent.
VariantFactory = Callable[[BenchContext, int], "tuple[Warm, Body]"]
#: Checks the server's record of one pass and returns figures to add; raises RuntimeError
#: when the pass did not send what the comparison says it sends.
PassCheck = Callable[[BenchContext, int, Mapping[str, Any]], "dict[str, Any]"]


@dataclass(frozen=True, slots=True)
class Variant:
    """One way of doing a comparison's work.

    Attributes:
        name: its key in the report, such as ``"requests_session"``.
        label: how the table names it, such as ``"requests.Session"``.
        factory: builds its warm-up and timed run for a pass.
        environment: variables to set for it; when not empty, it runs in a child process.
    """

    name: str
    label: str
    factory: VariantFactory
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Comparison:
    """A scenario that runs one piece of work through several variants, side by side.

    Attributes:
        name: the scenario's key, as ``--scenarios`` and the report name it.
        summary: one line saying what the work is.
        variants: the variants, in the order the first round runs them.
        ratios: (numerator, denominator) variant names; each is reported as
            ``"<numerator>_vs_<denominator>"``, the figure of the first over the second.
        check: reads the server's record after each pass (see :data:`PassCheck`).
        figure: the figure that picks a variant's median pass, ``"req_per_s"`` or, for
            transfers, ``"mib_per_s"``.
        ratio_figures: the figures whose ratios are reported, each in a table of its own.
        listeners: how many origins (ports) the bench server must offer.
        isolate: run every variant in a child process of its own, kept for all
            rounds, so that none carries the bench process's state (imports,
            memos, garbage) into its figures; variants with ``environment``
            always run so.
    """

    name: str
    summary: str
    variants: tuple[Variant, ...]
    ratios: tuple[tuple[str, str], ...]
    check: PassCheck | None = None
    figure: str = "req_per_s"
    ratio_figures: tuple[str, ...] = ("req_per_s", "req_per_cpu_s")
    listeners: int = 1
    isolate: bool = False

    def __post_init__(self) -> None:
        names = [variant.name for variant in self.variants]
        if not names:
            raise ValueError(f"comparison {self.name!r} has no variants")
        if len(set(names)) != len(names):
            raise ValueError(f"comparison {self.name!r}: variant names repeat: {names}")
        unknown = sorted({name for pair in self.ratios for name in pair} - set(names))
        if unknown:
            raise ValueError(f"comparison {self.name!r}: ratios name unknown variants {unknown}")

    def variant(self, name: str) -> Variant:
        """Return the variant called ``name``.

        Raises:
            KeyError: there is none.
        """
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(f"comparison {self.name!r} has no variant {name!r}")


def run_comparison(
    comparison: Comparison,
    ctx: BenchContext,
    rounds: int,
    *,
    first_pass: int = 1,
    on_variant: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every variant of ``comparison`` once per round and return the scenario's result.

    Args:
        comparison: what to run.
        ctx: the bench context (its server must offer ``comparison.listeners`` origins).
        rounds: how many rounds; the order of the variants alternates between them.
        first_pass: the pass number of the first pass; each pass takes the next.
        on_variant: called with ``"<scenario>: <variant>"`` before each pass (progress).

    Returns:
        The first variant's median figures at the top level (so the scenario
        reads like any other), plus ``rounds``, ``summary``, ``variants`` (each
        variant's median figures, ``label`` and ``rounds_<figure>``, or
        ``skipped``/``error``) and ``ratios``: for each of ``ratio_figures``,
        ``{"<numerator>_vs_<denominator>": median of the rounds' ratios}``.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds!r}")
    if len(ctx.server.ports) < comparison.listeners:
        raise ValueError(f"{comparison.name} needs a server with {comparison.listeners} listeners")
    names = [variant.name for variant in comparison.variants]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    # Per round, so that a ratio is only taken between passes that met the same machine.
    by_round: list[dict[str, Mapping[str, Any]]] = []
    failed: dict[str, dict[str, Any]] = {}
    pass_number = first_pass
    children: dict[str, _Child] = {}
    try:
        for index in range(rounds):
            this_round: dict[str, Mapping[str, Any]] = {}
            for name in names if index % 2 == 0 else names[::-1]:
                if name in failed:
                    continue
                if on_variant is not None:
                    on_variant(f"{comparison.name}: {name}")
                outcome = _run_pass(comparison, comparison.variant(name), ctx, pass_number, children)
                pass_number += 1
                if comparison.figure in outcome:
                    runs[name].append(outcome)
                    this_round[name] = outcome
                else:
                    failed[name] = outcome
            by_round.append(this_round)
    finally:
        for child in children.values():
            child.close()
    variants: dict[str, dict[str, Any]] = {}
    for variant in comparison.variants:
        if variant.name in failed:
            variants[variant.name] = {"label": variant.label, **failed[variant.name]}
            continue
        passes = sorted(runs[variant.name], key=lambda result: float(result[comparison.figure]))
        variants[variant.name] = {
            "label": variant.label,
            **passes[(len(passes) - 1) // 2],
            **{
                f"rounds_{figure}": [result.get(figure) for result in runs[variant.name]]
                for figure in dict.fromkeys((comparison.figure, *comparison.ratio_figures))
            },
            "rss_growth_bytes": max(result["rss_growth_bytes"] for result in passes),
        }
    found = {figure: _ratios(comparison, by_round, figure) for figure in comparison.ratio_figures}
    head = variants[names[0]]
    return {
        **{key: value for key, value in head.items() if key != "label"},
        "summary": comparison.summary,
        "rounds": rounds,
        "variants": variants,
        "ratios": found,
    }


def _ratios(
    comparison: Comparison, by_round: list[dict[str, Mapping[str, Any]]], figure: str
) -> dict[str, float]:
    """Return each ratio of ``figure``: the median of the rounds' own ratios, over rounds where both ran."""
    found: dict[str, float] = {}
    for numerator, denominator in comparison.ratios:
        values = [
            float(passes[numerator][figure]) / float(passes[denominator][figure])
            for passes in by_round
            if passes.get(numerator, {}).get(figure) and passes.get(denominator, {}).get(figure)
        ]
        if values:
            found[f"{numerator}_vs_{denominator}"] = statistics.median(values)
    return found


def _run_pass(
    comparison: Comparison, variant: Variant, ctx: BenchContext, pass_number: int, children: dict[str, _Child]
) -> dict[str, Any]:
    """Run one pass of ``variant``; return its figures, or ``skipped``/``error`` saying why not.

    An isolated variant runs in its child process from ``children``, started on
    its first pass and kept for the next ones.
    """
    try:
        if variant.environment or comparison.isolate:
            if variant.name not in children:
                children[variant.name] = _Child(variant.environment)
            result = _pass_in_child(comparison, variant, ctx, pass_number, children[variant.name])
        else:
            result = _pass_here(variant, ctx, pass_number)
        if comparison.check is not None:
            result.update(comparison.check(ctx, pass_number, result))
    except ScenarioSkipped as exc:
        return {"skipped": str(exc)}
    except Exception as exc:  # one failing variant must not hide the others
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    return result


def _pass_here(variant: Variant, ctx: BenchContext, pass_number: int) -> dict[str, Any]:
    warm, body = variant.factory(ctx, pass_number)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SessionReuseWarning)
        return measure(ctx, warm, body)


# -- variants in a child process ---------------------------------------------------------


class _Child:
    """A variant's child process and its line protocol; every read is bounded by CHILD_TIMEOUT."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
            env={**os.environ, **environment},
        )

    def send(self, line: str) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def read(self, expect: str) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        timer = threading.Timer(CHILD_TIMEOUT, self.process.kill)
        timer.start()
        try:
            line = stdout.readline()
        finally:
            timer.cancel()
        if not line.startswith(expect):
            raise RuntimeError(f"variant process: expected {expect!r}, got {line.strip()!r}{self._last_error()}")
        return line[len(expect) :].strip()

    def _last_error(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return f" ({lines[-1]})" if lines else ""

    def close(self) -> None:
        process = self.process
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(_CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self._stderr.close()


def _pass_in_child(
    comparison: Comparison, variant: Variant, ctx: BenchContext, pass_number: int, child: _Child
) -> dict[str, Any]:
    spec = {
        "comparison": comparison.name,
        "variant": variant.name,
        "pass": pass_number,
        "scheme": ctx.server.scheme,
        "ports": list(ctx.server.ports),
        "bundle": ctx.bundle,
        "requests": ctx.requests,
        "slow_requests": ctx.slow_requests,
        "download_bytes": ctx.download_bytes,
        "scratch": ctx.scratch,
        "warmup": ctx.warmup,
        "run_id": ctx.run_id,
    }
    child.send(json.dumps(spec))
    child.read("ready")
    ctx.process.reset()
    child.send("go")
    answer = json.loads(child.read("result "))
    try:
        if "skipped" in answer:
            raise ScenarioSkipped(answer["skipped"])
        if "error" in answer:
            raise RuntimeError(answer["error"])
        server = server_figures(ctx)
    finally:
        child.send("close")
        child.read("closed")
    return {**answer, **server}


def fast_path_state() -> dict[str, Any] | None:
    """What this process's library says of its fast path, from ``session_presets.diagnostics()``.

    None when this build has no ``diagnostics()``; otherwise its fields whose
    names mention the fast path.
    """
    import session_presets

    diagnostics = getattr(session_presets, "diagnostics", None)
    if diagnostics is None:
        return None
    report = diagnostics()
    if not dataclasses.is_dataclass(report) or isinstance(report, type):
        return {"diagnostics": repr(report)}
    return {
        item.name: _plain(getattr(report, item.name))
        for item in dataclasses.fields(report)
        if "fast" in item.name
    }


def _plain(value: Any) -> Any:
    """Return ``value`` as something json.dumps takes."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, frozenset, set)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return repr(value)
