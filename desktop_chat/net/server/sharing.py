"""Who holds a session token, and who may read a room's or a DM's files.

Files are fetched over HTTP with the chat session's token, so the file endpoint needs the
person behind a token whether or not their chat connection is open right now:
:meth:`SharingMixin.identify` finds them (online member first, else the stored session).
:func:`may_read` is the one rule for downloads, the same as for history (the rooms one is in,
one's own DMs); when DMs come to belong to sessions or accounts, it changes here only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from desktop_chat.net.protocol.names import name_key
from desktop_chat.net.server.storage import Storage

if TYPE_CHECKING:
    from desktop_chat.net.server.hub import Member


@dataclass(frozen=True, slots=True)
class Reader:
    """Whoever holds a session (online or not), as the file endpoint sees them."""

    name: str
    key: str
    session: str
    rooms: dict[str, str]  # room key -> room name


def may_read(
    reader: Reader, *, room_key: str | None, dm_from: str | None, dm_to: str | None
) -> bool:
    """May ``reader`` read the history of this room or DM, and so its files?

    :meth:`Hub.history` applies the same rule to messages.
    """
    if room_key is not None:
        return room_key in reader.rooms
    return reader.key in (dm_from, dm_to)


class SharingMixin:
    """Mixed into :class:`~desktop_chat.net.server.hub.Hub`; uses its lock and users."""

    storage: Storage
    _lock: threading.Lock
    _users: dict[str, Member]

    def identify(self, session: str) -> Reader | None:
        """Who holds session token ``session``: the online member, else the stored session."""
        with self._lock:
            for member in self._users.values():
                if member.session == session:
                    return Reader(member.name, member.key, session, dict(member.rooms))
        stored = self.storage.load_session(session) if session else None
        if stored is None:
            return None
        return Reader(stored.name, stored.name_key, session, {name_key(r): r for r in stored.rooms})

    def online_name(self, key: str) -> str | None:
        """The name of the user online under name key ``key``, if any."""
        with self._lock:
            member = self._users.get(key)
            return None if member is None else member.name
