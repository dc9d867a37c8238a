"""Libraries requests users already run, used the way their docs show, against loopback servers.

Each library runs with ``get_session()``, ``default_session()`` and a plain
``requests.Session()`` as the control (libraries that mount adapters or set
session attributes get caller-owned sessions only: shared sessions are
process-wide). Assertions are on what the loopback server saw. A library that
is not installed is skipped with its reason (``pytest -ra`` prints it); the
``compat`` extra installs them all. Patches that must not reach the pytest
process (gevent, truststore injection, sentry's integrations) run in a child
process: tests/compat_child.py.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import session_presets as sp

from .servers import Handler, LoopbackServer, route_timeout_then_answer
from .session_kinds import KINDS
from .session_kinds import is_preset as _is_preset

#: Run once, by nox's compat session, not in the four-Python core matrix (noxfile.CORE_SELECTION).
pytestmark = pytest.mark.compat

CHILD = Path(__file__).with_name("compat_child.py")



def _child(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a tests/compat_child.py scenario and return its JSON report."""
    result = subprocess.run(
        [sys.executable, str(CHILD), *args],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


# -- mocking libraries ---------------------------------------------------------------------------


def test_responses_mocks_and_passes_through(session: requests.Session, http_server: LoopbackServer) -> None:
    """responses serves a registered URL without touching the server and passes a passthru prefix through."""
    responses = pytest.importorskip("responses", reason="responses is not installed (extra 'compat')")
    mocked = http_server.url("/mocked")
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, mocked, json={"mocked": True})
        rsps.add_passthru(http_server.url("/echo"))
        assert session.get(mocked).json() == {"mocked": True}
        assert session.get(http_server.url("/echo")).json()["method"] == "GET"
        assert rsps.calls[0].request.url == mocked
    assert [r.path for r in http_server.requests] == ["/echo"]


def test_requests_mock_mocks_and_uses_real_http(session: requests.Session, http_server: LoopbackServer) -> None:
    """requests-mock's Mocker answers a registered URL itself and, with real_http, sends the rest."""
    requests_mock = pytest.importorskip("requests_mock", reason="requests-mock is not installed (extra 'compat')")
    mocked = http_server.url("/mocked")
    with requests_mock.Mocker(real_http=True) as mocker:
        mocker.get(mocked, text="from the mock")
        assert session.get(mocked).text == "from the mock"
        assert session.get(http_server.url("/ok")).text == "ok"
        assert [call.url for call in mocker.request_history] == [mocked, http_server.url("/ok")]
    assert [r.path for r in http_server.requests] == ["/ok"]


