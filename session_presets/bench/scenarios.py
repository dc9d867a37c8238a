"""The bench scenarios: one way of making N requests each, measured the same way.

Every scenario gets the same treatment: a warm-up on throwaway clients of its
own kind (so that imports, trust stores and code paths are warm but no pooled
connection is carried into the measurement), a garbage collection, a reset of
the server's connection count, then the timed run. Memory and descriptors are
read after the run, while the scenario's long-lived client (if any) is still
open, and then everything it opened is closed.
"""

from __future__ import annotations

import functools
import gc
import itertools
import os
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import requests
import urllib3

from .. import _metrics, _process
from .._errors import SessionReuseWarning
from .._metrics import REQUEST_DURATION_BUCKETS, Histogram
from .._presets import preset_names, register_preset
from .._registry import SessionRegistry, get_session
from .._sessions import default_session, ephemeral_session
from .server import ServerAddress, ServerProcess

__all__ = [
    "COMPARISON_SCENARIOS",
    "DOWNLOAD_SCENARIOS",
    "REQUEST_SCENARIOS",
    "SCENARIOS",
    "BenchContext",
    "Body",
    "Closer",
    "ScenarioSkipped",
    "Warm",
    "measure",
    "open_fds",
    "rss_bytes",
    "run_scenario",
    "server_figures",
    "sockets_to",
    "timed_run",
]

#: Scenarios that make many small requests, in the order they run.
REQUEST_SCENARIOS: Final = (
    "requests_get",
    "session_per_call",
    "requests_session",
    "get_session",
    "get_session_metrics_off",
    "ephemeral_per_call",
    "default_session_per_call",
    "default_session_per_call_no_resumption",
    "urllib3_pool",
    "httpx_client",
    "burst_16",
    "threads_32",
    "threads_32_no_pool_block",
)
#: Scenarios that run one piece of work through several clients side by side, in
#: interleaved rounds; each is defined in :mod:`.comparisons` (a test checks the two agree).
COMPARISON_SCENARIOS: Final = ("api_client",)
#: Scenarios that make one large download to a file.
DOWNLOAD_SCENARIOS: Final = ("background_download", "requests_stream")
#: Every scenario, in the order they run.
SCENARIOS: Final = REQUEST_SCENARIOS + COMPARISON_SCENARIOS + DOWNLOAD_SCENARIOS
#: Scenarios that open a connection per call; they run ``slow_requests`` times.
PER_CALL_SCENARIOS: Final = frozenset(
    {
        "requests_get",
        "session_per_call",
        "ephemeral_per_call",
        "default_session_per_call",
        "default_session_per_call_no_resumption",
        "burst_16",
    }
)
#: Threads of the threaded scenarios.
BURST_THREADS: Final = 16
SHARED_THREADS: Final = 32
#: Chunk size of the plain requests streaming loop (1 MiB is its fastest form).
STREAM_CHUNK: Final = 1 << 20

_run_numbers = itertools.count(1)


class ScenarioSkipped(Exception):
    """The scenario cannot run here (a package or feature is missing); the message says why."""


