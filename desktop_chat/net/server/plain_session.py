"""Plain-text mode on the wire: the netcat/telnet session (the original experience).

The text itself — the prompt, the command parser, how events are shown in a terminal — is the
sans-I/O ``plaintext`` module; this module turns typed lines into hub requests and hub events
into those lines, for one connection.
"""

from __future__ import annotations

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import commands
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.framing import TOO_LONG, LineBuffer
from desktop_chat.net.protocol.names import name_key
from desktop_chat.net.server.context import ServerContext
from desktop_chat.net.server.fanout import Outgoing
from desktop_chat.net.server.guard import LoginRefused
from desktop_chat.net.server.plaintext import HELP, PROMPT, decode_line, render
from desktop_chat.net.server.session import Mode, Session
from desktop_chat.net.server.sniff import Kind, classify
from desktop_chat.net.server.storage_api import StorageError
from desktop_chat.net.server.transport import Transport


class PlainSession(Session):
    """A person at a terminal: a prompt for the name, then lines in and lines out."""

    mode = Mode.PLAIN
    answers_pings = False  # a terminal cannot answer pings; TCP keepalive watches it

    def __init__(self, transport: Transport, ctx: ServerContext) -> None:
        super().__init__(transport, ctx)
        self.lines = LineBuffer(self.config.max_line)
        self.current_room = "general"  # where typed lines go
        self._pending_name: str | None = None  # waiting for this name's password
        self.write(f"Welcome to {self.hub.title}!\n{PROMPT}")

    def encode(self, out: Outgoing) -> bytes | None:
        text = render(out.event, me=self.name, room=self.current_room)  # type: ignore[arg-type]
        return text.encode("utf-8") if text else None

    def write(self, text: str) -> None:
        self.transport.send(text.encode("utf-8"))

    def receive(self, data: bytes) -> None:
        for line in self.lines.feed(data):
            if line is TOO_LONG:
                self.write(f"! line too long (over {self.config.max_line} bytes), ignored\n")
            else:
                assert isinstance(line, bytes)
                self.handle_line(decode_line(line))

    def handle_line(self, line: str) -> None:
        if self.cut_off:
            return
        try:
            self._handle_line(line)
        except StorageError as exc:
            self.database_failed(exc)

    def _handle_line(self, line: str) -> None:
        if not self.logged_in:
            self._login_line(line)
            return
        cmd = commands.parse(line)
        match cmd:
            case None:
                return
            case commands.Quit():
                self.quit()
                return
            case commands.Help():
                self.write(HELP + "\n")
                return
            case commands.CommandError(message=message):
                self.write(f"! {message}\n")
                return
            case commands.Who():
                self._show_who()
                return
        if not self.bucket.take():
            self.write("! slow down: too many messages\n")
            return
        match cmd:
            case commands.Say(text=text):
                self.hub.say(self, self.current_room, text)
            case commands.Me(text=text):
                self.hub.say(self, self.current_room, text, me=True)
            case commands.Msg(to=to, text=text) if text.strip():
                self.hub.dm(self, to, text)
            case commands.Msg():
                self.write("! Usage: /msg <name> <text>\n")
            case commands.Rooms():
                self.hub.list_rooms(self)
            case commands.Kick(name=name, reason=reason):
                self.hub.kick(self, pa.Kick(name=name, reason=reason))
            case commands.Ban(name=name):
                self.hub.ban(self, pa.Ban(name=name))
            case commands.Topic(text=text):
                self.hub.set_topic(self, pa.SetTopic(room=self.current_room, topic=text))
            case commands.Join(room=room, password=password):
                self._join(room, password)
            case commands.Part(room=room):
                self._part(room or self.current_room)

    def _login_line(self, line: str) -> None:
        if self._pending_name is None:
            if not line.strip():
                self.write(PROMPT)
                return
            if classify(line.encode("utf-8", "replace") + b"\n") is not Kind.PLAIN:
                # A browser's or an IRC client's first line, sent after the silence that chose
                # plain text (a busy machine, a preconnected socket): never a chat user, and
                # its headers are never said in a room.
                self.close("refused")
            if self.ctx.needs_password(line):
                if (refusal := self.ctx.plain_password_refusal(self)) is not None:
                    self.write(f"! {refusal}\n{PROMPT}")
                    return
                self._pending_name = line
                self.write("Password: ")
                return
            hello = p.Hello(name=line)
        else:
            hello = p.Hello(name=self._pending_name, password=line)
            self._pending_name = None
        try:
            self.login(hello)
        except LoginRefused as exc:
            if exc.code in (p.NAME_INVALID, p.NAME_TAKEN):
                self.write(f"! {exc.message}\n{PROMPT}")
                return
            self.write(f"! {exc.message}\n")
            self.close("refused")

    def _join(self, room: str, password: str | None) -> None:
        self.hub.join(self, p.Join(room=room, password=password))
        joined = self.rooms.get(self.hub.room_key(room))  # a look-alike names the same room
        if joined is not None:
            self.current_room = joined
            self.write(f"* You are now talking in {joined}.\n")

    def _show_who(self) -> None:
        room = self.rooms.get(name_key(self.current_room))
        if room is None:
            self.write("! you are not in any room; /join one\n")
            return
        names = self.hub.room_names(name_key(room))
        self.send_event(p.Users(room=room, names=tuple(names)))

    def _part(self, room: str) -> None:
        self.hub.part(self, room)
        if name_key(room) == name_key(self.current_room) and name_key(room) not in self.rooms:
            nxt = next(iter(self.rooms.values()), None)
            if nxt is not None:
                self.current_room = nxt
                self.write(f"* You are now talking in {nxt}.\n")
            else:
                self.write("* You are in no room now; /join one to talk.\n")
