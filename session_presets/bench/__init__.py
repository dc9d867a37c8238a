"""``session-presets bench``: the same requests through each pattern, measured in one run.

The server runs in a process of its own (see :mod:`.server`), over HTTPS with
a throwaway CA unless plain HTTP is asked for. Nothing in the library imports
this package; it imports the library like any user would.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .._registry import default_registry, get_session
from .certs import DEFAULT_KEY_TYPE, KEY_TYPES, BenchSetupError, make_certificates
from .compare import run_comparison
from .comparisons import COMPARISONS
from .importcost import DEFAULT_IMPORT_RUNS, measure_import_cost
from .report import environment, format_table, ratios
from .scenarios import (
    COMPARISON_SCENARIOS,
    DOWNLOAD_SCENARIOS,
    PER_CALL_SCENARIOS,
    SCENARIOS,
    BenchContext,
    ScenarioSkipped,
    open_fds,
    run_scenario,
)
from .server import ServerProcess

__all__ = [
    "DEFAULT_COMPARISON_REQUESTS",
    "DEFAULT_COMPARISON_ROUNDS",
    "DEFAULT_DOWNLOAD_MIB",
    "DEFAULT_DOWNLOAD_ROUNDS",
    "DEFAULT_REQUESTS",
    "BenchOptions",
    "BenchSetupError",
    "format_table",
    "run_bench",
]

#: N, the request count of every pooled scenario.
DEFAULT_REQUESTS: Final = 2000
#: The request count of the connection-per-call scenarios, at most N.
DEFAULT_SLOW_REQUESTS: Final = 300
#: Size of the download scenarios' file, in MiB.
DEFAULT_DOWNLOAD_MIB: Final = 256
#: Interleaved rounds of the download scenarios.
DEFAULT_DOWNLOAD_ROUNDS: Final = 3
#: The request count of each pass of a comparison scenario (such as api_client), at most N.
DEFAULT_COMPARISON_REQUESTS: Final = 200
#: Interleaved rounds of the comparison scenarios; each variant runs once per round.
DEFAULT_COMPARISON_ROUNDS: Final = 5


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What one bench run does.

    Attributes:
        requests: N for the pooled scenarios.
        slow_requests: N for the connection-per-call scenarios; min(N, 300) if None.
        scheme: "https" (throwaway CA) or "http".
        download_mib: size of the download scenarios' file, in MiB (fractions allowed).
        scenarios: which scenarios to run, in the standard order; all if None.
        download_rounds: interleaved rounds of the download scenarios; the median is reported.
        import_runs: fresh interpreters timing ``import session_presets``
            (see :mod:`.importcost`); 0 skips it, None means 7.
        cert_key: the key type of the HTTPS server's certificate, ``"rsa"``
            (RSA-2048, what most servers present) or ``"ecdsa"`` (P-256).
        comparison_requests: requests of each pass of a comparison scenario;
            min(N, 200) if None.
        comparison_rounds: interleaved rounds of the comparison scenarios; medians are reported.
    """

    requests: int = DEFAULT_REQUESTS
    slow_requests: int | None = None
    scheme: str = "https"
    download_mib: float = DEFAULT_DOWNLOAD_MIB
    scenarios: Sequence[str] | None = None
    import_runs: int | None = None
    download_rounds: int = DEFAULT_DOWNLOAD_ROUNDS
    cert_key: str = DEFAULT_KEY_TYPE
    comparison_requests: int | None = None
    comparison_rounds: int = DEFAULT_COMPARISON_ROUNDS


def _run_one(name: str, ctx: BenchContext, on_scenario: Callable[[str], None] | None) -> dict[str, Any]:
    if on_scenario is not None:
        on_scenario(name)
    try:
        return run_scenario(name, ctx)
    except ScenarioSkipped as exc:
        return {"skipped": str(exc)}
    except Exception as exc:  # one failing scenario must not hide the others
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}


def _run_comparison(
    name: str, ctx: BenchContext, count: int, rounds: int, on_scenario: Callable[[str], None] | None
) -> dict[str, Any]:
    """Run comparison ``name`` with ``count`` requests a pass, its passes numbered apart from any other's."""
    try:
        return run_comparison(
            COMPARISONS[name],
            dataclasses.replace(ctx, requests=count),
            rounds,
            first_pass=1 + COMPARISON_SCENARIOS.index(name) * 1000,
            on_variant=on_scenario,
        )
    except Exception as exc:  # one failing scenario must not hide the others
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}


