"""What a new connection speaks, from its first bytes (sans-I/O).

The contract's rule: a connection whose bytes so far match a known protocol, or are still the
start of one (``G``, ``GE`` could yet be ``GET /``), is never turned into a plain-text user,
however slowly the rest arrives. Plain text is chosen only when nothing arrived at all, or when
the bytes can no longer begin any known protocol (``echo Gary | nc host port`` is a user called
Gary). Matching is case-sensitive, as HTTP methods are and as IRC clients send their commands.
Beyond the common methods, any complete request line (``PROPFIND /dav/ HTTP/1.1``) is HTTP,
and an upper-case word still waiting for the rest of its line is undecided.
"""

from __future__ import annotations

import enum
import re
from typing import Final


class Kind(enum.Enum):
    """A way in, chosen from the first bytes."""

    UNDECIDED = "undecided"  # the bytes so far could still begin a known protocol
    TLS = "tls"
    JSON = "json"
    HTTP = "http"
    HTTP2 = "http2"  # the HTTP/2 preface: answered with an HTTP/1.1 error, then closed
    IRC = "irc"
    PLAIN = "plain"


HTTP_METHODS: Final = (
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
)
HTTP2_PREFACE: Final = b"PRI * HTTP/2.0"
IRC_COMMANDS: Final = (b"CAP ", b"NICK ", b"USER ", b"PASS ")

# Any HTTP/1.x request line, whatever its method (WebDAV's PROPFIND, a scanner's QUERY…), and
# the start of one while its first line is still arriving: upper-case token, space, target.
_REQUEST_LINE: Final = re.compile(rb"[A-Z][A-Z0-9_-]{0,31} [!-~]+ HTTP/\d\.\d\r?")
_REQUEST_START: Final = re.compile(rb"[A-Z][A-Z0-9_-]{0,31}( [!-~]*( [!-~]*)?)?")

_PREFIXES: Final = (
    *((m, Kind.HTTP) for m in HTTP_METHODS),
    (HTTP2_PREFACE, Kind.HTTP2),
    *((c, Kind.IRC) for c in IRC_COMMANDS),
)


def classify(data: bytes) -> Kind:
    """The way in that ``data`` (the first bytes, possibly decrypted) begins."""
    if not data:
        return Kind.UNDECIDED
    first = data[0]
    if first == 0x16:
        return Kind.TLS
    if first == 0x7B:  # "{"
        return Kind.JSON
    undecided = False
    for token, kind in _PREFIXES:
        if data.startswith(token):
            return kind
        if token.startswith(data):
            undecided = True
    first_line, newline, _ = data.partition(b"\n")
    if newline:
        return Kind.HTTP if _REQUEST_LINE.fullmatch(first_line) else Kind.PLAIN
    if undecided or _REQUEST_START.fullmatch(first_line):
        return Kind.UNDECIDED
    return Kind.PLAIN
