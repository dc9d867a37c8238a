"""A tiny loopback HTTP/1.1 server shared by the example scripts.

Each example subclasses :class:`LoopbackHandler` and supplies only its own
answer in :meth:`LoopbackHandler.respond`; :class:`LoopbackServer` serves it on
``127.0.0.1`` at a free port for the length of a ``with`` block::

    class Hello(LoopbackHandler):
        def respond(self) -> tuple[int, dict[str, str], bytes]:
            return 200, {}, b"hello"

    with LoopbackServer(Hello) as server:
        requests.get(server.url("/"))

The examples import it as ``from _loopback import ...``: a script run as
``python examples/NAME.py`` has its own directory on ``sys.path``.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class LoopbackHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 GET handler that sends each response in one write and logs nothing.

    Attributes:
        connection_number: The server's count of accepted connections when this one
            was accepted (1 for the first), so an answer can say which connection it used.
    """

    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024  # headers and body leave in one send: no Nagle/delayed-ACK stall
    server: LoopbackServer
    connection_number: int

    def setup(self) -> None:
        """Count the new connection on the server and remember its number."""
        super().setup()
        self.connection_number = self.server.count_connection()

    def respond(self) -> tuple[int, dict[str, str], bytes]:
        """Answer the current request (``self.path``, ``self.headers``).

        Returns:
            The status code, the headers to send besides ``Content-Length``, and the body.
        """
        raise NotImplementedError

    def do_GET(self) -> None:
        """Send what :meth:`respond` returns, with a ``Content-Length`` so the connection stays open."""
        status, headers, body = self.respond()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the example's output to what it prints itself."""


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on ``127.0.0.1`` at a free port that counts the connections it accepts.

    Used as a context manager, it serves from a daemon thread inside the block and
    is shut down and closed on leaving it.

    Attributes:
        connections: How many connections the server has accepted so far.
    """

    daemon_threads = True

    def __init__(self, handler: type[LoopbackHandler]) -> None:
        """Bind to a free loopback port.

        Args:
            handler: The handler class that answers the requests.
        """
        super().__init__(("127.0.0.1", 0), handler)
        self.connections = 0
        self._lock = threading.Lock()

    def count_connection(self) -> int:
        """Count one more accepted connection.

        Returns:
            The new number of connections, which numbers this one.
        """
        with self._lock:
            self.connections += 1
            return self.connections

    def url(self, path: str) -> str:
        """Return the URL of ``path`` (which starts with ``/``) on this server."""
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def __enter__(self) -> LoopbackServer:
        """Start serving from a daemon thread."""
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop serving and close the listening socket."""
        self.shutdown()
        self.server_close()
