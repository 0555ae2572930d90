"""Slash commands typed in the message input, parsed without Qt.

The commands match the plain-text (netcat) mode: ``/join room``, ``/msg name text``,
``/quit``, ``/who``, ``/rooms``, ``/help``; plus ``/me action`` and ``/part [room]``.
A name with spaces can be quoted: ``/msg "Ann Lee" hi``. ``//text`` sends ``/text``.
"""

from __future__ import annotations

from dataclasses import dataclass

HELP_TEXT = (
    "Commands: /join <room> · /part [room] · /msg <name> <text> · /me <action> · "
    "/who · /rooms · /quit [reason] · //text sends a line starting with /"
)


@dataclass(frozen=True, slots=True)
class SendText:
    text: str


@dataclass(frozen=True, slots=True)
class JoinRoom:
    room: str


@dataclass(frozen=True, slots=True)
class PartRoom:
    room: str | None


@dataclass(frozen=True, slots=True)
class DirectMessage:
    to: str
    text: str


@dataclass(frozen=True, slots=True)
class Action:
    action: str


@dataclass(frozen=True, slots=True)
class QuitChat:
    reason: str | None


@dataclass(frozen=True, slots=True)
class ShowHelp:
    pass


@dataclass(frozen=True, slots=True)
class ListPeople:
    pass


@dataclass(frozen=True, slots=True)
class ListRooms:
    pass


@dataclass(frozen=True, slots=True)
class CommandError:
    message: str


Command = (
    SendText
    | JoinRoom
    | PartRoom
    | DirectMessage
    | Action
    | QuitChat
    | ShowHelp
    | ListPeople
    | ListRooms
    | CommandError
)


def _split_name(rest: str) -> tuple[str, str]:
    """Split ``name text`` or ``"quoted name" text``."""
    rest = rest.lstrip()
    if rest.startswith('"'):
        end = rest.find('"', 1)
        if end > 1:
            return rest[1:end], rest[end + 1 :].lstrip()
    name, _, text = rest.partition(" ")
    return name, text.lstrip()


def parse_command(line: str) -> Command:
    """What the user meant by ``line`` (already known to be non-empty)."""
    if not line.startswith("/"):
        return SendText(line)
    if line.startswith("//"):
        return SendText(line[1:])
    head, _, rest = line.partition(" ")
    if "\n" in head:
        head, _, more = head.partition("\n")
        rest = more + (" " + rest if rest else "")
    word = head[1:].casefold()
    arg = rest.strip()
    if word in ("join", "j"):
        if not arg:
            return CommandError("Usage: /join <room>")
        return JoinRoom(arg.strip('"'))
    if word in ("part", "leave"):
        return PartRoom(arg.strip('"') or None)
    if word in ("msg", "dm", "query"):
        name, text = _split_name(rest)
        if not name:
            return CommandError("Usage: /msg <name> <text>")
        return DirectMessage(name, text)
    if word == "me":
        if not arg:
            return CommandError("Usage: /me <action>")
        return Action(arg)
    if word in ("quit", "exit"):
        return QuitChat(arg or None)
    if word == "help":
        return ShowHelp()
    if word in ("who", "names"):
        return ListPeople()
    if word in ("rooms", "list"):
        return ListRooms()
    return CommandError(f"Unknown command /{head[1:]}. Type /help for the list.")
