"""Ratios, the environment description and the human-readable table of a bench run."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import ssl
import statistics
import sys
from collections.abc import Mapping
from typing import Any, Final

from .. import _upstream
from .._version import __version__
from .scenarios import COMPARISON_SCENARIOS, DOWNLOAD_SCENARIOS

__all__ = ["environment", "format_table", "ratios"]

#: The scenarios every other one is compared with, by req/s.
BASELINES = ("requests_get", "requests_session")


def _rate(result: Mapping[str, Any] | None) -> float | None:
    if not result or "req_per_s" not in result or not result["req_per_s"]:
        return None
    return float(result["req_per_s"])


#: Side-by-side comparisons of one mechanism on and off, or of us and a floor.
PAIRS: Final = (
    ("get_session", "urllib3_pool"),
    ("get_session", "httpx_client"),
    ("default_session_per_call", "default_session_per_call_no_resumption"),
    ("threads_32", "threads_32_no_pool_block"),
)


def ratios(scenarios: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Return req/s of each request scenario divided by each baseline's req/s.

    Comparison scenarios (such as ``api_client``) are left out of those
    tables, since their work differs from the baselines'; each brings its own
    ratios, copied under its name (``out["api_client"]``).

    The key ``background_download_vs_requests_stream`` compares the two
    downloads by throughput, when both ran, and
    ``cpu_requests_stream_vs_background_download`` by CPU seconds per byte
    (above 1 when the background download needs less CPU).
    """
    out: dict[str, dict[str, float]] = {}
    for baseline in BASELINES:
        base = _rate(scenarios.get(baseline))
        if base is None:
            continue
        out[f"vs_{baseline}"] = {
            name: rate / base
            for name, result in scenarios.items()
            if name not in DOWNLOAD_SCENARIOS
            and name not in COMPARISON_SCENARIOS
            and (rate := _rate(result)) is not None
        }
    pairs = {
        f"{name}_vs_{other}": rate / base
        for name, other in PAIRS
        if (rate := _rate(scenarios.get(name))) is not None and (base := _rate(scenarios.get(other))) is not None
    }
    if pairs:
        out["pairs"] = pairs
    for name in COMPARISON_SCENARIOS:
        if scenarios.get(name, {}).get("ratios"):
            out[name] = dict(scenarios[name]["ratios"])
    background, plain = scenarios.get("background_download"), scenarios.get("requests_stream")
    if background and plain and background.get("mib_per_s") and plain.get("mib_per_s"):
        ours, theirs = background.get("rounds_mib_per_s"), plain.get("rounds_mib_per_s")
        if ours and theirs and len(ours) == len(theirs):
            # The median of the rounds' own ratios: each round's two downloads met the same machine.
            ratio = statistics.median(mine / other for mine, other in zip(ours, theirs, strict=True) if other)
        else:
            ratio = background["mib_per_s"] / plain["mib_per_s"]
        downloads = {"background_download_vs_requests_stream": ratio}
        if background.get("cpu_seconds") and plain.get("cpu_seconds"):
            # CPU per byte: steadier than throughput on a shared machine (no waiting for a core).
            downloads["cpu_requests_stream_vs_background_download"] = plain["cpu_seconds"] / background["cpu_seconds"]
        out["downloads"] = downloads
    return out


def environment(**run: Any) -> dict[str, Any]:
    """Describe the machine and the versions the figures come from, plus ``run`` settings."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "session_presets": __version__,
        "requests": importlib.metadata.version("requests"),
        "urllib3": importlib.metadata.version("urllib3"),
        "openssl": ssl.OPENSSL_VERSION,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "executable": sys.executable,
        # What the figures of a PresetSession were measured with (docs/fast-path.md).
        "fast_path": "on" if _upstream.gate().active else f"off ({_upstream.gate().reason})",
    }
    try:
        import httpx

        info["httpx"] = httpx.__version__
    except ImportError:
        info["httpx"] = None
    try:
        import psutil

        info["measured_with"] = f"psutil {psutil.__version__}"
    except ImportError:
        info["measured_with"] = "/proc/self" if os.path.isdir("/proc/self/fd") else "resource"
    info.update(run)
    return info


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _mib(value: float) -> str:
    return f"{value / (1 << 20):+.2f}"


def _rows(scenarios: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """Return the table's rows: a comparison scenario gives one row per variant, ``name/variant``."""
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for name, result in scenarios.items():
        variants = result.get("variants")
        if isinstance(variants, Mapping):
            rows.extend((f"{name}/{variant}", figures) for variant, figures in variants.items())
        else:
            rows.append((name, result))
    return rows


