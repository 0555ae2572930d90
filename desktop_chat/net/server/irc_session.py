"""IRC on the shared port: irssi, WeeChat, HexChat and IRC bots are chat users like any other.

Lines come in through :mod:`~desktop_chat.net.protocol.irc` (parsing) and become hub requests;
hub events go out through :class:`~desktop_chat.net.server.irc_view.IrcView`. Rooms are
channels (``general`` is ``#general``), a private message to a nick is a DM, and the hub's
rooms, storage, flood control, bans, look-alike rules and keepalive apply unchanged.

Registration: ``CAP LS 302`` / ``REQ`` / ``END`` (server-time, message-tags, echo-message,
sasl), ``PASS`` (the server's or the account's password), ``NICK``, ``USER`` and SASL
``PLAIN`` for registered names.

Missed messages: an IRC client has no session token to resume with, so for a registered account
(SASL or PASS) the server keeps the account's last IRC session and how far its client is known to
have read: the id shown before the last ``PING :ack-N`` that the client answered (a ``PING :ack-N``
follows the first message shown after the last answer). A client that comes back after a drop
resumes that session: the hub replays every stored message after that id, in order, before any live
one. Only what was shown in the last moment before a drop can come twice, with the same ``msgid``
tag; nothing is lost. ``QUIT`` ends the session, as in every client.

Requests carry a ``ref`` of their own so that the hub's
``error`` answers become the numerics IRC clients expect (401, 403, 404, 442, 475, 482 …).
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import threading
from collections.abc import Callable
from typing import Final

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.framing import TOO_LONG, LineBuffer
from desktop_chat.net.protocol.irc import (
    MAX_INCOMING,
    IrcMessage,
    IrcSyntaxError,
    from_escaped,
    is_channel,
    parse,
    targets,
    to_channel,
    to_nick,
)
from desktop_chat.net.protocol.names import InvalidName, name_key, normalize_name
from desktop_chat.net.server.context import ServerContext
from desktop_chat.net.server.fanout import Outgoing
from desktop_chat.net.server.guard import LoginRefused
from desktop_chat.net.server.irc_view import CAPABILITIES, SERVER_NAME, IrcView
from desktop_chat.net.server.session import Session
from desktop_chat.net.server.storage_api import StorageError
from desktop_chat.net.server.transport import Transport

_REGISTRATION_COMMANDS = frozenset({"CAP", "PASS", "NICK", "USER", "AUTHENTICATE", "PING", "QUIT"})
_PENDING_REFS: Final = 256  # requests whose answer we still expect (errors map to numerics)
_RESUME_KEY = "irc-resume:"  # + account key, in storage's meta table: {"session", "since"}

# (hub error code, IRC command) -> numeric; the default per code below.
_ERROR_NUMERICS: Final[dict[tuple[str, str], str]] = {
    (p.NOT_IN_ROOM, "PRIVMSG"): "404",
    (p.NOT_IN_ROOM, "PART"): "442",
    (p.NOT_IN_ROOM, "TOPIC"): "442",
    (p.AUTH_FAILED, "JOIN"): "475",
    (p.NAME_INVALID, "JOIN"): "479",
}
_CODE_NUMERICS: Final[dict[str, str]] = {
    p.NO_SUCH_USER: "401",
    p.NOT_IN_ROOM: "442",
    p.NAME_INVALID: "432",
    pa.FORBIDDEN: "482",
}


class IrcSession(Session):
    """One IRC client."""

    def __init__(self, transport: Transport, ctx: ServerContext) -> None:
        super().__init__(transport, ctx)
        self.lines = LineBuffer(MAX_INCOMING)
        self.view = IrcView(self.hub.title, self._motd())
        self._nick: str | None = None
        self._user_given = False
        self._password: str | None = None
        self._cap_negotiating = False
        self._sasl: tuple[str, str] | None = None  # (account, password) once SASL succeeded
        self._sasl_started = False
        self._next_ref = 0
        self._pending: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()
        self._account: str | None = None  # the registered account logged in, if any
        self._acked = 0  # the newest message id the client is known to have read
        self._ack_lock = threading.Lock()  # encode() runs in other threads, _pong() in ours
        self._ack_asked: int | None = None  # the id a PING :ack-N asks about, unanswered

    def _motd(self) -> list[str]:
        lines = [f"Welcome to {self.hub.title}."]
        listed = ", ".join(self.ctx.join_addresses())
        if listed:
            lines.append(f"Others join at {listed} (app, browser, IRC or nc).")
        lines.append("Rooms are channels: /join #name. /msg <nick> for a private message.")
        return lines

    # -- Member interface -------------------------------------------------------------------

    def encode(self, out: Outgoing) -> bytes | None:
        event = out.event
        if isinstance(event, p.ErrorReply):
            return self._error_lines(event)
        if isinstance(event, p.ChatMessage) and event.ref is not None:
            self._pending.pop(str(event.ref), None)
        data = self.view.render(event)  # type: ignore[arg-type]
        if self._account is not None and isinstance(event, p.ChatMessage):
            with self._ack_lock:
                if self._ack_asked is None:  # ask the client to confirm it read up to here
                    self._ack_asked = event.id
                    data += self.view.line("PING", f"ack-{event.id}")
        return data or None

    # -- input ------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        for raw in self.lines.feed(data):
            if raw is TOO_LONG:
                self.write(self.view.numeric("417", "Input line was too long"))
                continue
            assert isinstance(raw, bytes)
            for line in raw.split(b"\r"):  # a lone CR ends a line too
                if line and b"\0" not in line:  # NUL is never valid in IRC: dropped
                    self.handle_line(line.decode("utf-8", errors="replace"))

    def write(self, data: bytes) -> None:
        self.transport.send(data)

    def handle_line(self, line: str) -> None:
        if self.cut_off:
            return
        try:
            self._handle_line(line)
        except StorageError as exc:
            self.database_failed(exc)

    def _handle_line(self, line: str) -> None:
        try:
            msg = parse(line)
        except IrcSyntaxError:
            return  # not a message at all: nothing sensible to answer
        if not self.logged_in and msg.command not in _REGISTRATION_COMMANDS:
            self.write(self.view.numeric("451", "You have not registered"))
            return
        handler = _COMMANDS.get(msg.command)
        if handler is None:
            self.write(self.view.numeric("421", msg.command, "Unknown command"))
            return
        if len(msg.params) < handler.min_params:
            self.write(self.view.numeric("461", msg.command, "Not enough parameters"))
            return
        if handler.metered and not self.bucket.take():
            self.write(self.view.line("NOTICE", self.view.nick, "Slow down: too many messages"))
            return
        handler.run(self, msg)

    def _ref(self, command: str, target: str) -> str:
        self._next_ref += 1
        ref = f"irc{self._next_ref}"
        self._pending[ref] = (command, target)
        while len(self._pending) > _PENDING_REFS:
            self._pending.popitem(last=False)
        return ref

    def _error_lines(self, error: p.ErrorReply) -> bytes:
        command, target = self._pending.pop(str(error.ref), ("", ""))
        if command == "NOTICE":
            return b""  # RFC 2812: a NOTICE is never answered with an error
        code = _ERROR_NUMERICS.get((error.code, command)) or _CODE_NUMERICS.get(error.code)
        if code is None or not target:
            return self.view.line("NOTICE", self.view.nick, error.message)
        return self.view.numeric(code, target, error.message)

    # -- registration -----------------------------------------------------------------------

    def _cap(self, msg: IrcMessage) -> None:
        sub = msg.param(0).upper()
        nick = self.view.nick
        if sub == "LS":
            self._cap_negotiating = not self.logged_in
            values = msg.param(1) >= "302"  # capability values only for CAP LS 302 and later
            listed = " ".join("sasl=PLAIN" if c == "sasl" and values else c for c in CAPABILITIES)
            self.write(self.view.line("CAP", nick, "LS", listed))
        elif sub == "LIST":
            self.write(self.view.line("CAP", nick, "LIST", " ".join(sorted(self.view.caps))))
        elif sub == "REQ":
            self._cap_negotiating = not self.logged_in
            wanted = msg.param(1).split()
            names = [w.lstrip("-") for w in wanted]
            if all(n in CAPABILITIES for n in names):
                for w in wanted:
                    if w.startswith("-"):
                        self.view.caps.discard(w[1:])
                    else:
                        self.view.caps.add(w)
                self.write(self.view.line("CAP", nick, "ACK", msg.param(1)))
            else:
                self.write(self.view.line("CAP", nick, "NAK", msg.param(1)))
        elif sub == "END":
            self._cap_negotiating = False
            self._try_register()
        else:
            self.write(self.view.numeric("410", sub, "Invalid CAP command"))

    def _pass(self, msg: IrcMessage) -> None:
        if self.logged_in:
            self.write(self.view.numeric("462", "You may not reregister"))
            return
        self._password = msg.param(0)

    def _nick_cmd(self, msg: IrcMessage) -> None:
        wanted = msg.param(0)
        try:
            name = normalize_name(from_escaped(wanted))
        except InvalidName:
            self.write(self.view.numeric("432", wanted or "*", "Erroneous nickname"))
            return
        if wanted.startswith(("#", ":")) or any(c in wanted for c in " ,*?!@"):
            self.write(self.view.numeric("432", wanted, "Erroneous nickname"))
            return
        if self.logged_in:
            if name_key(name) != self.key:
                self.write(self.view.numeric("447", "Names cannot change while connected"))
            return
        self._nick = name
        self._try_register()

    def _user(self, msg: IrcMessage) -> None:
        if self.logged_in:
            self.write(self.view.numeric("462", "You may not reregister"))
            return
        self._user_given = True
        self._try_register()

    def _authenticate(self, msg: IrcMessage) -> None:
        if self.logged_in or "sasl" not in self.view.caps:
            self.write(self.view.numeric("904", "SASL authentication failed"))
            return
        arg = msg.param(0)
        if not self._sasl_started:
            if arg.upper() != "PLAIN":
                self.write(self.view.numeric("908", "PLAIN", "are available SASL mechanisms"))
                self.write(self.view.numeric("904", "SASL authentication failed"))
                return
            self._sasl_started = True
            self.write(self.view.line("AUTHENTICATE", "+"))
            return
        self._sasl_started = False
        if arg == "*":
            self.write(self.view.numeric("906", "SASL authentication aborted"))
            return
        try:
            _authzid, account, password = base64.b64decode(arg, validate=True).decode().split("\0")
            name = normalize_name(account)
            self.ctx.authenticate(self, p.Hello(name=name, password=password))
        except (binascii.Error, UnicodeDecodeError, ValueError, LoginRefused):
            self.write(self.view.numeric("904", "SASL authentication failed"))
            return
        self._sasl = (name, password)
        self._nick = name
        who = f"{to_nick(name)}!u@{SERVER_NAME}"
        self.write(self.view.numeric("900", who, to_nick(name), f"You are now logged in as {name}"))
        self.write(self.view.numeric("903", "SASL authentication successful"))

    def _try_register(self) -> None:
        if self.logged_in or self._cap_negotiating or self._nick is None or not self._user_given:
            return
        name, password = self._sasl or (self._nick, self._password)
        registered = self.ctx.is_registered(name)
        if password is None and registered:
            wanted = to_nick(name)
            why = "is registered: log in with SASL (or PASS), or choose another nick"
            self.write(self.view.numeric("433", wanted, f"{wanted} {why}"))
            self._nick = None
            return
        resume = self._saved_resume(name) if registered and password is not None else None
        if registered:
            self._account = name_key(name)  # before login: the replay asks for acks too
            self._acked = resume.since if resume else 0
        try:
            self.login(p.Hello(name=name, password=password, client="irc", resume=resume))
        except LoginRefused as exc:
            self._account = None
            self._refused(exc)

    def _saved_resume(self, name: str) -> p.Resume | None:
        """The account's last IRC session and how far its client read, if kept."""
        raw = self.hub.storage.get_meta(_RESUME_KEY + name_key(name))
        if not raw:
            return None
        try:
            saved = json.loads(raw)
            return p.Resume(session=str(saved["session"]), since=int(saved["since"]))
        except (ValueError, KeyError, TypeError):
            return None

    def _pong(self, msg: IrcMessage) -> None:
        token = msg.params[-1] if msg.params else ""
        if not token.startswith("ack-"):
            return
        with self._ack_lock:
            if self._ack_asked is not None and token == f"ack-{self._ack_asked}":
                self._acked = max(self._acked, self._ack_asked)
                self._ack_asked = None

    def finish(self) -> None:
        reason = self.transport.close_reason
        ended = reason == "quit" or self.end_session
        super().finish()
        if self._account is None or reason == "replaced":
            return  # the connection that replaced this one keeps the account's place
        key = _RESUME_KEY + self._account
        if ended:
            self.hub.storage.set_meta(key, None)
        else:
            saved = {"session": self.session, "since": self._acked}
            self.hub.storage.set_meta(key, json.dumps(saved))

    def _refused(self, exc: LoginRefused) -> None:
        wanted = to_nick(self._nick or "*")
        if exc.code == p.NAME_TAKEN:
            self.write(self.view.numeric("433", wanted, exc.message))
            self._nick = None
            return
        if exc.code == p.NAME_INVALID:
            self.write(self.view.numeric("432", wanted, exc.message))
            self._nick = None
            return
        numeric = {p.AUTH_FAILED: "464", p.BANNED: "465"}.get(exc.code)
        if numeric is not None:
            self.write(self.view.numeric(numeric, exc.message))
        self.write(self.view.line("ERROR", f"Closing link: {exc.message}"))
        self.close("refused")

    # -- chat -------------------------------------------------------------------------------

    def _join(self, msg: IrcMessage) -> None:
        if msg.param(0) == "0":
            for room in self.view.channels():
                self.hub.part(self, room)
            return
        keys = msg.param(1).split(",") if len(msg.params) > 1 else []
        for i, channel in enumerate(targets(msg.param(0))):
            if not is_channel(channel):
                self.write(self.view.numeric("403", channel, "No such channel"))
                continue
            room = from_escaped(channel[1:])
            key = keys[i] if i < len(keys) and keys[i] else None
            self.hub.join(self, p.Join(room=room, password=key, ref=self._ref("JOIN", channel)))

    def _part(self, msg: IrcMessage) -> None:
        for channel in targets(msg.param(0)):
            room = from_escaped(channel.removeprefix("#"))
            if self.view.in_channel(name_key(room)) is None:
                self.write(self.view.numeric("442", channel, "You're not on that channel"))
                continue
            self.hub.part(self, room, self._ref("PART", channel))

    def _privmsg(self, msg: IrcMessage) -> None:
        text = msg.param(1)
        notice = msg.command == "NOTICE"
        if not text:
            if not notice:
                self.write(self.view.numeric("412", "No text to send"))
            return
        me = False
        if text.startswith("\x01"):
            body = text.strip("\x01")
            if not body.upper().startswith("ACTION"):
                return  # other CTCP (VERSION, PING…): nothing a chat user would see
            text, me = body[6:].lstrip(" ") or " ", True
        for target in targets(msg.param(0)):
            ref = self._ref(msg.command, target)
            if is_channel(target):
                self.hub.say(self, from_escaped(target[1:]), text, ref, me=me)
            else:
                self.hub.dm(self, from_escaped(target), text, ref, me=me)

    def _names(self, msg: IrcMessage) -> None:
        for channel in targets(msg.param(0)) or [to_channel(r) for r in self.view.channels()]:
            room = from_escaped(channel.removeprefix("#"))
            users = self.hub.room_users(name_key(room)) if name_key(room) in self.rooms else None
            names, admins = (users.names, users.admins or ()) if users else ((), ())
            self.write(b"".join(self.view.names_lines(room, names, admins)))

    def _who(self, msg: IrcMessage) -> None:
        target = msg.param(0)
        if is_channel(target):
            room = from_escaped(target[1:])
            names = self.hub.room_names(name_key(room)) if name_key(room) in self.rooms else []
        else:
            wanted = name_key(from_escaped(target))
            names = [n for n in self.hub.online_names() if name_key(n) == wanted]
        for name in names:
            nick = to_nick(name)
            self.write(
                self.view.numeric(
                    "352", target, "u", SERVER_NAME, SERVER_NAME, nick, "H", f"0 {name}"
                )
            )
        self.write(self.view.numeric("315", target, "End of /WHO list"))

    def _whois(self, msg: IrcMessage) -> None:
        nick = msg.params[-1]
        wanted = name_key(from_escaped(nick))
        found = [n for n in self.hub.online_names() if name_key(n) == wanted]
        if not found:
            self.write(self.view.numeric("401", nick, "No such nick"))
        else:
            name = found[0]
            self.write(self.view.numeric("311", to_nick(name), "u", SERVER_NAME, "*", name))
            self.write(self.view.numeric("312", to_nick(name), SERVER_NAME, self.hub.title))
        self.write(self.view.numeric("318", nick, "End of /WHOIS list"))

    def _topic(self, msg: IrcMessage) -> None:
        channel = msg.param(0)
        room = from_escaped(channel.removeprefix("#"))
        if len(msg.params) == 1:
            topic = self.view.topic(name_key(room))
            if topic:
                self.write(self.view.numeric("332", channel, topic))
            else:
                self.write(self.view.numeric("331", channel, "No topic is set"))
            return
        req = pa.SetTopic(room=room, topic=msg.param(1), ref=self._ref("TOPIC", channel))
        self.hub.set_topic(self, req)

    def _kick(self, msg: IrcMessage) -> None:
        nick = msg.param(1)
        reason = msg.param(2) or None
        self.hub.kick(
            self, pa.Kick(name=from_escaped(nick), reason=reason, ref=self._ref("KICK", nick))
        )

    def _mode(self, msg: IrcMessage) -> None:
        target = msg.param(0)
        if not is_channel(target):
            self.write(self.view.numeric("221", "+i"))
            return
        change = msg.param(1)
        if not change:
            self.write(self.view.numeric("324", target, "+nt"))
        elif change in ("b", "+b") and len(msg.params) == 2:
            self.write(self.view.numeric("368", target, "End of channel ban list"))
        elif change == "+b":
            who = msg.param(2).split("!", 1)[0]
            self.hub.ban(self, pa.Ban(name=from_escaped(who), ref=self._ref("MODE", target)))
        else:
            self.write(self.view.numeric("482", target, "Only +b (ban) can be set here"))

    def _away(self, msg: IrcMessage) -> None:
        if msg.param(0):
            self.write(self.view.numeric("306", "You have been marked as being away"))
        else:
            self.write(self.view.numeric("305", "You are no longer marked as being away"))

    def _ping(self, msg: IrcMessage) -> None:
        self.write(self.view.line("PONG", SERVER_NAME, msg.param(0)))

    def _list(self, msg: IrcMessage) -> None:
        self.hub.list_rooms(self, self._ref("LIST", ""))

    def _quit_cmd(self, msg: IrcMessage) -> None:
        self.write(self.view.line("ERROR", "Closing link: bye"))
        if self.logged_in:
            self.quit()
        self.close("quit")