@dataclass
class BenchContext:
    """What every scenario shares: the server, trust, sizes and a scratch directory.

    Attributes:
        server: the loopback server: its handle in the process that started it, its
            address alone in a variant's child process (see :mod:`.compare`).
        bundle: certifi plus the throwaway CA, or None for plain HTTP.
        requests: N, the request count of the pooled scenarios.
        slow_requests: the request count of the connection-per-call scenarios.
        download_bytes: size of the download scenarios' file.
        scratch: a temporary directory for downloads and journals.
        warmup: calls made on throwaway clients before each request scenario.
    """

    server: ServerAddress
    bundle: str | None
    requests: int
    slow_requests: int
    download_bytes: int
    scratch: str
    warmup: int = 20
    preset: str = ""
    #: Names this bench run, so that what a comparison scenario sends differs from run to run.
    run_id: str = ""
    #: Per-call latencies of the timed run: the library's own histogram (OTel buckets, quantiles).
    latency: Histogram = field(default_factory=lambda: Histogram(REQUEST_DURATION_BUCKETS))

    def __post_init__(self) -> None:
        if not self.preset:
            self.preset = _bench_preset(self.bundle)
        if not self.run_id:
            self.run_id = f"{os.getpid()}-{time.time_ns()}"

    @property
    def process(self) -> ServerProcess:
        """The server's handle, for its counters; only the process that started the server has it.

        Raises:
            RuntimeError: this is a variant's child process, which only knows the address.
        """
        if not isinstance(self.server, ServerProcess):
            raise RuntimeError("only the process that started the bench server can read its counters")
        return self.server

    @property
    def url(self) -> str:
        """The small-response URL."""
        return self.server.url("/ok")

    def blob_url(self, size: int) -> str:
        """The URL of a ``size``-byte download."""
        return self.server.url(f"/blob/{size}")

    @property
    def verify(self) -> str | bool:
        """What plain requests is given as ``verify``."""
        return self.bundle if self.bundle is not None else True

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSLContext trusting the bundle (for httpx)."""
        return ssl.create_default_context(cafile=self.bundle) if self.bundle else ssl.create_default_context()


def _bench_preset(bundle: str | None) -> str:
    """Register a preset for this run that trusts ``bundle``; return its name."""
    while True:
        name = f"bench-{os.getpid()}-{next(_run_numbers)}"
        if name not in preset_names():
            break
    if bundle is not None:
        register_preset(name, ca_bundle=bundle)
    else:
        register_preset(name)
    return name


# -- measurement ------------------------------------------------------------------


def rss_bytes() -> int:
    """Return the resident set size of this process, in bytes."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        # Peak, not current, but the best that is left; kibibytes on Linux.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def open_fds() -> int:
    """Return how many file descriptors this process has open."""
    try:
        import psutil

        return int(psutil.Process().num_fds())
    except ImportError:
        pass
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the listing's own descriptor
    except OSError:  # pragma: no cover - no /proc: count by probing
        import resource

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        count = 0
        for fd in range(min(limit, 4096)):
            try:
                os.fstat(fd)
            except OSError:
                continue
            count += 1
        return count


#: Closes what a scenario's timed run left open.
Closer = Callable[[], None]
#: Another library's client, as a scenario of _foreign_client builds and closes it.
_Client = TypeVar("_Client")
#: A scenario's timed run: returns how many requests it made, its closer and extra figures.
Body = Callable[[BenchContext], "tuple[int, Closer, dict[str, Any]]"]
#: A scenario's warm-up, on throwaway clients of its own kind.
Warm = Callable[[BenchContext], None]


def sockets_to(port: int) -> int | None:
    """Return how many TCP sockets of this process are connected to 127.0.0.1:``port`` (None without psutil).

    Unlike the process-wide descriptor count, this sees only what the clients
    under test hold: a test runner's other threads open and close descriptors
    of their own at any moment.
    """
    try:
        import psutil
    except ImportError:
        return None
    return sum(1 for conn in psutil.Process().net_connections(kind="tcp") if conn.raddr and conn.raddr.port == port)


