"""Protocol additions for accounts and moderation (see ``docs/protocol.md``).

These message types are additions to the contract: registering a name with a password,
changing it, and what the host (and admins the host promotes) can do: kick, ban, topics, room
passwords, slow mode, promotion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from desktop_chat.net.protocol.records import (
    BAD_MESSAGE,
    ClientEvent,
    Invalid,
    Ref,
    ServerEvent,
    _opt,
    _req,
)

FORBIDDEN: Final = "forbidden"
KICKED: Final = "kicked"


@dataclass(frozen=True, slots=True)
class Register(ClientEvent):
    """Register the name in use with a password: nobody else can use it afterwards."""

    TYPE: ClassVar[str] = "register"
    password: str = _req("str")
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class SetPassword(ClientEvent):
    TYPE: ClassVar[str] = "password"
    old: str = _req("str")
    new: str = _req("str")
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class Kick(ClientEvent):
    TYPE: ClassVar[str] = "kick"
    name: str = _req("str")
    reason: str | None = _opt("str")
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class Ban(ClientEvent):
    """Ban a name or an address (stored); whoever matches is disconnected now."""

    TYPE: ClassVar[str] = "ban"
    name: str | None = _opt("str")
    address: str | None = _opt("str")
    ref: Ref | None = _opt("ref")

    def validate(self) -> None:
        if (self.name is None) == (self.address is None):
            raise Invalid(BAD_MESSAGE, f"{self.TYPE} needs exactly one of 'name' or 'address'")


@dataclass(frozen=True, slots=True)
class Unban(Ban):
    TYPE: ClassVar[str] = "unban"


@dataclass(frozen=True, slots=True)
class SetTopic(ClientEvent):
    TYPE: ClassVar[str] = "topic"
    room: str = _req("str")
    topic: str = _req("str")  # "" clears it
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class RoomSettings(ClientEvent):
    """Set a room's password ("" removes it) and/or slow mode (seconds between messages)."""

    TYPE: ClassVar[str] = "room_settings"
    room: str = _req("str")
    password: str | None = _opt("str")
    slow: int | None = _opt("int")
    ref: Ref | None = _opt("ref")

    def validate(self) -> None:
        if self.slow is not None and not 0 <= self.slow <= 3600:
            raise Invalid(BAD_MESSAGE, "'slow' is 0 to 3600 seconds")


@dataclass(frozen=True, slots=True)
class Promote(ClientEvent):
    """Make a registered account an admin (``admin: false`` takes it back)."""

    TYPE: ClassVar[str] = "promote"
    name: str = _req("str")
    admin: bool | None = _opt("bool")
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class Ok(ServerEvent):
    """A request without another reply succeeded; ``what`` is its type."""

    TYPE: ClassVar[str] = "ok"
    what: str = _req("str")
    ref: Ref | None = _opt("ref")


@dataclass(frozen=True, slots=True)
class TopicChanged(ServerEvent):
    TYPE: ClassVar[str] = "topic"
    room: str = _req("str")
    topic: str = _req("str")
    by: str = _req("str")


@dataclass(frozen=True, slots=True)
class Notice(ServerEvent):
    """Something people should know, in words (slow mode turned on, a room locked...)."""

    TYPE: ClassVar[str] = "notice"
    text: str = _req("str")
    room: str | None = _opt("str")


ADMIN_CLIENT_EVENTS: Final[tuple[type[ClientEvent], ...]] = (
    Register,
    SetPassword,
    Kick,
    Ban,
    Unban,
    SetTopic,
    RoomSettings,
    Promote,
)
ADMIN_SERVER_EVENTS: Final[tuple[type[ServerEvent], ...]] = (Ok, TopicChanged, Notice)
