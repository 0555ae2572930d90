"""Native JSON Lines (and, through ``websocket.py``, the same objects over WebSocket).

Bytes become events with the sans-I/O :class:`~desktop_chat.net.protocol.events.JsonLinesProtocol`;
each event is routed through one table, :data:`DISPATCH`, from its class to the hub call it
asks for. A new request type adds a row, not a branch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p
from desktop_chat.net.server.context import ServerContext
from desktop_chat.net.server.guard import LoginRefused
from desktop_chat.net.server.session import Session
from desktop_chat.net.server.storage_api import StorageError
from desktop_chat.net.server.transport import Transport

Handler = Callable[[Session, Any], None]


def _say(s: Session, e: p.Say) -> None:
    s.hub.say(s, e.room, e.text, e.ref, me=bool(e.me))


def _dm(s: Session, e: p.Dm) -> None:
    s.hub.dm(s, e.to, e.text, e.ref, me=bool(e.me))


def _part(s: Session, e: p.Part) -> None:
    s.hub.part(s, e.room, e.ref)


def _rooms(s: Session, e: p.ListRooms) -> None:
    s.hub.list_rooms(s, e.ref)


def _typing(s: Session, e: p.Typing) -> None:
    s.hub.typing(s, room=e.room, to=e.to, ref=e.ref)


# What each request of a logged-in client does. Every row costs a token of flood control.
DISPATCH: Final[dict[type[p.ClientEvent], Handler]] = {
    p.Say: _say,
    p.Dm: _dm,
    p.Join: lambda s, e: s.hub.join(s, e),
    p.Part: _part,
    p.ListRooms: _rooms,
    p.GetHistory: lambda s, e: s.hub.history(s, e),
    p.Typing: _typing,
    pa.Register: lambda s, e: s.hub.register(s, e),
    pa.SetPassword: lambda s, e: s.hub.set_password(s, e),
    pa.Kick: lambda s, e: s.hub.kick(s, e),
    pa.Ban: lambda s, e: s.hub.ban(s, e),
    pa.Unban: lambda s, e: s.hub.unban(s, e),
    pa.SetTopic: lambda s, e: s.hub.set_topic(s, e),
    pa.RoomSettings: lambda s, e: s.hub.room_settings(s, e),
    pa.Promote: lambda s, e: s.hub.promote(s, e),
}


class JsonSession(Session):
    """A client speaking JSON Lines."""

    def __init__(self, transport: Transport, ctx: ServerContext) -> None:
        super().__init__(transport, ctx)
        self.protocol = p.JsonLinesProtocol("server", self.config.max_line)

    def receive(self, data: bytes) -> None:
        for event in self.protocol.receive_data(data):
            self.handle(event)

    def handle(self, event: object) -> None:
        """Act on one parsed event (or answer one protocol error)."""
        if self.cut_off:
            return
        try:
            self._handle(event)
        except StorageError as exc:
            self.database_failed(exc, getattr(event, "ref", None))

    def _handle(self, event: object) -> None:
        if isinstance(event, p.ProtocolError):
            self.send_event(event.reply())
        elif not self.logged_in:
            self._before_login(event)
        elif isinstance(event, p.Ping):
            self.send_event(p.ServerPong(n=event.n, ref=event.ref))
        elif isinstance(event, p.Pong):
            pass  # any input already counted as a sign of life
        elif isinstance(event, p.Quit):
            self.quit()
        elif isinstance(event, p.Hello):
            self.send_event(
                p.ErrorReply(code=p.BAD_MESSAGE, message="already logged in", ref=event.ref)
            )
        else:
            handler = DISPATCH.get(type(event))  # type: ignore[arg-type]
            if handler is None:  # a server event type sent by a client: parsed, not allowed
                return
            if not self.bucket.take():
                ref = getattr(event, "ref", None)
                self.send_event(
                    p.ErrorReply(
                        code=p.RATE_LIMITED, message="slow down: too many messages", ref=ref
                    )
                )
                return
            handler(self, event)

    def _before_login(self, event: object) -> None:
        if not isinstance(event, p.Hello):
            ref = getattr(event, "ref", None)
            self.send_event(p.ErrorReply(code=p.BAD_MESSAGE, message="say hello first", ref=ref))
            return
        try:
            self.login(event)
        except LoginRefused as exc:
            self.refuse(exc, event.ref)
