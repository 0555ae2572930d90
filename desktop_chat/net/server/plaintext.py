"""Plain-text mode, sans-I/O: what a netcat or telnet user types, and what they see.

Typed lines are parsed by the command grammar the desktop app uses too
(:mod:`desktop_chat.net.protocol.commands`); :func:`render` turns a server event into the text
lines shown to one user. Text from other people is made safe for a terminal: control characters
(ANSI escapes among them) become U+FFFD, so nobody can move another user's cursor, clear their
screen or forge a line.
"""

from __future__ import annotations

import re
import unicodedata

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.commands import MODERATION_USAGE, help_lines
from desktop_chat.net.protocol.names import name_key

PROMPT = "Choose a username: "

HELP = "\n".join(
    [
        "Commands:",
        *(f"  {line}" for line in help_lines()),
        f"For the host and admins: {MODERATION_USAGE}",
        'Quote a name with spaces: /msg "Ann Lee" hi. Start a line with // to say "/...".',
        "Anything else you type is said in the current room.",
    ]
)

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def decode_line(raw: bytes) -> str:
    """Bytes of one line to text: invalid UTF-8 and NUL (which PostgreSQL cannot store)
    become U+FFFD, a trailing CR is dropped."""
    text = raw.decode("utf-8", errors="replace").replace("\0", "\ufffd")
    return text[:-1] if text.endswith("\r") else text


def clean(text: str) -> str:
    """Text made safe to print on someone's terminal."""
    return _CONTROL.sub("\ufffd", unicodedata.normalize("NFC", text))


def _body(text: str) -> str:
    # A multi-line message keeps its lines, indented, so no line can pose as another sender.
    lines = [clean(line) for line in text.split("\n")]
    return "\n    ".join(lines)


def human_size(size: int) -> str:
    """``812 bytes``, ``1.4 KB``, ``3.0 MB``, ``2.0 GB`` (powers of 1024, one decimal)."""
    if size < 1024:
        return f"{size} byte" + ("" if size == 1 else "s")
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def file_line(msg: p.ChatMessage) -> str:
    """``<name> shared <file> (<size>)``, safe for a terminal (the file name is a label)."""
    assert msg.file is not None
    line = f"{clean(msg.from_)} shared {clean(msg.file.name)} ({human_size(msg.file.size)})"
    if msg.file.expired:
        line += " [expired]"
    if msg.text:
        line += f": {_body(msg.text)}"
    return line


def render(event: p.ServerEvent, *, me: str, room: str) -> str:
    """Lines (each ending in a newline) showing ``event`` to user ``me`` whose room is ``room``."""
    if isinstance(event, p.ChatMessage):
        return _render_message(event, me=me, room=room) + "\n"
    if isinstance(event, p.Joined):
        return f"* {clean(event.name)} joined {clean(event.room)}\n"
    if isinstance(event, p.Left):
        return f"* {clean(event.name)} left {clean(event.room)} ({event.reason})\n"
    if isinstance(event, p.Users):
        names = ", ".join(clean(n) for n in event.names)
        count = len(event.names)
        topic = f" Topic: {clean(event.topic)}" if event.topic else ""
        people = "person" if count == 1 else "people"
        return f"* In {clean(event.room)} ({count} {people}): {names}.{topic}\n"
    if isinstance(event, p.RoomList):
        parts = [
            f"{clean(r.name)} ({r.users})" + (f" - {clean(r.topic)}" if r.topic else "")
            for r in event.rooms
        ]
        return "* Rooms: " + ", ".join(parts) + "\n"
    if isinstance(event, p.ErrorReply):
        return f"! {clean(event.message)}\n"
    if isinstance(event, p.Welcome):
        return (
            f"* Welcome to {clean(event.server)}, {clean(event.name)}! Type /help for commands.\n"
        )
    if isinstance(event, p.HistoryReply):
        return "".join(_render_message(m, me=me, room=room) + "\n" for m in event.messages)
    if isinstance(event, pa.TopicChanged):
        if not event.topic:
            return f"* {clean(event.by)} cleared the topic of {clean(event.room)}\n"
        return f"* {clean(event.by)} set the topic of {clean(event.room)}: {clean(event.topic)}\n"
    if isinstance(event, pa.Notice):
        return f"* {clean(event.text)}\n"
    if isinstance(event, pa.Ok):
        return "* Done.\n"
    if isinstance(event, p.Closing):
        return "* The server is shutting down. Bye!\n"
    return ""  # typing notices, pings: nothing to show in a terminal


def _render_message(msg: p.ChatMessage, *, me: str, room: str) -> str:
    sender = clean(msg.from_)
    if msg.to is not None:
        if name_key(msg.from_) == name_key(me) and name_key(msg.to) != name_key(me):
            prefix = f"[dm to {clean(msg.to)}] "
        else:
            prefix = "[dm] "
    elif msg.room is not None and name_key(msg.room) != name_key(room):
        prefix = f"[{clean(msg.room)}] "
    else:
        prefix = ""
    if msg.file is not None:
        return f"{prefix}* {file_line(msg)}"
    if msg.me:
        return f"{prefix}* {sender} {_body(msg.text)}"
    return f"{prefix}{sender}: {_body(msg.text)}"