def format_table(report: Mapping[str, Any]) -> str:
    """Return the report as an aligned text table followed by the ratios."""
    scenarios: Mapping[str, Mapping[str, Any]] = report["scenarios"]
    env = report["environment"]
    # What a full handshake costs, and so what resumption saves, depends on the key type.
    certificate = f" ({env['cert_key']} certificate)" if env.get("cert_key") else ""
    lines = [
        f"session-presets bench: {env.get('scheme', 'https')}{certificate} on 127.0.0.1, server in its own process; "
        f"python {env['python']}, requests {env['requests']}, urllib3 {env['urllib3']}, "
        f"{env['cpu_count']} CPU(s); fast path {env.get('fast_path', 'unknown')}",
        "",
    ]
    header = ("scenario", "requests", "seconds", "req/s", "p50 ms", "p99 ms", "conns", "rss MiB", "fds after", "note")
    rows: list[tuple[str, ...]] = [header]
    for name, result in _rows(scenarios):
        if "skipped" in result or "error" in result:
            reason = result.get("skipped") or f"error: {result.get('error')}"
            rows.append((name, *["-"] * (len(header) - 2), str(reason)))
            continue
        note = ""
        if "mib_per_s" in result:
            note = f"{result['bytes'] / (1 << 20):.0f} MiB at {result['mib_per_s']:.0f} MiB/s"
        elif result.get("open_fds_after") != result.get("open_fds_before"):
            note = f"fds before {result.get('open_fds_before')}"
        if result.get("server_tls_resumed"):
            resumed = f"{result['server_tls_resumed']} resumed"
            note = f"{note}; {resumed}" if note else resumed
        rows.append(
            (
                name,
                str(result["requests"]),
                f"{result['seconds']:.3f}",
                f"{result['req_per_s']:.0f}",
                _ms(result.get("p50_ms")),
                _ms(result.get("p99_ms")),
                str(result["connections_opened"]),
                _mib(result["rss_growth_bytes"]),
                str(result["open_fds_after"]),
                note,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(widths[i]) for i, cell in enumerate(row[1:-1], 1)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths[:-1]) + "  " + "-" * max(4, widths[-1]))
    found = report.get("ratios", {})
    for baseline in ("requests_get", "requests_session"):
        table = found.get(f"vs_{baseline}")
        if table:
            lines.append("")
            lines.append(f"req/s relative to {baseline}:")
            lines.extend(f"  {name.ljust(widths[0])}  {value:8.2f}x" for name, value in table.items())
    pairs = found.get("pairs")
    if pairs:
        lines.append("")
        lines.append("req/s side by side:")
        lines.extend(f"  {name}  {value:.2f}x" for name, value in pairs.items())
    for name in COMPARISON_SCENARIOS:
        compared = scenarios.get(name)
        if not compared or "variants" not in compared:
            continue
        lines.append("")
        lines.append(f"{name}: {compared['summary']}")
        lines.append(f"  {compared['requests']} requests a pass; median of {compared['rounds']} interleaved rounds")
        labels = {key: value.get("label", key) for key, value in compared["variants"].items()}
        tables: Mapping[str, Mapping[str, float]] = found.get(name) or {}
        wall, cpu = tables.get("req_per_s", {}), tables.get("req_per_cpu_s", {})
        texts = {}
        for ratio in dict.fromkeys([*wall, *cpu]):
            mine, _, theirs = ratio.partition("_vs_")
            texts[ratio] = f"{labels.get(mine, mine)} / {labels.get(theirs, theirs)}"
        width = max([len(text) for text in texts.values()] + [5])
        if texts:
            lines.append(f"  {'ratio':<{width}}    req/s  req per CPU second")
        for ratio, text in texts.items():
            lines.append(f"  {text:<{width}}  {_ratio(wall.get(ratio)):>7}  {_ratio(cpu.get(ratio)):>7}")
    downloads = found.get("downloads")
    if downloads:
        lines.append("")
        value = downloads["background_download_vs_requests_stream"]
        rounds = len(scenarios.get("background_download", {}).get("rounds_mib_per_s") or [0])
        of = f" (median of {rounds} interleaved rounds)" if rounds > 1 else ""
        lines.append(f"background_download throughput relative to requests_stream: {value:.2f}x{of}")
        cpu = downloads.get("cpu_requests_stream_vs_background_download")
        if cpu is not None:
            lines.append(f"background_download CPU efficiency relative to requests_stream: {cpu:.2f}x")
    cost = report.get("import_cost")
    if cost:
        lines.append("")
        if "error" in cost:
            lines.append(f"import cost: not measured: {cost['error']}")
        else:
            cached = "" if cost["bytecode_cached"] else "; no bytecode cache, so compiled on every run"
            lines.append(
                f"import session_presets after import requests: {cost['ms_over_requests']:.1f} ms "
                f"(median of {len(cost['runs_ms'])} fresh `python -X importtime` runs; "
                f"target {cost['target_ms']:.0f} ms; requests itself {cost['requests_ms']:.1f} ms{cached})"
            )
    return "\n".join(lines)
