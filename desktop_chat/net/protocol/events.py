"""The native wire protocol, sans-I/O: bytes in, typed events out; events in, bytes out.

Everything that speaks the protocol drives the objects here: the threaded server, the Qt client
worker, the WebSocket bridge, the tests and the benchmark. Nothing here touches a socket, a
thread or Qt (see ``docs/protocol.md`` for the protocol itself).

Events are frozen dataclasses. Client-to-server and server-to-client messages are separate
classes even where they share a ``type`` (``typing``), so each side parses only what it may
receive. A peer's bad input never raises out of :class:`JsonLinesProtocol`: it becomes a
:class:`ProtocolError` event carrying the contract's error code, which the caller answers with
an ``error`` message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from desktop_chat.net.protocol import admin
from desktop_chat.net.protocol.framing import DEFAULT_MAX_LINE, TOO_LONG, LineBuffer
from desktop_chat.net.protocol.records import (
    _SURROGATE,
    READERS,
    Invalid,
    _nested,
    _nested_list,
    _opt,
    _Record,
    _req,
    decode_json_object,
)
from desktop_chat.net.protocol.records import (
    BAD_JSON as BAD_JSON,
)
from desktop_chat.net.protocol.records import (
    BAD_MESSAGE as BAD_MESSAGE,
)
from desktop_chat.net.protocol.records import ClientEvent as ClientEvent
from desktop_chat.net.protocol.records import (
    Ref as Ref,
)
from desktop_chat.net.protocol.records import ServerEvent as ServerEvent

PROTOCOL_VERSION: Final = 1
MAX_HISTORY_LIMIT: Final = 500
DEFAULT_HISTORY_LIMIT: Final = 50

# Error codes of the contract (and the ones this implementation adds, see docs/protocol.md).
UNKNOWN_TYPE: Final = "unknown_type"
TOO_LONG_CODE: Final = "too_long"
NAME_TAKEN: Final = "name_taken"
NAME_INVALID: Final = "name_invalid"
AUTH_FAILED: Final = "auth_failed"
PROTOCOL_MISMATCH: Final = "protocol_version"
BANNED: Final = "banned"
SERVER_FULL: Final = "server_full"
NOT_IN_ROOM: Final = "not_in_room"
NO_SUCH_USER: Final = "no_such_user"
RATE_LIMITED: Final = "rate_limited"
TLS_REQUIRED: Final = "tls_required"
STORAGE_FAILED: Final = "storage_failed"  # the message could not be stored: nothing was sent

LEFT_REASONS: Final = frozenset({"part", "quit", "disconnected", "timeout", "kicked", "slow"})

# ---------------------------------------------------------------------------------------------
# Nested records


@dataclass(frozen=True, slots=True)
class Resume(_Record):
    session: str = _req("str")
    since: int = _req("int")


@dataclass(frozen=True, slots=True)
class FileInfo(_Record):
    id: str = _req("str")
    name: str = _req("str")
    size: int = _req("int")
    sha256: str = _req("str")
    mime: str | None = _opt("str")  # detected from the bytes by the server
    width: int | None = _opt("int")  # images only
    height: int | None = _opt("int")
    expired: bool | None = _opt("bool")  # removed by the server's retention rule


@dataclass(frozen=True, slots=True)
class RoomInfo(_Record):
    name: str = _req("str")
    users: int = _req("int")
    topic: str | None = _opt("str")


# ---------------------------------------------------------------------------------------------
# Client -> server


@dataclass(frozen=True, slots=True)
class Hello(ClientEvent):
    TYPE: ClassVar[str] = "hello"
    name: str = _req("str")
    protocol: int = _opt("int", default=PROTOCOL_VERSION)
    password: str | None = _opt("str")
    client: str | None = _opt("str")
    resume: Resume | None = _opt("resume")
    ref: Ref | None = _opt("ref")
    owner: str | None = _opt("str")  # addition: the hosting app's owner token (admin rights)


@dataclass(frozen=True, slots=True)
class Say(ClientEvent):
    TYPE: ClassVar[str] = "say"
    room: str = _req("str")
    text: str = _req("text")
    ref: Ref | None = _opt("ref")
    me: bool | None = _opt("bool")


@dataclass(frozen=True, slots=True)
class Dm(ClientEvent):
    TYPE: ClassVar[str] = "dm"
    to: str = _req("str")
    text: str = _req("text")
    ref: Ref | None = _opt("ref")
    me: bool | None = _opt("bool")


@dataclass(frozen=True, slots=True)
class Join(ClientEvent):
    TYPE: ClassVar[str] = "join"
    room: str = _req("str")
    ref: Ref | None = _opt("ref")
    password: str | None = _opt("str")  # addition: for a room with a password


@dataclass(frozen=True, slots=True)
class Part(ClientEvent):
    TYPE: ClassVar[str] = "part"
    room: str = _req("str")
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class ListRooms(ClientEvent):
    TYPE: ClassVar[str] = "rooms"
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class GetHistory(ClientEvent):
    TYPE: ClassVar[str] = "history"
    room: str | None = _opt("str")
    with_: str | None = _opt("str", key="with")
    before: int | None = _opt("int")
    limit: int | None = _opt("int")
    ref: Ref | None = _opt("ref")

    def validate(self) -> None:
        if (self.room is None) == (self.with_ is None):
            raise Invalid(BAD_MESSAGE, "history needs exactly one of 'room' or 'with'")
        if self.limit is not None and self.limit < 1:
            raise Invalid(BAD_MESSAGE, "'limit' must be at least 1")

    @property
    def effective_limit(self) -> int:
        """The contract's default of 50, capped at 500."""
        return min(self.limit or DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT)


