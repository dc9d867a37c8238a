"""The loopback server of the example scripts: ``session_presets.testing.MockServer`` with one answer.

Each example subclasses :class:`LoopbackHandler` and supplies only its own
answer in :meth:`LoopbackHandler.respond`; :class:`LoopbackServer` serves it
on ``127.0.0.1`` at a free port, through a MockServer, for the length of a
``with`` block::

    class Hello(LoopbackHandler):
        def respond(self) -> tuple[int, dict[str, str], bytes]:
            return 200, {}, b"hello"

    with LoopbackServer(Hello) as server:
        requests.get(server.url("/"))

The examples import it as ``from _loopback import ...``: a script run as
``python examples/NAME.py`` has its own directory on ``sys.path``.
"""

from __future__ import annotations

import ssl
from email.message import Message
from types import TracebackType

from session_presets.testing import Exchange, MockResponse, MockServer


class LoopbackHandler:
    """One request to answer: override :meth:`respond`.

    Attributes:
        path: The request target (path and query).
        headers: The request's header fields.
        connection_number: The server's count of accepted connections when this one
            was accepted (1 for the first), so an answer can say which connection it used.
    """

    def __init__(self, exchange: Exchange) -> None:
        self.path: str = exchange.path
        self.headers: Message = exchange.headers
        self.connection_number: int = exchange.connection_id

    def respond(self) -> tuple[int, dict[str, str], bytes]:
        """Answer the current request (``self.path``, ``self.headers``).

        Returns:
            The status code, the headers to send besides ``Content-Length``, and the body.
        """
        raise NotImplementedError


class LoopbackServer:
    """A MockServer on ``127.0.0.1`` at a free port that answers every request with ``handler``.

    Attributes:
        connections: How many connections the server has accepted so far.
    """

    def __init__(self, handler: type[LoopbackHandler], *, context: ssl.SSLContext | None = None) -> None:
        """Bind to a free loopback port.

        Args:
            handler: The handler class that answers the requests.
            context: A server-side SSLContext to serve HTTPS with; plain HTTP when None.
        """
        self._handler = handler
        self._mock = MockServer(ssl_context=context)
        self._mock.fallback = self._answer

    def _answer(self, exchange: Exchange) -> MockResponse:
        status, headers, body = self._handler(exchange).respond()
        return MockResponse(status, headers=headers, body=body)

    @property
    def connections(self) -> int:
        """How many connections the server has accepted so far."""
        return self._mock.connections

    def url(self, path: str) -> str:
        """Return the URL of ``path`` (which starts with ``/``) on this server."""
        return self._mock.url(path)

    def __enter__(self) -> LoopbackServer:
        """Start serving from a daemon thread."""
        self._mock.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop serving and close the listening socket."""
        self._mock.close()
