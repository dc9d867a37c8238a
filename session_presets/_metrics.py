"""Transaction metrics per response and the OpenTelemetry-convention aggregates per session.

Every figure is taken where its event happens: the connection classes mark
the connect, TLS and request phases, the response's arrival, and the moment
the body is released back to the pool (read to the end, or closed). Nothing
is reconstructed afterwards from totals.

- :class:`Transaction` is the mutable recorder of one request (one redirect
  hop: retries included); it is found through the call's context
  (``Call.tx``, see ``_calls``) while the request is sent, and through the
  connection while its body is read.
- :class:`TransactionMetrics` is its frozen snapshot, ``response.metrics``.
- :class:`SessionMetrics` keeps a session's aggregates: request and
  connection duration histograms, open connections, active requests.
- A sink (see :class:`MetricsSink`, used by :mod:`session_presets.otel`)
  hears every request and connection event of every session.

Set :data:`ENABLED` to False to stop recording (``response.metrics`` is then
None and the aggregates stay empty); it exists to measure what metrics cost.
"""

from __future__ import annotations

import bisect
import collections
import http.client
import itertools
import logging
import math
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import requests
from urllib3 import HTTPResponse
from urllib3.exceptions import ProtocolError, ReadTimeoutError
from urllib3.exceptions import SSLError as _TLSError

from . import _process, _upstream
from ._errors import BodyReadTimeoutError
from ._redact import safe_url

__all__ = [
    "CONNECTION_DURATION_BUCKETS",
    "ENABLED",
    "CountingHTTPResponse",
    "REQUEST_DURATION_BUCKETS",
    "UNCLOSED",
    "Histogram",
    "HistogramSnapshot",
    "MeteredResponse",
    "MetricsSink",
    "SessionMetrics",
    "Transaction",
    "TransactionMetrics",
    "add_sink",
    "format_timing",
    "header_size",
    "remove_sink",
]

log = logging.getLogger(__name__)

#: Record metrics at all; a switch for measuring their cost, not configuration.
ENABLED = True

#: error.type of a streamed response collected while neither read to its end nor closed.
UNCLOSED: Final = "unclosed_response"

#: OpenTelemetry's advisory bucket boundaries (seconds) for http.client.request.duration.
REQUEST_DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: OpenTelemetry's advisory bucket boundaries (seconds) for http.client.connection.duration.
CONNECTION_DURATION_BUCKETS: Final = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

#: Sub-buckets per power of two in the quantile buckets: at most ~6% relative error.
_STEPS_PER_OCTAVE: Final = 8
#: Quantile buckets start at 2**-20 s (about 1 µs); smaller values share the first one.
_MIN_EXPONENT: Final = -20

#: Quantile buckets: this many octaves from 2**_MIN_EXPONENT s (about 1 µs) up (about 36 hours).
_OCTAVES: Final = 37

#: Request durations wait in a lock-free queue and are folded into the histogram in batches of this many.
_FOLD_EVERY: Final = 256

_now = time.perf_counter
_frexp = math.frexp
_bisect_left = bisect.bisect_left