@dataclass(frozen=True, slots=True)
class Typing(ClientEvent):
    TYPE: ClassVar[str] = "typing"
    room: str | None = _opt("str")
    to: str | None = _opt("str")
    ref: Ref | None = _opt("ref")

    def validate(self) -> None:
        if (self.room is None) == (self.to is None):
            raise Invalid(BAD_MESSAGE, "typing needs exactly one of 'room' or 'to'")


@dataclass(frozen=True, slots=True)
class Ping(ClientEvent):
    """``ping`` in either direction: the peer answers ``pong`` with the same ``n``."""

    TYPE: ClassVar[str] = "ping"
    n: Ref | None = _opt("ref")
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class Pong(ClientEvent):
    TYPE: ClassVar[str] = "pong"
    n: Ref | None = _opt("ref")
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class Quit(ClientEvent):
    TYPE: ClassVar[str] = "quit"
    reason: str | None = _opt("str")
    ref: Ref | None = _opt("ref")


# ---------------------------------------------------------------------------------------------
# Server -> client


@dataclass(frozen=True, slots=True)
class Welcome(ServerEvent):
    TYPE: ClassVar[str] = "welcome"
    name: str = _req("str")
    session: str = _req("str")
    server: str = _req("str")
    rooms: tuple[str, ...] = _req("strlist")
    protocol: int = _opt("int", default=PROTOCOL_VERSION)
    resumed: bool | None = _opt("bool")
    admin: bool | None = _opt("bool")  # addition: this session may moderate


@dataclass(frozen=True, slots=True)
class ErrorReply(ServerEvent):
    TYPE: ClassVar[str] = "error"
    code: str = _req("str")
    message: str = _req("str")
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class ChatMessage(ServerEvent):
    TYPE: ClassVar[str] = "message"
    id: int = _req("int")
    ts: int = _req("int")
    from_: str = _req("str", key="from")
    text: str = _req("str")
    room: str | None = _opt("str")
    to: str | None = _opt("str")
    ref: Ref | None = _opt("ref")
    file: FileInfo | None = _opt("file")
    me: bool | None = _opt("bool")

    def validate(self) -> None:
        if (self.room is None) == (self.to is None):
            raise Invalid(BAD_MESSAGE, "a message has exactly one of 'room' or 'to'")


@dataclass(frozen=True, slots=True)
class Joined(ServerEvent):
    TYPE: ClassVar[str] = "joined"
    room: str = _req("str")
    name: str = _req("str")


@dataclass(frozen=True, slots=True)
class Left(ServerEvent):
    TYPE: ClassVar[str] = "left"
    room: str = _req("str")
    name: str = _req("str")
    reason: str = _req("str")


@dataclass(frozen=True, slots=True)
class Users(ServerEvent):
    TYPE: ClassVar[str] = "users"
    room: str = _req("str")
    names: tuple[str, ...] = _req("strlist")
    topic: str | None = _opt("str")
    admins: tuple[str, ...] | None = _opt("strlist")  # addition: who of them may moderate


@dataclass(frozen=True, slots=True)
class RoomList(ServerEvent):
    TYPE: ClassVar[str] = "rooms"
    rooms: tuple[RoomInfo, ...] = _req("roomlist")
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class HistoryReply(ServerEvent):
    TYPE: ClassVar[str] = "history"
    messages: tuple[ChatMessage, ...] = _req("messages")
    room: str | None = _opt("str")
    with_: str | None = _opt("str", key="with")
    more: bool | None = _opt("bool")
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class TypingNotice(ServerEvent):
    TYPE: ClassVar[str] = "typing"
    name: str = _req("str")
    room: str | None = _opt("str")
    to: str | None = _opt("str")


@dataclass(frozen=True, slots=True)
class ServerPing(ServerEvent):
    TYPE: ClassVar[str] = "ping"
    n: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class ServerPong(ServerEvent):
    TYPE: ClassVar[str] = "pong"
    n: Ref | None = _opt("ref")
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class Closing(ServerEvent):
    """Added by this implementation: the server is shutting down (sessions are kept)."""

    TYPE: ClassVar[str] = "closing"
    reason: str = _req("str")


