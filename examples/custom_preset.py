"""Your own presets: register_preset, presets derived from others, and their provenance.

Run it with no arguments. It registers an ``api`` preset and an ``api-bulk``
preset derived from it, shows which layer set each value, uses them against
its own loopback server (which echoes the headers it receives), and shows
what register_preset refuses.
"""

from __future__ import annotations

import json
from typing import Any

from _loopback import LoopbackHandler, LoopbackServer

from session_presets import ConfigError, UnknownPresetError, close_all, get_preset, get_session, register_preset


class EchoHandler(LoopbackHandler):
    """Answers every GET with the request headers it received."""

    def respond(self) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, json.dumps(dict(self.headers)).encode()


def main() -> int:
    """Register, derive, inspect, use, and show the refusals."""
    with LoopbackServer(EchoHandler) as server:
        try:
            register_preset(
                "api",
                read_timeout=5,
                retries=3,
                headers={"Accept": "application/json", "X-Client": "custom-preset-example"},
            )
            register_preset("api-bulk", base="api", read_timeout=120, pool_maxsize=32)

            bulk = get_preset("api-bulk")
            print("api-bulk, derived from api, derived from default:")
            for field in ("read_timeout", "pool_maxsize", "retries", "headers", "connect_timeout"):
                value = getattr(bulk, field)
                shown = dict(value) if field == "headers" else value
                print(f"  {field:<16} {shown!r:<70} from {bulk.origin(field)}")

            for name in ("api", "api-bulk"):
                echoed = get_session(name).get(server.url(f"/{name}")).json()
                print(f"{name}: the server received X-Client={echoed.get('X-Client')!r}, "
                      f"Accept={echoed.get('Accept')!r}")
            assert get_session("api") is not get_session("api-bulk")

            refusals: list[tuple[str, dict[str, Any]]] = [
                ("api", {}),  # taken
                ("secret", {"headers": {"Authorization": "Bearer x"}}),  # credentials in a preset
                ("slow", {"read_timeout": -1}),  # invalid value
            ]
            for name, fields in refusals:
                try:
                    register_preset(name, **fields)
                except ConfigError as exc:
                    print(f"register_preset({name!r}, ...) refused: {exc}")
            try:
                get_session("apy")
            except UnknownPresetError as exc:
                print(f"get_session('apy'): {exc}")
            return 0
        finally:
            close_all()


if __name__ == "__main__":
    raise SystemExit(main())
