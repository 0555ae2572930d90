"""The slash-command grammar, sans-I/O: one parser for the desktop app and plain-text mode.

A typed line becomes one typed command object (frozen dataclasses, each with a ``kind``
literal); the app (``ui/command_runner.py``) and the plain-text session
(``net/server/plaintext.py``) carry them out, so both accept exactly the same commands.

The grammar::

    line     := "//" text          -> Say("/" text)        (a line that starts with /)
              | "/" word [args]    -> the command word names (case-insensitive, aliases below)
              | text               -> Say(text)
    name     := word | '"' chars '"'  (inside quotes, \\" is a quote and \\\\ a backslash)

    /help · /who · /rooms
    /join <room> [password]    /joinpw <password> <room>    /part [room]
    /msg <name> [text]         /me <action>                 /quit [reason]
    /kick <name> [reason]      /ban <name>                  /topic [text]

Names of people and rooms may contain spaces: quote them (``/msg "Ann Lee" hi``);
:func:`quote_name` writes a name so that it parses back. A blank line parses to None; a line
that cannot be parsed becomes :class:`CommandError` with a message for the user, never an
exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, Literal

CommandKind = Literal[
    "say",
    "help",
    "who",
    "rooms",
    "join",
    "part",
    "msg",
    "me",
    "quit",
    "kick",
    "ban",
    "topic",
    "error",
]


@dataclass(frozen=True, slots=True)
class Say:
    """Text for the current conversation."""

    text: str
    kind: ClassVar[Literal["say"]] = "say"


@dataclass(frozen=True, slots=True)
class Help:
    kind: ClassVar[Literal["help"]] = "help"


@dataclass(frozen=True, slots=True)
class Who:
    """Who is in the current room."""

    kind: ClassVar[Literal["who"]] = "who"


@dataclass(frozen=True, slots=True)
class Rooms:
    kind: ClassVar[Literal["rooms"]] = "rooms"


@dataclass(frozen=True, slots=True)
class Join:
    room: str
    password: str | None = None
    kind: ClassVar[Literal["join"]] = "join"


@dataclass(frozen=True, slots=True)
class Part:
    """Leave ``room``, or the current room when None."""

    room: str | None = None
    kind: ClassVar[Literal["part"]] = "part"


@dataclass(frozen=True, slots=True)
class Msg:
    """A private message; ``text`` may be empty (the app then just opens the conversation)."""

    to: str
    text: str = ""
    kind: ClassVar[Literal["msg"]] = "msg"


@dataclass(frozen=True, slots=True)
class Me:
    text: str
    kind: ClassVar[Literal["me"]] = "me"


@dataclass(frozen=True, slots=True)
class Quit:
    reason: str | None = None
    kind: ClassVar[Literal["quit"]] = "quit"


@dataclass(frozen=True, slots=True)
class Kick:
    name: str
    reason: str | None = None
    kind: ClassVar[Literal["kick"]] = "kick"


@dataclass(frozen=True, slots=True)
class Ban:
    name: str
    kind: ClassVar[Literal["ban"]] = "ban"


@dataclass(frozen=True, slots=True)
class Topic:
    """Set the current room's topic; empty text clears it."""

    text: str
    kind: ClassVar[Literal["topic"]] = "topic"


@dataclass(frozen=True, slots=True)
class CommandError:
    """The line was not a valid command: ``message`` says why, for the user."""

    message: str
    kind: ClassVar[Literal["error"]] = "error"


Command = (
    Say | Help | Who | Rooms | Join | Part | Msg | Me | Quit | Kick | Ban | Topic | CommandError
)

# Command words and their aliases (IRC habits), casefolded.
_WORDS: Final[dict[str, str]] = {
    "help": "help",
    "who": "who",
    "names": "who",
    "rooms": "rooms",
    "list": "rooms",
    "join": "join",
    "j": "join",
    "joinpw": "joinpw",
    "part": "part",
    "leave": "part",
    "msg": "msg",
    "dm": "msg",
    "query": "msg",
    "me": "me",
    "quit": "quit",
    "exit": "quit",
    "kick": "kick",
    "ban": "ban",
    "topic": "topic",
}