READERS.update(
    {
        "resume": _nested(Resume),
        "file": _nested(FileInfo),
        "roomlist": _nested_list(RoomInfo),
        "messages": _nested_list(ChatMessage),
    }
)


_CLIENT_CLASSES: tuple[type[ClientEvent], ...] = (
    Hello,
    Say,
    Dm,
    Join,
    Part,
    ListRooms,
    GetHistory,
    Typing,
    Ping,
    Pong,
    Quit,
    *admin.ADMIN_CLIENT_EVENTS,
)
CLIENT_EVENTS: Final[dict[str, type[ClientEvent]]] = {cls.TYPE: cls for cls in _CLIENT_CLASSES}
_SERVER_CLASSES: tuple[type[ServerEvent], ...] = (
    Welcome,
    ErrorReply,
    ChatMessage,
    Joined,
    Left,
    Users,
    RoomList,
    HistoryReply,
    TypingNotice,
    ServerPing,
    ServerPong,
    Closing,
    *admin.ADMIN_SERVER_EVENTS,
)
SERVER_EVENTS: Final[dict[str, type[ServerEvent]]] = {cls.TYPE: cls for cls in _SERVER_CLASSES}


def _ref_of(obj: Mapping[str, Any]) -> Ref | None:
    ref = obj.get("ref")
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        return None
    if isinstance(ref, str) and _SURROGATE.search(ref):
        return None
    return ref


def _has_nul(value: object) -> bool:
    """Does any string in this decoded JSON value (keys included) contain U+0000?"""
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def parse_event(obj: Mapping[str, Any], table: Mapping[str, type[_Record]]) -> Any:
    """Turn a decoded object into an event of ``table``, or raise :class:`Invalid`."""
    type_name = obj.get("type")
    if not isinstance(type_name, str):
        raise Invalid(BAD_MESSAGE, "every message needs a string field 'type'")
    cls = table.get(type_name)
    if cls is None:
        raise Invalid(UNKNOWN_TYPE, f"unknown message type {type_name[:40]!r}")
    return cls.from_dict(obj)


def encode(event: _Record) -> bytes:
    """One JSON line (UTF-8, ``\\n``-terminated) for ``event``."""
    return encode_dict(event.to_dict())


# One encoder for every line: json.dumps with non-default options builds a new one per call.
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_dict(obj: Mapping[str, Any]) -> bytes:
    return (_ENCODER.encode(obj) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------------------------
# The connection object


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer sent something wrong; answer with ``error`` ``code`` (and ``ref``)."""

    code: str
    message: str
    ref: Ref | None = None

    def reply(self) -> ErrorReply:
        return ErrorReply(code=self.code, message=self.message, ref=self.ref)


Role = Literal["server", "client"]


class JsonLinesProtocol:
    """Sans-I/O JSON Lines: ``receive_data`` returns events and errors in arrival order.

    ``role="server"`` parses client events (what a server receives); ``role="client"`` parses
    server events. The line limit applies while buffering.
    """

    def __init__(self, role: Role = "server", max_line: int = DEFAULT_MAX_LINE) -> None:
        self._table: Mapping[str, type[_Record]] = (
            CLIENT_EVENTS if role == "server" else SERVER_EVENTS
        )
        self._lines = LineBuffer(max_line)
        self.max_line = max_line

    def receive_data(self, data: bytes) -> list[Any]:
        """Feed bytes; return parsed events and :class:`ProtocolError` s, in order."""
        return [self.parse_line(line) for line in self._lines.feed(data)]

    def receive_eof(self) -> None:
        """The peer closed: an unterminated final line is discarded, never acted on."""
        self._lines.eof()

    def parse_line(self, line: bytes | object) -> Any:
        """Parse one complete line (or the TOO_LONG marker) into an event or an error."""
        if line is TOO_LONG:
            return ProtocolError(
                TOO_LONG_CODE, f"line longer than {self.max_line} bytes was discarded"
            )
        assert isinstance(line, bytes | str)
        obj: Mapping[str, Any] = {}
        try:
            obj = decode_json_object(line)
            escape = b"\\u0000" if isinstance(line, bytes) else "\\u0000"
            if self._table is CLIENT_EVENTS and escape in line and _has_nul(obj):  # type: ignore[operator]
                # PostgreSQL cannot store NUL in text: refused here, for every back end, so a
                # message that could never be stored is never accepted.
                raise Invalid(BAD_MESSAGE, "text cannot contain the NUL character (U+0000)")
            return parse_event(obj, self._table)
        except Invalid as exc:
            return ProtocolError(exc.code, exc.message, _ref_of(obj))

    @staticmethod
    def send(event: _Record) -> bytes:
        return encode(event)


def events_to_bytes(events: Iterable[_Record]) -> bytes:
    return b"".join(encode(e) for e in events)