# -- histograms -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A histogram read at one moment: OTel explicit buckets plus quantiles.

    Attributes:
        boundaries: the upper bounds (seconds) of the explicit buckets.
        bucket_counts: one count per bucket, ``len(boundaries) + 1`` of them; bucket i
            holds values in ``(boundaries[i-1], boundaries[i]]``, the last one the rest.
        count: how many values were recorded.
        sum: their sum, in seconds.
        p50, p90, p99: quantiles in seconds (None when empty), read from fixed
            log-scale buckets finer than ``boundaries`` (within about 6%).
    """

    boundaries: tuple[float, ...]
    bucket_counts: tuple[int, ...]
    count: int = 0
    sum: float = 0.0
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    _fine: tuple[tuple[int, int], ...] = field(default=(), repr=False, compare=False)

    def quantile(self, q: float) -> float | None:
        """Return the ``q`` quantile (0 < q <= 1) in seconds, or None when empty.

        Raises:
            ValueError: ``q`` is outside (0, 1].
        """
        if not 0.0 < q <= 1.0:
            raise ValueError(f"quantile q={q!r} is invalid: expected a number in (0, 1]")
        return _quantile(self._fine, self.count, q)


def _fine_value(index: int) -> float:
    """The middle of quantile bucket ``index``."""
    octave, step = divmod(index, _STEPS_PER_OCTAVE)
    low = 0.5 + step / (2 * _STEPS_PER_OCTAVE)
    return math.ldexp(low + 1 / (4 * _STEPS_PER_OCTAVE), octave + _MIN_EXPONENT)


def _quantile(fine: Sequence[tuple[int, int]], count: int, q: float) -> float | None:
    if count == 0:
        return None
    rank = max(1, math.ceil(q * count))
    seen = 0
    for index, hits in fine:
        seen += hits
        if seen >= rank:
            return _fine_value(index)
    return _fine_value(fine[-1][0])  # pragma: no cover - counts always add up to count


class Histogram:
    """A fixed-bucket histogram of durations; the owner holds the lock around every call."""

    __slots__ = ("boundaries", "count", "counts", "fine", "sum")

    def __init__(self, boundaries: tuple[float, ...]) -> None:
        self.boundaries = boundaries
        self.counts = [0] * (len(boundaries) + 1)
        self.fine = [0] * (_OCTAVES * _STEPS_PER_OCTAVE)
        self.count = 0
        self.sum = 0.0

    def record(self, value: float) -> None:
        """Add one duration, in seconds."""
        self.record_all(collections.deque((value,)))

    def record_all(self, values: collections.deque[float]) -> None:
        """Add every duration in ``values``, emptying it (other threads may still append)."""
        counts, fine, boundaries = self.counts, self.fine, self.boundaries
        pop = values.popleft
        total = 0.0
        added = 0
        while True:
            try:
                value = pop()
            except IndexError:
                break
            counts[_bisect_left(boundaries, value)] += 1
            # Quantile bucket: 8 steps per power of two, from 2**_MIN_EXPONENT s.
            index = 0
            if value > 0.0:
                mantissa, exponent = _frexp(value)
                octave = exponent - _MIN_EXPONENT
                if octave >= _OCTAVES:
                    index = _OCTAVES * _STEPS_PER_OCTAVE - 1
                elif octave > 0:
                    index = octave * _STEPS_PER_OCTAVE + int((mantissa - 0.5) * 2 * _STEPS_PER_OCTAVE)
            fine[index] += 1
            total += value
            added += 1
        self.count += added
        self.sum += total

    def snapshot(self) -> HistogramSnapshot:
        """Return the histogram as it is now."""
        fine = tuple((index, hits) for index, hits in enumerate(self.fine) if hits)
        return HistogramSnapshot(
            boundaries=self.boundaries,
            bucket_counts=tuple(self.counts),
            count=self.count,
            sum=self.sum,
            p50=_quantile(fine, self.count, 0.5),
            p90=_quantile(fine, self.count, 0.9),
            p99=_quantile(fine, self.count, 0.99),
            _fine=fine,
        )


# -- one request --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransactionMetrics:
    """What one request (one redirect hop, retries included) cost, phase by phase.

    Times are in seconds; a phase that did not happen is None (a reused
    connection has no dns, connect or tls). ``body`` and ``total`` are None
    until the body was read to its end or the response closed. The phases are
    those of the last attempt; ``total`` runs from the first attempt to the
    end of the body.

    Attributes:
        dns: name resolution.
        connect: TCP connect (after dns).
        tls: TLS handshake.
        request: sending the request line, headers and body.
        wait: from the request sent to the response's status line and headers.
        body: from the headers to the end of the body (or its close).
        total: from the start of the request to the end of the body.
        reused: the request went over a connection that was already open.
        attempts: 1 plus the retries.
        remote_address: the peer's IP address.
        tls_version: e.g. "TLSv1.3"; None over plain HTTP.
        cipher: the TLS cipher suite; None over plain HTTP.
        bytes_sent: HTTP bytes written (request line, headers, body), before TLS.
        bytes_received: HTTP bytes read off the connection: status line, headers
            and body as the server sent them (chunk framing included, before
            content decoding), before TLS.
        queued: how long the call waited, before it was sent (and before each retry),
            for a rate-limit permit, a ``max_in_flight`` slot or a Retry-After pause.
    """

    dns: float | None = None
    connect: float | None = None
    tls: float | None = None
    request: float | None = None
    wait: float | None = None
    body: float | None = None
    total: float | None = None
    reused: bool = False
    attempts: int = 1
    remote_address: str | None = None
    tls_version: str | None = None
    cipher: str | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    queued: float = 0.0


def _span(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, end - start)


#: What one attempt records; a retry forgets them.
_ATTEMPT_FIELDS: Final = (
    "connect_start", "dns_done", "connect_done", "tls_done", "request_start", "request_done",
    "response_start", "reused", "peer", "bytes_sent", "raw",
)


class Transaction:
    """The recorder of one request: marks set where each event happens.

    No ``__slots__`` on purpose: the class attributes are the defaults, so a
    request sets only the marks of the events it really went through.
    """

    started: float
    attempts = 1
    done = False
    raw: Any = None
    frozen: TransactionMetrics | None = None
    conn: Any = None
    status: int | None = None
    error_type: str | None = None
    body_done: float | None = None
    #: The exporter's attributes of this request, worked out once.
    labels: dict[str, Any] | None = None
    connect_start: float | None = None
    dns_done: float | None = None
    connect_done: float | None = None
    tls_done: float | None = None
    request_start: float | None = None
    request_done: float | None = None
    response_start: float | None = None
    reused = False
    #: Remote address, TLS version and cipher of the connection.
    peer: tuple[str | None, str | None, str | None] = (None, None, None)
    bytes_sent = 0
    #: Seconds spent waiting for a permit, a slot or a pause (see TransactionMetrics.queued).
    queued = 0.0
    #: Requests the same call sent before this one (earlier redirect hops, with their retries).
    resends_before = 0
    #: When the request ended (body done, or failed); set before SessionMetrics.request_ended hears of it.
    ended = 0.0

    def __init__(self, metrics: SessionMetrics, method: str, url: str) -> None:
        self.metrics = metrics
        self.method = method
        self.url = url
        self.started = self.attempt_started = _now()

    @property
    def resend_count(self) -> int:
        """How many times the current attempt's request was sent before (OTel's ``http.request.resend_count``)."""
        return self.resends_before + self.attempts - 1

    def new_attempt(self, status: int | None = None, error: BaseException | None = None) -> None:
        """A retry begins: the last attempt ended (with ``status`` or ``error``); forget its phases and connection."""
        now = _now()
        error_type = None if error is None else type(error).__qualname__
        self.metrics.attempt_ended(self, now - self.attempt_started, status, error_type)
        self.attempts += 1
        self.attempt_started = now
        self.detach()
        for name in _ATTEMPT_FIELDS:
            self.__dict__.pop(name, None)

    def detach(self) -> None:
        """Stop listening to the connection of the current attempt."""
        conn = self.conn
        if conn is not None:
            conn._preset_tx = None
            self.conn = None

    def freeze(self) -> TransactionMetrics:
        """Return the figures recorded so far."""
        connect_from = self.dns_done if self.dns_done is not None else self.connect_start
        received = 0
        raw = self.raw
        if raw is not None:
            reader = getattr(getattr(raw, "_original_response", None), "preset_reader", None)
            # Without CountingHTTPResponse (a connection class patched in by another library):
            # the head as parsed and urllib3's count, which misses chunked bodies.
            received = reader.count if reader is not None else header_size(raw) + _upstream.body_bytes_read(raw)
        return TransactionMetrics(
            dns=_span(self.connect_start, self.dns_done),
            connect=_span(connect_from, self.connect_done),
            tls=_span(self.connect_done, self.tls_done),
            request=_span(self.request_start, self.request_done),
            wait=_span(self.request_done, self.response_start),
            body=_span(self.response_start, self.body_done),
            total=_span(self.started, self.body_done),
            reused=self.reused,
            attempts=self.attempts,
            remote_address=self.peer[0],
            tls_version=self.peer[1],
            cipher=self.peer[2],
            bytes_sent=self.bytes_sent,
            bytes_received=received,
            queued=self.queued,
        )

    def snapshot(self) -> TransactionMetrics:
        """Return the figures, kept once the request is over."""
        frozen = self.frozen
        if frozen is None:
            frozen = self.freeze()
            if self.done:
                # Read after the body's last read call returned, so its bytes are counted.
                self.frozen = frozen
        return frozen

    def finish(self) -> None:
        """The body was read to its end or the response closed: record the request."""
        if self.done:
            return
        self.body_done = self.ended = now = _now()
        self.done = True
        conn = self.conn
        if conn is not None:
            conn._preset_tx = self.conn = None
        total = now - self.started
        self.metrics.request_ended(self, total)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s %s -> %s in %.3f ms (reused=%s, attempts=%d)",
                self.metrics.preset,
                self.method,
                safe_url(self.url),
                self.status,
                total * 1000,
                self.reused,
                self.attempts,
            )

    def fail(self, error: BaseException | str) -> None:
        """The request ended without a body read or closed: record its duration and the error type.

        Args:
            error: the exception, or the error type to report.
        """
        if self.done:
            return
        self.done = True
        self.detach()
        self.raw = None
        self.error_type = error if isinstance(error, str) else type(error).__qualname__
        self.ended = _now()
        duration = self.ended - self.started
        self.metrics.request_ended(self, duration)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s %s -> %s after %.3f ms (attempts=%d)",
                self.metrics.preset,
                self.method,
                safe_url(self.url),
                self.error_type,
                duration * 1000,
                self.attempts,
            )


    def abandon(self) -> None:
        """A streamed response was collected unread and unclosed: end its request and its connection."""
        if self.done:
            return
        conn = self.conn
        self.fail(UNCLOSED)
        if conn is not None:
            # Nothing else holds it now: close it, so its socket and the
            # open-connection count do not wait for the garbage collector.
            conn.close()


class MeteredResponse(requests.Response):
    """A requests Response whose ``metrics`` are read from its request's recorder."""

    _preset_tx: Transaction | None = None
    #: The metrics a pickled response carried.
    _preset_metrics: TransactionMetrics | None = None

    @property
    def metrics(self) -> TransactionMetrics | None:
        """What this request cost, phase by phase; None when metrics are off."""
        tx = self._preset_tx
        return self._preset_metrics if tx is None else tx.snapshot()

    def raise_for_status(self) -> None:
        """requests' check, with the URL in its message shown as every error of the library shows it.

        ``str(exc)`` of an HTTPError is what ends up in logs, so its URL loses
        the query string and userinfo, as in the library's own errors; the full
        URL stays on ``exc.response.url``.
        """
        try:
            super().raise_for_status()
        except requests.HTTPError as exc:
            url = self.url or ""
            shown = safe_url(url)
            if shown != url and exc.args and isinstance(exc.args[0], str):
                exc.args = (exc.args[0].replace(f"for url: {url}", f"for url: {shown}"), *exc.args[1:])
            raise

    @property
    def content(self) -> bytes:
        """The body, as requests reads it (see ``requests.Response.content``)."""
        raw = self.raw
        if (
            self._content is False
            and not self._content_consumed
            and type(raw) is HTTPResponse
            and self.status_code
            and not raw.chunked
            and raw.length_remaining is not None
            and "content-encoding" not in raw.headers
        ):
            # A plain body of known length: one read instead of requests'
            # generator of 10 KiB reads, which end with the same bytes (a
            # twelfth of a small call). Chunked and encoded bodies go through
            # requests, whose parsers and decoders report their own errors.
            try:
                data = raw.read(decode_content=True)
            except ProtocolError as exc:  # a truncated body, as requests maps them
                raise requests.exceptions.ChunkedEncodingError(exc) from exc
            except ReadTimeoutError as exc:
                raise BodyReadTimeoutError(exc, request=self.request, response=self) from exc
            except _TLSError as exc:
                raise requests.exceptions.SSLError(exc) from exc
            self._content = data or b""
            self._content_consumed = True
            return self._content
        return super().content

    def iter_content(self, chunk_size: int | None = 1, decode_unicode: bool = False) -> Iterator[Any]:
        """requests' chunks (``content``, ``text``, ``json()`` and ``iter_lines`` read through here).

        A body that stops arriving raises BodyReadTimeoutError, a ReadTimeout, where
        requests raises a bare ConnectionError wrapping urllib3's ReadTimeoutError.
        """
        if decode_unicode:
            chunks: Iterator[Any] = super().iter_content(chunk_size, decode_unicode=True)
        else:
            chunks = super().iter_content(chunk_size)
        return _body_timeouts_as_read_timeouts(self, chunks)

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()
        state["_preset_metrics"] = self.metrics
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        frozen = state.pop("_preset_metrics", None)
        super().__setstate__(state)
        self._preset_metrics = frozen