# (syntax, what it does): the help both sides show, in this order.
USAGE: Final[tuple[tuple[str, str], ...]] = (
    ("/help", "this help"),
    ("/who", "who is in the current room"),
    ("/rooms", "list the rooms"),
    ("/join <room> [password]", "join (or create) a room and talk there"),
    ("/part [room]", "leave a room (the current one by default)"),
    ("/msg <name> <text>", "a private message"),
    ("/me <action>", "say what you are doing"),
    ("/quit [reason]", "leave the chat"),
)
MODERATION_USAGE: Final = "/kick <name> [reason], /ban <name>, /topic <text>"

_SEPARATORS: Final = " \t\n"


def parse(line: str) -> Command | None:
    """The command ``line`` asks for; None for a blank line. Never raises."""
    if not line.strip():
        return None
    if line.startswith("//"):
        return Say(line[1:])
    if not line.startswith("/"):
        return Say(line)
    body = line[1:]
    cut = next((i for i, ch in enumerate(body) if ch.isspace()), len(body))
    typed, rest = body[:cut], body[cut + 1 :]
    word = _WORDS.get(typed.casefold())
    if word is None:
        return CommandError(f"Unknown command /{typed}. Type /help for the list.")
    arg = rest.strip()
    if word == "help":
        return Help()
    if word == "who":
        return Who()
    if word == "rooms":
        return Rooms()
    if word == "quit":
        return Quit(arg or None)
    if word == "topic":
        return Topic(arg)
    if word == "me":
        return Me(arg) if arg else CommandError("Usage: /me <action>")
    if word == "part":
        return Part(_whole_name(arg) or None)
    if word == "ban":
        return Ban(_whole_name(arg)) if arg else CommandError("Usage: /ban <name>")
    if word == "joinpw":
        password, _, room_part = arg.partition(" ")
        room = _whole_name(room_part.strip())
        if not room:
            return CommandError("Usage: /joinpw <password> <room>")
        return Join(room, password)
    name, after = _name(rest)
    if not name:
        usage = {
            "join": "/join <room> [password]",
            "msg": "/msg <name> <text>",
            "kick": "/kick <name> [reason]",
        }[word]
        return CommandError(f"Usage: {usage}")
    if word == "join":
        return Join(name, after.strip() or None)
    if word == "msg":
        return Msg(name, after)
    return Kick(name, after.strip() or None)


def _name(text: str) -> tuple[str, str]:
    """A leading name (one word, or quoted) and what follows it, separators dropped."""
    text = text.lstrip(_SEPARATORS)
    if text.startswith('"'):
        chars: list[str] = []
        i = 1
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
                chars.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                return "".join(chars), text[i + 1 :].lstrip(_SEPARATORS)
            chars.append(ch)
            i += 1
        # No closing quote: the quote is part of a plain word, as if nothing was quoted.
    end = next((i for i, ch in enumerate(text) if ch in _SEPARATORS), len(text))
    return text[:end], text[end:].lstrip(_SEPARATORS)


def _whole_name(arg: str) -> str:
    """A command's only argument as a name: all of it, or the quoted name if that is all."""
    name, after = _name(arg)
    return name if arg.startswith('"') and not after else arg


def quote_name(name: str) -> str:
    """``name`` as typed in a command: quoted when it has spaces (or quotes) in it."""
    if name and not name.startswith('"') and not any(ch in _SEPARATORS for ch in name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def help_lines() -> list[str]:
    """The help, one ``syntax  description`` line per command."""
    width = max(len(syntax) for syntax, _ in USAGE) + 2
    return [f"{syntax:<{width}}{what}" for syntax, what in USAGE]
