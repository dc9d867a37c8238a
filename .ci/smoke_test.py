"""Smoke test of an installed wheel, run by ``nox -s package`` from a directory outside the checkout.

It checks that the package imports from the installed wheel (not from a checkout), that the
console script prints its version, and that one request reaches a loopback server.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path


class _Hello(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a short body, and records the path."""

    seen: list[str] = []  # noqa: RUF012

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = b"hello from loopback"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    """Import, --version, one request; exit 0 only when all three hold."""
    import session_presets

    where = Path(session_presets.__file__).resolve()
    assert "site-packages" in where.parts, f"session_presets imported from {where}, not from the installed wheel"
    assert (where.parent / "py.typed").exists(), "the wheel lacks py.typed"
    print(f"import: session_presets {session_presets.__version__} from {where.parent}")

    script = Path(sys.executable).with_name("session-presets")
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True, timeout=60)
    assert version.stdout.strip() == f"session-presets {session_presets.__version__}", version.stdout
    print(f"console script: {version.stdout.strip()}")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/smoke"
        response = session_presets.get_session().get(url, proxies={"http": None})
        assert response.status_code == 200, response.status_code
        assert response.text == "hello from loopback", response.text
        assert _Hello.seen == ["/smoke"], _Hello.seen
        print(f"request: GET {url} -> {response.status_code}, the server saw {_Hello.seen}")
    finally:
        server.shutdown()
        server.server_close()
    assert not Path(os.getcwd(), "session_presets").exists(), "run from inside a checkout"
    return 0


if __name__ == "__main__":
    sys.exit(main())