# betamax 0.9 calls datetime.utcnow(), deprecated since Python 3.12.
@pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")
def test_betamax_records_then_replays(owned_session: requests.Session, http_server: LoopbackServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """betamax records one interaction through the server, then replays it while the server sees nothing."""
    betamax = pytest.importorskip("betamax", reason="betamax is not installed (extra 'compat')")
    url = http_server.url("/echo")
    with betamax.Betamax(owned_session, cassette_library_dir=str(tmp_path)) as recorder:
        recorder.use_cassette("echo", record="once")
        recorded = owned_session.get(url).json()
    assert len(http_server.requests) == 1
    with betamax.Betamax(owned_session, cassette_library_dir=str(tmp_path)) as recorder:
        recorder.use_cassette("echo", record="none")
        assert owned_session.get(url).json() == recorded
    assert len(http_server.requests) == 1
    assert owned_session.get(url).json()["method"] == "GET"  # the mounted adapters are back
    assert len(http_server.requests) == 2


def test_betamax_on_the_shared_session_is_refused_clearly(tmp_path: Path) -> None:
    """betamax on get_session() fails with SharedSessionError naming default_session(), not a TypeError."""
    betamax = pytest.importorskip("betamax", reason="betamax is not installed (extra 'compat')")
    shared = sp.get_session()
    with pytest.raises(sp.SharedSessionError, match=r"default_session\("), betamax.Betamax(
        shared, cassette_library_dir=str(tmp_path)
    ) as recorder:
        recorder.use_cassette("shared", record="once")
    assert all(isinstance(adapter, sp.PresetAdapter) for adapter in shared.adapters.values())


def test_pytest_httpserver(session: requests.Session, request: pytest.FixtureRequest) -> None:
    """pytest-httpserver's server answers an expected request and logs what it received."""
    pytest.importorskip("pytest_httpserver", reason="pytest-httpserver is not installed (extra 'compat')")
    httpserver = request.getfixturevalue("httpserver")
    httpserver.expect_request("/items", method="POST", json={"a": 1}).respond_with_json({"ok": True})
    response = session.post(httpserver.url_for("/items"), json={"a": 1}, headers={"X-Test": "compat"})
    assert response.json() == {"ok": True}
    [(received, _)] = httpserver.log
    assert received.headers["X-Test"] == "compat"
    assert received.get_json() == {"a": 1}
    httpserver.check_assertions()


# -- recorders -----------------------------------------------------------------------------------


@pytest.fixture
def vcrpy_garbage() -> Iterator[None]:
    """Collect, once the session is closed, the connections vcrpy drops without closing them."""
    yield
    gc.collect()


# vcrpy before 9 drops the pooled connection it cannot use without closing it (the
# plain Session control shows it too): its socket is collected by vcrpy_garbage.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_vcrpy_records_replays_and_unpatches(
    vcrpy_garbage: None, session: requests.Session, http_server: LoopbackServer, tmp_path: Path
) -> None:
    """vcrpy records one interaction, replays it without the server, and leaves the session working after."""
    vcr = pytest.importorskip("vcr", reason="vcrpy is not installed (extra 'compat')")
    url = http_server.url("/echo")
    session.get(http_server.url("/ok"))  # a pooled connection from before the cassette
    recorder = vcr.VCR(cassette_library_dir=str(tmp_path))
    with recorder.use_cassette("echo.yaml") as cassette:
        recorded = session.get(url).json()
    assert len(cassette) == 1
    assert [r.path for r in http_server.requests] == ["/ok", "/echo"]
    with recorder.use_cassette("echo.yaml", record_mode="none") as cassette:
        assert session.get(url).json() == recorded
        assert cassette.play_count == 1
    assert len(http_server.requests) == 2
    assert session.get(url).json()["path"] == "/echo"  # unpatched: real connections again
    assert len(http_server.requests) == 3


