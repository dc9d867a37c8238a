"""Generated parts of the documentation, from the code they describe, so they cannot drift.

The MkDocs hook (``tools/mkdocs_hooks.py``) replaces each ``<!-- generated: NAME -->`` line of a
page with ``GENERATORS[NAME]()`` at build time. The tests call the same functions.

- ``preset-table`` and ``env-table``: from ``session_presets._config.FIELD_SPECS``, the one spec
  per field.
- ``cli-reference`` and ``exit-table``: from the argparse parser of ``session-presets``.
- ``bench-table`` and ``bench-chart``: from a ``session-presets bench --json`` run kept in
  ``docs/assets/bench.json`` (``python tools/docgen.py bench-chart FILE.json`` prints the chart
  of another run).
- ``otel-export``: what ``session_presets.instrument()`` exports for a few requests to a
  loopback server, read back through the OpenTelemetry SDK's in-memory reader.

Run ``python tools/docgen.py NAME`` to print one of them.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_JSON = ROOT / "docs" / "assets" / "bench.json"

#: Built-in presets shown as columns of the preset table.
PRESET_COLUMNS = ("default", "ephemeral", "background")

#: Variables with the library's prefix that are not preset fields, and what each does.
EXTRA_VARIABLES = {
    "SESSION_PRESETS_STRICT_REUSE": (
        "a boolean: 1/0/true/false/yes/no/on/off",
        "true turns `SessionReuseWarning` into `SessionReuseError`",
    ),
    "SESSION_PRESETS_FAST_PATH": (
        "on or off",
        "off makes the library call requests' and urllib3's own methods instead of its faster stand-ins",
    ),
    "SESSION_PRESETS_AGENT_IDLE": (
        "a number of seconds",
        "how long the detached-transfer agent waits with nothing to do before it exits (default 60)",
    ),
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _versionless(text: str) -> str:
    """Write the package's and requests' versions as VERSION: the tables do not change with releases."""
    from requests.__version__ import __version__ as requests_version

    from session_presets import __version__

    return text.replace(__version__, "VERSION").replace(requests_version, "VERSION")


def render_preset_table() -> str:
    """The preset table: one row per field, the built-in values written as the environment writes them."""
    from session_presets._config import FIELD_SPECS
    from session_presets._presets import BUILTIN_PRESETS

    rows = [
        "| field | " + " | ".join(PRESET_COLUMNS) + " | meaning |",
        "|---|" + "---|" * len(PRESET_COLUMNS) + "---|",
    ]
    for name, spec in FIELD_SPECS.items():
        cells = [_cell(_versionless(spec.show(getattr(BUILTIN_PRESETS[p], name)))) for p in PRESET_COLUMNS]
        rows.append(f"| `{name}` | " + " | ".join(f"`{c}`" for c in cells) + f" | {spec.doc} |")
    return "\n".join(rows)


def render_env_table() -> str:
    """The environment-variable table: one variable per field, with the form its value takes."""
    from session_presets._config import FIELD_SPECS
    from session_presets._env import _EXTRA_VARIABLES, variable_name

    rows = [
        "| variable | sets | accepted value |",
        "|---|---|---|",
    ]
    for name, spec in FIELD_SPECS.items():
        rows.append(f"| `{variable_name(name)}` | `{name}` | {_cell(spec.form)} |")
    for variable in sorted(_EXTRA_VARIABLES):
        # A variable added without a description still gets its row (describe it in EXTRA_VARIABLES).
        form, doc = EXTRA_VARIABLES.get(variable, ("see the code", "not described here yet"))
        rows.append(f"| `{variable}` | {doc} | {_cell(form)} |")
    return "\n".join(rows)


# -- the command line --------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser, prefix: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # aliases point at the same parser
                    seen.add(id(sub))
                    yield from _subcommands(sub, f"{prefix} {name}")


def render_cli_reference() -> str:
    """One section per command, with the help text that argparse prints for it."""
    from session_presets import cli

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # the same wrapping on every machine
    try:
        parser = cli.build_parser()
        parser.prog = "session-presets"
        sections = []
        for name, sub in _subcommands(parser, "session-presets"):
            sub.prog = name
            sections.append(f"### `{name}`\n\n```text\n{sub.format_help().rstrip()}\n```")
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return "\n\n".join(sections)


def render_exit_table() -> str:
    """The exit statuses, as ``--help`` prints them."""
    from session_presets.cli import EXIT_TABLE

    return f"```text\n{EXIT_TABLE.split(chr(10), 1)[1]}\n```"


# -- the bench -----------------------------------------------------------------------------------

#: The ratios the Performance page charts: (label, numerator, denominator, target or None).
BENCH_RATIOS = (
    ("get_session / requests_get", "get_session", "requests_get", 15.0),
    ("ephemeral_per_call / requests_get", "ephemeral_per_call", "requests_get", 4.0),
    ("get_session / requests_session", "get_session", "requests_session", 1.2),
    ("get_session / httpx_client", "get_session", "httpx_client", 1.0),
    ("get_session / urllib3_pool", "get_session", "urllib3_pool", 0.88),
    ("default_session_per_call / no resumption", "default_session_per_call",
     "default_session_per_call_no_resumption", None),
    ("threads_32 / no pool_block", "threads_32", "threads_32_no_pool_block", None),
    ("metrics on / off", "get_session", "get_session_metrics_off", 0.97),
    ("background_download / requests_stream", "background_download", "requests_stream", 0.9),
)


def _scenarios(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    scenarios = run.get("scenarios", run)
    if isinstance(scenarios, list):
        return {s["name"]: s for s in scenarios}
    return dict(scenarios)


def bench_ratios(run: dict[str, Any]) -> list[tuple[str, float, float | None]]:
    """(label, ratio of req/s, target) for every charted ratio whose two scenarios the run has."""
    scenarios = _scenarios(run)
    ratios = []
    for label, top, bottom, target in BENCH_RATIOS:
        if top in scenarios and bottom in scenarios and scenarios[bottom]["req_per_s"]:
            ratios.append((label, scenarios[top]["req_per_s"] / scenarios[bottom]["req_per_s"], target))
    return ratios


def render_bench_chart_svg(run: dict[str, Any]) -> str:
    """A horizontal bar chart of the bench ratios on a log scale, with a tick at each target."""
    import math

    ratios = bench_ratios(run)
    if not ratios:
        raise ValueError("the bench run has none of the charted scenario pairs")
    label_w, bar_w, row_h, top = 300, 420, 26, 34
    lo, hi = min(0.5, *(r / 1.25 for _, r, _ in ratios)), max(200.0, *(r * 1.25 for _, r, _ in ratios))
    span = math.log10(hi) - math.log10(lo)

    def x(value: float) -> float:
        return label_w + bar_w * (math.log10(max(value, lo)) - math.log10(lo)) / span

    height = top + row_h * len(ratios) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {label_w + bar_w + 70} {height}" '
        f'role="img" aria-label="session-presets bench: ratios of requests per second" '
        f'style="max-width:100%;height:auto;font-family:sans-serif;font-size:12px">',
        f'<text x="{label_w}" y="16" font-weight="bold">req/s ratio, same run (log scale, bars from 1x); '
        f"the black tick marks the target</text>",
    ]
    for tick in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500):
        if lo <= tick <= hi:
            tx = x(tick)
            out.append(f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{height - 30}" '
                       f'stroke="#ccc" stroke-width="{1.5 if tick == 1 else 0.5}"/>')
            out.append(f'<text x="{tx:.1f}" y="{height - 16}" text-anchor="middle" fill="#555">{tick:g}x</text>')
    one = x(1.0)
    for i, (label, ratio, target) in enumerate(ratios):
        y = top + i * row_h
        met = target is None or ratio >= target
        colour = "#3f7fbf" if met else "#d08030"
        # Bars grow from 1x: right for faster, left for slower than the denominator.
        left, right = sorted((one, x(ratio)))
        out.append(f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end">{html.escape(label)}</text>')
        out.append(f'<rect x="{left:.1f}" y="{y + 3}" width="{max(right - left, 1):.1f}" height="{row_h - 8}" '
                   f'fill="{colour}"/>')
        if target is not None:
            out.append(f'<line x1="{x(target):.1f}" y1="{y}" x2="{x(target):.1f}" y2="{y + row_h - 2}" '
                       f'stroke="#222" stroke-width="2"/>')
        text_x = max(right, x(target) if target is not None else right) + 5
        out.append(f'<text x="{text_x:.1f}" y="{y + 14}">{ratio:.2f}x</text>')
    out.append("</svg>")
    return "\n".join(out)


def _load_bench(path: Path = BENCH_JSON) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def render_bench_chart() -> str:
    """The chart of the kept bench run, inline in the page."""
    return render_bench_chart_svg(_load_bench())


def render_bench_table() -> str:
    """The kept run's figures, one row per scenario."""
    run = _load_bench()
    rows = [
        "| scenario | requests | seconds | req/s | p50 ms | p99 ms | connections | RSS growth MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def ms(value: Any) -> str:
        return "-" if value is None else f"{value * 1000:.2f}" if value < 10 else f"{value:.2f}"

    for name, s in _scenarios(run).items():
        p50 = s.get("p50_ms", None)
        p99 = s.get("p99_ms", None)
        rows.append(
            f"| `{name}` | {s['requests']} | {s['seconds']:.3f} | {s['req_per_s']:.0f} | "
            f"{'-' if p50 is None else f'{p50:.2f}'} | {'-' if p99 is None else f'{p99:.2f}'} | "
            f"{s['connections_opened']} | {s['rss_growth_bytes'] / 2**20:+.2f} |"
        )
    return "\n".join(rows)


# -- OpenTelemetry ---------------------------------------------------------------------------------


def otel_export() -> dict[str, Any]:
    """What instrument() exports after three requests (two on one connection, one 404) to a loopback server."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    import session_presets
    from session_presets.testing import MockResponse, MockServer

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrumentation = session_presets.instrument(meter_provider=provider)
    try:
        with MockServer() as server:
            server.route("/items", MockResponse.json({"items": []}))
            server.route("/missing", MockResponse(404))
            with session_presets.default_session(proxies="none") as session:
                session.get(server.url("/items"))
                session.get(server.url("/items"))
                session.get(server.url("/missing"))
            data = reader.get_metrics_data()
    finally:
        instrumentation.uninstrument()
        provider.shutdown()
    return dict(json.loads(data.to_json()))


def render_otel_export() -> str:
    """The export as the SDK serialises it (trimmed), and a chart of the request-duration histogram."""
    export = otel_export()
    scope = export["resource_metrics"][0]["scope_metrics"][0]
    metrics = scope["metrics"]
    duration = next(m for m in metrics if m["name"] == "http.client.request.duration")
    kinds = "\n".join(
        f"- `{m['name']}` ({m['unit']}, {len(m['data']['data_points'])} data point(s)): {m['description']}"
        for m in metrics
    )
    parts = [
        f"The exported metrics (scope `{scope['scope']['name']}` {scope['scope']['version']}):\n\n{kinds}",
        "The request-duration histogram as the SDK serialises it (`MetricsData.to_json()`, what "
        "`ConsoleMetricExporter` prints), in full:",
        "```json\n" + _json_with_flat_lists(duration) + "\n```",
        _otel_histogram_svg(duration["data"]["data_points"]),
    ]
    return "\n\n".join(parts)


def _json_with_flat_lists(value: Any) -> str:
    """Indented JSON with every list of numbers on one line (bucket bounds and counts)."""
    import re

    text = json.dumps(value, indent=2)
    numbers = re.compile(r"\[\s*([-0-9.e+,\s]+?)\s*\]")
    return numbers.sub(lambda m: "[" + " ".join(m.group(1).split()).replace(",", ", ").replace(",  ", ", ") + "]", text)


def _otel_histogram_svg(points: list[dict[str, Any]]) -> str:
    """One bar per request-duration data point (its attributes, its count and mean)."""
    width, row_h, label_w = 820, 24, 400
    rows = []
    peak = max(p["sum"] / p["count"] for p in points if p["count"]) or 1.0
    for p in points:
        a = p["attributes"]
        label = (f'{a.get("http.request.method")} {a.get("server.address")}:{a.get("server.port")} '
                 f'status={a.get("http.response.status_code")} preset={a.get("session_presets.preset")}'
                 + (f' error.type={a["error.type"]}' if "error.type" in a else ""))
        mean = p["sum"] / p["count"] if p["count"] else 0.0
        rows.append((label, p["count"], mean))
    height = 30 + row_h * len(rows) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="http.client.request.duration data points" '
        f'style="max-width:100%;height:auto;font-family:sans-serif;font-size:12px">',
        '<text x="0" y="16" font-weight="bold">http.client.request.duration: one data point per attribute set '
        "(bar: mean duration)</text>",
    ]
    for i, (label, count, mean) in enumerate(rows):
        y = 28 + i * row_h
        bar = (width - label_w - 190) * mean / peak
        out.append(f'<text x="0" y="{y + 14}">{html.escape(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(bar, 1):.1f}" height="{row_h - 8}" fill="#3f7fbf"/>')
        out.append(f'<text x="{label_w + bar + 4:.1f}" y="{y + 14}">count {count}, mean {mean * 1000:.2f} ms</text>')
    out.append("</svg>")
    return "\n".join(out)


# -- the API reference ---------------------------------------------------------------------------

#: The first entries of the API page, in the order a reader meets them; every other public name
#: follows, classes before exceptions and warnings, each group sorted.
API_FIRST = (
    "get_session", "close_all", "default_session", "ephemeral_session", "background_session",
    "register_preset", "get_preset", "preset_names", "instrument",
)


def _api_path(name: str) -> str:
    """Where mkdocstrings finds a public name: the module that defines it (lazy names load it)."""
    import importlib

    import session_presets

    obj = getattr(session_presets, name)
    module = getattr(obj, "__module__", None) or "session_presets"
    if not hasattr(importlib.import_module(module), name):
        return f"session_presets.{name}"
    return f"{module}.{name}"


def render_api_reference() -> str:
    """A mkdocstrings entry for every name in ``session_presets.__all__``, so the page lists them all."""
    import session_presets

    names = [n for n in session_presets.__all__ if not n.startswith("_")]
    objects = {n: getattr(session_presets, n) for n in names}

    def is_error(n: str) -> bool:
        return isinstance(objects[n], type) and issubclass(objects[n], BaseException)

    first = [n for n in API_FIRST if n in objects]
    functions = sorted(n for n in names if n not in first and not isinstance(objects[n], type))
    classes = sorted(n for n in names if isinstance(objects[n], type) and not is_error(n))
    # Warnings after errors; within each, the base class first.
    errors = sorted(
        (n for n in names if is_error(n)),
        key=lambda n: (issubclass(objects[n], Warning), not n.startswith("SessionPresets"), n),
    )
    groups = (
        ("Functions", first + functions),
        ("Classes", classes),
        ("Exceptions and warnings", errors),
    )
    out = []
    for title, members in groups:
        out.append(f"## {title}")
        for n in members:
            entry = f"::: {_api_path(n)}"
            inherited = _inherited_from_package(objects[n])
            if inherited:
                # mkdocstrings leaves inherited members out; the ones from the package's own bases
                # (the shared lifecycle, the read-only mixin) are part of the class's API.
                entry += "\n    options:\n      inherited_members: [" + ", ".join(inherited) + "]"
            out.append(entry)
    return "\n\n".join(out)


def _inherited_from_package(obj: object) -> list[str]:
    """The public members a class gets from a base class of this package rather than defining them."""
    if not isinstance(obj, type):
        return []
    own = set(vars(obj))
    names: set[str] = set()
    for base in obj.__mro__[1:]:
        if base.__module__.split(".")[0] != "session_presets":
            continue
        names.update(n for n in vars(base) if not n.startswith("_") and n not in own)
    return sorted(names)


GENERATORS: dict[str, Callable[[], str]] = {
    "api-reference": render_api_reference,
    "preset-table": render_preset_table,
    "env-table": render_env_table,
    "cli-reference": render_cli_reference,
    "exit-table": render_exit_table,
    "bench-table": render_bench_table,
    "bench-chart": render_bench_chart,
    "otel-export": render_otel_export,
}


def main(argv: list[str]) -> int:
    """Print one generated part: ``NAME``, or ``bench-chart FILE.json`` for another bench run."""
    if len(argv) == 2 and argv[0] == "bench-chart":
        print(render_bench_chart_svg(_load_bench(Path(argv[1]))))
        return 0
    if len(argv) != 1 or argv[0] not in GENERATORS:
        print(f"usage: python tools/docgen.py {{{','.join(GENERATORS)}}} | bench-chart FILE.json", file=sys.stderr)
        return 2
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        text = GENERATORS[argv[0]]()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
