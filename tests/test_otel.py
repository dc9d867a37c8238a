"""instrument(): OpenTelemetry export with the HTTP client semantic-convention names and attributes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import session_presets as sp
from session_presets import _metrics

from .servers import Handler, LoopbackServer


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """An SDK meter provider with an in-memory reader, instrumented for the test."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    instrumentation = sp.instrument(meter_provider=provider)
    assert sp.instrument(provider) is instrumentation
    yield memory
    instrumentation.uninstrument()
    instrumentation.uninstrument()
    provider.shutdown()


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def test_request_duration_carries_the_convention_attributes(
    http_server: LoopbackServer, reader: InMemoryMetricReader
) -> None:
    """http.client.request.duration: method, server address/port, status, error.type, preset; OTel buckets."""
    with sp.default_session() as session:
        session.get(http_server.url("/ok"))
        session.get(http_server.url("/ok"))
        session.request("PURGE", http_server.url("/status/501"))
        with pytest.raises(requests.ConnectionError):
            session.get("http://127.0.0.1:1/refused")
    assert [seen.method for seen in http_server.requests] == ["GET", "GET", "PURGE"]
    points = _points(reader)
    durations = {
        (p.attributes["http.request.method"], p.attributes.get("http.response.status_code"),
         p.attributes.get("error.type")): p
        for p in points["http.client.request.duration"]
    }
    # The refused call: two attempts retried (urllib3's error), the last one raised (requests' error).
    assert set(durations) == {
        ("GET", 200, None), ("_OTHER", 501, "501"),
        ("GET", None, "NewConnectionError"), ("GET", None, "ConnectionError"),
    }
    ok = durations[("GET", 200, None)]
    assert ok.count == 2
    assert tuple(ok.explicit_bounds) == _metrics.REQUEST_DURATION_BUCKETS
    assert dict(ok.attributes) == {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": http_server.port,
        "url.scheme": "http",
        "http.response.status_code": 200,
        "session_presets.preset": "default",
    }
    assert durations[("GET", None, "ConnectionError")].attributes["server.port"] == 1
    assert all(p.value == 0 for p in points["http.client.active_requests"])


def test_connections_and_active_requests_are_exported(
    http_server: LoopbackServer, reader: InMemoryMetricReader
) -> None:
    """open_connections by state, active_requests while a body streams, connection.duration once closed."""
    with sp.default_session() as session:
        response = session.get(http_server.url("/trickle?bytes=2&interval=0.01"), stream=True)
        points = _points(reader)
        assert [p.value for p in points["http.client.active_requests"]] == [1]
        states = {p.attributes["http.connection.state"]: p.value for p in points["http.client.open_connections"]}
        assert states == {"active": 1}
        response.close()
        session.get(http_server.url("/ok"))
        opened = _points(reader)["http.client.open_connections"]
        states = {p.attributes["http.connection.state"]: p.value for p in opened}
        assert states == {"active": 0, "idle": 1}
        session.get(http_server.url("/close"))
    points = _points(reader)
    assert http_server.connections == 2
    assert [p.value for p in points["http.client.active_requests"]] == [0]
    (lifetimes,) = points["http.client.connection.duration"]
    assert lifetimes.count == 2
    assert lifetimes.attributes["session_presets.preset"] == "default"
    assert tuple(lifetimes.explicit_bounds) == _metrics.CONNECTION_DURATION_BUCKETS


