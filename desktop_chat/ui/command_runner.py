"""What a line typed in the composer does: a message, or one of the slash commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from desktop_chat.ui.commands import (
    Action,
    CommandError,
    DirectMessage,
    JoinRoom,
    ListPeople,
    ListRooms,
    PartRoom,
    QuitChat,
    SendText,
    ShowHelp,
    parse_command,
)
from desktop_chat.ui.conversations import room_key

if TYPE_CHECKING:
    from desktop_chat.ui.main_window import MainWindow


def run_command(window: MainWindow, text: str) -> None:
    """Send ``text`` to the shown conversation, or carry out the command it is."""
    session = window.session
    key = window.current_key
    cmd = parse_command(text)
    if isinstance(cmd, SendText):
        if key:
            session.send(key, cmd.text)
    elif isinstance(cmd, Action):
        if key:
            session.send_action(key, cmd.action)
    elif isinstance(cmd, JoinRoom):
        session.join(cmd.room)
    elif isinstance(cmd, PartRoom):
        target = session.find(room_key(cmd.room)) if cmd.room else None
        session.part(target.key if target is not None else key)
    elif isinstance(cmd, DirectMessage):
        if session.is_me(cmd.to):
            session.add_notice(key, "You cannot send a private message to yourself.")
            return
        window.show_conversation(session.send_dm(cmd.to, cmd.text))
    elif isinstance(cmd, QuitChat):
        window.client.quit(cmd.reason)
        window.close()
    elif isinstance(cmd, ShowHelp):
        window.show_help()
    elif isinstance(cmd, ListPeople):
        conv = window.current()
        if conv is not None:
            people = ", ".join(conv.members) if conv.members else "nobody else"
            session.add_notice(key, f"Here: {people}")
    elif isinstance(cmd, ListRooms):
        window.open_join_dialog()
    elif isinstance(cmd, CommandError):
        session.add_notice(key, cmd.message, error=True)
