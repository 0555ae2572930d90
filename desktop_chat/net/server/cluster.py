"""Several server processes as one chat (``--backplane``): messages in one global order,
and who is online where.

Messages. Every process stores a message and publishes it to the backplane in one critical
section of the whole cluster (:meth:`ChatStore.append_ordered`), so Redis receives messages
in id order; every process then delivers every message — its own included — from its
subscription (:meth:`Cluster._on_msg`), never directly from ``say``. Per local member
:attr:`Cluster.last_id` is the highest id queued to it, and a message with an id at or
below it is skipped: that is what makes a resume's replay (read under the hub lock) and live
delivery (also under the hub lock) meet without a gap or a repeat. The sender's own copy
carries its ``ref``: the event names the sender's session by its hash.

The critical section is entered by this process's :class:`~desktop_chat.net.server.sequencer.
Sequencer` (one writer thread, rounds of many messages: the cluster's group commit); ``say``
and ``dm`` do not wait for it. A resend of a ``ref`` still queued is answered by the
original's echo; one already stored by the stored original.

Presence lives in :mod:`~desktop_chat.net.server.presence` (mixed in here): a replica per
process of who is online on the others, names owned in Redis, dead processes' users leaving.

Redis outage: a message is still stored (the sender's ``say`` is accepted), delivery pauses;
when the subscription is back, each process sends each of its members what it missed from
the database (from its ``last_id``, exactly once) before any new live message. A message
stored but never published (its process cut off from Redis alone, or paused past the
ordering lock's bound) leaves a gap in the ids the others see: they fill it from the database
before the next id (:meth:`Cluster._fill`), or on the ``stored`` event the process sends when
it is back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.names import name_key
from desktop_chat.net.protocol.records import Invalid
from desktop_chat.net.server.backplane import Backplane, Event
from desktop_chat.net.server.cluster_admin import AdminMixin
from desktop_chat.net.server.fanout import Batch, Member, Outgoing
from desktop_chat.net.server.presence import PresenceMixin
from desktop_chat.net.server.resume import REPLAY_ROWS
from desktop_chat.net.server.sequencer import Sequencer, refused_rows
from desktop_chat.net.server.storage_api import (
    Identity,
    NewMessage,
    StorageError,
    token_hash,
)

if TYPE_CHECKING:
    from desktop_chat.net.server.hub import Hub
    from desktop_chat.net.server.sharing import Reader

log = logging.getLogger(__name__)

DELIVERIES_PER_HOLD = 4096  # deliveries queued under one hold of the hub's lock at most


class Cluster(PresenceMixin, AdminMixin):
    """The hub's collaborator in cluster mode. Handlers run on the backplane's subscriber
    thread and take the hub's lock for every change they make."""

    # Seconds after a resume during which every ref'd message asks the database whether its
    # ref was used: the process the session came from may still be storing what it queued.
    refs_doubt = 10.0

    def __init__(self, hub: Hub, backplane: Backplane) -> None:
        self.hub = hub
        self.bp = backplane
        self.last_id: dict[Member, int] = {}  # highest message id queued to each live member
        self.seen_id = 0  # highest message id delivered from the subscription
        self.stored_id = 0  # an id the database is known to have reached (subscriber thread)
        self.sequencer = Sequencer(hub.storage, backplane)
        # (session, ref) of messages queued but not stored yet: a resend of one is answered
        # by the original's echo, never stored twice (hub lock).
        self._queued_refs: set[tuple[str, p.Ref]] = set()
        # member -> {message id: ref}: resends answered when the original reaches the member
        # in id order (from the subscription or a catch-up), never before (hub lock).
        self._owed: dict[Member, dict[int, p.Ref]] = {}
        self._handlers: dict[str, Callable[[Event], None]] = {
            "msgs": self._on_msgs,
            "msg": self._on_msg,  # one message alone (as processes of 0.2.0 published)
            "stored": self._on_stored,
        }
        self.init_presence()
        self.init_admin()
        backplane.on_event = self._on_event
        backplane.on_up = self._on_up
        backplane.on_down = self._on_down
        backplane.on_tick = self.reap_dead

    def start(self) -> None:
        self.seen_id = self.hub.storage.last_message_id()
        self.sequencer.start()
        self.bp.start()

    def stop(self) -> None:
        """Store and publish what is queued, then leave the backplane."""
        self.sequencer.stop()
        if self.bp.up.is_set():
            self.withdraw_presence()
        self.bp.stop()

    # -- sending ----------------------------------------------------------------------------

    def say(self, member: Member, room_name: str, text: str, ref: p.Ref | None, me: bool) -> None:
        hub = self.hub
        key = hub.room_key(room_name)
        error: tuple[str, str] | None = None
        row = None
        with hub._lock:
            if self._queued(member, ref):
                return  # a resend of one still being stored: its echo answers both
            original, error = self._original(member, ref)
            if self._owe(member, original, ref):
                return  # stored but not delivered yet: its copy answers the resend
            room = hub._rooms.get(key)
            if original is not None or error is not None:
                pass
            elif room is None or room.members.get(member.key) is not member:
                error = (p.NOT_IN_ROOM, f"you are not in {room_name!r}")
            elif (wait := hub.slow_mode_wait(member, room, key)) > 0:
                error = (p.RATE_LIMITED, f"slow mode: wait {wait:.0f} s")
            else:
                by = hub.identity(member)
                row = NewMessage(
                    sender=member.name, text=text, room=room.name, room_key=key, me=me, by=by,
                    ref=ref,
                )  # fmt: skip
                self._queue_ref(member, ref)
        self._send(member, ref, original, error, row)

    def dm(self, member: Member, to: str, text: str, ref: p.Ref | None, me: bool) -> None:
        hub = self.hub
        to_key = name_key(to)
        error: tuple[str, str] | None = None
        row = None
        with hub._lock:
            if self._queued(member, ref):
                return  # a resend of one still being stored: its echo answers both
            original, error = self._original(member, ref)
            if self._owe(member, original, ref):
                return  # stored but not delivered yet: its copy answers the resend
            target = self.identity_online(to_key)
            if original is not None or error is not None:
                pass
            elif target is None:
                error = (p.NO_SUCH_USER, f"nobody called {to!r} is online")
            else:
                to_name, to_id = target
                row = NewMessage(
                    sender=member.name, text=text, dm_from=member.key, dm_to=to_key,
                    to_name=to_name, me=me, by=hub.identity(member), to=to_id, ref=ref,
                )  # fmt: skip
                self._queue_ref(member, ref)
        self._send(member, ref, original, error, row)

    def identity_online(self, key: str) -> tuple[str, Identity] | None:
        """The name and DM identity of whoever is online under ``key``, on any process
        (lock held)."""
        local = self.hub._users.get(key)
        if local is not None:
            return local.name, self.hub.identity(local)
        remote = self.remote_user(key)
        return None if remote is None else (remote.name, remote.identity)

    def _send(
        self,
        member: Member,
        ref: p.Ref | None,
        original: p.ChatMessage | None,
        error: tuple[str, str] | None,
        row: NewMessage | None,
    ) -> None:
        hub = self.hub
        if original is not None:
            hub.reply(member, original)  # a resend: answered, not stored again
        elif error is not None:
            hub.send_error(member, *error, ref)
        elif row is not None:

            def done(_msgs: list[p.ChatMessage], error: StorageError | None) -> None:
                with hub._lock:
                    if ref is not None and error is None:
                        hub._refs.add(member.session, ref)  # stored: a resend finds it
                    self._queued_refs.discard((member.session, ref))
                if error is not None:
                    hub.send_error(member, *_storage_failed(error), ref)

            # Not waited for: the echo comes from the subscription, like everyone's copy.
            self.sequencer.submit([row], done)

    def _queued(self, member: Member, ref: p.Ref | None) -> bool:
        return ref is not None and (member.session, ref) in self._queued_refs

    def _owe(self, member: Member, original: p.ChatMessage | None, ref: p.Ref | None) -> bool:
        """A resend of ``original``, which ``member`` has not been sent yet (e.g. stored during
        a Redis outage): answering now would put its id before lower ones still to come, so
        the member's copy carries ``ref`` when it arrives in order (lock held)."""
        if original is None or ref is None or original.id <= self.last_id.get(member, 0):
            return False
        self._owed.setdefault(member, {})[original.id] = ref
        return True

    def _owed_ref(self, member: Member, msg_id: int) -> p.Ref | None:
        owed = self._owed.get(member)
        return None if owed is None else owed.pop(msg_id, None)

    def _queue_ref(self, member: Member, ref: p.Ref | None) -> None:
        """``ref``'s message is queued (lock held): a resend now waits for its echo."""
        if ref is not None:
            self._queued_refs.add((member.session, ref))

    def _original(
        self, member: Member, ref: p.Ref | None
    ) -> tuple[p.ChatMessage | None, tuple[str, str] | None]:
        """The stored message this session already sent with ``ref``, or the error to answer
        with if the database cannot say (lock held)."""
        try:
            return self.hub.original_of(member, ref), None
        except StorageError as exc:
            return None, _storage_failed(exc)

    def share_file(
        self, reader: Reader, file: p.FileInfo, *, room: str | None, to: str | None
    ) -> p.ChatMessage:
        """A finished upload as a message (see :meth:`SharingMixin.share_file`), stored and
        published like ``say`` or ``dm``."""
        hub = self.hub
        rkey = None if room is None else hub.room_key(room)
        to_key = None if to is None else name_key(to)
        with hub._lock:
            live = hub._rooms.get(rkey or "")
            to_id: Identity | None = None
            if to_key is not None:
                online = self.identity_online(to_key)
                account = to_key if to_key in hub._registered_keys else None
                to_id = online[1] if online is not None else Identity(to_key, "", account)
            row = NewMessage(
                sender=reader.name, text="", room=room if live is None else live.name,
                room_key=rkey, dm_from=reader.key if to else None, dm_to=to_key, to_name=to,
                file=file, by=hub.reader_identity(reader) if to_key is not None else None,
                to=to_id,
            )  # fmt: skip
        return self.sequencer.store([row])[0]

    def typing(
        self, member: Member, *, room: str | None, to: str | None, ref: p.Ref | None
    ) -> None:
        hub = self.hub
        error = None
        with hub._lock:
            if room is not None:
                rkey = hub.room_key(room)
                r = hub._rooms.get(rkey)
                if r is None or r.members.get(member.key) is not member:
                    error = (p.NOT_IN_ROOM, f"you are not in {room!r}")
                event: Event = {"t": "typing", "n": member.name, "k": member.key, "rk": rkey}
            else:
                to_key = name_key(to or "")
                if self.identity_online(to_key) is None:
                    error = (p.NO_SUCH_USER, f"nobody called {to!r} is online")
                event = {"t": "typing", "n": member.name, "k": member.key, "tk": to_key}
        if error is not None:
            hub.send_error(member, *error, ref)
            return
        self.bp.publish(event)

    # -- receiving --------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        handler = self._handlers.get(str(event.get("t")))
        if handler is None:
            log.warning("backplane: unknown event %r ignored", event.get("t"))
            return
        try:
            handler(event)
        except (KeyError, TypeError, ValueError, Invalid) as exc:
            log.error("backplane: a malformed %r event was ignored: %s", event.get("t"), exc)

    def _on_msg(self, event: Event) -> None:
        self._on_msgs({"ms": [event]})

    def _on_msgs(self, event: Event) -> None:
        """A round of messages one process stored, in id order: delivered under one hold of
        the hub's lock and handed to the flusher once (a hold is cut short after
        :data:`DELIVERIES_PER_HOLD` deliveries, so a big round does not keep the lock long)."""
        items = [(p.ChatMessage.from_dict(item["m"]), item) for item in event["ms"]]
        if not items:
            return
        top = max(msg.id for msg, _item in items)
        stored = self._stored(top)  # outside the lock: it may ask the database
        if stored is False:
            log.error("backplane: message %d is not in the database; ignored (forged?)", top)
            return
        hub = self.hub
        at = 0
        while at < len(items):
            batch = Batch(hub.flusher)
            queued = 0
            with hub._lock:
                while at < len(items) and queued < DELIVERIES_PER_HOLD:
                    queued += self._deliver(batch, *items[at], stored=stored is True)
                    at += 1
            batch.finish()

    def _deliver(self, batch: Batch, msg: p.ChatMessage, item: Event, *, stored: bool) -> int:
        """Queue one published message to its local recipients (lock held); how many.
        ``stored``: the database vouched for its id (else it never moves seen_id)."""
        ref: p.Ref | None = item.get("ref")
        sender, by_hash = item.get("sk"), str(item.get("h") or "")
        mid = msg.id
        if item.get("once"):  # a resend answered by its original: to the sender only
            member = self.hub._users.get(str(sender))
            if member is not None and self._is(member, by_hash):
                self._queue(batch, member, msg, by_hash, ref)
            return 1
        if stored:
            if mid > self.seen_id + 1 and self._gap_stored(mid):
                # Ids below mid were committed before mid was stored (one critical section),
                # but some were never published (their process lost Redis, or was paused
                # past the lock's bound): fill the gap from the database first.
                self._fill(batch, mid - 1)
            self.seen_id = max(self.seen_id, mid)
        last = self.last_id
        # Skip whoever had it already: from a resume's replay, or a repeated publish.
        fresh = [m for m in self._recipients(item) if last.get(m, 0) < mid]
        for member in fresh:
            last[member] = mid
        if ref is not None:
            own = [m for m in fresh if m.key == sender and self._is(m, by_hash)]
            if own:
                fresh = [m for m in fresh if m not in own]
                batch.send_all(own, Outgoing(replace(msg, ref=ref)))
        if self._owed:
            for member in [m for m in fresh if m in self._owed]:
                if (owed := self._owed_ref(member, mid)) is not None:
                    fresh.remove(member)
                    batch.send(member, Outgoing(replace(msg, ref=owed)))
        batch.send_all(fresh, Outgoing(msg))  # encoded once for every recipient
        return len(fresh) + 1

    def _gap_stored(self, mid: int) -> bool:
        """Is any message between seen_id and ``mid`` stored (lock held)? Most gaps in the
        sequence are ids nothing was stored under (a refused round, a repeated ref): one
        query then, not one per member."""
        try:
            return self.hub.storage.last_message_id(upto=mid - 1) > self.seen_id
        except StorageError as exc:
            log.warning("cannot look for messages below %d: %s", mid, exc)
            return True  # the catch-up will say what it can

    def _stored(self, mid: int) -> bool | None:
        """Is message ``mid`` in the database (None: it cannot say now)? A message is
        committed before it is published, so a higher id is not one of ours: someone wrote to
        Redis, and a huge id would make every new login skip real messages (seen_id)."""
        if mid > self.stored_id:
            try:
                self.stored_id = max(self.stored_id, self.hub.storage.last_message_id())
            except StorageError as exc:
                log.warning("cannot check message %d against the database: %s", mid, exc)
                return None
        return mid <= self.stored_id

    @staticmethod
    def _is(member: Member, session_hash: str) -> bool:
        """``member`` holds the session of this hash (the sender's own copy gets its ref)."""
        return bool(session_hash) and token_hash(member.session) == session_hash

    def _recipients(self, event: Event) -> list[Member]:
        hub = self.hub
        if event.get("tk") is None:
            room = hub._rooms.get(str(event.get("rk")))
            return [] if room is None else list(room.members.values())
        # A member still replaying its backlog gets a DM from storage, in order. A DM goes
        # only to the sender's and the recipient's own session or account: not to someone
        # who took either name while the round was being stored.
        ends = ((event.get("fk"), event.get("h"), event.get("fa")),
                (event["tk"], event.get("th"), event.get("ta")))  # fmt: skip
        found: list[Member] = []
        for key, session, account in ends:
            m = None if key is None else hub._users.get(str(key))
            if m is None or m in found or m in hub._replaying:
                continue
            if self._owns(m, session, account):
                found.append(m)
        return found

    def _owns(self, member: Member, session_hash: Any, account: Any) -> bool:
        """``member`` is the DM's party of this session hash or account (lock held)."""
        me = self.hub.identity(member)
        if session_hash and me.session == session_hash:
            return True
        return account is not None and me.account == account

    def _queue(
        self, batch: Batch, member: Member, msg: p.ChatMessage, by_hash: str, ref: Any
    ) -> None:
        """Queue ``msg`` to ``member`` unless it had it already (lock held)."""
        if self.last_id.get(member, 0) >= msg.id:
            return  # from a resume's replay, or a repeated publish
        self.last_id[member] = msg.id
        if (owed := self._owed_ref(member, msg.id)) is not None:
            batch.send(member, Outgoing(replace(msg, ref=owed)))
        elif ref is not None and self._is(member, by_hash):
            batch.send(member, Outgoing(replace(msg, ref=ref)))
        else:
            batch.send(member, Outgoing(msg))

    def _on_typing(self, event: Event) -> None:
        hub = self.hub
        batch = Batch(hub.flusher)
        name, key = str(event["n"]), str(event["k"])
        with hub._lock:
            if "rk" in event:
                room = hub._rooms.get(str(event["rk"]))
                if room is not None:
                    out = Outgoing(p.TypingNotice(name=name, room=room.name))
                    others = [m for m in room.members.values() if m.key != key]
                    batch.send_all(others, out, urgent=False)
            else:
                target = hub._users.get(str(event["tk"]))
                if target is not None and target.key != key and target not in hub._replaying:
                    batch.send(target, Outgoing(p.TypingNotice(name=name, to=target.name)))
        batch.finish()

    # -- members going live and leaving ------------------------------------------------------

    def went_live(self, member: Member, since: int | None) -> None:
        """``member`` joined its rooms having had every message up to ``since`` (lock held)."""
        self.last_id[member] = self.seen_id if since is None else since

    def gone(self, member: Member) -> None:
        self.last_id.pop(member, None)
        self._owed.pop(member, None)

    # -- outage and recovery -----------------------------------------------------------------

    def _on_down(self) -> None:
        log.warning("backplane down: messages are stored, delivery waits for Redis")
        # Nobody counts as dead until a heartbeat's TTL after Redis is back: a restarted
        # Redis has no heartbeat keys until every process has beaten again.
        self._grace_until = math.inf

    def _on_up(self, first: bool) -> None:
        """Subscribed (again): presence from Redis, ours back into it, and — after an
        outage — every member's missed messages, before the subscription's first event."""
        self.resync_presence(first)
        if first:
            return
        log.info("backplane back: catching members up")
        hub = self.hub
        batch = Batch(hub.flusher)
        with hub._lock:
            for member in list(hub._users.values()):
                if member not in hub._replaying:
                    self._catch_up(batch, member)
            self.sequencer.forget_refs(self.seen_id)
            newest = self.hub.storage.last_message_id()
        batch.finish()
        # Some of this process's messages may have been stored but never published while it
        # could not reach Redis, and the others may have had nothing newer since: tell them
        # how far the database goes, so they fill the gap now rather than at the next message.
        self.bp.publish({"t": "stored", "id": newest})

    def _on_stored(self, event: Event) -> None:
        """A process is back on Redis: every message up to ``id`` is stored; deliver the ones
        the subscription never carried (see :meth:`_fill`)."""
        newest = int(event["id"])
        batch = Batch(self.hub.flusher)
        with self.hub._lock:
            if newest > self.seen_id:
                self._fill(batch, newest)
                self.seen_id = newest
        batch.finish()

    def _fill(self, batch: Batch, upto: int) -> None:
        """Queue to every live member what it lacks up to id ``upto`` (lock held)."""
        hub = self.hub
        for member in list(hub._users.values()):
            if member not in hub._replaying and self.last_id.get(member, 0) < upto:
                self._catch_up(batch, member, upto)

    def _catch_up(self, batch: Batch, member: Member, upto: int | None = None) -> None:
        """Queue what ``member`` missed while the backplane was away, up to id ``upto``
        if given (lock held)."""
        since = self.last_id.get(member, self.seen_id)
        identity = self.hub.identity(member)
        mine = token_hash(member.session)
        while True:
            msgs = self.hub.storage.messages_since(
                since, member.rooms.keys(), identity, limit=REPLAY_ROWS
            )
            for msg in msgs:
                if upto is not None and msg.id > upto:
                    return
                by_hash, ref = self.sequencer.unsent_ref(msg.id)
                self._queue(batch, member, msg, by_hash if by_hash == mine else "", ref)
                since = msg.id
                self.seen_id = max(self.seen_id, msg.id)
            if len(msgs) < REPLAY_ROWS or member.outbox.closed:
                return


def _storage_failed(exc: StorageError) -> tuple[str, str]:
    log.error("a message could not be stored: %s", exc)
    if refused_rows(exc):  # the same message would be refused again
        return (p.STORAGE_FAILED, f"the server cannot store this message ({exc})")
    return (p.STORAGE_FAILED, f"the server could not store your message ({exc}); send it again")