class _Command:
    __slots__ = ("metered", "min_params", "run")

    def __init__(
        self,
        run: Callable[[IrcSession, IrcMessage], None],
        min_params: int = 0,
        *,
        metered: bool = False,
    ) -> None:
        self.run = run
        self.min_params = min_params
        self.metered = metered  # costs a token of flood control


def _nothing(session: IrcSession, msg: IrcMessage) -> None:
    return None


# Every IRC command this server understands. A new command adds a row.
_COMMANDS: Final[dict[str, _Command]] = {
    "CAP": _Command(IrcSession._cap, 1),
    "PASS": _Command(IrcSession._pass, 1),
    "NICK": _Command(IrcSession._nick_cmd, 1),
    "USER": _Command(IrcSession._user, 4),
    "AUTHENTICATE": _Command(IrcSession._authenticate, 1),
    "PING": _Command(IrcSession._ping, 1),
    "PONG": _Command(IrcSession._pong),  # any input is a sign of life; ack-N confirms reading
    "QUIT": _Command(IrcSession._quit_cmd),
    "JOIN": _Command(IrcSession._join, 1, metered=True),
    "PART": _Command(IrcSession._part, 1, metered=True),
    "PRIVMSG": _Command(IrcSession._privmsg, 2, metered=True),
    "NOTICE": _Command(IrcSession._privmsg, 2, metered=True),
    "NAMES": _Command(IrcSession._names),
    "WHO": _Command(IrcSession._who, 1),
    "WHOIS": _Command(IrcSession._whois, 1),
    "TOPIC": _Command(IrcSession._topic, 1, metered=True),
    "KICK": _Command(IrcSession._kick, 2, metered=True),
    "MODE": _Command(IrcSession._mode, 1),
    "AWAY": _Command(IrcSession._away),
    "LIST": _Command(IrcSession._list, metered=True),
    "TAGMSG": _Command(_nothing),  # client-only tags (typing) are not relayed yet
}
