"""Resuming a session: every missed message exactly once, in order, before any live traffic.

A resumed session's backlog is whatever was stored while it was away, which can be far more
than its outbox may hold. So it is replayed in chunks (at most half the outbox each, and at
most :data:`REPLAY_ROWS` rows), each queued only once the previous one has reached the
kernel. Meanwhile the member is logged in (its name is taken) but is in no room's member list,
and DMs to it are not delivered live (they are stored, and the replay reads them from
storage): live traffic cannot reach it.

The step that finds nothing more to replay runs under the hub's lock — the same lock every
message is stored and fanned out under — and adds the member to its rooms in that same step.
So the switch from replay to live delivery has no gap (nothing stored after the last chunk
can miss it) and no overlap (nothing live was sent that the replay also sends).

Chunks are bounded; a client that does not read its backlog is cut off (``slow``) after
:attr:`ResumeMixin.replay_stall` seconds without progress.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.names import name_key
from desktop_chat.net.server.fanout import Outgoing
from desktop_chat.net.server.storage_api import ChatStore, Identity

if TYPE_CHECKING:
    from desktop_chat.net.server.cluster import Cluster
    from desktop_chat.net.server.fanout import Batch, Member, Room

REPLAY_ROWS = 200  # rows read from storage per chunk


@dataclass
class Resume:
    """Where one login's replay stands."""

    since: int | None  # last id replayed; None: a fresh login, nothing to replay
    replacing: bool  # it replaced a live connection of the same session (no `joined`)
    users: dict[str, tuple[str, ...]] = field(default_factory=dict)  # room key -> names sent
    rounds: int = 0  # times the hub's lock was let go during the replay


class ResumeMixin:
    """Mixed into :class:`~desktop_chat.net.server.hub.Hub`; uses its lock, users and rooms.
    Also serves ``history`` (pages of stored messages)."""

    storage: ChatStore
    closing: bool
    _lock: threading.Lock
    _users: dict[str, Member]
    _replaying: set[Member]
    cluster: Cluster | None
    replay_stall: float = 30.0  # seconds a resuming client may leave its backlog unread

    if TYPE_CHECKING:  # provided by Hub

        def _room_for(self, requested: str, prepared: Room | None) -> Room: ...
        def _users_event(self, room: Room, joining: Member | None = None) -> p.Users: ...
        def _new_batch(self) -> Batch: ...
        def identity(self, member: Member) -> Identity: ...
        def room_key(self, requested: str) -> str: ...
        def reply(self, member: Member, event: p.ServerEvent) -> None: ...
        def send_error(
            self, member: Member, code: str, message: str, ref: p.Ref | None
        ) -> None: ...

    def _users_with(self, room: Room, member: Member) -> p.Users:
        """The ``users`` list of ``room`` with ``member`` in it (it joins when it goes live)."""
        return self._users_event(room, member)

    def _replay_step(self, batch: Batch, member: Member, resume: Resume) -> bool:
        """Queue the next chunk of the backlog (lock held); True when nothing is left."""
        if resume.since is None:
            return True
        budget = member.outbox.limit // 2
        used = 0
        msgs = self.storage.messages_since(
            resume.since, member.rooms.keys(), self.identity(member), limit=REPLAY_ROWS
        )
        for msg in msgs:
            out = Outgoing(msg)
            size = len(out.json)
            if used and used + size > budget:
                return False
            batch.send(member, out)
            used += size
            resume.since = msg.id
        return len(msgs) < REPLAY_ROWS

    def _go_live(self, batch: Batch, member: Member, resume: Resume) -> None:
        """Put the member into its rooms (lock held, in the step of the last chunk)."""
        self._replaying.discard(member)
        if self.cluster is not None:
            self.cluster.went_live(member, resume.since)
        for rkey, rname in list(member.rooms.items()):
            room = self._room_for(rname, None)  # live, unless it emptied meanwhile
            others = list(room.members.values())
            room.members[member.key] = member
            if resume.rounds:  # the lock was let go meanwhile: people may have come or gone
                users = self._users_event(room)
                if users.names != resume.users.get(rkey):
                    batch.send(member, Outgoing(users))
            if not resume.replacing:
                joined = Outgoing(p.Joined(room=room.name, name=member.name))
                batch.send_all(others, joined, urgent=False)

    def _finish_replay(self, member: Member, resume: Resume) -> None:
        """Replay the rest of a backlog that did not fit in one chunk, then go live."""
        while True:
            resume.rounds += 1
            if not self._wait_drained(member):
                with self._lock:
                    self._replaying.discard(member)
                return
            batch = self._new_batch()
            with self._lock:
                if self._users.get(member.key) is not member:
                    self._replaying.discard(member)  # replaced, or gone
                    return
                live = self._replay_step(batch, member, resume)
                if live:
                    self._go_live(batch, member, resume)
            batch.finish()
            if live:
                return

    def history(self, member: Member, req: p.GetHistory) -> None:
        limit = req.effective_limit
        if req.room is not None:
            key = self.room_key(req.room)
            room_name = member.rooms.get(key)
            if room_name is None:
                self.send_error(member, p.NOT_IN_ROOM, f"you are not in {req.room!r}", req.ref)
                return
            msgs, more = self.storage.room_history(key, before=req.before, limit=limit)
            msgs, more = fit_page(msgs, more, member.outbox.limit)
            reply = p.HistoryReply(messages=tuple(msgs), room=room_name, more=more, ref=req.ref)
        else:
            other = req.with_ or ""
            msgs, more = self.storage.dm_history(
                self.identity(member), name_key(other), before=req.before, limit=limit
            )
            msgs, more = fit_page(msgs, more, member.outbox.limit)
            reply = p.HistoryReply(messages=tuple(msgs), with_=other, more=more, ref=req.ref)
        self.reply(member, reply)

    def _wait_drained(self, member: Member) -> bool:
        """Wait until the member's outbox is empty; False if it never will be."""
        outbox = member.outbox
        deadline = time.monotonic() + self.replay_stall
        while not outbox.wait_drained(0.25):
            if self.closing:
                return False
            if time.monotonic() > deadline:
                member.abort("slow")
                return False
        return not outbox.closed and not self.closing


def fit_page(
    msgs: list[p.ChatMessage], more: bool, outbox_limit: int
) -> tuple[list[p.ChatMessage], bool]:
    """The newest of ``msgs`` whose encoding fits half an outbox: a history page can never pass
    the connection's limit on its own (500 messages of 64 KiB would). What is left out is
    older, so ``more`` says so and the client asks again with ``before``."""
    budget = outbox_limit // 2
    used = 0
    for i in range(len(msgs) - 1, -1, -1):
        used += len(p.encode(msgs[i]))
        if used > budget and i < len(msgs) - 1:
            return msgs[i + 1 :], True
    return msgs, more
