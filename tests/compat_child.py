"""Child-process scenarios for tests/test_compat.py: patches that must not touch the pytest process.

Run as ``python tests/compat_child.py SCENARIO URL [HTTPS_URL CA_BUNDLE]``. Each scenario makes
its calls with ``get_session()``, ``default_session()`` and a plain
``requests.Session()`` (the control), and prints one JSON object on its last
line of stdout: for each session, the response body or the error it raised.
The parent asserts on what its loopback server saw, and on this report.

Scenarios:

- ``gevent``: ``import session_presets``, then ``gevent.monkey.patch_all()``,
  then calls to an http:// URL; reports how many SSLContexts were built. With
  an https:// URL and its CA bundle, a call there follows, and the module of
  the context's class is reported.
- ``gevent-greenlets``: ``gevent.monkey.patch_all()`` after import, then two
  greenlets on one session: the first calls URL/own-timeout with its own
  ``timeout=``, the second URL/preset-timeout with the preset's; reports what
  each got (the first must not be retried, the second is).
- ``truststore-before`` / ``truststore-after`` / ``truststore-used``:
  ``truststore.inject_into_ssl()`` before the sessions are built, after they are
  built, or after they made an https:// call; then calls to an https:// URL
  whose CA only the system store (``SSL_CERT_FILE``) trusts, then
  ``truststore.extract_from_ssl()`` and calls again.
- ``sentry``: ``sentry_sdk.init`` with an in-memory transport, calls inside a
  transaction, and reports the spans and breadcrumbs sentry recorded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def _calls(url: str, sessions: dict[str, Any], **kwargs: Any) -> dict[str, str]:
    out = {}
    for name, session in sessions.items():
        try:
            out[name] = session.get(url, **kwargs).text
        except Exception as exc:
            out[name] = f"{type(exc).__name__}: {exc}"
    return out


def _sessions() -> dict[str, Any]:
    import requests

    import session_presets

    return {
        "get_session": session_presets.get_session(),
        "default_session": session_presets.default_session(),
        "plain": requests.Session(),
    }


def _gevent(url: str, https_url: str | None, ca_bundle: str | None) -> dict[str, Any]:
    from gevent import monkey

    import session_presets
    from session_presets import _tls as tls

    monkey.patch_all()
    report: dict[str, Any] = {"http": _calls(url, _sessions()), "contexts_after_http": tls.contexts_built()}
    if https_url is not None:
        with session_presets.default_session(ca_bundle=ca_bundle) as session:
            report["https"] = session.get(https_url).text
            report["context_class"] = type(session.adapter.context_for(True, None)).__module__
    return report


def _gevent_greenlets(url: str) -> dict[str, Any]:
    import gevent
    from gevent import monkey

    import session_presets

    monkey.patch_all()
    report: dict[str, Any] = {}
    with session_presets.default_session(read_timeout=4, retries=1, backoff_factor=0, total_timeout=None) as session:

        def call(name: str, **kwargs: Any) -> None:
            try:
                response = session.get(f"{url}/{name}", **kwargs)
                report[name] = {"text": response.text, "attempts": response.metrics.attempts}
            except Exception as exc:
                report[name] = {"error": type(exc).__name__}

        # Spawned in this order, they start in it: the second's call is in flight when the first's timeout fires.
        first = gevent.spawn(call, "own-timeout", timeout=(5, 1.5))
        second = gevent.spawn(call, "preset-timeout")
        gevent.joinall([first, second], timeout=60)
    return report


def _truststore(url: str, when: str) -> dict[str, Any]:
    import truststore

    if when == "before":
        truststore.inject_into_ssl()
    sessions = _sessions()
    report: dict[str, Any] = {}
    if when == "used":
        report["before_injection"] = _calls(url, sessions)
    if when in ("after", "used"):
        truststore.inject_into_ssl()
    report["injected"] = _calls(url, sessions)
    truststore.extract_from_ssl()
    report["extracted"] = _calls(url, sessions)
    return report


def _sentry(url: str) -> dict[str, Any]:
    import sentry_sdk
    from sentry_sdk.transport import Transport

    envelopes: list[Any] = []

    class MemoryTransport(Transport):
        def capture_envelope(self, envelope: Any) -> None:
            envelopes.append(envelope)

    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",
        transport=MemoryTransport,
        traces_sample_rate=1.0,
        default_integrations=True,
    )
    # sentry-sdk 2 opens a root span with start_transaction; 3 removed it for start_span with
    # attributes, and sends spans as "span" items (v2) instead of a transaction's "spans" list.
    if hasattr(sentry_sdk, "start_transaction"):
        root = sentry_sdk.start_transaction(name="compat", op="test")
    else:
        root = sentry_sdk.start_span(name="compat", attributes={"sentry.op": "test"})
    with root:
        report: dict[str, Any] = {"calls": _calls(url, _sessions())}
    sentry_sdk.flush()
    spans = []
    for envelope in envelopes:
        for item in envelope.items:
            event = item.payload.json
            if not event:
                continue
            if event.get("type") == "transaction":
                spans += [
                    {"op": span.get("op"), "description": span.get("description")} for span in event["spans"]
                ]
            elif item.headers.get("type") == "span":
                for span in event.get("items", []):
                    attributes = span.get("attributes", {})
                    if span.get("is_segment"):
                        continue
                    spans.append({"op": attributes.get("sentry.op", {}).get("value"), "description": span.get("name")})
    report["spans"] = spans
    return report


SCENARIOS: dict[str, Callable[[list[str]], dict[str, Any]]] = {
    "gevent": lambda args: _gevent(*[*args, None, None][:3]),
    "gevent-greenlets": lambda args: _gevent_greenlets(args[0]),
    "truststore-before": lambda args: _truststore(args[0], "before"),
    "truststore-after": lambda args: _truststore(args[0], "after"),
    "truststore-used": lambda args: _truststore(args[0], "used"),
    "sentry": lambda args: _sentry(args[0]),
}


if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]](sys.argv[2:])))
