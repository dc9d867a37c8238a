"""The ``api_client`` comparison: traffic shaped like a real API client's, through four clients.

Each request has a path of its own (``/items/<n>``), its own query (``page``
and ``q``), its own ``X-Request-Id`` and one of a few bearer tokens. Every
fourth request is a POST of a JSON body of about 1 KB, and two origins (two
ports of the bench server) alternate. No value repeats within a pass, and no
pass repeats an earlier pass's paths, ids or queries, so a memo keyed on
them cannot flatter a client.

The same calls go through ``get_session()``, ``requests.Session``,
``httpx.Client`` and ``urllib3.PoolManager``, each written as its users write
it, and through ``get_session()`` once more with
``SESSION_PRESETS_FAST_PATH=off``. Each client runs in a fresh process of its
own, kept for all rounds, so that none pays for what the bench process
imported or cached before. After each pass the server's own record is
checked against the plan (see :func:`check_pass`): a pass that did not send
what this module says it sends is reported as an error, not as a figure.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import requests
import urllib3

from .._registry import SessionRegistry, get_session
from .compare import Comparison, Variant
from .scenarios import BenchContext, Body, Closer, ScenarioSkipped, Warm

__all__ = [
    "API_CLIENT",
    "BODY_BYTES",
    "POST_EVERY",
    "TOKENS",
    "ApiCall",
    "check_pass",
    "plan",
    "tokens",
]

#: How many bearer tokens the calls take turns with.
TOKENS: Final = 3
#: Every POST_EVERY-th call is a POST with a JSON body; the others are GETs.
POST_EVERY: Final = 4
#: The size of a POST body as ``json.dumps`` writes it (compact writers make it a little smaller).
BODY_BYTES: Final = 1024
#: Origins the calls alternate between.
ORIGINS: Final = 2
#: Items numbered per pass; a pass has at most this many calls.
_PER_PASS: Final = 10**7
#: Words of the ``q`` parameter.
_WORDS: Final = ("blue widget", "red gadget", "spare part", "gift card", "tea pot", "desk lamp", "café crème")
_FILLER: Final = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One planned call.

    Attributes:
        method: ``"GET"`` or ``"POST"``.
        url: scheme, origin and path, without the query.
        params: the query, ``page`` and ``q``.
        headers: ``X-Request-Id`` and ``Authorization``.
        body: the JSON document of a POST, None for a GET.
        expect: the status the server answers when the call is what it should be.
    """

    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any] | None
    expect: int


def tokens(run_id: str) -> list[str]:
    """Return the bearer tokens of a bench run (the same for every pass and client of the run)."""
    return [
        "bench-" + hashlib.sha256(f"{run_id}/token/{index}".encode()).hexdigest()[:40] for index in range(TOKENS)
    ]


def _item(pass_number: int, index: int) -> int:
    return 10**12 + pass_number * _PER_PASS + index