def _body_timeouts_as_read_timeouts(response: requests.Response, chunks: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from chunks
    except requests.exceptions.ConnectionError as exc:
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, ReadTimeoutError) and not isinstance(exc, requests.exceptions.Timeout):
            raise BodyReadTimeoutError(cause, request=response.request, response=response) from exc
        raise


class _CountingReader:
    """A response's buffered socket file that counts the bytes read through it."""

    __slots__ = ("_file", "count")

    def __init__(self, file: Any) -> None:
        self._file = file
        self.count = 0

    def read(self, *args: Any) -> bytes:
        data: bytes = self._file.read(*args)
        self.count += len(data)
        return data

    def read1(self, *args: Any) -> bytes:
        data: bytes = self._file.read1(*args)
        self.count += len(data)
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._file.readline(*args)
        self.count += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        size: int = self._file.readinto(buffer)
        self.count += size or 0
        return size

    def readinto1(self, buffer: Any) -> int:
        size: int = self._file.readinto1(buffer)
        self.count += size or 0
        return size

    def close(self) -> None:
        self._file.close()

    def __getattr__(self, name: str) -> Any:
        # peek, fileno, closed, ...: what http.client uses and reads nothing.
        return getattr(self._file, name)


class CountingHTTPResponse(http.client.HTTPResponse):
    """http.client's response, counting every byte read off the connection: head, body and chunk framing.

    Installed as the connection classes' ``response_class`` (http.client's own
    seam). urllib3 reads chunked bodies around its byte counter, so that
    counter alone misses them.
    """

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        # http.client drops self.fp on close; the count outlives it.
        self.preset_reader = self.fp = _CountingReader(self.fp)  # type: ignore[assignment]


