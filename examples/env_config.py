"""Configuration from the environment: variables, provenance, and a bad value.

Run it with no arguments. It sets a few ``SESSION_PRESETS_*`` variables in its
own environment (as a deployment would), shows where each effective value
comes from, uses the preset against its own loopback server, and then shows
the ConfigError a bad value gives: every bad variable, named, at build time.
"""

from __future__ import annotations

import os
import time

import requests
from _loopback import LoopbackHandler, LoopbackServer

from session_presets import ConfigError, close_all, get_preset, get_session


class SlowHandler(LoopbackHandler):
    """``/slow`` sleeps a second before answering; anything else answers at once."""

    def respond(self) -> tuple[int, dict[str, str], bytes]:
        if self.path == "/slow":
            time.sleep(1.0)
        return 200, {}, b"ok"


def show(preset: str, *fields: str) -> None:
    """Print each field's effective value and the layer that set it."""
    config = get_preset(preset)
    for field in fields:
        value = getattr(config, field)
        shown = dict(value) if field == "headers" else value
        print(f"  {preset}.{field:<15} = {shown!r:<22} from {config.origin(field)}")


def main() -> int:
    """Show environment binding, provenance, a timeout it causes, and a bad value."""
    with LoopbackServer(SlowHandler) as server:
        saved = dict(os.environ)
        try:
            os.environ["SESSION_PRESETS_RETRIES"] = "0"  # every preset
            os.environ["SESSION_PRESETS_DEFAULT_READ_TIMEOUT"] = "300ms"  # one preset
            os.environ["SESSION_PRESETS_EPHEMERAL_HEADERS"] = '{"X-Team": "payments"}'
            print("effective values and where they come from:")
            show("default", "read_timeout", "retries", "connect_timeout")
            show("ephemeral", "read_timeout", "retries", "headers")

            session = get_session("default")  # the environment is read now, once
            started = time.monotonic()
            try:
                session.get(server.url("/slow"))
            except (requests.Timeout, requests.ConnectionError) as exc:
                # requests reports a read timeout as ConnectionError once urllib3's retries are spent.
                print(f"GET /slow with the default preset: {type(exc).__name__} after "
                      f"{time.monotonic() - started:.1f}s (read_timeout 300ms, no retries)")
            else:
                print("expected a timeout")
                return 1
            print(f"GET /fast: {session.get(server.url('/fast')).status_code}")

            os.environ["SESSION_PRESETS_CONNECT_TIMEOUT"] = "soon"
            os.environ["SESSION_PRESETS_DEFAULT_POOL_MAXSIZE"] = "-4"
            try:
                get_preset("default")
            except ConfigError as exc:
                print("a bad value is an error when the session is built, never ignored:")
                print(f"  {exc}".replace("\n", "\n  "))
                print(f"  ({len(exc.problems)} problem(s) in .problems)")
            else:
                print("expected a ConfigError")
                return 1
            # Sessions already built keep the configuration they were built with.
            print(f"the shared session built earlier still works: {session.get(server.url('/fast')).status_code}")
            return 0
        finally:
            os.environ.clear()
            os.environ.update(saved)
            close_all()


if __name__ == "__main__":
    raise SystemExit(main())
