"""instrument(): export every session's metrics through OpenTelemetry (extra ``otel``).

The instruments follow the HTTP client semantic conventions:

- ``http.client.request.duration`` (histogram, s): start of the request to the end
  of its body; ``http.request.method``, ``server.address``, ``server.port``,
  ``url.scheme``, ``http.response.status_code``, ``error.type`` when it failed
  (the exception's name, or the status code from 400 up). One point per request
  sent: a retried attempt (a 503, a reset connection) is a point of its own,
  and every request after the first of a call (a retry or a redirect hop)
  carries ``http.request.resend_count``;
- ``http.client.active_requests`` (up-down counter): requests in flight;
- ``http.client.open_connections`` (up-down counter): connections open, by
  ``http.connection.state`` ("active" or "idle");
- ``http.client.connection.duration`` (histogram, s): how long closed connections
  were open.

Resilience (for sessions whose preset sets ``rate_limit``, ``max_in_flight``,
``circuit_breaker`` or ``coordination_url``), observed when the reader collects:

- ``session_presets.circuit_breaker.state`` (gauge): 0 closed, 1 half-open, 2 open,
  by ``server.address``/``server.port``/``url.scheme`` of the origin;
- ``session_presets.circuit_breaker.transitions`` (counter);
- ``session_presets.resilience.rejected`` (counter): calls refused with nothing sent;
- ``session_presets.rate_limit.waits`` (counter) and
  ``session_presets.rate_limit.wait_time`` (counter, s);
- ``session_presets.in_flight`` (gauge): requests holding a ``max_in_flight`` slot.

Every point also carries ``session_presets.preset``. Spans are not produced
here: ``opentelemetry-instrumentation-requests`` already traces every call a
PresetSession makes, since it is a requests.Session.

This module imports opentelemetry only when :func:`instrument` is called, and
``import session_presets`` does not import this module.
"""

from __future__ import annotations

import threading
from typing import Any, Final
from urllib.parse import urlsplit

from . import _metrics, _process, _resilience
from ._metrics import SessionMetrics, Transaction
from ._version import __version__

__all__ = ["Instrumentation", "instrument"]

#: Methods reported by name; any other is reported as "_OTHER", as the conventions ask.
KNOWN_METHODS: Final = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
#: The attribute naming the preset of the session that made the request.
PRESET_ATTRIBUTE: Final = "session_presets.preset"

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: The value of session_presets.circuit_breaker.state for each breaker state.
_BREAKER_LEVELS: Final = {_resilience.CLOSED: 0, _resilience.HALF_OPEN: 1, _resilience.OPEN: 2}

#: The resilience counters: name, the figure of _resilience.totals() each reports, unit, description.
_RESILIENCE_COUNTERS: Final = (
    (
        "session_presets.circuit_breaker.transitions",
        "transitions",
        "{transition}",
        "Circuit breaker state changes caused by this process's calls.",
    ),
    (
        "session_presets.resilience.rejected",
        "rejected",
        "{request}",
        "Calls refused by a circuit breaker, a rate limit or max_in_flight, with nothing sent.",
    ),
    (
        "session_presets.rate_limit.waits",
        "rate_limit_waits",
        "{request}",
        "Calls that waited for a rate-limit permit or a Retry-After pause.",
    ),
    (
        "session_presets.rate_limit.wait_time",
        "rate_limit_wait_time",
        "s",
        "Time calls spent waiting for a rate-limit permit or a Retry-After pause.",
    ),
)


def _origin_attributes(preset: str, scheme: str, host: str, port: int) -> dict[str, Any]:
    return {
        "server.address": host,
        "server.port": port,
        "url.scheme": scheme,
        PRESET_ATTRIBUTE: preset,
    }


def _request_attributes(tx: Transaction) -> dict[str, Any]:
    try:
        parts = urlsplit(tx.url)
        port = parts.port
    except ValueError:
        parts, port = urlsplit(""), None
    scheme = parts.scheme or "http"
    method = tx.method.upper()
    attributes = _origin_attributes(
        tx.metrics.preset, scheme, parts.hostname or "", port or _DEFAULT_PORTS.get(scheme, 0)
    )
    attributes["http.request.method"] = method if method in KNOWN_METHODS else "_OTHER"
    return attributes