def test_vcrpy_https(https_server: LoopbackServer, ca_bundle: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """vcrpy records and replays an https:// call made with the preset's shared TLS context."""
    vcr = pytest.importorskip("vcr", reason="vcrpy is not installed (extra 'compat')")
    recorder = vcr.VCR(cassette_library_dir=str(tmp_path))
    with sp.default_session(ca_bundle=ca_bundle) as session:
        with recorder.use_cassette("tls.yaml") as cassette:
            assert session.get(https_server.url("/ok")).text == "ok"
        assert len(cassette) == 1
        with recorder.use_cassette("tls.yaml", record_mode="none"):
            assert session.get(https_server.url("/ok")).text == "ok"
    assert len(https_server.requests) == 1


def test_vcrpy_patch_applied_before_the_session_exists(http_server: LoopbackServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A session built inside an active cassette is recorded, and works normally once the cassette exits."""
    vcr = pytest.importorskip("vcr", reason="vcrpy is not installed (extra 'compat')")
    with vcr.use_cassette(str(tmp_path / "inside.yaml")) as cassette:
        session = sp.default_session()
        session.get(http_server.url("/ok"))
        assert len(cassette) == 1
    with session:
        assert session.get(http_server.url("/ok")).text == "ok"
    assert len(http_server.requests) == 2
    assert http_server.connections == 2  # the recorded connection was dropped with the cassette


_RECORDING_TEST = '''
import os

import pytest


@pytest.fixture
def vcr_cassette_dir():
    return os.environ["COMPAT_CASSETTES"]


@pytest.mark.vcr
@pytest.mark.parametrize("kind", ["get_session", "default_session", "plain"])
def test_call(kind):
    import requests

    import session_presets as sp

    session = {"get_session": sp.get_session, "default_session": sp.default_session, "plain": requests.Session}[kind]()
    assert session.get(os.environ["COMPAT_URL"] + "?kind=" + kind).text == "ok"
'''


def test_pytest_recording(http_server: LoopbackServer, tmp_path: Path) -> None:
    """pytest-recording records with --record-mode=once, then replays with none: the server sees one run."""
    pytest.importorskip("pytest_recording", reason="pytest-recording is not installed (extra 'compat')")
    (tmp_path / "test_recorded.py").write_text(_RECORDING_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "COMPAT_CASSETTES": str(tmp_path / "cassettes"), "COMPAT_URL": http_server.url("/ok")}
    for mode in ("once", "none"):
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--record-mode={mode}", "-p", "no:cov"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert "3 passed" in result.stdout
    assert sorted(r.path.rsplit("=", 1)[1] for r in http_server.requests) == sorted(
        ["get_session", "default_session", "plain"]
    )
    assert len(list((tmp_path / "cassettes").glob("*.yaml"))) == 3


# -- tracing and error reporting -----------------------------------------------------------------


@pytest.mark.parametrize("instrumented", ["requests", "urllib3"])
def test_opentelemetry(instrumented: str, session: requests.Session, http_server: LoopbackServer) -> None:
    """OTel's requests or urllib3 instrumentation traces the call and propagates traceparent to the server."""
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed (extra 'compat')")
    module = pytest.importorskip(
        f"opentelemetry.instrumentation.{instrumented}",
        reason=f"opentelemetry-instrumentation-{instrumented} is not installed (extra 'compat')",
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    # With both instrumented, the requests span suppresses the urllib3 one (by design), so each is run alone.
    instrumentor = module.RequestsInstrumentor() if instrumented == "requests" else module.URLLib3Instrumentor()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor.instrument(tracer_provider=provider)
    try:
        assert session.get(http_server.url("/ok")).text == "ok"
    finally:
        instrumentor.uninstrument()
    [span] = exporter.get_finished_spans()
    assert span.instrumentation_scope.name == f"opentelemetry.instrumentation.{instrumented}"
    assert span.name == "GET"
    [seen] = http_server.requests
    traceparent = seen.header("traceparent")
    assert traceparent is not None
    assert traceparent.split("-")[1:3] == [format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")]


def test_sentry_sdk(http_server: LoopbackServer) -> None:
    """sentry-sdk records an http.client span per call and sends sentry-trace to the server."""
    # Not imported here: sentry_sdk imports eventlet.patcher when eventlet is installed, and
    # an imported eventlet warns at every later os.fork() of the process (the fork tests').
    if importlib.util.find_spec("sentry_sdk") is None:
        pytest.skip("sentry-sdk is not installed (extra 'compat')")
    report = _child("sentry", http_server.url("/ok"))
    assert report["calls"] == dict.fromkeys(KINDS, "ok")
    http_spans = [span for span in report["spans"] if span["op"] == "http.client"]
    assert len(http_spans) == 3, report["spans"]
    assert len(http_server.requests) == 3
    assert all(seen.header("sentry-trace") for seen in http_server.requests)


# -- auth, bodies, caches --------------------------------------------------------------------------


def _token_route(handler: Handler) -> None:
    body = json.dumps({"access_token": "tok-123", "token_type": "Bearer", "expires_in": 3600}).encode()
    handler.reply(200, body, {"Content-Type": "application/json"})


def test_requests_oauthlib_with_preset_adapter(http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """OAuth2Session with PresetAdapter mounted fetches a token and sends it; the preset's pools carry both calls."""
    pytest.importorskip("requests_oauthlib", reason="requests-oauthlib is not installed (extra 'compat')")
    from oauthlib.oauth2 import BackendApplicationClient
    from requests_oauthlib import OAuth2Session

    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the loopback server is http://
    http_server.route("/token", _token_route)
    for mounted in (True, False):
        with OAuth2Session(client=BackendApplicationClient(client_id="cid")) as oauth:
            adapter = sp.PresetAdapter(sp.get_preset("default"))
            if mounted:
                oauth.mount("http://", adapter)
            token = oauth.fetch_token(http_server.url("/token"), client_id="cid", client_secret="secret")
            assert token["access_token"] == "tok-123"
            assert oauth.get(http_server.url("/echo")).json()["method"] == "GET"
            assert adapter.counters.snapshot()["requests"] == (2 if mounted else 0)
    token_calls = [r for r in http_server.requests if r.path == "/token"]
    assert [r.method for r in token_calls] == ["POST", "POST"]
    assert all(b"grant_type=client_credentials" in r.body for r in token_calls)
    echoes = [r for r in http_server.requests if r.path == "/echo"]
    assert [r.header("Authorization") for r in echoes] == ["Bearer tok-123", "Bearer tok-123"]


def test_requests_oauthlib_auth_per_call(
    session: requests.Session, http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OAuth2 auth object passed per call signs the request on every kind of session."""
    pytest.importorskip("requests_oauthlib", reason="requests-oauthlib is not installed (extra 'compat')")
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the loopback server is http://
    from requests_oauthlib import OAuth2

    auth = OAuth2(client_id="cid", token={"access_token": "tok-456", "token_type": "Bearer"})
    assert session.get(http_server.url("/ok"), auth=auth).text == "ok"
    [seen] = http_server.requests
    assert seen.header("Authorization") == "Bearer tok-456"


def test_requests_toolbelt_multipart(session: requests.Session, http_server: LoopbackServer) -> None:
    """A toolbelt MultipartEncoder streams its body; the server receives exactly the encoded bytes."""
    pytest.importorskip("requests_toolbelt", reason="requests-toolbelt is not installed (extra 'compat')")
    from requests_toolbelt import MultipartEncoder

    fields = {"name": "compat", "file": ("data.bin", b"\x00\x01payload" * 1000, "application/octet-stream")}
    encoder = MultipartEncoder(fields=fields, boundary="compat-boundary")
    expected = MultipartEncoder(fields=fields, boundary="compat-boundary").to_string()
    session.post(http_server.url("/ok"), data=encoder, headers={"Content-Type": encoder.content_type})
    [seen] = http_server.requests
    assert seen.body == expected
    assert seen.header("Content-Type") == "multipart/form-data; boundary=compat-boundary"
    assert seen.header("Content-Length") == str(len(expected))


def test_requests_toolbelt_host_header_adapter(
    owned_session: requests.Session, https_server: LoopbackServer, ca_bundle: str
) -> None:
    """toolbelt's HostHeaderSSLAdapter mounted as documented: it works, and on a PresetSession mount() warns once."""
    host_header_ssl = pytest.importorskip(
        "requests_toolbelt.adapters.host_header_ssl", reason="requests-toolbelt is not installed (extra 'compat')"
    )
    adapter = host_header_ssl.HostHeaderSSLAdapter()
    if _is_preset(owned_session):
        with pytest.warns(sp.ForeignAdapterWarning, match="HostHeaderSSLAdapter"):
            owned_session.mount("https://", adapter)
    else:
        owned_session.mount("https://", adapter)
    response = owned_session.get(https_server.url("/echo"), headers={"Host": "localhost"}, verify=ca_bundle)
    assert response.json()["method"] == "GET"
    [seen] = https_server.requests
    assert seen.header("Host") == "localhost"
    # The preset's default headers live on the session, so a foreign adapter sends them too.
    assert seen.header("Cache-Control") == ("no-cache" if _is_preset(owned_session) else None)


def test_requests_cache_with_protocol_preset(http_server: LoopbackServer) -> None:
    """CachedSession with a cache_policy='protocol' PresetAdapter mounted caches: two GETs, one reaches the server."""
    requests_cache = pytest.importorskip("requests_cache", reason="requests-cache is not installed (extra 'compat')")
    config = sp.get_preset("default").replace(cache_policy="protocol")
    for mounted in (True, False):
        with requests_cache.CachedSession(backend="memory") as cached:
            adapter = sp.PresetAdapter(config)
            if mounted:
                cached.mount("http://", adapter)
            url = http_server.url(f"/ok?mounted={mounted}")
            first, second = cached.get(url), cached.get(url)
            assert (first.from_cache, second.from_cache) == (False, True)
            assert second.text == "ok"
            assert adapter.counters.snapshot()["requests"] == (1 if mounted else 0)
    assert [r.path for r in http_server.requests] == ["/ok?mounted=True", "/ok?mounted=False"]


# -- patches of ssl and socket: truststore, gevent -------------------------------------------------


@pytest.mark.parametrize("when", ["before", "after", "used"])
def test_truststore_injection(when: str, https_server: LoopbackServer, ca_bundle: str) -> None:
    """inject_into_ssl(), before or after sessions exist, makes calls use the system store; extract undoes it."""
    pytest.importorskip("truststore", reason="truststore is not installed (extra 'compat' or 'truststore')")
    # truststore on Linux trusts OpenSSL's default paths: SSL_CERT_FILE makes the
    # throwaway CA a "system" CA, which neither certifi nor session_presets trusts.
    report = _child(f"truststore-{when}", https_server.url("/ok"), env={"SSL_CERT_FILE": ca_bundle})
    assert report["injected"] == dict.fromkeys(KINDS, "ok"), report
    # extract_from_ssl() undoes it for session_presets; requests keeps the truststore
    # context that inject_into_ssl() put in place of its preloaded one.
    for kind in ("get_session", "default_session"):
        outcome = report["extracted"][kind]
        assert outcome.startswith("SSLError") and "CERTIFICATE_VERIFY_FAILED" in outcome, (kind, outcome)
    if when == "used":
        assert all(o.startswith("SSLError") for o in report["before_injection"].values()), report
    assert len(https_server.requests) == 4


def test_gevent_greenlets_on_one_session_keep_their_own_call_context(http_server: LoopbackServer) -> None:
    """Under gevent, two greenlets on one session: a call's own timeout= is not retried while another's is."""
    pytest.importorskip("gevent", reason="gevent is not installed (extra 'compat')")
    route_timeout_then_answer(http_server, "/own-timeout", "/preset-timeout")
    report = _child("gevent-greenlets", http_server.url("").rstrip("/"))
    assert report == {
        "own-timeout": {"error": "ReadTimeout"},
        "preset-timeout": {"text": "second try", "attempts": 2},
    }, report
    # What the server saw: the first greenlet's request once (its own timeout= is not retried), the second's twice.
    assert http_server.saw("/own-timeout") == 1
    assert http_server.saw("/preset-timeout") == 2


def test_gevent_patch_all_after_import(
    http_server: LoopbackServer, https_server: LoopbackServer, ca_bundle: str
) -> None:
    """gevent's patch_all() after import: http:// calls build no SSLContext, and https:// uses gevent's context."""
    pytest.importorskip("gevent", reason="gevent is not installed (extra 'compat')")
    report = _child("gevent", http_server.url("/ok"), https_server.url("/ok"), ca_bundle)
    assert report["http"] == dict.fromkeys(KINDS, "ok"), report
    assert report["contexts_after_http"] == 0
    assert report["https"] == "ok"
    assert report["context_class"].startswith("gevent"), report
    assert len(http_server.requests) == 3
    assert len(https_server.requests) == 1