def test_uninstrument_stops_the_export(http_server: LoopbackServer) -> None:
    """After uninstrument(), requests no longer reach the meter provider."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    instrumentation = sp.instrument(meter_provider=provider)
    with sp.default_session() as session:
        session.get(http_server.url("/ok"))
        instrumentation.uninstrument()
        session.get(http_server.url("/ok"))
    (point,) = _points(memory)["http.client.request.duration"]
    assert point.count == 1
    provider.shutdown()


def test_import_does_not_load_opentelemetry() -> None:
    """import session_presets loads neither session_presets.otel nor opentelemetry; instrument loads them."""
    code = (
        "import sys, session_presets as sp\n"
        "assert 'opentelemetry' not in sys.modules and 'session_presets.otel' not in sys.modules\n"
        "assert callable(sp.instrument) and 'session_presets.otel' in sys.modules\n"
        "try:\n    sp.no_such_name\nexcept AttributeError as exc:\n    assert 'no_such_name' in str(exc)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "ok", done.stderr


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without opentelemetry-api, instrument() raises ImportError naming the otel extra."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"session-presets\[otel\]"):
        sp.instrument()


def _duration_points(reader: InMemoryMetricReader) -> dict[tuple[Any, Any, Any], Any]:
    """http.client.request.duration points by (status, error.type, http.request.resend_count)."""
    return {
        (p.attributes.get("http.response.status_code"), p.attributes.get("error.type"),
         p.attributes.get("http.request.resend_count")): p
        for p in _points(reader)["http.client.request.duration"]
    }


def _flaky(server: LoopbackServer, path: str, answers: list[int | str]) -> None:
    """Route ``path`` to give each answer in turn (a status, or "reset" for an RST), then 200."""
    pending = list(answers)

    def route(h: Handler) -> None:
        answer = pending.pop(0) if pending else 200
        if answer == "reset":
            h.reset()
        else:
            h.reply(int(answer), b"body")

    server.route(path, route)


def test_each_resend_after_a_503_is_a_point_with_its_resend_count(
    http_server: LoopbackServer, reader: InMemoryMetricReader
) -> None:
    """Two 503s then a 200: three requests on the wire, three duration points with resend counts None, 1, 2."""
    _flaky(http_server, "/flaky", [503, 503])
    with sp.default_session(retries=2, backoff_factor=0) as session:
        response = session.get(http_server.url("/flaky"))
    assert response.status_code == 200
    assert len(http_server.requests) == 3
    points = _duration_points(reader)
    assert {key: p.count for key, p in points.items()} == {(503, "503", None): 1, (503, "503", 1): 1, (200, None, 2): 1}
    # Each point is one attempt: together they fit in the call, which also holds the pauses.
    assert sum(p.sum for p in points.values()) <= response.metrics.total


def test_a_reset_connection_resent_is_two_points(http_server: LoopbackServer, reader: InMemoryMetricReader) -> None:
    """A connection reset before the response, then a 200: an error point and a point with resend_count 1."""
    _flaky(http_server, "/reset-once", ["reset"])
    with sp.default_session(retries=1, backoff_factor=0) as session:
        assert session.get(http_server.url("/reset-once")).status_code == 200
    assert http_server.accepted == 2
    points = _duration_points(reader)
    assert len(points) == 2 and points[(200, None, 1)].count == 1
    ((status, error, resends),) = [key for key in points if key != (200, None, 1)]
    assert (status, resends) == (None, None) and error


def test_a_redirect_hop_counts_as_a_resend(http_server: LoopbackServer, reader: InMemoryMetricReader) -> None:
    """The conventions count a redirect as a resend: the hop after a 302 carries resend_count 1."""
    with sp.default_session() as session:
        assert session.get(http_server.url("/redirect?to=/ok")).status_code == 200
    assert [seen.path for seen in http_server.requests] == ["/redirect?to=/ok", "/ok"]
    assert {key: p.count for key, p in _duration_points(reader).items()} == {(302, None, None): 1, (200, None, 1): 1}


def test_points_match_the_requests_the_server_saw(http_server: LoopbackServer, reader: InMemoryMetricReader) -> None:
    """Over many calls, some answered 503 first, the histogram holds one point per request the server received."""
    for number in range(12):
        _flaky(http_server, f"/call{number}", [503] * (number % 3))
    with sp.default_session(retries=2, backoff_factor=0) as session:
        for number in range(12):
            assert session.get(http_server.url(f"/call{number}")).status_code == 200
    assert len(http_server.requests) == 12 + 4 + 4 * 2
    assert sum(p.count for p in _points(reader)["http.client.request.duration"]) == len(http_server.requests)
    assert all(p.value == 0 for p in _points(reader)["http.client.active_requests"])