def _body(item: int, request_id: str, index: int) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": item,
        "request_id": request_id,
        "name": f"item {item}",
        "quantity": index % 17 + 1,
        "price": {"amount": f"{index % 1000}.{index % 100:02d}", "currency": "EUR"},
        "tags": [f"tag-{(index + k) % 50}" for k in range(6)],
        "attributes": {f"attr_{k}": f"value-{index}-{k}" for k in range(8)},
        "description": "",
    }
    room = BODY_BYTES - len(json.dumps(document))
    document["description"] = (_FILLER * (room // len(_FILLER) + 1))[: max(0, room)]
    return document


def plan(ctx: BenchContext, pass_number: int, count: int) -> list[ApiCall]:
    """Return ``count`` calls for pass ``pass_number``: every value unique to this pass.

    Raises:
        ValueError: ``count`` is more than a pass can number.
    """
    if count > _PER_PASS:
        raise ValueError(f"api_client numbers at most {_PER_PASS} calls a pass, not {count}")
    keys = tokens(ctx.run_id)
    rng = random.Random(f"{ctx.run_id}/{pass_number}")
    calls = []
    for index in range(count):
        item = _item(pass_number, index)
        request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        post = index % POST_EVERY == POST_EVERY - 1
        calls.append(
            ApiCall(
                method="POST" if post else "GET",
                url=ctx.server.url(f"/items/{item}", origin=index % ORIGINS),
                params={"page": str(index % 10 + 1), "q": f"{_WORDS[index % len(_WORDS)]} {pass_number}-{index}"},
                headers={"X-Request-Id": request_id, "Authorization": f"Bearer {keys[index % TOKENS]}"},
                body=_body(item, request_id, index) if post else None,
                expect=201 if post else 200,
            )
        )
    return calls


def _warm_calls(ctx: BenchContext, pass_number: int) -> list[ApiCall]:
    # Numbered apart from every timed pass (negative pass numbers), so the warm-up sends nothing a pass sends.
    return plan(ctx, -pass_number, max(ctx.warmup, ORIGINS * POST_EVERY))


def _check(call: ApiCall, status: int) -> None:
    if status != call.expect:
        raise RuntimeError(f"the bench server answered HTTP {status} to {call.method} {call.url}, not {call.expect}")


def _timed(ctx: BenchContext, calls: list[ApiCall], send: Any) -> None:
    """Send each call with ``send(call) -> status``, recording each call's latency."""
    record, clock = ctx.latency.record, time.perf_counter
    for call in calls:
        started = clock()
        status = send(call)
        record(clock() - started)
        _check(call, status)


# -- the variants --------------------------------------------------------------------------


def _get_session(ctx: BenchContext, pass_number: int) -> tuple[Warm, Body]:
    calls = plan(ctx, pass_number, ctx.requests)

    def warm(ctx: BenchContext) -> None:
        registry = SessionRegistry()
        try:
            session = registry.get(ctx.preset)
            for call in _warm_calls(ctx, pass_number):
                _check(call, session.request(call.method, call.url, params=call.params, headers=call.headers,
                                             json=call.body).status_code)
        finally:
            registry.close_all()

    def body(ctx: BenchContext) -> tuple[int, Closer, dict[str, Any]]:
        name = ctx.preset

        def send(call: ApiCall) -> int:
            # get_session() on every call, as code that shares sessions through the registry does.
            response = get_session(name).request(call.method, call.url, params=call.params, headers=call.headers,
                                                 json=call.body)
            return response.status_code

        try:
            _timed(ctx, calls, send)
        except BaseException:
            get_session(name).finish_tasks_and_invalidate()
            raise
        session = get_session(name)
        config = session.config
        return len(calls), session.finish_tasks_and_invalidate, {
            "client_connections_opened": session.stats.connections_opened,
            # What the child's preset really had on, so the resilience variant is seen to measure it.
            "resilience": sorted(
                field
                for field in ("rate_limit", "max_in_flight", "circuit_breaker")
                if getattr(config, field) is not None
            ),
        }

    return warm, body


def _requests_session(ctx: BenchContext, pass_number: int) -> tuple[Warm, Body]:
    calls = plan(ctx, pass_number, ctx.requests)

    def run(ctx: BenchContext, calls: list[ApiCall]) -> requests.Session:
        session = requests.Session()
        session.verify = verify = ctx.verify

        def send(call: ApiCall) -> int:
            # verify= again per call: REQUESTS_CA_BUNDLE would override session.verify (requests issue 3829).
            response = session.request(call.method, call.url, params=call.params, headers=call.headers,
                                       json=call.body, verify=verify)
            return response.status_code

        try:
            _timed(ctx, calls, send)
        except BaseException:
            session.close()
            raise
        return session

    def warm(ctx: BenchContext) -> None:
        run(ctx, _warm_calls(ctx, pass_number)).close()

    def body(ctx: BenchContext) -> tuple[int, Closer, dict[str, Any]]:
        return len(calls), run(ctx, calls).close, {}

    return warm, body


def _httpx_client(ctx: BenchContext, pass_number: int) -> tuple[Warm, Body]:
    try:
        import httpx
    except ImportError:
        raise ScenarioSkipped("httpx is not installed") from None
    calls = plan(ctx, pass_number, ctx.requests)

    def run(ctx: BenchContext, calls: list[ApiCall]) -> Any:
        client = httpx.Client(verify=ctx.ssl_context())

        def send(call: ApiCall) -> int:
            response = client.request(call.method, call.url, params=call.params, headers=call.headers,
                                      json=call.body)
            return int(response.status_code)

        try:
            _timed(ctx, calls, send)
        except BaseException:
            client.close()
            raise
        return client

    def warm(ctx: BenchContext) -> None:
        run(ctx, _warm_calls(ctx, pass_number)).close()

    def body(ctx: BenchContext) -> tuple[int, Closer, dict[str, Any]]:
        return len(calls), run(ctx, calls).close, {}

    return warm, body


def _urllib3_pool(ctx: BenchContext, pass_number: int) -> tuple[Warm, Body]:
    calls = plan(ctx, pass_number, ctx.requests)

    def run(ctx: BenchContext, calls: list[ApiCall]) -> urllib3.PoolManager:
        manager = urllib3.PoolManager(ca_certs=ctx.bundle) if ctx.bundle else urllib3.PoolManager()
        request = manager.request

        def send(call: ApiCall) -> int:
            if call.body is None:
                # urllib3 puts a GET's fields in the query string.
                return request("GET", call.url, fields=call.params, headers=call.headers).status
            return request("POST", f"{call.url}?{urlencode(call.params)}", json=call.body, headers=call.headers).status

        try:
            _timed(ctx, calls, send)
        except BaseException:
            manager.clear()
            raise
        return manager

    def warm(ctx: BenchContext) -> None:
        run(ctx, _warm_calls(ctx, pass_number)).clear()

    def body(ctx: BenchContext) -> tuple[int, Closer, dict[str, Any]]:
        return len(calls), run(ctx, calls).clear, {}

    return warm, body


# -- what the server must have seen --------------------------------------------------------


def check_pass(ctx: BenchContext, pass_number: int, result: Mapping[str, Any]) -> dict[str, Any]:
    """Compare the server's record of a pass with the plan; return it as ``server_saw``.

    Raises:
        RuntimeError: the server rejected a call, or saw other counts, ids,
            tokens or origins than the plan has.
    """
    seen = ctx.process.api_traffic()
    count = int(result["requests"])
    expected_tokens = tokens(ctx.run_id)
    problems = []
    if seen["rejected"]:
        problems.append(f"{seen['rejected']} rejected, the first because {seen['first_rejection']}")
    wanted = {
        "requests": count,
        "posts": count // POST_EVERY,
        "unique_paths": count,
        "unique_queries": count,
        "unique_request_ids": count,
        "duplicate_request_ids": 0,
    }
    problems += [f"{key} {seen[key]}, expected {value}" for key, value in wanted.items() if seen[key] != value]
    used_tokens = expected_tokens[: min(count, TOKENS)]
    if sorted(seen["tokens"]) != sorted(used_tokens):
        problems.append(f"{len(seen['tokens'])} bearer tokens, not the {len(used_tokens)} of the plan")
    ports = {str(port) for port in ctx.server.ports[: min(count, ORIGINS)]}
    if set(seen["by_port"]) != ports:
        problems.append(f"requests reached ports {sorted(seen['by_port'])}, expected {sorted(ports)}")
    if problems:
        raise RuntimeError("the server did not see the planned api_client traffic: " + "; ".join(problems))
    return {
        "server_saw": {
            key: seen[key]
            for key in ("requests", "posts", "body_bytes", "unique_paths", "unique_queries", "unique_request_ids")
        }
        | {"tokens": len(seen["tokens"]), "origins": len(seen["by_port"])}
    }


#: The api_client comparison.
API_CLIENT: Final = Comparison(
    name="api_client",
    summary=(
        "unique /items/<n> paths, page and q queries, X-Request-Id, 3 bearer tokens, "
        "every 4th call a POST of 1 KB JSON, 2 origins alternating"
    ),
    variants=(
        Variant("get_session", "get_session()", _get_session),
        Variant("requests_session", "requests.Session", _requests_session),
        Variant("httpx_client", "httpx.Client", _httpx_client),
        Variant("urllib3_pool", "urllib3.PoolManager", _urllib3_pool),
        Variant(
            "get_session_fast_path_off",
            "get_session(), fast path off",
            _get_session,
            environment={"SESSION_PRESETS_FAST_PATH": "off"},
        ),
        # The resilience pipeline's own cost: limits far above what the bench sends, so it never waits.
        Variant(
            "get_session_resilience_on",
            "get_session(), rate limit, in-flight limit and breaker on",
            _get_session,
            environment={
                "SESSION_PRESETS_RATE_LIMIT": "1000000/s",
                "SESSION_PRESETS_MAX_IN_FLIGHT": "1000",
                "SESSION_PRESETS_CIRCUIT_BREAKER": "on",
            },
        ),
    ),
    ratios=(
        ("get_session", "requests_session"),
        ("get_session", "httpx_client"),
        ("get_session", "urllib3_pool"),
        ("get_session_fast_path_off", "requests_session"),
        ("get_session_fast_path_off", "httpx_client"),
        ("get_session_fast_path_off", "urllib3_pool"),
        ("get_session", "get_session_fast_path_off"),
        ("get_session_resilience_on", "requests_session"),
        ("get_session_resilience_on", "get_session"),
    ),
    check=check_pass,
    listeners=ORIGINS,
    isolate=True,
)
