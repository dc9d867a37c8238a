"""The agent's control channel: file names, the JSON-lines wire format and its version, shared by both ends.

One request per connection: the client sends one JSON object on one line,
the agent answers with one JSON object on one line and closes. Every message
carries ``"version"``; a message of another version is refused with an error
naming both versions, so an old client never misreads a new agent.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from typing import Any, Final

from .._env import AGENT_IDLE_VARIABLE
from .._errors import (
    ConfigError,
    DestinationInUseError,
    DiskFullError,
    IdentifierInUseError,
    InvalidationTimeoutError,
    SessionInvalidatedError,
    TransferError,
)

__all__ = [
    "AGENT_LOCK",
    "AGENT_LOG",
    "AGENT_SOCKET",
    "IDLE_ENV",
    "MARKER_SUFFIX",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "WIRE_ERRORS",
    "check_socket_file",
    "decode",
    "encode",
    "error_from_wire",
    "peer_uid",
]

#: Version of the wire format; a message of any other version is refused.
PROTOCOL_VERSION: Final = 1
# The agent's own files start with "_", which no identifier can: an identifier's
# "<identifier>.lock" and "<identifier>.sqlite3" never meet them.
#: The agent's Unix domain socket, inside the state directory.
AGENT_SOCKET: Final = "_agent.sock"
#: The lock only the running agent holds: exactly one agent per state directory.
AGENT_LOCK: Final = "_agent.lock"
#: Where the agent writes its log (warnings and its own failures only).
AGENT_LOG: Final = "_agent.log"
#: ``<identifier>.agent`` marks an identifier the agent runs; it holds the session's overrides as JSON.
MARKER_SUFFIX: Final = ".agent"
#: Seconds the agent stays up with no unfinished task and no client before it exits.
IDLE_ENV: Final = AGENT_IDLE_VARIABLE
#: The longest line either end accepts: a request never needs more.
MAX_LINE: Final = 4 << 20


class ProtocolError(TransferError):
    """The agent or its client sent something this version does not understand."""


#: The error types a reply may name, by name; nothing else crosses the wire.
WIRE_ERRORS: Final[dict[str, type[Exception]]] = {
    cls.__name__: cls
    for cls in (
        ConfigError,
        TransferError,
        SessionInvalidatedError,
        IdentifierInUseError,
        DestinationInUseError,
        DiskFullError,
        InvalidationTimeoutError,
        ProtocolError,
    )
}


def encode(message: dict[str, Any]) -> bytes:
    """One message as a JSON line, with the protocol version."""
    return (json.dumps({"version": PROTOCOL_VERSION, **message}, separators=(",", ":")) + "\n").encode()


def decode(line: bytes, *, sender: str) -> dict[str, Any]:
    """Parse one JSON line from ``sender`` and check its version.

    Raises:
        ProtocolError: it is not a JSON object, or has another (or no) version.
    """
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
        message = None
    if not isinstance(message, dict):
        raise ProtocolError(f"the {sender} sent a message that is not a JSON object: {line[:80]!r}")
    version = message.get("version")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"the {sender} speaks protocol version {version!r}; this side speaks version {PROTOCOL_VERSION}. "
            "Stop the agent (session-presets stop-agent) so that one of this version starts."
        )
    return message


def error_from_wire(error: dict[str, Any]) -> Exception:
    """The exception an agent's error answer describes (TransferError for a type this side does not know)."""
    cls = WIRE_ERRORS.get(str(error.get("type")), TransferError)
    return cls(str(error.get("message")))


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of ``sock`` (Linux SO_PEERCRED), or None where unknown."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:  # pragma: no cover - not Linux: the 0700 directory and 0600 socket protect it
        return None
    import struct

    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return int(uid)


def check_socket_file(path: str) -> bool:
    """Return True if ``path`` exists and is a socket of this user; False if it does not exist.

    Raises:
        TransferError: it is something else, or another user's: it is never used nor removed.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise TransferError(f"cannot use the agent socket {path!r}: {exc}") from exc
    if not stat.S_ISSOCK(info.st_mode):
        raise TransferError(f"refusing the agent socket {path!r}: it is not a socket; it was left untouched")
    if info.st_uid != os.getuid():
        raise TransferError(
            f"refusing the agent socket {path!r}: it is owned by uid {info.st_uid}, not by this user "
            f"(uid {os.getuid()}); it was left untouched"
        )
    return True


def read_line(sock: socket.socket) -> bytes:
    """Read one line from ``sock`` (without its newline); b"" if the peer closed first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        newline = chunk.find(b"\n")
        if newline >= 0:
            chunks.append(chunk[:newline])
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_LINE:
            raise ProtocolError(f"a message longer than {MAX_LINE} bytes was refused")
