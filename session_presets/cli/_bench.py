"""``bench``: the request patterns compared on a loopback server (the bench itself loads when run)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ._base import EXIT_CONFIG, EXIT_OK, UsageError, err, positive_number, positive_whole_number, whole_number


def _bench_epilog() -> str:
    from ..bench.scenarios import SCENARIOS

    return "scenarios (for --scenarios, in the order they run):\n  " + "\n  ".join(SCENARIOS)


def _cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import BenchOptions, BenchSetupError, format_table, run_bench

    scenarios = None
    if args.scenarios:
        scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    options = BenchOptions(
        requests=args.requests,
        slow_requests=args.slow_requests,
        scheme=args.scheme,
        download_mib=args.download_mib,
        scenarios=scenarios,
        download_rounds=args.download_rounds,
        comparison_requests=args.comparison_requests,
        comparison_rounds=args.comparison_rounds,
        cert_key=args.cert_key,
        import_runs=args.import_runs if args.import_runs is not None else (0 if scenarios else None),
    )
    announce: Callable[[str], None] | None = None
    if not args.json and sys.stderr.isatty():

        def announce(name: str) -> None:
            sys.stderr.write(f"\r\x1b[Krunning {name} ...")
            sys.stderr.flush()

    try:
        report = run_bench(options, on_scenario=announce)
    except BenchSetupError as exc:
        err(str(exc))
        return EXIT_CONFIG
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        if announce is not None:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
    return EXIT_OK


def fill_bench_defaults(args: argparse.Namespace) -> None:
    """Fill in ``bench``'s defaults from the bench package, imported only when bench runs."""
    if getattr(args, "command", None) != "bench":
        return
    from ..bench import DEFAULT_DOWNLOAD_MIB, DEFAULT_REQUESTS

    if args.requests is None:
        args.requests = DEFAULT_REQUESTS
    if args.download_mib is None:
        args.download_mib = DEFAULT_DOWNLOAD_MIB


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``bench`` to the command's subparsers."""
    bench = sub.add_parser("bench", parents=[common], help="compare request patterns on a loopback server",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.epilog_factory = _bench_epilog
    bench.add_argument("--requests", type=positive_whole_number, default=None, metavar="N",
                       help="requests per pooled scenario (default: 2000)")
    bench.add_argument("--slow-requests", type=positive_whole_number, default=None, metavar="N",
                       help="requests per connection-per-call scenario (default: min(N, 300))")
    bench.add_argument("--scheme", choices=("https", "http"), default="https")
    bench.add_argument("--cert-key", choices=("rsa", "ecdsa"), default="rsa",
                       help="key type of the HTTPS server's certificate: rsa (RSA-2048, what most servers "
                            "present; default) or ecdsa (P-256, cheaper full handshakes)")
    bench.add_argument("--download-mib", type=positive_number, default=None, metavar="MIB",
                       help="size of the download scenarios' file (default: 256)")
    bench.add_argument("--scenarios", metavar="NAME,...", help="run only these scenarios (listed below)")
    bench.add_argument("--download-rounds", type=positive_whole_number, default=3, metavar="N",
                       help="interleaved rounds of the download scenarios; the median is reported (default: 3)")
    bench.add_argument("--comparison-requests", type=positive_whole_number, default=None, metavar="N",
                       help="requests per pass of each client in a comparison scenario such as api_client "
                            "(default: min(N, 200))")
    bench.add_argument("--comparison-rounds", type=positive_whole_number, default=5, metavar="N",
                       help="interleaved rounds of the comparison scenarios; medians are reported (default: 5)")
    bench.add_argument("--import-runs", type=whole_number, default=None, metavar="N",
                       help="fresh interpreters timing `import session_presets` (default: 7; "
                            "0 with --scenarios; 0 skips)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(run=_cmd_bench)
