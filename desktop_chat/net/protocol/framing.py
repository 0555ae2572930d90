"""Sans-I/O line framing with a size limit, shared by the JSON Lines and plain-text modes.

TCP is a byte stream: a ``recv`` may hold half a line or twenty. :class:`LineBuffer` keeps the
partial line between calls and enforces the line limit *while* buffering, so a peer that never
sends ``\\n`` cannot make us hold more than ``max_line`` bytes. A line over the limit yields one
:data:`TOO_LONG` marker and everything up to its ``\\n`` is discarded.
"""

from __future__ import annotations

from typing import Final

DEFAULT_MAX_LINE: Final = 65_536


class _TooLong:
    """Marker yielded once for each line that exceeded the limit."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TOO_LONG"


TOO_LONG: Final = _TooLong()


class LineBuffer:
    """Split a byte stream into lines of at most ``max_line`` bytes (not counting ``\\n``)."""

    __slots__ = ("_buf", "_discarding", "max_line")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes held of a line not yet ended."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | _TooLong]:
        """Add ``data``; return the complete lines (without ``\\n``) and TOO_LONG markers."""
        out: list[bytes | _TooLong] = []
        start = 0
        end = len(data)
        while start < end:
            nl = data.find(b"\n", start)
            if nl < 0:
                chunk = data[start:]
                if not self._discarding:
                    if len(self._buf) + len(chunk) > self.max_line:
                        self._buf.clear()
                        self._discarding = True
                        out.append(TOO_LONG)
                    else:
                        self._buf += chunk
                break
            if self._discarding:
                self._discarding = False
            elif len(self._buf) + (nl - start) > self.max_line:
                self._buf.clear()
                out.append(TOO_LONG)
            elif self._buf:
                self._buf += data[start:nl]
                out.append(bytes(self._buf))
                self._buf.clear()
            else:
                out.append(data[start:nl])
            start = nl + 1
        return out

    def eof(self) -> bytes:
        """The connection ended: return (and drop) the unterminated tail, never to be acted on."""
        tail = bytes(self._buf)
        self._buf.clear()
        self._discarding = False
        return tail
