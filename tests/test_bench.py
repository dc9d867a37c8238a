"""The bench: its out-of-process server, certificates, scenarios and report (tiny sizes)."""

from __future__ import annotations

import json
import os
import ssl
import statistics
import sys
import urllib.request
from pathlib import Path

import pytest
import requests

from session_presets import _upstream
from session_presets.bench import BenchOptions, importcost, run_bench
from session_presets.bench.certs import BenchSetupError, make_certificates
from session_presets.bench.importcost import parse_importtime
from session_presets.bench.report import format_table, ratios
from session_presets.bench.scenarios import SCENARIOS, open_fds, rss_bytes
from session_presets.bench.server import ServerProcess, blob_bytes
from session_presets.cli import main

RESULT_KEYS = {"requests", "seconds", "req_per_s", "connections_opened", "rss_growth_bytes", "open_fds_after"}


@pytest.fixture(scope="module")
def tiny_report() -> dict:  # type: ignore[type-arg]
    """One HTTPS bench run with 20 requests, a 256 KiB download and 2 api_client rounds, through the CLI."""
    import io
    from contextlib import redirect_stdout

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        status = main(["bench", "--requests", "20", "--download-mib", "0.25", "--import-runs", "2",
                       "--comparison-rounds", "2", "--json"])
    assert status == 0
    report: dict = json.loads(buffer.getvalue())  # type: ignore[type-arg]
    return report