def header_size(raw: Any) -> int:
    """Return the size of a urllib3 response's status line and headers as parsed."""
    size = len(getattr(raw, "version_string", "HTTP/1.1")) + len(str(raw.reason or "")) + 7  # " 200 " and CRLF
    for name, value in raw.headers.items():
        size += len(name) + len(value) + 4  # ": " and CRLF
    return size + 2  # the blank line


# -- per session ----------------------------------------------------------------------------


class MetricsSink(Protocol):
    """Hears every request and connection event of every session (an exporter)."""

    def request_started(self, tx: Transaction) -> None:
        """A request starts."""

    def request_ended(self, tx: Transaction, duration: float) -> None:
        """A request ended: body done, or failed (``tx.error_type`` set)."""

    def attempt_ended(self, tx: Transaction, duration: float, status: int | None, error_type: str | None) -> None:
        """One attempt of ``tx`` ended and is about to be resent (a retry); ``tx.resend_count`` is that attempt's."""

    def connection_state(
        self, metrics: SessionMetrics, origin: tuple[str, str, int], old: str | None, new: str | None, age: float | None
    ) -> None:
        """A connection moved between None (closed), "idle" and "active"; ``age`` when it closed."""


_sinks: tuple[MetricsSink, ...] = ()
_sinks_lock = threading.Lock()


