"""Who is in each room, as the session shows it, without reconnect noise.

A ``left`` for a dropped connection (``disconnected``, ``timeout``) greys the person at once
but writes no line; only if they are still gone after :attr:`Presence.grace_s` (about a
minute) does "Bob lost the connection" appear, and a return within it (``joined``, or a
``users`` list naming them) shows nothing. ``part``, ``quit``, ``kicked`` and ``slow`` are lines
at once. The people still greyed are in ``Conversation.away``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer

from desktop_chat.net.protocol.names import name_key
from desktop_chat.ui.conversations import Conversation

if TYPE_CHECKING:
    from desktop_chat.ui.session import ChatSession

# How long a dropped person stays listed (greyed) before "lost the connection" is written.
RECONNECT_GRACE_S = 60.0
DROPPED = ("disconnected", "timeout")

LEFT_WORDS = {
    "part": "left",
    "quit": "left the chat",
    "disconnected": "lost the connection",
    "timeout": "timed out",
    "kicked": "was removed",
    "slow": "was disconnected (not keeping up)",
}


class Presence(QObject):
    """Members of the session's rooms and the grace period of those who dropped.

    Signals: none (the session announces the changes).
    """

    def __init__(self, session: ChatSession) -> None:
        super().__init__(session)
        self.session = session
        self.grace_s = RECONNECT_GRACE_S
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.expire)

    def listed(self, conv: Conversation, names: tuple[str, ...]) -> None:
        """A ``users`` list: those in it are present; those dropped and not in it stay
        greyed until their grace period ends."""
        conv.members = list(names)
        present = {name_key(n) for n in names}
        for key, (name, _reason, _deadline) in list(conv.away.items()):
            if key in present:
                del conv.away[key]  # back (or never gone): nothing to say
            else:
                conv.members.append(name)
        conv.members.sort(key=name_key)

    def joined(self, conv: Conversation, name: str) -> bool:
        """``joined``; True when it deserves a line (not a return within the grace period)."""
        if not any(name_key(m) == name_key(name) for m in conv.members):
            conv.members.append(name)
            conv.members.sort(key=name_key)
        return conv.away.pop(name_key(name), None) is None

    def left(self, conv: Conversation, name: str, reason: str) -> None:
        conv.stop_typing(name)
        if reason in DROPPED:
            # Maybe a blip: grey them now, say something only if they stay away.
            deadline = time.monotonic() + self.grace_s
            conv.away[name_key(name)] = (name, reason, deadline)
            self._arm()
        else:
            self._gone(conv, name, reason)

    def _gone(self, conv: Conversation, name: str, reason: str) -> None:
        conv.away.pop(name_key(name), None)
        conv.members = [m for m in conv.members if name_key(m) != name_key(name)]
        if self.session.show_joins:
            conv.model.add_system(f"{name} {LEFT_WORDS.get(reason, 'left')}")

    def _arm(self) -> None:
        convs = self.session.conversations.conversations()
        deadlines = [d for c in convs for _, _, d in c.away.values()]
        if not deadlines:
            self._timer.stop()
            return
        wait = max(0.0, min(deadlines) - time.monotonic())
        self._timer.start(int(wait * 1000) + 1)

    def expire(self) -> None:
        """Write the line for everyone whose grace period is over (the timer calls this)."""
        session = self.session
        session.flush()
        now = time.monotonic()
        for conv in session.conversations.conversations():
            expired = [(n, r) for n, r, d in conv.away.values() if d <= now]
            for name, reason in expired:
                self._gone(conv, name, reason)
            if expired:
                session.conversations.changed(conv.key)
                session.conversationChanged.emit(conv.key)
        self._arm()

    def stop(self) -> None:
        self._timer.stop()
