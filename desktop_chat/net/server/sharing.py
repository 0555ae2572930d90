"""Who holds a session token, and who may read a room's or a DM's files.

Files are fetched over HTTP with the chat session's token, so the file endpoint needs the
person behind a token whether or not their chat connection is open right now:
:meth:`SharingMixin.identify` finds them (online member first, else the stored session).
:func:`may_read` is the one rule for downloads, the same as for history (the rooms one is in,
the DMs one's own session or account took part in, exactly as ``history`` serves them).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.names import name_key
from desktop_chat.net.server.fanout import Batch, Outgoing
from desktop_chat.net.server.storage_api import ChatStore, Identity, token_hash

if TYPE_CHECKING:
    from desktop_chat.net.server.cluster import Cluster
    from desktop_chat.net.server.fanout import Member, Room
    from desktop_chat.net.server.outbox import Flusher


@dataclass(frozen=True, slots=True)
class Reader:
    """Whoever holds a session (online or not), as the file endpoint sees them."""

    name: str
    key: str
    session: str
    rooms: dict[str, str]  # room key -> room name


class SharingMixin:
    """Mixed into :class:`~desktop_chat.net.server.hub.Hub`; uses its lock and users."""

    storage: ChatStore
    flusher: Flusher
    _lock: threading.Lock
    _users: dict[str, Member]
    _rooms: dict[str, Room]
    _registered_keys: set[str]
    cluster: Cluster | None

    if TYPE_CHECKING:  # provided by Hub

        def room_key(self, requested: str) -> str: ...
        def identity(self, member: Member) -> Identity: ...

    def identity_of(self, key: str, session: str) -> Identity:
        """Whoever holds session token ``session`` under name key ``key``, as DMs know people:
        the session (hashed), and the account when the name is registered."""
        account = key if key in self._registered_keys else None
        return Identity(key, token_hash(session), account)

    def reader_identity(self, reader: Reader) -> Identity:
        return self.identity_of(reader.key, reader.session)

    def may_read(self, reader: Reader, *, room_key: str | None, message_id: int | None) -> bool:
        """May ``reader`` read this room's history, or this DM, and so its file?

        A room: while the reader is in it (as :meth:`Hub.history`). A DM: only the sessions or
        the account that took part (as ``history with:``), never a later owner of the name.
        """
        if room_key is not None:
            return room_key in reader.rooms
        if message_id is None:
            return False
        return self.storage.dm_readable(message_id, self.reader_identity(reader))

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
        """The name of the user online under name key ``key``, if any: on this process, or
        in a cluster on any (a DM upload may come through another process than either
        person's chat connection)."""
        with self._lock:
            if self.cluster is not None:
                found = self.cluster.identity_online(key)
                return None if found is None else found[0]
            member = self._users.get(key)
            return None if member is None else member.name

    def share_file(
        self, reader: Reader, file: p.FileInfo, *, room: str | None, to: str | None
    ) -> p.ChatMessage:
        """A finished upload as a message, stored and fanned out like ``say`` (``room``: one
        the reader is in) or ``dm`` (``to``: a name, delivered if online)."""
        if self.cluster is not None:
            return self.cluster.share_file(reader, file, room=room, to=to)
        rkey = None if room is None else self.room_key(room)
        to_key = None if to is None else name_key(to)
        batch = Batch(self.flusher)
        with self._lock:
            live = self._rooms.get(rkey or "")
            target = self._users.get(to_key) if to_key is not None else None
            by = self.reader_identity(reader) if to_key is not None else None
            if target is not None:
                to_id: Identity | None = self.identity(target)
            elif to_key is not None:  # gone since the upload began: its account may read it
                account = to_key if to_key in self._registered_keys else None
                to_id = Identity(to_key, "", account)
            else:
                to_id = None
            msg = self.storage.add_message(
                sender=reader.name, text="", room=room if live is None else live.name,
                room_key=rkey, dm_from=reader.key if to else None, dm_to=to_key, to_name=to,
                file=file, by=by, to=to_id,
            )  # fmt: skip
            if live is not None:
                batch.send_all(list(live.members.values()), Outgoing(msg))
            elif to_key is not None:
                users = (self._users.get(k) for k in {reader.key, to_key})
                batch.send_all([m for m in users if m is not None], Outgoing(msg))
        batch.finish()
        return msg