def _run_downloads(
    names: Sequence[str], ctx: BenchContext, rounds: int, on_scenario: Callable[[str], None] | None
) -> dict[str, dict[str, Any]]:
    """Run the download scenarios in ``rounds`` interleaved rounds, their order alternating.

    One download of each per round, so both meet the same machine: on a shared
    machine a single pair swung between 0.5x and 2x. Each scenario reports its
    median round, every round's MiB/s, and the largest RSS growth of any round.
    """
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    failed: dict[str, dict[str, Any]] = {}
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            if name in failed:
                continue
            result = _run_one(name, ctx, on_scenario)
            if "mib_per_s" in result:
                runs[name].append(result)
            else:
                failed[name] = result
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        if name in failed:
            out[name] = failed[name]
            continue
        ordered = sorted(runs[name], key=lambda result: result["mib_per_s"])
        out[name] = {
            **ordered[(len(ordered) - 1) // 2],
            "rounds_mib_per_s": [result["mib_per_s"] for result in runs[name]],
            "rss_growth_bytes": max(result["rss_growth_bytes"] for result in runs[name]),
        }
    return out


def run_bench(options: BenchOptions, *, on_scenario: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the bench and return ``{"scenarios": ..., "ratios": ..., "environment": ...}``.

    Args:
        options: what to run.
        on_scenario: called with each scenario's name before it runs (progress).

    Raises:
        BenchSetupError: the certificates or the server cannot be set up.
        ValueError: an option is out of range or names an unknown scenario.
    """
    if options.requests < 1:
        raise ValueError("--requests must be at least 1")
    if options.scheme not in ("http", "https"):
        raise ValueError("--scheme must be http or https")
    if options.download_mib <= 0:
        raise ValueError("--download-mib must be above 0")
    if options.download_rounds < 1:
        raise ValueError("--download-rounds must be at least 1")
    if options.comparison_rounds < 1:
        raise ValueError("--comparison-rounds must be at least 1")
    if options.comparison_requests is not None and options.comparison_requests < 1:
        raise ValueError("--comparison-requests must be at least 1")
    if options.cert_key not in KEY_TYPES:
        raise ValueError(f"--cert-key must be one of {', '.join(KEY_TYPES)}, not {options.cert_key!r}")
    import_runs = DEFAULT_IMPORT_RUNS if options.import_runs is None else options.import_runs
    if import_runs < 0:
        raise ValueError("--import-runs must be 0 or more")
    wanted = list(SCENARIOS if options.scenarios is None else options.scenarios)
    unknown = [name for name in wanted if name not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    slow = options.slow_requests if options.slow_requests is not None else DEFAULT_SLOW_REQUESTS
    slow = max(1, min(options.requests, slow))
    compared = options.comparison_requests or min(options.requests, DEFAULT_COMPARISON_REQUESTS)
    download_bytes = max(1, int(options.download_mib * (1 << 20)))

    scratch = tempfile.mkdtemp(prefix="session-presets-bench-")
    try:
        fds_baseline = open_fds()
        bundle = cert = key = None
        if options.scheme == "https":
            certs = make_certificates(scratch, key_type=options.cert_key)
            bundle, cert, key = certs.bundle, certs.cert, certs.key
        try:
            listeners = max([COMPARISONS[name].listeners for name in wanted if name in COMPARISONS] or [1])
            server = ServerProcess(cert=cert, key=key, listeners=listeners)
        except (OSError, RuntimeError) as exc:
            raise BenchSetupError(f"cannot start the bench server: {exc}") from exc
        with server:
            ctx = BenchContext(
                server=server,
                bundle=bundle,
                requests=options.requests,
                slow_requests=slow,
                download_bytes=download_bytes,
                scratch=scratch,
                warmup=min(20, options.requests),
            )
            results: dict[str, dict[str, Any]] = {}
            try:
                for name in [n for n in SCENARIOS if n in wanted and n not in DOWNLOAD_SCENARIOS]:
                    if name in COMPARISON_SCENARIOS:
                        results[name] = _run_comparison(name, ctx, compared, options.comparison_rounds, on_scenario)
                    else:
                        results[name] = _run_one(name, ctx, on_scenario)
                downloads = [n for n in DOWNLOAD_SCENARIOS if n in wanted]
                results.update(_run_downloads(downloads, ctx, options.download_rounds, on_scenario))
            finally:
                if ctx.preset in default_registry.names():
                    get_session(ctx.preset).finish_tasks_and_invalidate()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report: dict[str, Any] = {"scenarios": results}
    if import_runs:
        if on_scenario is not None:
            on_scenario("import_cost")
        try:
            report["import_cost"] = measure_import_cost(import_runs)
        except (OSError, RuntimeError) as exc:
            report["import_cost"] = {"error": str(exc).splitlines()[0]}
    return {
        **report,
        "ratios": ratios(results),
        "environment": environment(
            scheme=options.scheme,
            cert_key=KEY_TYPES[options.cert_key] if options.scheme == "https" else None,
            n_requests=options.requests,
            slow_requests=slow,
            slow_scenarios=sorted(PER_CALL_SCENARIOS),
            comparison_requests=compared,
            comparison_rounds=options.comparison_rounds,
            download_bytes=download_bytes,
            open_fds_at_start=fds_baseline,
            pid=os.getpid(),
        ),
    }
