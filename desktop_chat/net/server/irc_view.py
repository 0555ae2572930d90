"""What an IRC client is shown: hub events turned into IRC lines for one user.

An IRC client keeps its own picture of the channels it is in and who is in them, and expects
the server's lines to match it: a JOIN of its own before the names of a channel, one QUIT for a
person who left every shared channel rather than one per channel, no echo of its own messages
unless it asked for ``echo-message``. :class:`IrcView` keeps that picture for one session and
renders each event against it. It is called from whichever thread fans an event out (under the
hub's lock) and from the session's own thread, so its state has a lock of its own.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterable

from desktop_chat import __version__
from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.irc import MAX_LINE, format_message, split_text, to_channel, to_nick
from desktop_chat.net.protocol.names import MAX_NAME_LENGTH, name_key
from desktop_chat.net.server.plaintext import file_line

SERVER_NAME = "desktop-chat"
# What is offered is what is done: no `batch` (a replay is not wrapped in one) and no
# `draft/chathistory` yet; missed messages come by the resume (irc_session.py).
CAPABILITIES = ("echo-message", "message-tags", "sasl", "server-time")
_QUIT_REASONS = {
    "quit": "Quit",
    "disconnected": "Connection lost",
    "timeout": "Ping timeout",
    "slow": "Too slow to read",
}


def iso_time(ms: int) -> str:
    stamp = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def mask(name: str) -> str:
    """The ``nick!user@host`` source for a chat user."""
    return f"{to_nick(name)}!u@{SERVER_NAME}"


class IrcView:
    """One IRC user's picture of the chat, and the lines that keep it true."""

    def __init__(self, title: str, motd: Iterable[str]) -> None:
        self.title = title
        self.motd = list(motd)
        self.caps: set[str] = set()
        self.name = ""  # the chat name, once logged in
        self.nick = "*"
        self.admin = False
        self._lock = threading.Lock()
        self._channels: dict[str, str] = {}  # room key -> room name, as the client knows them
        self._members: dict[str, dict[str, str]] = {}  # room key -> name key -> name
        self._topics: dict[str, str] = {}
        self.last_id = 0  # the newest message id shown (or known to be the client's own)

    # -- lines ------------------------------------------------------------------------------

    def line(
        self, command: str, *params: str, source: str | None = None, ts: int | None = None
    ) -> bytes:
        tags: dict[str, str] = {}
        if ts is not None and "server-time" in self.caps:
            tags["time"] = iso_time(ts)
        return format_message(command, *params, source=source or SERVER_NAME, tags=tags)

    def numeric(self, code: str, *params: str) -> bytes:
        return format_message(code, self.nick, *params, source=SERVER_NAME)

    # -- what the client believes -----------------------------------------------------------

    def in_channel(self, room_key: str) -> str | None:
        with self._lock:
            return self._channels.get(room_key)

    def channels(self) -> list[str]:
        with self._lock:
            return list(self._channels.values())

    def topic(self, room_key: str) -> str | None:
        with self._lock:
            return self._topics.get(room_key)

    def names(self, room_key: str) -> list[str]:
        with self._lock:
            return sorted(self._members.get(room_key, {}).values(), key=name_key)

    # -- events -----------------------------------------------------------------------------

    def render(self, event: p.ServerEvent) -> bytes:
        """The lines that show ``event`` (b"" when it shows nothing)."""
        with self._lock:
            return self._render(event)

    def _render(self, event: p.ServerEvent) -> bytes:
        if isinstance(event, p.ChatMessage):
            return self._message(event)
        if isinstance(event, p.Joined):
            return self._joined(event)
        if isinstance(event, p.Left):
            return self._left(event)
        if isinstance(event, p.Users):
            return self._users(event)
        if isinstance(event, p.TypingNotice):
            return self._typing(event)
        if isinstance(event, p.Welcome):
            return self._welcome(event)
        if isinstance(event, p.RoomList):
            return self._room_list(event)
        if isinstance(event, pa.TopicChanged):
            key = name_key(event.room)
            self._topics[key] = event.topic
            return self.line("TOPIC", to_channel(event.room), event.topic, source=mask(event.by))
        if isinstance(event, pa.Notice):
            target = to_channel(event.room) if event.room else self.nick
            return self.line("NOTICE", target, event.text)
        if isinstance(event, p.ServerPing):
            return self.line("PING", f"dc-{event.n}")
        if isinstance(event, p.Closing):
            return self.line("ERROR", "Closing link: the server is shutting down")
        return b""  # errors and oks are answered by the session, which knows the request

    def _welcome(self, event: p.Welcome) -> bytes:
        self.name = event.name
        self.nick = to_nick(event.name)
        self.admin = bool(event.admin)
        prefix = "(o)@"
        out = [
            self.numeric("001", f"Welcome to {self.title}, {self.nick}"),
            self.numeric("002", f"Your host is {SERVER_NAME}, running desktop-chat {__version__}"),
            self.numeric("003", "This server speaks Desktop Chat, IRC and the web on one port"),
            self.numeric("004", SERVER_NAME, __version__, "i", "bkt"),
            self.numeric(
                "005",
                "CASEMAPPING=ascii",
                "CHANTYPES=#",
                f"NICKLEN={MAX_NAME_LENGTH}",
                f"CHANNELLEN={MAX_NAME_LENGTH * 8 + 1}",
                f"PREFIX={prefix}",
                "CHANMODES=b,k,,t",
                f"NETWORK={to_nick(self.title)[:60]}",
                f"LINELEN={MAX_LINE}",
                "are supported by this server",
            ),
            self.numeric("375", f"- {SERVER_NAME} Message of the day -"),
        ]
        out += [self.numeric("372", f"- {text}") for text in self.motd]
        out.append(self.numeric("376", "End of /MOTD command"))
        return b"".join(out)

    def _users(self, event: p.Users) -> bytes:
        key = name_key(event.room)
        self._members[key] = {name_key(n): n for n in event.names}
        if event.topic:
            self._topics[key] = event.topic
        out: list[bytes] = []
        channel = to_channel(event.room)
        if key not in self._channels:  # we just joined it: the client needs our JOIN first
            self._channels[key] = event.room
            out.append(self.line("JOIN", channel, source=mask(self.name)))
            if event.topic:
                out.append(self.numeric("332", channel, event.topic))
        out += self.names_lines(event.room, event.names, event.admins or ())
        return b"".join(out)

    def names_lines(
        self, room: str, names: Iterable[str], admins: Iterable[str] = ()
    ) -> list[bytes]:
        """RPL_NAMREPLY lines (admins marked ``@``, as ISUPPORT's PREFIX says) and the end."""
        channel = to_channel(room)
        ops = {name_key(a) for a in admins}
        nicks = [("@" if name_key(n) in ops else "") + to_nick(n) for n in names]
        out: list[bytes] = []
        budget = MAX_LINE - 100 - len(channel)
        batch: list[str] = []
        for nick in nicks:
            if batch and sum(len(n) + 1 for n in batch) + len(nick) > budget:
                out.append(self.numeric("353", "=", channel, " ".join(batch)))
                batch = []
            batch.append(nick)
        if batch:
            out.append(self.numeric("353", "=", channel, " ".join(batch)))
        out.append(self.numeric("366", channel, "End of /NAMES list"))
        return out

    def _joined(self, event: p.Joined) -> bytes:
        key = name_key(event.room)
        self._members.setdefault(key, {})[name_key(event.name)] = event.name
        return self.line("JOIN", to_channel(event.room), source=mask(event.name))

    def _left(self, event: p.Left) -> bytes:
        key, who = name_key(event.room), name_key(event.name)
        channel = to_channel(event.room)
        if who == name_key(self.name):  # our own part
            self._channels.pop(key, None)
            self._members.pop(key, None)
            return self.line("PART", channel, source=mask(event.name))
        self._members.get(key, {}).pop(who, None)
        if event.reason == "part":
            return self.line("PART", channel, source=mask(event.name))
        if event.reason == "kicked":
            return self.line("KICK", channel, to_nick(event.name), "removed by the host")
        if any(who in members for members in self._members.values()):
            return b""  # still in a channel we share: the QUIT comes with the last one
        reason = _QUIT_REASONS.get(event.reason, event.reason)
        return self.line("QUIT", reason, source=mask(event.name))

    def _typing(self, event: p.TypingNotice) -> bytes:
        if "message-tags" not in self.caps:
            return b""
        target = to_channel(event.room) if event.room else self.nick
        tags = {"+typing": "active"}
        return format_message("TAGMSG", target, source=mask(event.name), tags=tags)

    def _room_list(self, event: p.RoomList) -> bytes:
        out = [self.numeric("321", "Channel", "Users  Name")]
        for room in event.rooms:
            out.append(
                self.numeric("322", to_channel(room.name), str(room.users), room.topic or "")
            )
        out.append(self.numeric("323", "End of /LIST"))
        return b"".join(out)

    def _message(self, msg: p.ChatMessage) -> bytes:
        self.last_id = max(self.last_id, msg.id)
        mine = name_key(msg.from_) == name_key(self.name)
        if mine and "echo-message" not in self.caps:
            return b""  # the client showed it when it was typed
        if msg.room is not None:
            target = to_channel(msg.room)
        elif mine:
            target = to_nick(msg.to or "")
        else:
            target = self.nick
        return self.privmsg(msg, target)

    def privmsg(self, msg: p.ChatMessage, target: str) -> bytes:
        """A chat message as PRIVMSG lines (long text split on word and UTF-8 boundaries)."""
        source = mask(msg.from_)
        tags: dict[str, str] = {}
        if "server-time" in self.caps:
            tags["time"] = iso_time(msg.ts)
        if "message-tags" in self.caps:
            tags["msgid"] = str(msg.id)
        text = msg.text
        command = "PRIVMSG"
        if msg.file is not None:  # a NOTICE: clients never answer one automatically
            command = "NOTICE"
            text = f"* {file_line(msg)}"
        overhead = len(source) + len(target) + 30  # ":", " PRIVMSG ", " :", ACTION, CR LF
        out: list[bytes] = []
        for piece in split_text(text, MAX_LINE - overhead) if text else [""]:
            body = f"\x01ACTION {piece}\x01" if msg.me and command == "PRIVMSG" else piece
            out.append(format_message(command, target, body, source=source, tags=tags))
            tags.pop("msgid", None)  # the id belongs to the first line only
        return b"".join(out)