def add_sink(sink: MetricsSink) -> None:
    """Send every later request and connection event to ``sink`` too."""
    global _sinks
    with _sinks_lock:
        if sink not in _sinks:
            _sinks = (*_sinks, sink)


def remove_sink(sink: MetricsSink) -> None:
    """Stop sending events to ``sink``."""
    global _sinks
    with _sinks_lock:
        _sinks = tuple(s for s in _sinks if s is not sink)


def _notify(event: Any, *args: Any) -> None:
    try:
        event(*args)
    except Exception:
        # An exporter's failure must never fail the request it describes.
        log.debug("metrics sink %r failed", event, exc_info=True)


_live: weakref.WeakSet[SessionMetrics] = weakref.WeakSet()


class SessionMetrics:
    """A session's aggregates, in OpenTelemetry's terms; thread-safe, zeroed in a forked child.

    Args:
        preset: the preset's name, reported with every figure.
    """

    def __init__(self, preset: str) -> None:
        self.preset = preset
        self._lock = threading.Lock()
        self._zero()
        _live.add(self)

    def _zero(self) -> None:
        self.request_duration = Histogram(REQUEST_DURATION_BUCKETS)
        self.connection_duration = Histogram(CONNECTION_DURATION_BUCKETS)
        # Requests started, counted without a lock (next() on a count is atomic);
        # active = started - ended, and every ended request is in request_duration
        # or still in _ended, where it waits (appended without a lock) to be folded in.
        self._starts = itertools.count()
        self._ended: collections.deque[float] = collections.deque()
        self.open_connections = 0
        # Connections opened before a fork are the parent's: their closing is not ours.
        self.generation = getattr(self, "generation", 0) + 1

    @property
    def active_requests(self) -> int:
        """Requests started and not yet ended."""
        started = int(repr(self._starts)[len("count(") : -1])  # the next value: how many were taken
        return started - self.request_duration.count - len(self._ended)

    def start(self, method: str, url: str) -> Transaction:
        """Begin recording one request and count it active."""
        next(self._starts)
        tx = Transaction(self, method, url)
        for sink in _sinks:
            _notify(sink.request_started, tx)
        return tx

    def request_ended(self, tx: Transaction, duration: float) -> None:
        """Count a request done and record its duration."""
        ended = self._ended
        ended.append(duration)
        if len(ended) >= _FOLD_EVERY:
            with self._lock:
                self.request_duration.record_all(ended)
        for sink in _sinks:
            _notify(sink.request_ended, tx, duration)

    def attempt_ended(self, tx: Transaction, duration: float, status: int | None, error_type: str | None) -> None:
        """Tell the sinks that an attempt of ``tx`` ended and will be retried (the session's aggregates count calls)."""
        for sink in _sinks:
            _notify(sink.attempt_ended, tx, duration, status, error_type)

    def connection_state(self, conn: Any, new: str | None) -> None:
        """Move ``conn`` to state ``new``: "active", "idle", or None (closed)."""
        old: str | None = conn._preset_state
        if old == new:
            return
        if old is not None and new is not None and conn._preset_generation == self.generation:
            # idle <-> active: no count changes, so no lock; only an exporter cares.
            conn._preset_state = new
            for sink in _sinks:
                _notify(sink.connection_state, self, (conn.preset_scheme, conn.host, conn.port), old, new, None)
            return
        age: float | None = None
        with self._lock:
            if old is not None and conn._preset_generation != self.generation:
                # Opened before a fork, by the parent: not one of ours to count down.
                old = None
            if old is None:
                if new is None:
                    conn._preset_state = None
                    return
                conn._preset_generation = self.generation
                self.open_connections += 1
            elif new is None:
                self.open_connections -= 1
                age = max(0.0, time.monotonic() - conn.preset_connected_at)
                self.connection_duration.record(age)
        conn._preset_state = new
        for sink in _sinks:
            _notify(sink.connection_state, self, (conn.preset_scheme, conn.host, conn.port), old, new, age)

    def snapshot(self) -> dict[str, Any]:
        """Return the aggregates as keyword arguments of SessionStats."""
        with self._lock:
            self.request_duration.record_all(self._ended)
            return {
                "open_connections": self.open_connections,
                "active_requests": self.active_requests,
                "request_duration": self.request_duration.snapshot(),
                "connection_duration": self.connection_duration.snapshot(),
            }

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._zero()


