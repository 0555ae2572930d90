"""What a line typed in the composer does: a message, or one of the slash commands.

The grammar is shared with plain-text mode (:mod:`desktop_chat.net.protocol.commands`); this
module only carries the parsed command out in the window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import commands
from desktop_chat.ui.conversations import room_key

if TYPE_CHECKING:
    from desktop_chat.ui.main_window import MainWindow

HELP_TEXT = (
    "Commands: "
    + " · ".join(syntax for syntax, _what in commands.USAGE)
    + " · //text sends a line starting with / · host and admins: "
    + commands.MODERATION_USAGE
)


def run_command(window: MainWindow, text: str) -> None:
    """Send ``text`` to the shown conversation, or carry out the command it is."""
    session = window.session
    key = window.current_key
    match commands.parse(text):
        case None:
            return
        case commands.Say(text=said):
            if key:
                session.send(key, said)
        case commands.Me(text=action):
            if key:
                session.send_action(key, action)
        case commands.Join(room=room, password=password):
            session.join(room, password)
        case commands.Part(room=room):
            target = session.find(room_key(room)) if room else None
            session.part(target.key if target is not None else key)
        case commands.Msg(to=to, text=said):
            if session.is_me(to):
                session.add_notice(key, "You cannot send a private message to yourself.")
                return
            window.show_conversation(session.send_dm(to, said))
        case commands.Quit(reason=reason):
            window.leave_chat(reason)
        case commands.Help():
            window.show_help()
        case commands.Who():
            conv = window.current()
            if conv is not None:
                people = ", ".join(conv.members) if conv.members else "nobody else"
                session.add_notice(key, f"Here: {people}")
        case commands.Rooms():
            window.open_join_dialog()
        case commands.Kick(name=name, reason=reason):
            # The server decides who may moderate; a refusal comes back as an error notice.
            window.client.send_request(pa.Kick(name=name, reason=reason))
        case commands.Ban(name=name):
            window.client.send_request(pa.Ban(name=name))
        case commands.Topic(text=topic):
            conv = window.current()
            if conv is None or conv.kind != "room":
                session.add_notice(key, "/topic sets the topic of a room: open one first.")
            else:
                window.client.send_request(pa.SetTopic(room=conv.name, topic=topic))
        case commands.CommandError(message=message):
            session.add_notice(key, message, error=True)