class Instrumentation:
    """The link between every session's metrics and one OpenTelemetry meter provider.

    Returned by :func:`instrument`; ``uninstrument()`` stops the export.
    """

    def __init__(self, meter_provider: Any) -> None:
        meter = meter_provider.get_meter("session_presets", __version__)
        self.meter_provider = meter_provider
        self._duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests, to the end of the response body.",
            explicit_bucket_boundaries_advisory=list(_metrics.REQUEST_DURATION_BUCKETS),
        )
        self._active = meter.create_up_down_counter(
            "http.client.active_requests", unit="{request}", description="Number of active HTTP requests."
        )
        self._open = meter.create_up_down_counter(
            "http.client.open_connections",
            unit="{connection}",
            description="Number of outbound HTTP connections that are currently active or idle.",
        )
        self._connection_duration = meter.create_histogram(
            "http.client.connection.duration",
            unit="s",
            description="The duration of the successfully established outbound HTTP connections.",
            explicit_bucket_boundaries_advisory=list(_metrics.CONNECTION_DURATION_BUCKETS),
        )
        from opentelemetry.metrics import Observation

        def observe(figure: str) -> Any:
            def callback(options: Any) -> list[Any]:
                return [
                    Observation(value, {PRESET_ATTRIBUTE: preset})
                    for preset, value in _resilience.totals(figure).items()
                ]

            return [callback]

        def in_flight(options: Any) -> list[Any]:
            found: dict[str, int] = {}
            for guard in _resilience.live_guards():
                if guard.slots is not None:
                    found[guard.preset] = found.get(guard.preset, 0) + guard.in_flight
            return [Observation(value, {PRESET_ATTRIBUTE: preset}) for preset, value in found.items()]

        def breaker_states(options: Any) -> list[Any]:
            found = []
            for snap in _resilience.breaker_states():
                scheme, _, authority = snap.origin.partition("://")
                host, _, port = authority.rpartition(":")
                attributes = _origin_attributes(snap.preset, scheme, host.strip("[]"), int(port or 0))
                found.append(Observation(_BREAKER_LEVELS[snap.state], attributes))
            return found

        meter.create_observable_gauge(
            "session_presets.circuit_breaker.state",
            callbacks=[breaker_states],
            unit="1",
            description="Circuit breaker state per origin: 0 closed, 1 half-open, 2 open.",
        )
        for name, figure, unit, description in _RESILIENCE_COUNTERS:
            meter.create_observable_counter(name, callbacks=observe(figure), unit=unit, description=description)
        meter.create_observable_gauge(
            "session_presets.in_flight",
            callbacks=[in_flight],
            unit="{request}",
            description="Requests holding a max_in_flight slot.",
        )

    # -- MetricsSink -------------------------------------------------------------------

    def request_started(self, tx: Transaction) -> None:
        if tx.labels is None:
            tx.labels = _request_attributes(tx)
        self._active.add(1, tx.labels)

    def request_ended(self, tx: Transaction, duration: float) -> None:
        attributes = tx.labels
        if attributes is None:  # it started before instrument() was called: it was never counted active
            attributes = _request_attributes(tx)
        else:
            self._active.add(-1, attributes)
        # The last attempt alone (``duration`` covers them all): earlier attempts were recorded as they ended.
        attempt = max(0.0, tx.ended - tx.attempt_started)
        self._record_duration(attributes, attempt, tx.status, tx.error_type, tx.resend_count)

    def attempt_ended(self, tx: Transaction, duration: float, status: int | None, error_type: str | None) -> None:
        attributes = tx.labels if tx.labels is not None else _request_attributes(tx)
        self._record_duration(attributes, duration, status, error_type, tx.resend_count)

    def _record_duration(
        self, attributes: dict[str, Any], duration: float, status: int | None, error_type: str | None, resends: int
    ) -> None:
        final = dict(attributes)
        if status is not None:
            final["http.response.status_code"] = status
        if error_type is not None:
            final["error.type"] = error_type
        elif status is not None and status >= 400:
            final["error.type"] = str(status)
        if resends:
            final["http.request.resend_count"] = resends
        self._duration.record(duration, final)

    def connection_state(
        self, metrics: SessionMetrics, origin: tuple[str, str, int], old: str | None, new: str | None, age: float | None
    ) -> None:
        attributes = _origin_attributes(metrics.preset, *origin)
        if old is not None:
            self._open.add(-1, {**attributes, "http.connection.state": old})
        if new is not None:
            self._open.add(1, {**attributes, "http.connection.state": new})
        if age is not None:
            self._connection_duration.record(age, attributes)

    # -- lifecycle ------------------------------------------------------------------------

    def uninstrument(self) -> None:
        """Stop exporting to this meter provider; safe to call twice."""
        _metrics.remove_sink(self)
        with _lock:
            if _instrumented.get(id(self.meter_provider)) is self:
                del _instrumented[id(self.meter_provider)]


_lock = threading.Lock()
_instrumented: dict[int, Instrumentation] = {}


def instrument(meter_provider: Any = None) -> Instrumentation:
    """Export the metrics of every session, shared or owned, to OpenTelemetry.

    Calling it again with the same provider returns the same Instrumentation.

    Args:
        meter_provider: an ``opentelemetry.metrics.MeterProvider``; the global one if None.

    Returns:
        The Instrumentation; its ``uninstrument()`` stops the export.

    Raises:
        ImportError: opentelemetry-api is not installed (``pip install 'session-presets[otel]'``).
    """
    try:
        from opentelemetry import metrics
    except ImportError as exc:
        raise ImportError(
            "session_presets.instrument needs opentelemetry-api: pip install 'session-presets[otel]'"
        ) from exc
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _lock:
        found = _instrumented.get(id(provider))
        if found is not None:
            return found
        found = _instrumented[id(provider)] = Instrumentation(provider)
    _metrics.add_sink(found)
    return found


def _uninstrument_all() -> None:
    with _lock:
        found = list(_instrumented.values())
    for instrumentation in found:
        instrumentation.uninstrument()


_process.on_reset(_uninstrument_all, order=_process.ORDER_CALLS)
