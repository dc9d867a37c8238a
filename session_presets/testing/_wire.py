"""Reading a request off MockServer's socket: the limits, and the stream helpers that notice a request cut short."""

from __future__ import annotations

import email.errors
import io
from typing import Any, Final

#: The longest request line read; longer ones are answered 414 and recorded.
_MAX_REQUEST_LINE: Final = 65536
#: Parser defects that mean a malformed header line (answered 400).
_HEADER_DEFECTS: Final = (
    email.errors.MissingHeaderBodySeparatorDefect,
    email.errors.FirstHeaderLineIsContinuationDefect,
)


class _LastLine:
    """A request stream that remembers the last line read: did the header block end with its blank line?"""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self.raw = raw
        self.last: bytes | None = None

    def readline(self, limit: int = -1) -> bytes:
        line: bytes = self.raw.readline(limit)
        self.last = line
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def _read_exactly(stream: Any, size: int) -> bytes:
    """Read ``size`` bytes of a body; a connection that ends first is a truncated request (ValueError)."""
    data: bytes = stream.read(size)
    if len(data) < size:
        raise ValueError(f"the body ends after {len(data)} of {size} bytes (truncated request)")
    return data