def _after_fork_in_child() -> None:
    for metrics in list(_live):
        metrics._after_fork()


_process.on_fork_child(_after_fork_in_child, order=_process.ORDER_SESSIONS)


# -- text ----------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.3f} ms"


def format_timing(metrics: TransactionMetrics | None) -> str:
    """Return the phase breakdown of one response as text, like ``curl -w``."""
    if metrics is None:
        return "timing: not recorded\n"
    rows = [
        ("dns", _ms(metrics.dns)),
        ("connect", _ms(metrics.connect)),
        ("tls", _ms(metrics.tls)),
        ("request", _ms(metrics.request)),
        ("wait", _ms(metrics.wait)),
        ("body", _ms(metrics.body)),
        ("total", _ms(metrics.total)),
        ("reused", "yes" if metrics.reused else "no"),
        ("attempts", str(metrics.attempts)),
        ("remote_address", metrics.remote_address or "-"),
        ("tls_version", metrics.tls_version or "-"),
        ("cipher", metrics.cipher or "-"),
        ("bytes_sent", str(metrics.bytes_sent)),
        ("bytes_received", str(metrics.bytes_received)),
    ]
    width = max(len(name) for name, _ in rows)
    return "".join(f"{name.rjust(width)}: {value}\n" for name, value in rows)
