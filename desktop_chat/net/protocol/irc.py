"""IRC lines, sans-I/O: parsing and formatting (RFC 1459/2812 with IRCv3 message tags), the
escaped forms of names that are not valid nicks or channel names, and splitting long text.

Nothing here knows the chat: ``net/server/irc_session.py`` maps these lines to hub requests and
hub events back to lines.

Names: a chat name that is a valid IRC nick is used as it is. Any other name is shown in an
escaped form that every client can cope with and that maps back exactly: each character outside
the nick alphabet — and the escape character ``` ` ``` itself — becomes ``` `hex` ``` (its code
point in lowercase hexadecimal between backticks), and a leading digit or ``-`` is escaped too.
``Ann Lee`` is ``Ann`20`Lee``, ``Zoë`` is ``Zo`eb```, ``7up`` is ```37`up``. Channel names
escape only what a channel name cannot hold (space, comma, colon, BEL, the backtick) and keep
other characters, since channel names are just octets to IRC clients.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

MAX_LINE: Final = 512  # bytes, with the CR LF, not counting tags (RFC 1459)
MAX_CLIENT_TAGS: Final = 4094  # IRCv3: the tags a client may send, without "@" and the space
MAX_INCOMING: Final = MAX_CLIENT_TAGS + 2 + MAX_LINE  # the longest line we read

_NICK_FIRST = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz[]\\_^{|}")
_NICK_REST = _NICK_FIRST | set("0123456789-")
_CHANNEL_UNSAFE = set(" ,:\x07`") | {chr(c) for c in range(0x20)} | {"\x7f"}
_ESCAPED = re.compile(r"`([0-9a-f]{1,6})`")
_TAG_ESCAPES = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
_TAG_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


class IrcSyntaxError(ValueError):
    """A line that is not an IRC message."""


@dataclass(frozen=True, slots=True)
class IrcMessage:
    command: str  # upper case, or a three-digit numeric
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def param(self, i: int, default: str = "") -> str:
        return self.params[i] if i < len(self.params) else default


# -- parsing --------------------------------------------------------------------------------


def _unescape_tag(value: str) -> str:
    out: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")
        out.append(_TAG_UNESCAPES.get(nxt, nxt))  # an unknown escape is the character itself
    return "".join(out)


def parse(line: str) -> IrcMessage:
    """One line (without CR LF) into a message; raises :class:`IrcSyntaxError`."""
    rest = line.lstrip(" ")
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        raw_tags, _, rest = rest[1:].partition(" ")
        for item in raw_tags.split(";"):
            if not item:
                continue
            key, _, value = item.partition("=")
            tags[key] = _unescape_tag(value)
        rest = rest.lstrip(" ")
    source = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    command, _, rest = rest.partition(" ")
    if not command or not (command.isalpha() or (command.isdigit() and len(command) == 3)):
        raise IrcSyntaxError("no command")
    params: list[str] = []
    while rest:
        rest = rest.lstrip(" ")
        if not rest:
            break
        if rest.startswith(":"):
            params.append(rest[1:])
            break
        word, _, rest = rest.partition(" ")
        params.append(word)
    return IrcMessage(command.upper(), tuple(params), source, tags)


# -- formatting -----------------------------------------------------------------------------


def _clean(text: str) -> str:
    # CR, LF and NUL would end or corrupt the line: never let them through.
    return text.replace("\r", " ").replace("\n", " ").replace("\0", "\ufffd")


def escape_tag(value: str) -> str:
    return "".join(_TAG_ESCAPES.get(ch, ch) for ch in value)


def format_message(
    command: str,
    *params: str,
    source: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> bytes:
    """One line, CR LF terminated. The last parameter gets a ``:`` when it needs one."""
    parts: list[str] = []
    if tags:
        parts.append("@" + ";".join(f"{k}={escape_tag(v)}" if v else k for k, v in tags.items()))
    if source:
        parts.append(":" + source)
    parts.append(command)
    cleaned = [_clean(p) for p in params]
    for i, param in enumerate(cleaned):
        last = i == len(cleaned) - 1
        if last and (not param or " " in param or param.startswith(":")):
            parts.append(":" + param)
        else:
            parts.append(param.replace(" ", "\u00a0") if not last else param)
    return (" ".join(parts) + "\r\n").encode("utf-8", errors="replace")  # lone surrogates


def split_text(text: str, budget: int) -> Iterator[str]:
    """``text`` in pieces of at most ``budget`` UTF-8 bytes each, cut between words where a
    piece allows it and never inside a code point; each of its lines separately."""
    budget = max(budget, 4)  # room for one code point, whatever happens
    for line in text.split("\n"):
        line = line.replace("\r", "")
        data = line.encode("utf-8")
        if len(data) <= budget:
            yield line
            continue
        while data:
            if len(data) <= budget:
                yield data.decode("utf-8")
                break
            cut = budget
            while cut > 0 and (data[cut] & 0xC0) == 0x80:
                cut -= 1  # back to the start of a code point
            space = data.rfind(b" ", 0, cut + 1)
            if space > budget // 2:
                cut = space
            yield data[:cut].decode("utf-8")
            data = data[cut:].lstrip(b" ") if space == cut else data[cut:]


# -- names ----------------------------------------------------------------------------------


def _escape_char(ch: str) -> str:
    return f"`{ord(ch):x}`"


def to_nick(name: str) -> str:
    """The nick that shows chat name ``name`` to IRC clients (reversible)."""
    out: list[str] = []
    for i, ch in enumerate(name):
        allowed = _NICK_FIRST if i == 0 else _NICK_REST
        out.append(ch if ch in allowed else _escape_char(ch))
    return "".join(out)


def to_channel(room: str) -> str:
    """The channel that shows chat room ``room`` (``general`` is ``#general``)."""
    return "#" + "".join(_escape_char(ch) if ch in _CHANNEL_UNSAFE else ch for ch in room)


def from_escaped(text: str) -> str:
    """The chat name behind a nick or channel name (without its ``#``): escapes decoded.

    A backtick that does not begin a valid escape stays as it is."""

    def decode(m: re.Match[str]) -> str:
        code = int(m[1], 16)
        return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else m[0]

    return _ESCAPED.sub(decode, text)


def is_channel(target: str) -> bool:
    return target.startswith("#")


def targets(param: str) -> Sequence[str]:
    """A comma-separated list of targets (``JOIN #a,#b``)."""
    return [t for t in param.split(",") if t]
