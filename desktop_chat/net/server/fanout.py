"""What the hub fans out and to whom: one event encoded once (:class:`Outgoing`), a logged-in
connection as the hub sees it (:class:`Member`), a live room, and the buffer of one fan-out
(:class:`Batch`) that is handed to the flusher once the hub's lock is released.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from desktop_chat.net.protocol import events as p
from desktop_chat.net.server.frames import text_frame
from desktop_chat.net.server.outbox import MARK, OVERFLOW, Flusher, Outbox


class Outgoing:
    """One event to deliver to many; its JSON line is encoded once, on first use."""

    __slots__ = ("_json", "_ws", "event")

    def __init__(self, event: p.ServerEvent | p.ClientEvent) -> None:
        self.event = event
        self._json: bytes | None = None
        self._ws: bytes | None = None

    @property
    def json(self) -> bytes:
        if self._json is None:
            self._json = p.encode(self.event)
        return self._json

    @property
    def ws_frame(self) -> bytes:
        """The same JSON as one WebSocket text frame (servers send frames unmasked, so one
        frame serves every WebSocket recipient)."""
        if self._ws is None:
            self._ws = text_frame(self.json[:-1])
        return self._ws


class Member(Protocol):
    """A logged-in connection, as the hub sees it."""

    name: str
    key: str
    session: str
    rooms: dict[str, str]  # room key -> room name, in join order
    is_admin: bool
    is_owner: bool  # logged in with the hosting app's owner token: the highest rank
    address: tuple[str, int]
    last_said: dict[str, float]  # room key -> when it last spoke (slow mode)
    end_session: bool  # kicked or banned: the session ends with the connection

    outbox: Outbox

    @property
    def secure(self) -> bool:
        """The connection is encrypted (TLS, a WebSocket over TLS too)."""

    def deliver(self, out: Outgoing, *, urgent: bool = True) -> int:
        """Buffer an event (no I/O); an :meth:`Outbox.enqueue` status (MARK, OVERFLOW...)."""

    def send_event(self, event: p.ServerEvent) -> None:
        """A reply to this connection alone (no lock needed), written soon."""

    def abort(self, reason: str) -> None:
        """Close the connection; its thread then calls :meth:`Hub.leave` with ``reason``."""


@dataclass
class Room:
    name: str
    topic: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    slow: int = 0  # seconds between messages of one person (0: off)
    locked: bool = False  # joining needs the room's password


class Batch:
    """What a fan-out touched while holding the lock: handed to the flusher (or cut off for
    overflowing) once the lock is released."""

    __slots__ = ("flusher", "lazy", "marked", "overflowed")

    def __init__(self, flusher: Flusher) -> None:
        self.flusher = flusher
        self.marked: list[Outbox] = []
        self.lazy: list[Outbox] = []
        self.overflowed: list[Member] = []

    def send(self, member: Member, out: Outgoing) -> None:
        status = member.deliver(out)
        if status == MARK:
            self.marked.append(member.outbox)
        elif status == OVERFLOW:
            self.overflowed.append(member)

    def send_all(self, members: Iterable[Member], out: Outgoing, *, urgent: bool = True) -> None:
        # The hot loop of every broadcast: one append per recipient, nothing more.
        marked = self.marked if urgent else self.lazy
        for member in members:
            status = member.deliver(out, urgent=urgent)
            if status > 0:
                marked.append(member.outbox)
            elif status == OVERFLOW:
                self.overflowed.append(member)

    def finish(self) -> None:
        if self.marked:
            self.flusher.mark_many(self.marked)
        if self.lazy:
            self.flusher.mark_lazy_many(self.lazy)
        for member in self.overflowed:
            member.abort("slow")