def timed_run(ctx: BenchContext, body: Body) -> tuple[dict[str, Any], Closer]:
    """Run ``body`` on the clock and return the client's side of its figures, and its closer.

    The figures include ``cpu_seconds``, the CPU time of this whole process
    during the run (all its threads), and ``req_per_cpu_s``; a body whose
    extra figures have ``bytes`` (a transfer) also gets ``mib_per_s``. Memory,
    descriptors and sockets are read after the run, while the
    scenario's long-lived client is still open; the caller closes it (after
    reading the server's side, see :func:`server_figures`). On an error the
    closer has already run, or the body closed what it opened.
    """
    fds_before = open_fds()
    rss_before = rss_bytes()
    ctx.latency = Histogram(REQUEST_DURATION_BUCKETS)
    cpu = time.process_time()
    started = time.perf_counter()
    count, close, extra = body(ctx)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    try:
        gc.collect()
        figures = {
            "requests": count,
            "seconds": seconds,
            "req_per_s": count / seconds if seconds > 0 else 0.0,
            # This process's CPU time: on a shared machine, steadier than the wall clock.
            "cpu_seconds": cpu,
            "req_per_cpu_s": count / cpu if cpu > 0 else 0.0,
            "rss_growth_bytes": rss_bytes() - rss_before,
            "open_fds_after": open_fds(),
            "open_fds_before": fds_before,
            "server_sockets_after": sockets_to(ctx.server.port),
            **_latency(ctx.latency),
            **extra,
        }
        if "bytes" in extra:  # a transfer: its throughput
            figures["mib_per_s"] = extra["bytes"] / (1 << 20) / seconds if seconds > 0 else 0.0
    except BaseException:
        close()
        raise
    return figures, close


def server_figures(ctx: BenchContext) -> dict[str, Any]:
    """Return what the server counted since its last reset: connections and, over HTTPS, resumptions."""
    server = ctx.process
    figures: dict[str, Any] = {"connections_opened": server.connections()}
    if server.scheme == "https":
        # Counted by the server: a client may believe it resumed when it did not.
        figures["server_tls_resumed"] = server.resumed_handshakes()
    return figures


def measure(ctx: BenchContext, warm: Warm, body: Body) -> dict[str, Any]:
    """Warm up, collect garbage, reset the process counters, then time ``body``: the client's and server's figures."""
    warm(ctx)
    gc.collect()
    ctx.process.reset()
    client, close = timed_run(ctx, body)
    try:
        server = server_figures(ctx)
    finally:
        close()
    return {**client, **server}


def _latency(histogram: Histogram) -> dict[str, float]:
    if histogram.count < 2:  # a single download has no distribution to speak of
        return {}
    snapshot = histogram.snapshot()
    return {"p50_ms": (snapshot.p50 or 0.0) * 1000, "p99_ms": (snapshot.p99 or 0.0) * 1000}


def _nothing() -> None:
    return None


def _check(status: int) -> None:
    if status != 200:
        raise RuntimeError(f"the bench server answered HTTP {status}")


# -- request scenarios --------------------------------------------------------------


def _requests_get_once(ctx: BenchContext) -> None:
    _check(requests.get(ctx.url, verify=ctx.verify).status_code)


def _session_once(ctx: BenchContext) -> None:
    with requests.Session() as session:
        session.verify = ctx.verify
        # verify= again per call: REQUESTS_CA_BUNDLE would override session.verify (requests issue 3829).
        _check(session.get(ctx.url, verify=ctx.verify).status_code)


def _ephemeral_once(ctx: BenchContext) -> int:
    with ephemeral_session(ca_bundle=ctx.bundle) as session:
        _check(session.get(ctx.url).status_code)
        return session.stats.connections_resumed


def _default_once(ctx: BenchContext, **overrides: Any) -> int:
    with default_session(ca_bundle=ctx.bundle, **overrides) as session:
        _check(session.get(ctx.url).status_code)
        return session.stats.connections_resumed


def _per_call(once: Callable[[BenchContext], object]) -> tuple[Callable[[BenchContext], None], Body]:
    def warm(ctx: BenchContext) -> None:
        for _ in range(min(ctx.warmup, ctx.slow_requests)):
            once(ctx)

    def body(ctx: BenchContext) -> tuple[int, Closer, dict[str, Any]]:
        record, clock = ctx.latency.record, time.perf_counter
        resumed = 0
        for _ in range(ctx.slow_requests):
            started = clock()
            outcome = once(ctx)
            record(clock() - started)
            resumed += outcome if isinstance(outcome, int) else 0
        return ctx.slow_requests, _nothing, {"tls_resumed": resumed}

    return warm, body


