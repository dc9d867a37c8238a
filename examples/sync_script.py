"""A plain synchronous script: import a preset's shared session and use it.

Run it with no arguments. It starts its own loopback HTTP server, makes a few
calls and prints what the server saw: one connection for every call of the
shared session, a new one for a caller-owned ephemeral session.
"""

from __future__ import annotations

import json

from _loopback import LoopbackHandler, LoopbackServer

from session_presets import close_all, ephemeral_session, get_preset, get_session


class EchoHandler(LoopbackHandler):
    """Answers every GET with a JSON echo of the path and headers (keep-alive)."""

    def respond(self) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        return 200, {"Content-Type": "application/json"}, body


def main() -> int:
    """Show the shared session's reuse, its preset settings and an ephemeral session."""
    with LoopbackServer(EchoHandler) as server:
        try:
            config = get_preset("default")
            print(f"default preset: connect {config.connect_timeout:g}s, read {config.read_timeout:g}s, "
                  f"total {config.total_timeout:g}s, retries {config.retries}, cache_policy {config.cache_policy!r}")

            # Anywhere in the program: the same session, the same pooled connection.
            for number in range(5):
                reply = get_session().get(server.url(f"/item/{number}"))
                reply.raise_for_status()
            echoed = reply.json()["headers"]
            stats = get_session().stats
            print(f"5 calls through get_session(): server saw {server.connections} connection(s); "
                  f"client stats: opened={stats.connections_opened} reused={stats.connections_reused}")
            print(f"every call carried a timeout and sent Cache-Control: {echoed.get('Cache-Control')!r}, "
                  f"User-Agent: {echoed.get('User-Agent')!r}")
            assert server.connections == 1

            # Caller-owned, private state: close it (the with block does).
            before = server.connections
            with ephemeral_session() as private:
                private.get(server.url("/private")).raise_for_status()
            print(f"an ephemeral session opened {server.connections - before} new connection "
                  f"and is now {private.state.value}")
            return 0
        finally:
            close_all()


if __name__ == "__main__":
    raise SystemExit(main())