def test_bench_json_has_every_scenario_and_section(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """--json prints scenarios, ratios, environment and import cost; every scenario key is present."""
    assert set(tiny_report) == {"scenarios", "ratios", "environment", "import_cost"}
    assert set(tiny_report["scenarios"]) == set(SCENARIOS)
    env = tiny_report["environment"]
    for key in ("python", "requests", "urllib3", "cpu_count", "platform"):
        assert env[key]
    assert env["scheme"] == "https"


def test_bench_request_scenarios_report_every_figure(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """Each request scenario that ran reports the six figures, with honest request counts."""
    scenarios = tiny_report["scenarios"]
    for name in ("requests_get", "session_per_call", "requests_session", "get_session",
                 "ephemeral_per_call", "urllib3_pool", "httpx_client", "requests_stream"):
        assert set(scenarios[name]) >= RESULT_KEYS, name
        assert scenarios[name]["req_per_s"] > 0
    assert scenarios["get_session"]["requests"] == 20
    assert scenarios["requests_get"]["requests"] == 20


def test_bench_server_counts_connections_per_scenario(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """get_session opens one connection for all its calls; per-call patterns one per call."""
    scenarios = tiny_report["scenarios"]
    assert scenarios["get_session"]["connections_opened"] == 1
    assert scenarios["get_session"]["client_connections_opened"] == 1
    assert scenarios["requests_session"]["connections_opened"] == 1
    assert scenarios["urllib3_pool"]["connections_opened"] == 1
    assert scenarios["requests_get"]["connections_opened"] == 20
    assert scenarios["ephemeral_per_call"]["connections_opened"] == 20
    assert scenarios["requests_stream"]["connections_opened"] == 1
    assert scenarios["requests_stream"]["bytes"] == 256 * 1024


def test_bench_resumption_scenarios_resume_every_handshake_or_none(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """default_session_per_call resumes every connection (warm-up cached a ticket); the off variant none."""
    scenarios = tiny_report["scenarios"]
    assert scenarios["default_session_per_call"]["connections_opened"] == 20
    assert scenarios["default_session_per_call"]["tls_resumed"] == 20
    assert scenarios["default_session_per_call_no_resumption"]["tls_resumed"] == 0
    assert scenarios["ephemeral_per_call"]["tls_resumed"] == 0
    assert "default_session_per_call_vs_default_session_per_call_no_resumption" in tiny_report["ratios"]["pairs"]


def test_bench_counts_resumed_handshakes_on_the_server(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """The server's own count of resumed handshakes: every call of default_session_per_call, none without resumption."""
    scenarios = tiny_report["scenarios"]
    assert scenarios["default_session_per_call"]["server_tls_resumed"] == 20
    assert scenarios["default_session_per_call_no_resumption"]["server_tls_resumed"] == 0
    assert scenarios["ephemeral_per_call"]["server_tls_resumed"] == 0
    assert scenarios["requests_get"]["server_tls_resumed"] == 0
    assert "20 resumed" in format_table(tiny_report)


def test_bench_uses_an_rsa_certificate_by_default(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """The HTTPS bench serves an RSA-2048 certificate unless told otherwise, and its header line says so."""
    assert tiny_report["environment"]["cert_key"] == "RSA-2048"
    assert format_table(tiny_report).startswith("session-presets bench: https (RSA-2048 certificate) on 127.0.0.1")


def test_bench_thread_scenarios_stay_within_the_pool(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """32 threads on one session open at most pool_maxsize (10) connections, as the server counts them."""
    scenarios = tiny_report["scenarios"]
    assert scenarios["threads_32"]["requests"] == 20
    assert 1 <= scenarios["threads_32"]["connections_opened"] <= 10
    assert scenarios["burst_16"]["requests"] == 16
    assert 1 <= scenarios["burst_16"]["connections_opened"] <= 10


def test_bench_ephemeral_sessions_leave_no_descriptors(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """ephemeral_per_call closes every session: no socket to the bench server is left open."""
    result = tiny_report["scenarios"]["ephemeral_per_call"]
    # Not the process-wide descriptor count: pytest's other threads (servers of
    # earlier tests winding down) open and close descriptors during the run.
    assert result["server_sockets_after"] == 0
    assert tiny_report["scenarios"]["get_session"]["server_sockets_after"] == 1


def test_bench_background_download_ran_or_says_why(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """background_download either reports its figures or names why it was skipped."""
    result = tiny_report["scenarios"]["background_download"]
    if "skipped" in result:
        assert "background" in result["skipped"]
    else:
        assert set(result) >= RESULT_KEYS
        assert result["bytes"] == 256 * 1024


def test_bench_downloads_run_in_interleaved_rounds(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """Each download scenario ran three rounds; it reports its median round and the ratio is the rounds' median."""
    background = tiny_report["scenarios"]["background_download"]
    plain = tiny_report["scenarios"]["requests_stream"]
    if "skipped" in background:
        pytest.skip(background["skipped"])
    assert len(background["rounds_mib_per_s"]) == len(plain["rounds_mib_per_s"]) == 3
    assert background["mib_per_s"] == statistics.median(background["rounds_mib_per_s"])
    per_round = [a / b for a, b in zip(background["rounds_mib_per_s"], plain["rounds_mib_per_s"], strict=True)]
    ratio = tiny_report["ratios"]["downloads"]["background_download_vs_requests_stream"]
    assert ratio == pytest.approx(statistics.median(per_round))
    assert "(median of 3 interleaved rounds)" in format_table(tiny_report)


def test_failed_download_round_stops_that_scenario_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A download scenario failing in one round reports its error; the other keeps all its rounds."""
    from session_presets.bench import scenarios

    real = scenarios.run_scenario
    calls = {"background_download": 0}

    def flaky(name: str, ctx: scenarios.BenchContext) -> dict:  # type: ignore[type-arg]
        if name == "background_download":
            calls[name] += 1
            if calls[name] == 2:
                raise RuntimeError("disk went away")
        return real(name, ctx)

    from session_presets import bench

    monkeypatch.setattr(bench, "run_scenario", flaky)
    report = run_bench(BenchOptions(requests=2, scheme="http", download_mib=0.01, import_runs=0,
                                    scenarios=["background_download", "requests_stream"]))
    assert report["scenarios"]["background_download"] == {"error": "RuntimeError: disk went away"}
    assert calls["background_download"] == 2  # not run again after it failed
    assert len(report["scenarios"]["requests_stream"]["rounds_mib_per_s"]) == 3
    assert "downloads" not in report["ratios"]


def test_bench_ratios_against_both_baselines(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """Ratios compare req/s with requests_get and requests_session."""
    found = tiny_report["ratios"]
    assert found["vs_requests_get"]["requests_get"] == pytest.approx(1.0)
    assert found["vs_requests_session"]["requests_session"] == pytest.approx(1.0)
    assert "get_session" in found["vs_requests_get"]
    assert "requests_stream" not in found["vs_requests_get"]


def test_bench_request_scenarios_report_latency_quantiles(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """Request scenarios report p50 <= p99 (ms) from a fixed-bucket histogram; one download reports none."""
    scenarios = tiny_report["scenarios"]
    for name in ("requests_get", "requests_session", "get_session", "urllib3_pool"):
        assert 0 < scenarios[name]["p50_ms"] <= scenarios[name]["p99_ms"], name
    assert 0 < scenarios["get_session"]["session_p50_ms"] <= scenarios["get_session"]["session_p99_ms"]
    assert "p50_ms" not in scenarios["requests_stream"]
    assert "p50 ms" in format_table(tiny_report) and "p99 ms" in format_table(tiny_report)
    off = scenarios["get_session_metrics_off"]
    assert (off["requests"], off["connections_opened"], off["client_connections_opened"]) == (20, 1, 1)
    assert off["session_p50_ms"] == 0.0  # nothing recorded with metrics off


def test_bench_table_is_readable(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """The table names every scenario and ends with the ratios."""
    table = format_table(tiny_report)
    for name in SCENARIOS:
        assert name in table
    assert "req/s relative to requests_get:" in table
    assert "req/s relative to requests_session:" in table


def test_bench_http_subset_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    """--scheme http with --scenarios runs only those, and prints the table."""
    status = main(["bench", "--scheme", "http", "--requests", "10", "--scenarios", "get_session,requests_session"])
    assert status == 0
    out = capsys.readouterr().out
    assert "get_session" in out
    assert "requests_session" in out
    assert "urllib3_pool" not in out


def test_bench_cert_key_ecdsa_is_printed_and_still_resumes(capsys: pytest.CaptureFixture[str]) -> None:
    """--cert-key ecdsa serves a P-256 certificate, says so in the header, and the server still sees resumptions."""
    status = main(["bench", "--cert-key", "ecdsa", "--requests", "3", "--scenarios", "default_session_per_call"])
    assert status == 0
    out = capsys.readouterr().out
    assert out.startswith("session-presets bench: https (ECDSA P-256 certificate) on 127.0.0.1")
    assert "3 resumed" in out
    assert main(["bench", "--cert-key", "dsa", "--requests", "3"]) == 2


def test_bench_unknown_scenario_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --scenarios name exits 2 and lists the known ones."""
    assert main(["bench", "--requests", "5", "--scenarios", "warp_drive"]) == 2
    assert "unknown scenario" in capsys.readouterr().err


def test_bench_table_note_keeps_descriptors_and_resumptions() -> None:
    """A scenario with both a descriptor change and resumed handshakes shows both in its note."""
    result = {"requests": 3, "seconds": 1.0, "req_per_s": 3.0, "connections_opened": 3, "rss_growth_bytes": 0,
              "open_fds_after": 10, "open_fds_before": 9, "server_tls_resumed": 2}
    report = {"scenarios": {"default_session_per_call": result},
              "environment": {"python": "3", "requests": "2", "urllib3": "2", "cpu_count": 2}}
    assert format_table(report).splitlines()[4].endswith("fds before 9; 2 resumed")


def test_ratios_skip_missing_and_skipped_scenarios() -> None:
    """Skipped scenarios are left out of the ratios instead of dividing by nothing."""
    found = ratios({"requests_get": {"req_per_s": 10.0}, "get_session": {"req_per_s": 200.0},
                    "httpx_client": {"skipped": "httpx is not installed"}})
    assert found == {"vs_requests_get": {"requests_get": 1.0, "get_session": 20.0}}


def test_server_process_counts_and_resets() -> None:
    """The server runs in another process and counts accepted connections over its pipe."""
    with ServerProcess() as server, requests.Session() as session:
        assert server.connections() == 0
        for _ in range(3):
            assert session.get(server.url("/ok")).text == "ok"
        assert server.connections() == 1
        requests.get(server.url("/ok"), timeout=5).close()
        assert server.connections() == 2
        server.reset()
        assert server.connections() == 0
        assert session.get(server.url("/missing")).status_code == 404


def test_server_process_blob_supports_range_and_if_range() -> None:
    """Blobs honour Range, and If-Range with a stale ETag gets the whole body."""
    with ServerProcess() as server, requests.Session() as session:
        url = server.url("/blob/1000")
        whole = session.get(url)
        assert whole.content == blob_bytes(0, 1000)
        assert whole.headers["Accept-Ranges"] == "bytes"
        etag = whole.headers["ETag"]
        part = session.get(url, headers={"Range": "bytes=600-", "If-Range": etag})
        assert part.status_code == 206
        assert part.headers["Content-Range"] == "bytes 600-999/1000"
        assert part.content == blob_bytes(600, 1000)
        stale = session.get(url, headers={"Range": "bytes=600-", "If-Range": '"other"'})
        assert stale.status_code == 200
        assert len(stale.content) == 1000
        assert session.get(url, headers={"Range": "bytes=5000-"}).status_code == 416


def test_server_process_does_not_outlive_its_handle() -> None:
    """close() stops the child process."""
    server = ServerProcess()
    process = server._process
    server.close()
    server.close()
    assert process.returncode is not None


def test_certificates_make_a_working_https_pair(tmp_path: Path) -> None:
    """The throwaway CA signs a 127.0.0.1 certificate the bundle trusts (trustme path)."""
    certs = make_certificates(str(tmp_path))
    _check_pair(certs.cert, certs.key, certs.bundle)
    with open(certs.bundle) as bundle, open(certs.ca) as ca:
        assert bundle.read().rstrip().endswith(ca.read().rstrip())


@pytest.mark.parametrize("backend", ["trustme", "cryptography"])
@pytest.mark.parametrize(("key_type", "public_key"), [("rsa", "RSAPublicKey"), ("ecdsa", "EllipticCurvePublicKey")])
def test_certificates_have_the_key_type_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, key_type: str, public_key: str
) -> None:
    """make_certificates gives the CA and the server certificate the key type asked for, with either backend."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if backend == "cryptography":
        monkeypatch.setitem(sys.modules, "trustme", None)
    certs = make_certificates(str(tmp_path), key_type=key_type)
    assert certs.key_type == key_type
    expected = rsa.RSAPublicKey if public_key == "RSAPublicKey" else ec.EllipticCurvePublicKey
    for path in (certs.cert, certs.ca):
        with open(path, "rb") as pem:
            key = x509.load_pem_x509_certificate(pem.read()).public_key()
        assert isinstance(key, expected), (path, key)
        if isinstance(key, rsa.RSAPublicKey):
            assert key.key_size == 2048
    _check_pair(certs.cert, certs.key, certs.bundle)
    with pytest.raises(ValueError, match="--cert-key must be one of rsa, ecdsa, not 'dsa'"):
        make_certificates(str(tmp_path), key_type="dsa")


def test_server_process_counts_resumed_handshakes(tmp_path: Path) -> None:
    """The bench server counts the TLS handshakes that resumed a session, and reset() zeroes the count."""
    import socket

    certs = make_certificates(str(tmp_path))
    context = ssl.create_default_context(cafile=certs.bundle)
    with ServerProcess(cert=certs.cert, key=certs.key) as server:

        def get(session: ssl.SSLSession | None) -> ssl.SSLSession:
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            with context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
                tls.sendall(b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                while tls.recv(4096):
                    pass
                assert tls.session is not None
                return tls.session

        first = get(None)
        get(first)
        assert (server.connections(), server.resumed_handshakes()) == (2, 1)
        server.reset()
        assert server.resumed_handshakes() == 0


def test_certificates_fall_back_to_cryptography(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without trustme, the cryptography package makes an equivalent pair."""
    monkeypatch.setitem(sys.modules, "trustme", None)
    certs = make_certificates(str(tmp_path))
    _check_pair(certs.cert, certs.key, certs.bundle)


def test_certificates_without_any_backend_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without trustme and cryptography the HTTPS bench exits 2 suggesting the bench extra."""
    monkeypatch.setitem(sys.modules, "trustme", None)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(BenchSetupError, match=r"pip install 'session-presets\[bench\]'"):
        make_certificates(str(tmp_path))
    assert main(["bench", "--requests", "2"]) == 2
    assert "session-presets[bench]" in capsys.readouterr().err


def _check_pair(cert: str, key: str, bundle: str) -> None:
    with ServerProcess(cert=cert, key=key) as server:
        context = ssl.create_default_context(cafile=bundle)
        with urllib.request.urlopen(server.url("/ok"), context=context, timeout=10) as response:
            assert response.read() == b"ok"


def test_measurements_work_without_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without psutil, memory and descriptors come from /proc (or resource)."""
    with_psutil = open_fds()
    monkeypatch.setitem(sys.modules, "psutil", None)
    assert rss_bytes() > 0
    assert abs(open_fds() - with_psutil) <= 1


def test_bench_import_cost_is_measured_in_fresh_interpreters(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """The import cost is the library's own cumulative -X importtime, one figure per fresh interpreter."""
    cost = tiny_report["import_cost"]
    assert len(cost["runs_ms"]) == 2 and all(ms > 0 for ms in cost["runs_ms"])
    assert cost["ms_over_requests"] == statistics.median(cost["runs_ms"])
    assert cost["requests_ms"] > 0 and cost["target_ms"] == 15.0
    assert cost["bytecode_cached"] is True  # the warm-up run wrote it, even under PYTHONDONTWRITEBYTECODE


def test_parse_importtime_keeps_top_level_imports_only() -> None:
    """Nested imports and the header line are left out; their time is inside their parent's."""
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       100 |        900 | requests\n"
        "import time:        50 |        300 |   session_presets._config\n"
        "import time:        20 |        400 | session_presets\n"
        "some other line\n"
    )
    assert parse_importtime(stderr) == {"requests": 900, "session_presets": 400}


def test_import_cost_failure_names_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """An interpreter that cannot import the library is an error with its exit status, not a figure."""
    monkeypatch.setattr(importcost, "_SCRIPT", "import requests, session_presets; raise SystemExit(3)")
    with pytest.raises(RuntimeError, match="exit 3"):
        importcost.measure_import_cost(1)
    with pytest.raises(ValueError, match="at least 1"):
        importcost.measure_import_cost(0)


def test_bench_table_reports_an_unmeasured_import_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed import measurement is a line saying why; the scenarios are still reported."""
    monkeypatch.setattr(importcost, "_SCRIPT", "raise SystemExit(4)")
    report = run_bench(BenchOptions(requests=2, scheme="http", scenarios=["get_session"], import_runs=1))
    assert "error" in report["import_cost"] and "get_session" in report["scenarios"]
    assert "import cost: not measured:" in format_table(report)


def test_run_bench_rejects_bad_options() -> None:
    """Option validation names the bad option."""
    with pytest.raises(ValueError, match="--requests"):
        run_bench(BenchOptions(requests=0))
    with pytest.raises(ValueError, match="--import-runs"):
        run_bench(BenchOptions(import_runs=-1))
    with pytest.raises(ValueError, match="--download-rounds"):
        run_bench(BenchOptions(download_rounds=0))
    with pytest.raises(ValueError, match="--scheme"):
        run_bench(BenchOptions(scheme="ftp"))
    with pytest.raises(ValueError, match="--cert-key must be one of rsa, ecdsa"):
        run_bench(BenchOptions(cert_key="dsa"))


def test_bench_leaves_no_scratch_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scratch directory (certificates, downloads) is removed after the run."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    run_bench(BenchOptions(requests=3, download_mib=0.01, scenarios=["requests_stream", "get_session"]))
    assert os.listdir(tmp_path) == []


# -- the api_client comparison ---------------------------------------------------------

API_VARIANTS = ("get_session", "requests_session", "httpx_client", "urllib3_pool", "get_session_fast_path_off",
                "get_session_resilience_on")
API_RATIOS = {
    "get_session_vs_requests_session",
    "get_session_vs_httpx_client",
    "get_session_vs_urllib3_pool",
    "get_session_fast_path_off_vs_requests_session",
    "get_session_fast_path_off_vs_httpx_client",
    "get_session_fast_path_off_vs_urllib3_pool",
    "get_session_vs_get_session_fast_path_off",
    "get_session_resilience_on_vs_requests_session",
    "get_session_resilience_on_vs_get_session",
}


@pytest.fixture
def api_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The bench server over HTTPS with two listeners, and a context for api_client passes of 24 calls."""
    from session_presets.bench.scenarios import BenchContext

    certs = make_certificates(str(tmp_path), key_type="ecdsa")
    with ServerProcess(cert=certs.cert, key=certs.key, listeners=2) as server:
        yield BenchContext(server=server, bundle=certs.bundle, requests=24, slow_requests=1, download_bytes=1,
                           scratch=str(tmp_path), warmup=8)


@pytest.mark.parametrize("variant", ["get_session", "requests_session", "httpx_client", "urllib3_pool"])
def test_api_client_sends_what_it_claims_as_the_server_sees_it(api_server, variant: str) -> None:  # type: ignore[no-untyped-def]
    """Each client's pass reaches the server as planned: unique paths, queries, ids; 3 tokens, 2 origins, 1 KB POSTs."""
    from session_presets.bench.api_client import API_CLIENT, tokens

    ctx = api_server
    warm, body = API_CLIENT.variant(variant).factory(ctx, 7)
    warm(ctx)
    ctx.server.reset()
    count, close, _ = body(ctx)
    try:
        seen = ctx.server.api_traffic()
        connections = ctx.server.connections()
    finally:
        close()
    assert count == 24
    assert (seen["rejected"], seen["first_rejection"]) == (0, "")
    assert (seen["requests"], seen["posts"]) == (24, 6)
    assert seen["unique_paths"] == seen["unique_queries"] == seen["unique_request_ids"] == 24
    assert seen["duplicate_request_ids"] == 0
    assert seen["tokens"] == dict.fromkeys(tokens(ctx.run_id), 8)
    assert seen["by_port"] == {str(port): 12 for port in ctx.server.ports}
    assert 6 * 950 <= seen["body_bytes"] <= 6 * 1024  # compact JSON writers save a few bytes
    assert connections == 2  # one pooled connection per origin


def test_api_client_passes_never_repeat_a_value() -> None:
    """Two passes of one run share tokens and nothing else: no path, query or request id repeats."""
    from session_presets.bench.api_client import plan
    from session_presets.bench.scenarios import BenchContext
    from session_presets.bench.server import ServerAddress

    ctx = BenchContext(server=ServerAddress("https", (1, 2)), bundle=None, requests=1, slow_requests=1,
                       download_bytes=1, scratch="", preset="unused", run_id="r")
    first, second = plan(ctx, 1, 40), plan(ctx, 2, 40)
    assert not {c.url for c in first} & {c.url for c in second}
    assert not {c.headers["X-Request-Id"] for c in first} & {c.headers["X-Request-Id"] for c in second}
    assert not {c.params["q"] for c in first} & {c.params["q"] for c in second}
    assert {c.headers["Authorization"] for c in first} == {c.headers["Authorization"] for c in second}
    assert [c.method for c in first[:4]] == ["GET", "GET", "GET", "POST"]
    assert all(len(json.dumps(c.body)) == 1024 for c in first if c.body is not None)
    with pytest.raises(ValueError, match="at most 10000000 calls"):
        plan(ctx, 1, 10**7 + 1)


def test_bench_server_rejects_api_traffic_that_breaks_the_contract() -> None:
    """The server answers 400 to a call without X-Request-Id or with a body for another item, and counts it."""
    with ServerProcess(listeners=2) as server, requests.Session() as session:
        good = {"X-Request-Id": "r1", "Authorization": "Bearer t"}
        url = server.url("/items/5", origin=1)
        assert session.get(url, params={"page": 1, "q": "x"}, headers=good).status_code == 200
        missing = session.get(url, params={"page": 1, "q": "x"}, headers={"Authorization": "Bearer t"})
        assert (missing.status_code, missing.text) == (400, "no X-Request-Id")
        other = session.post(url, params={"page": 1, "q": "x"}, headers=good, json={"id": 6, "request_id": "r1"})
        assert other.status_code == 400
        assert session.get(url, params={"page": 0, "q": "x"}, headers=good).status_code == 400
        assert session.get(url, params={"q": "x"}, headers=good).status_code == 400
        assert session.get(server.url("/items/x"), params={"page": 1, "q": "x"}, headers=good).status_code == 400
        assert session.put(url, params={"page": 1, "q": "x"}, headers=good, data=b"{}").status_code == 400
        seen = server.api_traffic()
        assert (seen["requests"], seen["rejected"], seen["first_rejection"]) == (1, 6, "no X-Request-Id")
        server.reset()
        assert server.api_traffic()["rejected"] == 0


def test_api_client_check_refuses_a_pass_the_server_did_not_see(api_server) -> None:  # type: ignore[no-untyped-def]
    """check_pass raises, naming the difference, when the server saw fewer calls than the pass claims."""
    from session_presets.bench.api_client import check_pass

    ctx = api_server
    ctx.server.reset()
    with pytest.raises(RuntimeError, match="requests 0, expected 24"):
        check_pass(ctx, 1, {"requests": 24})


def test_bench_reports_api_client_side_by_side(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """api_client runs every client in each round and reports both ratio tables, fast path on and off."""
    result = tiny_report["scenarios"]["api_client"]
    assert set(result["variants"]) == set(API_VARIANTS)
    assert result["rounds"] == 2 and result["requests"] == 20
    for name, figures in result["variants"].items():
        assert set(figures) >= RESULT_KEYS, name
        assert len(figures["rounds_req_per_s"]) == len(figures["rounds_req_per_cpu_s"]) == 2, name
        assert figures["requests"] == 20 and figures["connections_opened"] == 2, name
        saw = figures["server_saw"]
        assert (saw["requests"], saw["posts"], saw["unique_request_ids"], saw["tokens"], saw["origins"]) == (
            20, 5, 20, 3, 2), name
    assert set(tiny_report["ratios"]["api_client"]) == {"req_per_s", "req_per_cpu_s"}
    for table in tiny_report["ratios"]["api_client"].values():
        assert set(table) == API_RATIOS
    assert "api_client" not in tiny_report["ratios"]["vs_requests_get"]
    text = format_table(tiny_report)
    assert "api_client/get_session_fast_path_off" in text
    assert "get_session() / requests.Session" in text


def test_api_client_fast_path_off_runs_in_a_child_with_the_variable(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """The fast-path-off pass ran in another process, which saw SESSION_PRESETS_FAST_PATH=off; the others did not."""
    variants = tiny_report["scenarios"]["api_client"]["variants"]
    off = variants["get_session_fast_path_off"]["child"]
    assert off["environment"] == {"SESSION_PRESETS_FAST_PATH": "off"}
    pids = {variants[name]["child"]["pid"] for name in API_VARIANTS}
    assert len(pids) == len(API_VARIANTS) and os.getpid() not in pids
    assert variants["get_session"]["child"]["environment"] == {}
    state = variants["get_session_fast_path_off"]["fast_path"]
    if state is not None:  # a build with diagnostics(): the library itself says the variable turned it off
        assert state["fast_path"] is False and state["fast_path_forced_off"] is True
        # The get_session child inherits this process's environment: forced off only where the suite itself
        # runs with the variable (nox -s fallback).
        inherited = os.environ.get("SESSION_PRESETS_FAST_PATH", "").strip().lower() in _upstream._OFF_VALUES
        assert variants["get_session"]["fast_path"]["fast_path_forced_off"] is inherited


def test_api_client_resilience_variant_measures_the_pipeline(tiny_report: dict) -> None:  # type: ignore[type-arg]
    """The resilience-on pass ran with a rate limit, an in-flight limit and a breaker; plain get_session with none."""
    variants = tiny_report["scenarios"]["api_client"]["variants"]
    assert variants["get_session_resilience_on"]["resilience"] == ["circuit_breaker", "max_in_flight", "rate_limit"]
    assert variants["get_session"]["resilience"] == []
    assert variants["get_session_resilience_on"]["server_saw"]["requests"] == 20


def test_comparison_runs_in_process_and_survives_a_failing_variant(api_server) -> None:  # type: ignore[no-untyped-def]
    """Without isolate, variants run in the bench process; a failing one is reported, the others keep their rounds."""
    from session_presets.bench.api_client import API_CLIENT, check_pass
    from session_presets.bench.compare import Comparison, Variant, run_comparison

    def broken(ctx, pass_number):  # type: ignore[no-untyped-def]
        raise RuntimeError("no such client")

    comparison = Comparison(
        name="api_client", summary="two clients", check=check_pass, listeners=2,
        variants=(API_CLIENT.variant("requests_session"), API_CLIENT.variant("urllib3_pool"),
                  Variant("broken", "broken", broken)),
        ratios=(("urllib3_pool", "requests_session"), ("broken", "requests_session")),
    )
    seen: list[str] = []
    result = run_comparison(comparison, api_server, 2, on_variant=seen.append)
    assert result["variants"]["broken"] == {"label": "broken", "error": "RuntimeError: no such client"}
    assert seen.count("api_client: broken") == 1  # not run again after it failed
    assert len(result["variants"]["urllib3_pool"]["rounds_req_per_s"]) == 2
    assert set(result["ratios"]["req_per_s"]) == {"urllib3_pool_vs_requests_session"}
    assert result["variants"]["requests_session"]["server_saw"]["requests"] == 24
    assert "child" not in result["variants"]["requests_session"]


def test_comparison_rejects_inconsistent_definitions(api_server) -> None:  # type: ignore[no-untyped-def]
    """A comparison naming unknown or repeated variants, or needing more origins than the server has, is refused."""
    from session_presets.bench.api_client import API_CLIENT
    from session_presets.bench.compare import Comparison, run_comparison

    one = API_CLIENT.variant("get_session")
    with pytest.raises(ValueError, match="has no variants"):
        Comparison(name="x", summary="", variants=(), ratios=())
    with pytest.raises(ValueError, match="variant names repeat"):
        Comparison(name="x", summary="", variants=(one, one), ratios=())
    with pytest.raises(ValueError, match=r"unknown variants \['nope'\]"):
        Comparison(name="x", summary="", variants=(one,), ratios=(("get_session", "nope"),))
    with pytest.raises(KeyError, match="no variant 'nope'"):
        API_CLIENT.variant("nope")
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        run_comparison(API_CLIENT, api_server, 0)
    with pytest.raises(ValueError, match="needs a server with 3 listeners"):
        run_comparison(Comparison(name="x", summary="", variants=(one,), ratios=(), listeners=3), api_server, 1)
    with pytest.raises(ValueError, match="listeners must be 1 to 4"):
        ServerProcess(listeners=5)


def test_comparison_registry_matches_the_scenario_list() -> None:
    """Every comparison scenario name has a definition, and every definition a place in the run order."""
    from session_presets.bench.comparisons import COMPARISONS
    from session_presets.bench.scenarios import COMPARISON_SCENARIOS

    assert set(COMPARISONS) == set(COMPARISON_SCENARIOS)


def test_child_reports_a_skipped_variant_and_a_broken_protocol(
    api_server, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """The child process side: a variant that cannot run is reported as skipped; a parent that never says go gets 2."""
    import io

    from session_presets.bench.child import child_main

    ctx = api_server
    spec = json.dumps({"comparison": "api_client", "variant": "httpx_client", "pass": 3, "scheme": "https",
                       "ports": list(ctx.server.ports), "bundle": ctx.bundle, "requests": 4, "slow_requests": 1,
                       "download_bytes": 1, "scratch": ctx.scratch, "warmup": 2, "run_id": "t"})
    monkeypatch.setitem(sys.modules, "httpx", None)
    out = io.StringIO()
    assert child_main(io.StringIO(f"{spec}\ngo\nclose\n"), out) == 0
    assert out.getvalue().splitlines() == ["ready", 'result {"skipped": "httpx is not installed"}', "closed"]
    monkeypatch.delitem(sys.modules, "httpx")
    spec = spec.replace("httpx_client", "urllib3_pool")
    assert child_main(io.StringIO(f"{spec}\nstop\n"), io.StringIO()) == 2
    out = io.StringIO()
    assert child_main(io.StringIO(f"{spec}\ngo\nquit\n"), out) == 2
    assert out.getvalue().splitlines()[0] == "ready"


def test_bench_rejects_bad_comparison_options() -> None:
    """--comparison-rounds and --comparison-requests below 1 are refused by name."""
    with pytest.raises(ValueError, match="--comparison-rounds"):
        run_bench(BenchOptions(comparison_rounds=0))
    with pytest.raises(ValueError, match="--comparison-requests"):
        run_bench(BenchOptions(comparison_requests=0))
