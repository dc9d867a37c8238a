"""response.metrics.bytes_received counts what the server wrote: head, body and chunk framing."""

from __future__ import annotations

import gzip

import pytest

import session_presets as sp

from .servers import Handler, LoopbackServer

#: The body size the hostile run saw reported as 160 bytes when sent chunked.
BODY_SIZE = 205_204


def _chunked_wire(body: bytes, sizes: tuple[int, ...], headers: str = "") -> bytes:
    """A complete chunked HTTP/1.1 response: varied chunk sizes, a chunk extension and a trailer."""
    wire = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" + headers.encode()
    wire += b"Transfer-Encoding: chunked\r\n\r\n"
    offset, turn = 0, 0
    while offset < len(body):
        piece = body[offset : offset + sizes[turn % len(sizes)]]
        extension = b";note=x" if turn == 1 else b""
        wire += b"%x%s\r\n%s\r\n" % (len(piece), extension, piece)
        offset += len(piece)
        turn += 1
    return wire + b"0\r\nX-Trailer: done\r\n\r\n"


def _serve(server: LoopbackServer, path: str, wire: bytes) -> list[int]:
    """Route ``path`` to write ``wire`` as is; returns the list of byte counts the server wrote."""
    written: list[int] = []

    def route(h: Handler) -> None:
        written.append(len(wire))  # before the write: the client may be done as soon as it lands
        h.wfile.write(wire)
        h.wfile.flush()

    server.route(path, route)
    return written


@pytest.mark.parametrize("stream", [False, True], ids=["content", "iter_content"])
def test_chunked_body_is_counted(stream: bool, http_server: LoopbackServer) -> None:
    """A 205,204-byte chunked response reports exactly the bytes the server wrote, framing included."""
    body = bytes(range(256)) * (BODY_SIZE // 256) + b"z" * (BODY_SIZE % 256)
    written = _serve(http_server, "/chunked", _chunked_wire(body, (16_384, 1, 7_000, 65_536)))
    with sp.default_session() as session:
        response = session.get(http_server.url("/chunked"), stream=stream)
        data = b"".join(response.iter_content(8192)) if stream else response.content
        response.close()
    assert data == body
    assert written == [response.metrics.bytes_received]


def test_chunked_body_over_tls_counts_the_http_bytes(https_server: LoopbackServer, ca_bundle: str) -> None:
    """Over TLS, bytes_received is the HTTP bytes the server wrote (before encryption), chunked body included."""
    body = b"t" * BODY_SIZE
    written = _serve(https_server, "/chunked", _chunked_wire(body, (16_384, 3)))
    with sp.default_session(ca_bundle=ca_bundle) as session:
        response = session.get(https_server.url("/chunked"))
    assert response.content == body
    assert written == [response.metrics.bytes_received]


def test_content_length_body_is_counted_exactly(http_server: LoopbackServer) -> None:
    """A Content-Length response reports exactly the bytes the server wrote."""
    body = b"y" * 70_001
    wire = b"HTTP/1.1 200 OK\r\nX-Odd:  spaced \r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    written = _serve(http_server, "/sized", wire)
    with sp.default_session() as session:
        response = session.get(http_server.url("/sized"))
    assert response.content == body
    assert written == [response.metrics.bytes_received]


def test_compressed_chunked_body_counts_the_bytes_on_the_wire(http_server: LoopbackServer) -> None:
    """A gzip-encoded chunked body counts the compressed bytes sent, not the decoded ones."""
    body = b"compressible " * 20_000
    written = _serve(http_server, "/gz", _chunked_wire(gzip.compress(body), (4096,), "Content-Encoding: gzip\r\n"))
    with sp.default_session() as session:
        response = session.get(http_server.url("/gz"))
    assert response.content == body
    assert written == [response.metrics.bytes_received]
    assert response.metrics.bytes_received < len(body)


def test_each_response_on_a_kept_alive_connection_counts_its_own_bytes(http_server: LoopbackServer) -> None:
    """Two chunked responses over one connection each report their own wire bytes."""
    small = _serve(http_server, "/one", _chunked_wire(b"a" * 1000, (300,)))
    large = _serve(http_server, "/two", _chunked_wire(b"b" * 50_000, (8192,)))
    with sp.default_session() as session:
        first = session.get(http_server.url("/one"))
        second = session.get(http_server.url("/two"))
    assert http_server.connections == 1
    assert (first.metrics.bytes_received, second.metrics.bytes_received) == (small[0], large[0])