def _in_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` on ``count`` threads that start at once; re-raise the first failure."""
    gate = threading.Barrier(count)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            gate.wait(60)
            work(index)
        except BaseException as exc:
            failures.append(exc)

    threads = [_process.start_thread(run, name=f"bench-{index}", args=(index,)) for index in range(count)]
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def _first_call(session: Any, url: str, _index: int) -> None:
    _check(session.get(url).status_code)


def _burst() -> tuple[Callable[[BenchContext], None], Body]:
    """16 threads make their first request to one origin at once, on a new shared session each round."""

    def rounds(ctx: BenchContext, count: int) -> dict[str, Any]:
        resumed = opened = 0
        for _ in range(count):
            registry = SessionRegistry()
            session = registry.get(ctx.preset)
            _in_threads(BURST_THREADS, functools.partial(_first_call, session, ctx.url))
            resumed += session.stats.connections_resumed
            opened += session.stats.connections_opened
            registry.close_all()
        return {"tls_resumed": resumed, "client_connections_opened": opened}

    def warm(ctx: BenchContext) -> None:
        rounds(ctx, 1)

    def body(ctx: BenchContext) -> tuple[int, Closer, dict[str, Any]]:
        count = max(1, ctx.slow_requests // BURST_THREADS)
        return count * BURST_THREADS, _nothing, rounds(ctx, count)

    return warm, body


def _shared_by_threads(**overrides: Any) -> tuple[Callable[[BenchContext], None], Body]:
    """32 threads share one session for N requests in all."""

    def calls(ctx: BenchContext, total: int) -> Any:
        session = default_session(ca_bundle=ctx.bundle, **overrides)
        share, extra = divmod(total, SHARED_THREADS)

        record, clock = ctx.latency.record, time.perf_counter
        recording = threading.Lock()  # the histogram is not thread-safe

        def work(index: int) -> None:
            for _ in range(share + (index < extra)):
                started = clock()
                _check(session.get(ctx.url).status_code)
                elapsed = clock() - started
                with recording:
                    record(elapsed)

        try:
            _in_threads(SHARED_THREADS, work)
        except BaseException:
            session.close()
            raise
        return session

    def warm(ctx: BenchContext) -> None:
        calls(ctx, min(ctx.warmup, SHARED_THREADS)).close()

    def body(ctx: BenchContext) -> tuple[int, Closer, dict[str, Any]]:
        session = calls(ctx, ctx.requests)
        stats = session.stats
        return ctx.requests, session.close, {"client_connections_opened": stats.connections_opened}

    return warm, body


def _requests_session_calls(ctx: BenchContext, count: int) -> requests.Session:
    session = requests.Session()
    session.verify = ctx.verify
    get, url, verify = session.get, ctx.url, ctx.verify
    record, clock = ctx.latency.record, time.perf_counter
    for _ in range(count):
        started = clock()
        # verify= again per call: REQUESTS_CA_BUNDLE would override session.verify (requests issue 3829).
        _check(get(url, verify=verify).status_code)
        record(clock() - started)
    return session


def _foreign_client(
    calls: Callable[[BenchContext, int], _Client], closer: Callable[[_Client], Closer]
) -> tuple[Callable[[BenchContext], None], Body]:
    """The warm-up and body of a scenario timing another library's client: ``calls`` makes the requests."""

    def warm(ctx: BenchContext) -> None:
        closer(calls(ctx, ctx.warmup))()

    def body(ctx: BenchContext) -> tuple[int, Closer, dict[str, Any]]:
        return ctx.requests, closer(calls(ctx, ctx.requests)), {}

    return warm, body


def _requests_session() -> tuple[Callable[[BenchContext], None], Body]:
    return _foreign_client(_requests_session_calls, lambda session: session.close)


def _get_session() -> tuple[Callable[[BenchContext], None], Body]:
    def warm(ctx: BenchContext) -> None:
        registry = SessionRegistry()
        for _ in range(ctx.warmup):
            _check(registry.get(ctx.preset).get(ctx.url).status_code)
        registry.close_all()

    def body(ctx: BenchContext) -> tuple[int, Closer, dict[str, Any]]:
        name, url = ctx.preset, ctx.url
        record, clock = ctx.latency.record, time.perf_counter
        for _ in range(ctx.requests):
            started = clock()
            _check(get_session(name).get(url).status_code)
            record(clock() - started)
        session = get_session(name)
        stats = session.stats
        # The session's own histogram, timed from inside, next to the bench's.
        own = {"session_p50_ms": (stats.p50 or 0.0) * 1000, "session_p99_ms": (stats.p99 or 0.0) * 1000}
        extra = {"client_connections_opened": stats.connections_opened, **own}
        return ctx.requests, session.finish_tasks_and_invalidate, extra

    return warm, body


def _get_session_metrics_off() -> tuple[Callable[[BenchContext], None], Body]:
    """get_session with metrics switched off: what the metrics cost, in the same run."""
    warm, body = _get_session()

    def warm_off(ctx: BenchContext) -> None:
        _metrics.ENABLED = False
        try:
            warm(ctx)
        finally:
            _metrics.ENABLED = True

    def body_off(ctx: BenchContext) -> tuple[int, Closer, dict[str, Any]]:
        _metrics.ENABLED = False
        try:
            return body(ctx)
        finally:
            _metrics.ENABLED = True

    return warm_off, body_off


def _urllib3_calls(ctx: BenchContext, count: int) -> urllib3.PoolManager:
    manager = urllib3.PoolManager(ca_certs=ctx.bundle) if ctx.bundle else urllib3.PoolManager()
    request, url = manager.request, ctx.url
    record, clock = ctx.latency.record, time.perf_counter
    for _ in range(count):
        started = clock()
        _check(request("GET", url).status)
        record(clock() - started)
    return manager


def _urllib3_pool() -> tuple[Callable[[BenchContext], None], Body]:
    return _foreign_client(_urllib3_calls, lambda manager: manager.clear)


def _httpx_client() -> tuple[Callable[[BenchContext], None], Body]:
    try:
        import httpx
    except ImportError:
        raise ScenarioSkipped("httpx is not installed") from None

    def calls(ctx: BenchContext, count: int) -> Any:
        client = httpx.Client(verify=ctx.ssl_context())
        get, url = client.get, ctx.url
        record, clock = ctx.latency.record, time.perf_counter
        for _ in range(count):
            started = clock()
            _check(get(url).status_code)
            record(clock() - started)
        return client

    return _foreign_client(calls, lambda client: client.close)


# -- download scenarios ---------------------------------------------------------------


def _download_extra(ctx: BenchContext, dest: str) -> dict[str, Any]:
    size = os.path.getsize(dest)
    os.unlink(dest)
    # Outside the clock: the deletion reaches the disk now (journal commit, discard of the
    # freed blocks), not during the next round, where it slowed that round's writes and fsyncs.
    os.sync()
    if size != ctx.download_bytes:
        raise RuntimeError(f"downloaded {size} bytes, expected {ctx.download_bytes}")
    return {"bytes": size}


def _prime_disk(ctx: BenchContext) -> None:
    """Write and delete a file of the download size, so neither download scenario pays
    the first-write cost of fresh page-cache memory (the first one run was 5-10x slower)."""
    path = os.path.join(ctx.scratch, "prime.bin")
    block = bytes(1 << 20)
    with open(path, "wb") as out:
        for _ in range(max(1, ctx.download_bytes >> 20)):
            out.write(block)
    os.unlink(path)


def _stream_to(ctx: BenchContext, url: str, dest: str) -> None:
    with requests.get(url, stream=True, verify=ctx.verify) as response:
        _check(response.status_code)
        with open(dest, "wb") as out:
            for chunk in response.iter_content(STREAM_CHUNK):
                out.write(chunk)


def _requests_stream() -> tuple[Callable[[BenchContext], None], Body]:
    def warm(ctx: BenchContext) -> None:
        _prime_disk(ctx)
        dest = os.path.join(ctx.scratch, "warm.bin")
        _stream_to(ctx, ctx.blob_url(min(ctx.download_bytes, 1 << 20)), dest)
        os.unlink(dest)

    def body(ctx: BenchContext) -> tuple[int, Closer, dict[str, Any]]:
        dest = os.path.join(ctx.scratch, "requests_stream.bin")
        cpu = time.process_time()
        _stream_to(ctx, ctx.blob_url(ctx.download_bytes), dest)
        cpu = time.process_time() - cpu
        return 1, _nothing, {**_download_extra(ctx, dest), "cpu_seconds": cpu}

    return warm, body


def _background_download() -> tuple[Callable[[BenchContext], None], Body]:
    from ..background import background_session

    run = next(_run_numbers)

    def fetch(ctx: BenchContext, identifier: str, url: str, dest: str) -> Any:
        bg = background_session(identifier, ca_bundle=ctx.bundle, state_dir=os.path.join(ctx.scratch, "state"))
        try:
            task = bg.download(url, dest).wait()
            if str(getattr(task.state, "value", task.state)) != "completed":
                raise RuntimeError(f"background download ended {task.state}: {task.error}")
            bg.forget(task)
        except BaseException:
            bg.invalidate_and_cancel()
            raise
        return bg

    def warm(ctx: BenchContext) -> None:
        # A session of its own, closed before the run: no pooled connection carries over.
        _prime_disk(ctx)
        dest = os.path.join(ctx.scratch, "warm-bg.bin")
        url = ctx.blob_url(min(ctx.download_bytes, 1 << 20))
        fetch(ctx, f"bench-{os.getpid()}-{run}-warm", url, dest).finish_tasks_and_invalidate()
        os.unlink(dest)

    def body(ctx: BenchContext) -> tuple[int, Closer, dict[str, Any]]:
        dest = os.path.join(ctx.scratch, "background_download.bin")
        cpu = time.process_time()
        bg = fetch(ctx, f"bench-{os.getpid()}-{run}", ctx.blob_url(ctx.download_bytes), dest)
        cpu = time.process_time() - cpu
        try:
            extra = {**_download_extra(ctx, dest), "cpu_seconds": cpu}
        except BaseException:
            bg.finish_tasks_and_invalidate()
            raise
        return 1, bg.finish_tasks_and_invalidate, extra

    return warm, body


_FACTORIES: Final[dict[str, Callable[[], tuple[Callable[[BenchContext], None], Body]]]] = {
    "requests_get": lambda: _per_call(_requests_get_once),
    "session_per_call": lambda: _per_call(_session_once),
    "requests_session": _requests_session,
    "get_session": _get_session,
    "get_session_metrics_off": _get_session_metrics_off,
    "ephemeral_per_call": lambda: _per_call(_ephemeral_once),
    "default_session_per_call": lambda: _per_call(_default_once),
    "default_session_per_call_no_resumption": lambda: _per_call(
        lambda ctx: _default_once(ctx, tls_session_cache="off")
    ),
    "burst_16": _burst,
    "threads_32": _shared_by_threads,
    "threads_32_no_pool_block": lambda: _shared_by_threads(pool_block=False),
    "urllib3_pool": _urllib3_pool,
    "httpx_client": _httpx_client,
    "background_download": _background_download,
    "requests_stream": _requests_stream,
}


def run_scenario(name: str, ctx: BenchContext) -> dict[str, Any]:
    """Run scenario ``name`` and return its figures.

    Returns:
        requests, seconds, req_per_s, connections_opened (counted by the
        server), rss_growth_bytes, open_fds_after and open_fds_before; over
        HTTPS server_tls_resumed (the handshakes the server resumed); the
        download scenarios add bytes and mib_per_s.

    Raises:
        ScenarioSkipped: the scenario cannot run here.
        KeyError: ``name`` is not a scenario.
    """
    warm, body = _FACTORIES[name]()
    with warnings.catch_warnings():
        # Opening a session per call is the point of these scenarios.
        warnings.simplefilter("ignore", SessionReuseWarning)
        return measure(ctx, warm, body)
