"""ResumableUploadRoute: a MockServer route serving tus 1.0 and the IETF resumable-upload draft, with faults."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable
from typing import Final

from ._server import Exchange, MockServer

__all__ = ["ResumableUpload", "ResumableUploadRoute"]

#: The tus version served.
_TUS: Final = "1.0.0"
#: The draft's interop version announced (draft -09).
_INTEROP: Final = "8"
#: Largest piece of a body read at once.
_PIECE: Final = 64 * 1024
#: The longest a PATCH is held at ``hold_at`` when :meth:`ResumableUploadRoute.release` is not called.
_HOLD_MAX: Final = 60.0


@dataclasses.dataclass
class ResumableUpload:
    """One upload the route holds.

    Attributes:
        number: its number, from 1; the resource is ``<prefix><number>``.
        protocol: ``"tus"``, ``"ietf"`` or ``"none"`` (a plain upload to the creation path).
        length: the announced length, or None.
        data: the bytes received, in order.
        appends: ``(offset, count)`` of every piece of data the route kept, in order: bytes
            were received once each exactly when these are contiguous.
        complete: the upload is complete.
        lost: the route forgot it (HEAD and PATCH answer 404).
        terminated: the client sent DELETE.
        headers: the header fields of the creation request.
    """

    number: int
    protocol: str
    length: int | None
    data: bytearray = dataclasses.field(default_factory=bytearray)
    appends: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    complete: bool = False
    lost: bool = False
    terminated: bool = False
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def offset(self) -> int:
        """Bytes received so far."""
        return len(self.data)

    def received_once(self) -> bool:
        """True when the kept pieces are contiguous from 0: no byte was received twice, none skipped."""
        position = 0
        for offset, count in self.appends:
            if offset != position:
                return False
            position += count
        return position == len(self.data)


class ResumableUploadRoute:
    """Serves resumable uploads on a :class:`MockServer`: tus 1.0 (core, creation, termination) and the
    IETF HTTP resumable-upload draft (-09, interop version 8), for tests of upload code.

    Install it with :meth:`install`, which answers OPTIONS and POST at the creation path and
    adds a route per upload resource it creates. The route reads request bodies itself, so a
    fault can cut one mid-way. Faults are attributes a test sets at any time:

    - ``drop_after``: an absolute offset of the upload; a PATCH crossing it keeps the bytes
      before it, then resets the connection without answering. Used once.
    - ``hold_at``: an absolute offset of the upload; a PATCH reaching it keeps the bytes before
      it, sets ``holding``, waits for :meth:`release` (at most 60 s), then resets
      the connection without reading more. Used once. A test kills the client while it is held:
      the server has then received exactly ``hold_at`` bytes, however fast the client sent.
    - ``mismatch``: the next N PATCHes are answered 409 (their bodies read and discarded).
    - ``offset_ahead``: the next HEAD reports that many bytes more than were received. Used once.
    - :meth:`lose_uploads`: forget every upload (HEAD and PATCH answer 404).
    - ``throttle``: body bytes read per second (None: as fast as they come).

    Args:
        protocols: which protocols to offer: ``"tus"``, ``"ietf"`` or both (OPTIONS announces them).
        prefix: the path prefix of upload resources.
        send_104: with the draft, send a ``104 Upload Resumption Supported`` interim response
            (with ``Location``) before the final answer to a creation request.
        termination: announce and honour tus termination (DELETE).

    Attributes:
        uploads: every upload, oldest first.
        holding: set while a PATCH is held at ``hold_at`` (and after, until :meth:`release`).
    """

    reads_body = True

    def __init__(
        self,
        *,
        protocols: Iterable[str] = ("tus", "ietf"),
        prefix: str = "/uploads/",
        send_104: bool = False,
        termination: bool = True,
    ) -> None:
        chosen = frozenset(protocols)
        unknown = chosen - {"tus", "ietf"}
        if unknown:
            raise ValueError(f"ResumableUploadRoute protocols={sorted(unknown)!r}: expected 'tus' and/or 'ietf'")
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise ValueError(f"ResumableUploadRoute prefix={prefix!r}: expected a path starting and ending with '/'")
        self.protocols = chosen
        self.prefix = prefix
        self.send_104 = send_104
        self.termination = termination
        self.drop_after: int | None = None
        self.mismatch = 0
        self.offset_ahead = 0
        self.throttle: float | None = None
        self.hold_at: int | None = None
        self.holding = threading.Event()
        self._released = threading.Event()
        self.uploads: list[ResumableUpload] = []
        self._lock = threading.Lock()
        self._server: MockServer | None = None
        self._creation_path = ""

    def install(self, server: MockServer, path: str = "/files") -> str:
        """Serve uploads created at ``path`` of ``server``; return the creation URL."""
        self._server = server
        self._creation_path = path
        server.route(path, self)
        return server.url(path)

    # -- observation --------------------------------------------------------------------

    def upload(self, number: int = -1) -> ResumableUpload:
        """The upload numbered ``number`` (from 1), or the latest with -1.

        Raises:
            LookupError: there is no such upload.
        """
        with self._lock:
            if not self.uploads:
                raise LookupError("ResumableUploadRoute has received no upload yet")
            return self.uploads[-1] if number == -1 else self.uploads[number - 1]

    def received(self) -> int:
        """Bytes received for the latest upload (0 before the first)."""
        with self._lock:
            return self.uploads[-1].offset if self.uploads else 0

    def release(self) -> None:
        """End the hold at ``hold_at``: the held PATCH's connection is reset (now, or as it reaches it)."""
        self._released.set()

    def lose_uploads(self) -> None:
        """Forget every upload, as a server that lost its state: HEAD and PATCH answer 404."""
        with self._lock:
            for upload in self.uploads:
                upload.lost = True

    # -- serving ------------------------------------------------------------------------

    def __call__(self, exchange: Exchange) -> None:
        method = exchange.command
        if exchange.recorded.path == self._creation_path:
            if method == "OPTIONS":
                self._options(exchange)
            elif method in ("POST", "PUT"):
                self._create(exchange)
            else:
                self._skip_body(exchange)
                exchange.reply(405, b"", {"Allow": "OPTIONS, POST, PUT"})
            return
        upload = self._find(exchange.recorded.path)
        if upload is None or upload.lost:
            self._skip_body(exchange)
            exchange.reply(404, b"no such upload\n", self._protocol_headers(upload))
        elif method == "HEAD":
            self._head(exchange, upload)
        elif method == "PATCH":
            self._patch(exchange, upload)
        elif method == "DELETE" and (upload.protocol == "ietf" or self.termination):
            upload.terminated = True
            upload.lost = True
            exchange.reply(204, b"", self._protocol_headers(upload))
        else:
            self._skip_body(exchange)
            exchange.reply(405, b"", self._protocol_headers(upload))

    def _find(self, path: str) -> ResumableUpload | None:
        if not path.startswith(self.prefix):
            return None
        number = path[len(self.prefix) :]
        with self._lock:
            if number.isdigit() and 1 <= int(number) <= len(self.uploads):
                return self.uploads[int(number) - 1]
        return None

    @staticmethod
    def _protocol_headers(upload: ResumableUpload | None) -> dict[str, str]:
        if upload is not None and upload.protocol == "tus":
            return {"Tus-Resumable": _TUS, "Cache-Control": "no-store"}
        if upload is not None and upload.protocol == "ietf":
            return {"Upload-Draft-Interop-Version": _INTEROP, "Cache-Control": "no-store"}
        return {}

    def _options(self, exchange: Exchange) -> None:
        headers: dict[str, str] = {}
        if "tus" in self.protocols:
            extensions = "creation,termination" if self.termination else "creation"
            headers.update({"Tus-Resumable": _TUS, "Tus-Version": _TUS, "Tus-Extension": extensions})
        if "ietf" in self.protocols:
            headers["Accept-Patch"] = "application/partial-upload"
        exchange.reply(204, b"", headers)

    def _create(self, exchange: Exchange) -> None:
        headers = exchange.headers
        complete = {"?1": True, "?0": False}.get((headers.get("Upload-Complete") or "").strip())
        if headers.get("Tus-Resumable") is not None and "tus" in self.protocols:
            protocol = "tus"
        elif complete is not None and "ietf" in self.protocols:
            protocol = "ietf"
        else:
            protocol = "none"
        length_text = (headers.get("Upload-Length") or "").strip()
        length = int(length_text) if length_text.isdigit() else None
        if protocol == "tus" and headers.get("Tus-Resumable") != _TUS:
            self._skip_body(exchange)
            exchange.reply(412, b"", {"Tus-Resumable": _TUS, "Tus-Version": _TUS})
            return
        if protocol == "tus" and length is None:
            self._skip_body(exchange)
            exchange.reply(400, b"tus creation needs Upload-Length\n", {"Tus-Resumable": _TUS})
            return
        with self._lock:
            upload = ResumableUpload(len(self.uploads) + 1, protocol, length, headers=dict(headers.items()))
            self.uploads.append(upload)
        location = f"{self.prefix}{upload.number}"
        if protocol != "none":
            assert self._server is not None
            self._server.route(location, self)
        if protocol == "ietf" and self.send_104:
            exchange.wfile.write(
                f"HTTP/1.1 104 Upload Resumption Supported\r\nLocation: {location}\r\n"
                f"Upload-Draft-Interop-Version: {_INTEROP}\r\n\r\n".encode()
            )
            exchange.wfile.flush()
        if not self._receive(exchange, upload):
            return
        if protocol == "none":
            upload.complete = True
            exchange.reply(201, b"", {})
            return
        if protocol == "tus":
            upload.complete = upload.offset == length
            exchange.reply(201, b"", {"Location": location, "Tus-Resumable": _TUS, "Upload-Offset": str(upload.offset)})
            return
        upload.complete = bool(complete)
        if upload.length is None and complete:
            upload.length = upload.offset
        final = {"Location": location, "Upload-Draft-Interop-Version": _INTEROP, "Upload-Offset": str(upload.offset)}
        final["Upload-Complete"] = "?1" if upload.complete else "?0"
        exchange.reply(200 if upload.complete else 201, b"", final)

    def _head(self, exchange: Exchange, upload: ResumableUpload) -> None:
        with self._lock:
            ahead, self.offset_ahead = self.offset_ahead, 0
        headers = self._protocol_headers(upload)
        headers["Upload-Offset"] = str(upload.offset + ahead)
        if upload.length is not None:
            headers["Upload-Length"] = str(upload.length)
        if upload.protocol == "ietf":
            headers["Upload-Complete"] = "?1" if upload.complete else "?0"
        exchange.reply(200 if upload.protocol == "tus" else 204, b"", headers)

    def _patch(self, exchange: Exchange, upload: ResumableUpload) -> None:
        headers = exchange.headers
        wanted = "application/offset+octet-stream" if upload.protocol == "tus" else "application/partial-upload"
        kind = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind != wanted:
            self._skip_body(exchange)
            exchange.reply(415, f"expected Content-Type {wanted}\n".encode(), self._protocol_headers(upload))
            return
        if upload.protocol == "tus" and headers.get("Tus-Resumable") != _TUS:
            self._skip_body(exchange)
            exchange.reply(412, b"", {"Tus-Resumable": _TUS, "Tus-Version": _TUS})
            return
        offset_text = (headers.get("Upload-Offset") or "").strip()
        with self._lock:
            mismatch = self.mismatch > 0
            if mismatch:
                self.mismatch -= 1
        if mismatch or not offset_text.isdigit() or int(offset_text) != upload.offset or upload.complete:
            self._skip_body(exchange)
            reply = self._protocol_headers(upload)
            reply["Upload-Offset"] = str(upload.offset)
            exchange.reply(409, b"offset mismatch\n", reply)
            return
        if not self._receive(exchange, upload):
            return
        reply = self._protocol_headers(upload)
        reply["Upload-Offset"] = str(upload.offset)
        if upload.protocol == "tus":
            upload.complete = upload.offset == upload.length
            exchange.reply(204, b"", reply)
            return
        if (headers.get("Upload-Complete") or "").strip() == "?1":
            upload.complete = True
            if upload.length is None:
                upload.length = upload.offset
            reply["Upload-Complete"] = "?1"
            exchange.reply(200, b"upload complete\n", reply)
            return
        reply["Upload-Complete"] = "?0"
        exchange.reply(204, b"", reply)

    # -- bodies ---------------------------------------------------------------------------

    def _body_length(self, exchange: Exchange) -> int:
        text = (exchange.headers.get("Content-Length") or "0").strip()
        return int(text) if text.isdigit() else 0

    def _skip_body(self, exchange: Exchange) -> None:
        left = self._body_length(exchange) if exchange.command not in ("HEAD", "GET") else 0
        while left > 0:
            data = exchange.rfile.read(min(left, _PIECE))
            if not data:
                exchange.close_connection = True
                return
            left -= len(data)

    def _receive(self, exchange: Exchange, upload: ResumableUpload) -> bool:
        """Read the body into ``upload``; False when the connection ended (dropped or by fault)."""
        left = self._body_length(exchange)
        start = upload.offset
        try:
            while left > 0:
                piece = min(left, _PIECE)
                with self._lock:
                    drop = self.drop_after
                    hold = self.hold_at
                if drop is not None and upload.offset < drop <= upload.offset + piece:
                    piece = drop - upload.offset
                held = False
                if hold is not None and upload.offset < hold <= upload.offset + piece:
                    piece, held = hold - upload.offset, True
                data = exchange.rfile.read(piece) if piece else b""
                if data:
                    upload.data += data
                    left -= len(data)
                if held and upload.offset == hold:
                    with self._lock:
                        self.hold_at = None
                    self.holding.set()
                    self._released.wait(_HOLD_MAX)
                    # What the client sent after the hold point stays unread in the socket.
                    exchange.reset()
                    return False
                if drop is not None and upload.offset >= drop:
                    with self._lock:
                        self.drop_after = None
                    exchange.reset()
                    return False
                if not data:
                    exchange.close_connection = True
                    return False
                if self.throttle:
                    time.sleep(len(data) / self.throttle)
        except OSError:
            exchange.close_connection = True
            return False
        finally:
            if upload.offset > start:
                upload.appends.append((start, upload.offset - start))
        return True
