"""The chat itself: who is online, who is in which room, and who receives what.

The hub knows nothing of sockets or encodings. A logged-in connection is a :class:`Member`:
the hub hands it :class:`Outgoing` events and the connection turns them into bytes for its
mode (JSON Lines, plain text, WebSocket), each event encoded at most once per mode.

Ordering: every change of state and every fan-out is decided under one lock (``_lock``), and
inside it deliveries are only appended to each recipient's buffer (no socket I/O). So every
recipient sees events in the same order and message ids arrive strictly increasing. The
buffers are flushed after the lock is released; a recipient whose buffer overflowed is cut
off with reason ``slow`` afterwards, never delaying anyone else.

Storage under the lock, exactly (everything else — sessions, accounts, bans, topics, room
settings, history, loading a room that is not live — runs before or after it):

- :meth:`ChatStore.add_message` in :meth:`Hub.say` and :meth:`Hub.dm`: it assigns the message
  id, so the insert and the fan-out must happen in one step, or two senders could deliver ids
  out of order. It is one INSERT into the open transaction (no commit, no fsync: the flusher
  commits before it writes); it can wait for the storage lock while the flusher commits.
- :meth:`ChatStore.messages_since` in a resuming :meth:`Hub.login`: the missed messages must be
  queued before any live message can reach the member, or one could be lost or repeated.
- loading a room in :meth:`Hub._room_for`, only when a room that was live when checked
  emptied and was dropped before the lock was taken again (rare; see :meth:`_prepare_room`).
- :meth:`ChatStore.message_for_ref`, only for a ``say``/``dm`` whose ``ref`` this session may
  have used before (sending exactly once): the answer must be decided in the same step.

Resuming (:mod:`~desktop_chat.net.server.resume`) replays a backlog in chunks that fit the
buffer, and goes live under the lock in the step of the last chunk: no gap, no overlap.

Several processes (``hub.cluster``, :mod:`~desktop_chat.net.server.cluster`): messages and
typing go through the cluster and everything is delivered from its subscription, in one order.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.names import InvalidName, name_key, normalize_name, skeleton
from desktop_chat.net.server.fanout import Batch, Member, Outgoing, Room
from desktop_chat.net.server.guard import Guard
from desktop_chat.net.server.guard import LoginRefused as LoginRefused
from desktop_chat.net.server.moderation import ModerationMixin
from desktop_chat.net.server.outbox import Flusher
from desktop_chat.net.server.refs import RecentRefs
from desktop_chat.net.server.resume import Resume, ResumeMixin
from desktop_chat.net.server.roomlooks import RoomLooks
from desktop_chat.net.server.sharing import SharingMixin
from desktop_chat.net.server.storage_api import ChatStore, Identity, StorageError, token_hash

if TYPE_CHECKING:
    from desktop_chat.net.server.cluster import Cluster

log = logging.getLogger(__name__)

DEFAULT_ROOM = "general"


class Hub(ResumeMixin, ModerationMixin, SharingMixin):
    """Rooms, members and routing. Thread-safe; methods are called from connection threads.

    ``storage`` is the open database, ``flusher`` the writer loop that sends what fan-outs
    buffered, ``guard`` the server's password rules and argon2 pool, ``clock`` the monotonic
    time in seconds (slow mode; tests pass a fake one).
    """

    def __init__(
        self,
        title: str,
        storage: ChatStore,
        flusher: Flusher,
        *,
        guard: Guard | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.title = title
        self.storage = storage
        self.flusher = flusher
        self.guard = guard if guard is not None else Guard()
        self.clock = clock
        self.closing = False  # shutting down: nobody is told of leaves, sessions are kept
        self.on_people_changed: Callable[[int], None] | None = None  # e.g. the mDNS "people"
        self._lock = threading.Lock()
        self._users: dict[str, Member] = {}
        self._rooms: dict[str, Room] = {}
        self._skeletons: dict[str, str] = {}  # look-alike skeleton -> key, of people online
        self._registered_skeletons: dict[str, str] = {}
        self._registered_keys: set[str] = set()  # name keys with an account
        self._refs = RecentRefs()  # each live session's recent `ref`s (sending exactly once)
        self._replaying: set[Member] = set()  # resuming, not yet live: DMs wait in storage
        self._looks = RoomLooks(lambda: self.storage.room_names())  # look-alike room names
        self.cluster: Cluster | None = None  # the other processes (``--backplane``), if any

    # -- queries ----------------------------------------------------------------------------

    def people_count(self) -> int:
        with self._lock:
            return len(self._users) + (0 if self.cluster is None else self.cluster.remote_count())

    def online_names(self) -> list[str]:
        with self._lock:
            names = {m.key: m.name for m in self._users.values()}
            if self.cluster is not None:
                for users in self.cluster.remote.values():
                    names.update({u.key: u.name for u in users.values() if u.key not in names})
            return sorted(names.values(), key=lambda n: (name_key(n), n))

    def room_names(self, key: str) -> list[str]:
        with self._lock:
            room = self._rooms.get(key)
            return [] if room is None else list(self._users_event(room).names)

    def room_users(self, key: str) -> p.Users | None:
        """Who is in the room (and who of them may moderate), as its ``users`` event."""
        with self._lock:
            room = self._rooms.get(key)
            return None if room is None else self._users_event(room)

    def members(self) -> list[Member]:
        with self._lock:
            return list(self._users.values())

    # -- login and logout -------------------------------------------------------------------

    def login(self, member: Member, hello: p.Hello, *, admin: bool = False) -> None:
        """Admit ``member`` (sets its name, key, session, rooms) or raise LoginRefused.

        Sends ``welcome``, the ``users`` lists and, when resuming, the missed messages, all
        before any live traffic can reach the member.
        """
        if hello.protocol != p.PROTOCOL_VERSION:
            raise LoginRefused(
                p.PROTOCOL_MISMATCH,
                f"this server speaks protocol {p.PROTOCOL_VERSION}, not {hello.protocol}",
            )
        try:
            name = normalize_name(hello.name)
        except InvalidName as exc:
            raise LoginRefused(p.NAME_INVALID, str(exc)) from exc
        key = name_key(name)
        stored = None
        if hello.resume is not None:
            stored = self.storage.load_session(hello.resume.session)
            if stored is not None and stored.name_key != key:
                stored = None  # resume is honoured only for the same name
            if stored is not None and stored.tls and not member.secure:
                raise LoginRefused(
                    p.TLS_REQUIRED,
                    "this session was started over an encrypted (TLS) connection and can be "
                    "resumed only over one",
                )
        known_refs = None  # a resumed session's refs, so that a new one needs no query
        if stored is not None:
            known_refs = self.storage.session_refs(token_hash(stored.token), self._refs.keep + 1)
        look = skeleton(name)
        wanted: Sequence[str] = stored.rooms if stored is not None else (DEFAULT_ROOM,)
        prepared = {name_key(r): self._prepare_room(r) for r in wanted}
        session = stored.token if stored is not None else secrets.token_urlsafe(24)
        batch = Batch(self.flusher)
        with self._lock:
            current = self._users.get(key)
            replacing = False
            moved_from = None  # the process this session resumed from, in a cluster
            for taken in (self._skeletons.get(look), self._registered_skeletons.get(look)):
                if taken is not None and taken != key:
                    raise LoginRefused(
                        p.NAME_TAKEN, f"{name!r} looks the same as a name in use or registered"
                    )
            if current is not None:
                if stored is None or current.session != stored.token:
                    raise LoginRefused(p.NAME_TAKEN, f"the name {name!r} is in use")
                replacing = True
            elif self.cluster is not None:
                moved_from = self.cluster.claim_name(name, key, session)
                replacing = moved_from is not None
            if stored is not None:
                name = stored.name
            member.name, member.key, member.session = name, key, session
            member.rooms = {}
            member.is_admin = admin
            if replacing and current is not None:
                self._detach(current)
                self._replaying.discard(current)
                if self.cluster is not None:
                    self.cluster.gone(current)  # leave() will not: it is no longer the user
            self._users[key] = member
            self._skeletons[look] = key
            doubt = 0.0 if self.cluster is None or stored is None else self.cluster.refs_doubt
            self._refs.start(session, known_refs, doubt_for=doubt)
            batch.send(
                member,
                Outgoing(
                    p.Welcome(
                        name=name,
                        session=session,
                        server=self.title,
                        rooms=tuple(wanted),
                        resumed=True if stored is not None else None,
                        admin=True if admin else None,
                    )
                ),
            )
            since = None if stored is None or hello.resume is None else hello.resume.since
            resume = Resume(since=since, replacing=replacing)
            for room_name in wanted:
                room = self._room_for(room_name, prepared[name_key(room_name)])
                rkey = name_key(room.name)
                member.rooms[rkey] = room.name
                users = self._users_with(room, member)
                resume.users[rkey] = users.names
                batch.send(member, Outgoing(users))
            live = self._replay_step(batch, member, resume)
            if live:
                self._go_live(batch, member, resume)
            else:
                self._replaying.add(member)
            rooms_now = list(member.rooms.values())
        # Stored before the welcome is on the wire (the flusher commits first): a client that
        # got its session can resume it even if the server is killed a moment later.
        self.storage.save_session(session, name, key, rooms_now, tls=member.secure)
        batch.finish()
        if self.cluster is not None:
            self.cluster.logged_in(member, moved_from)
        if replacing and current is not None:
            current.abort("replaced")
        if not live:
            self._finish_replay(member, resume)
        self._people_changed()
        log.info("%s %s (%d online)", name, "resumed" if stored else "logged in", len(self._users))

    def drop_replaced(self, member: Member) -> None:
        """Forget a connection whose session resumed on another process (lock held)."""
        del self._users[member.key]
        self._skeletons.pop(skeleton(member.name), None)
        self._replaying.discard(member)
        self._refs.forget(member.session)
        self._detach(member)

    def _detach(self, member: Member) -> None:
        """Remove a connection that is being replaced by a resumed one (lock held)."""
        for rkey in member.rooms:
            room = self._rooms.get(rkey)
            if room is not None and room.members.get(member.key) is member:
                del room.members[member.key]

    def leave(self, member: Member, reason: str) -> None:
        """The member's connection ended (``quit`` ends its session too)."""
        batch = Batch(self.flusher)
        with self._lock:
            if self._users.get(getattr(member, "key", "")) is not member:
                return  # never logged in, or replaced by a resumed connection
            del self._users[member.key]
            self._skeletons.pop(skeleton(member.name), None)
            self._replaying.discard(member)
            self._refs.forget(member.session)
            if self.cluster is not None:
                self.cluster.gone(member)
            for rkey, rname in member.rooms.items() if not self.closing else ():
                room = self._rooms.get(rkey)
                if room is None or room.members.get(member.key) is not member:
                    continue
                del room.members[member.key]
                batch.send_all(
                    room.members.values(),
                    Outgoing(p.Left(room=rname, name=member.name, reason=reason)),
                    urgent=False,
                )
                self._drop_if_empty(rkey, room)
        if reason == "quit" or member.end_session:
            self.storage.delete_session(member.session)
        else:
            self.storage.save_session(
                member.session,
                member.name,
                member.key,
                list(member.rooms.values()),
                tls=member.secure,
            )
        batch.finish()
        if self.cluster is not None and not self.closing:
            self.cluster.left(member, reason)
        self._people_changed()
        log.info("%s left (%s)", member.name, reason)

    # -- rooms ------------------------------------------------------------------------------

    def room_key(self, requested: str) -> str:
        """The key of the room ``requested`` names (a new look-alike names the old room)."""
        key = name_key(requested)
        return key if key in self._rooms else self._looks.key_for(requested)

    def _prepare_room(self, requested: str) -> Room | None:
        """A room that is not live, loaded (or created) in storage before taking the lock;
        None if it is live already. Call without the lock; hand the result to _room_for."""
        key = self.room_key(requested)
        with self._lock:
            if key in self._rooms:
                return None
        return self._load_room(key, requested)

    def _load_room(self, key: str, requested: str) -> Room:
        stored = self.storage.room(key)
        if stored is None:
            room = Room(name=self.storage.ensure_room(key, requested))
            self._looks.add(key)
            return room
        pw_hash, slow = self.storage.room_settings(key)
        return Room(name=stored[0], topic=stored[1], slow=slow, locked=pw_hash is not None)

    def _room_for(self, requested: str, prepared: Room | None) -> Room:
        """The live room for a (valid) name, made live if needed (lock held).

        ``prepared`` comes from :meth:`_prepare_room`; if another thread made the room live
        meanwhile, theirs wins. Only if the room was live then and has been dropped since is
        it loaded here, under the lock.
        """
        key = self.room_key(requested)
        room = self._rooms.get(key)
        if room is None:
            room = prepared if prepared is not None else self._load_room(key, requested)
            self._rooms[key] = room
        return room

    def _drop_if_empty(self, key: str, room: Room) -> None:
        if not room.members and key != DEFAULT_ROOM:
            del self._rooms[key]

    def _users_event(self, room: Room, joining: Member | None = None) -> p.Users:
        """Who is in the room (with ``joining`` in it), on every process (lock held)."""
        # Members carry their casefolded key already: no normalisation per name per join.
        people = {m.key: (m.name, m.is_admin) for m in room.members.values()}
        if joining is not None:
            people[joining.key] = (joining.name, joining.is_admin)
        if self.cluster is not None:
            for user in self.cluster.remote_people(name_key(room.name)):
                people.setdefault(user.key, (user.name, user.admin))
        keys = sorted(people)
        return p.Users(
            room=room.name,
            names=tuple(people[k][0] for k in keys),
            topic=room.topic,
            admins=tuple(people[k][0] for k in keys if people[k][1]) or None,
        )

    def join(self, member: Member, req: p.Join) -> None:
        ref = req.ref
        try:
            valid = normalize_name(req.room)
        except InvalidName as exc:
            self.send_error(member, p.NAME_INVALID, f"invalid room name: {exc}", ref)
            return
        if not self.may_join(member, req, self.room_key(valid)):
            return
        prepared = self._prepare_room(valid)
        batch = Batch(self.flusher)
        with self._lock:
            room = self._room_for(valid, prepared)
            key = name_key(room.name)
            new = member.key not in room.members
            if new:
                others = list(room.members.values())
                room.members[member.key] = member
                member.rooms[key] = room.name
                joined = Outgoing(p.Joined(room=room.name, name=member.name))
                batch.send_all(others, joined, urgent=False)
            batch.send(member, Outgoing(self._users_event(room)))
            rooms = list(member.rooms.values())
        self.storage.save_session(member.session, member.name, member.key, rooms, tls=member.secure)
        batch.finish()
        if new and self.cluster is not None:
            self.cluster.joined_room(member, key, room.name)

    def part(self, member: Member, requested: str, ref: p.Ref | None = None) -> None:
        key = self.room_key(requested)
        batch = Batch(self.flusher)
        refused = False
        with self._lock:
            room = self._rooms.get(key)
            if room is None or member.key not in room.members:
                refused = True
            else:
                out = Outgoing(p.Left(room=room.name, name=member.name, reason="part"))
                batch.send_all(room.members.values(), out)
                del room.members[member.key]
                member.rooms.pop(key, None)
                self._drop_if_empty(key, room)
            rooms = list(member.rooms.values())
        if refused:
            self.send_error(member, p.NOT_IN_ROOM, f"you are not in {requested!r}", ref)
            return
        self.storage.save_session(member.session, member.name, member.key, rooms, tls=member.secure)
        batch.finish()
        if self.cluster is not None:
            self.cluster.parted(member, key)

    def list_rooms(self, member: Member, ref: p.Ref | None = None) -> None:
        with self._lock:
            remote = {} if self.cluster is None else self.cluster.remote_rooms()
            infos = [
                p.RoomInfo(name=r.name, users=len(r.members) + remote.pop(k, ("", 0))[1],
                           topic=r.topic)
                for k, r in self._rooms.items()
                if r.members or k == DEFAULT_ROOM or k in remote
            ]  # fmt: skip
            infos += [p.RoomInfo(name=n, users=c) for n, c in remote.values()]
            general_live = any(name_key(i.name) == DEFAULT_ROOM for i in infos)
        if not general_live:
            infos.append(p.RoomInfo(name=DEFAULT_ROOM, users=0))
        infos.sort(key=lambda i: (name_key(i.name) != DEFAULT_ROOM, name_key(i.name)))
        self.reply(member, p.RoomList(rooms=tuple(infos), ref=ref))

    # -- messages ---------------------------------------------------------------------------

    def say(
        self,
        member: Member,
        room_name: str,
        text: str,
        ref: p.Ref | None = None,
        *,
        me: bool = False,
    ) -> None:
        if self.cluster is not None:
            self.cluster.say(member, room_name, text, ref, me)
            return
        key = self.room_key(room_name)
        batch = Batch(self.flusher)
        error: tuple[str, str] | None = None
        with self._lock:
            original = self.original_of(member, ref)
            room = self._rooms.get(key)
            wait = 0.0
            if original is not None:
                batch.send(member, Outgoing(original))  # a resend: answered, not stored again
            elif room is None or room.members.get(member.key) is not member:
                error = (p.NOT_IN_ROOM, f"you are not in {room_name!r}")
            elif (wait := self.slow_mode_wait(member, room, key)) > 0:
                error = (p.RATE_LIMITED, f"slow mode: wait {wait:.0f} s")
            else:
                try:
                    msg = self.storage.add_message(
                        sender=member.name,
                        text=text,
                        room=room.name,
                        room_key=key,
                        me=me,
                        by=self.identity(member),
                        ref=ref,
                    )
                except StorageError as exc:
                    error = _storage_failed(exc)
                else:
                    out = Outgoing(msg)
                    if msg.ref is not None:
                        batch.send(member, out)  # a resend the database caught: the original
                    elif ref is None:
                        batch.send_all(room.members.values(), out)
                    else:
                        self._refs.add(member.session, ref)
                        batch.send_all((m for m in room.members.values() if m is not member), out)
                        batch.send(member, Outgoing(replace(msg, ref=ref)))
        if error is not None:
            self.send_error(member, *error, ref)
            return
        batch.finish()

    def dm(
        self, member: Member, to: str, text: str, ref: p.Ref | None = None, *, me: bool = False
    ) -> None:
        if self.cluster is not None:
            self.cluster.dm(member, to, text, ref, me)
            return
        to_key = name_key(to)
        batch = Batch(self.flusher)
        error: tuple[str, str] | None = None
        with self._lock:
            original = self.original_of(member, ref)
            target = self._users.get(to_key)
            if original is not None:
                batch.send(member, Outgoing(original))  # a resend: answered, not stored again
            elif target is None:
                error = (p.NO_SUCH_USER, f"nobody called {to!r} is online")
            else:
                try:
                    msg = self.storage.add_message(
                        sender=member.name,
                        text=text,
                        dm_from=member.key,
                        dm_to=to_key,
                        to_name=target.name,
                        me=me,
                        by=self.identity(member),
                        to=self.identity(target),
                        ref=ref,
                    )
                except StorageError as exc:
                    error = _storage_failed(exc)
                else:
                    if msg.ref is not None:
                        target = member  # a resend the database caught: the original, to it
                    # A target still replaying its backlog gets this from storage, in order.
                    if target is not member and target not in self._replaying:
                        batch.send(target, Outgoing(msg))
                    if ref is not None:
                        self._refs.add(member.session, ref)
                    batch.send(member, Outgoing(msg if ref is None else replace(msg, ref=ref)))
        if error is not None:
            self.send_error(member, *error, ref)
            return
        batch.finish()

    def typing(
        self, member: Member, *, room: str | None, to: str | None, ref: p.Ref | None = None
    ) -> None:
        if self.cluster is not None:
            self.cluster.typing(member, room=room, to=to, ref=ref)
            return
        batch = Batch(self.flusher)
        with self._lock:
            if room is not None:
                r = self._rooms.get(self.room_key(room))
                if r is None or r.members.get(member.key) is not member:
                    error = (p.NOT_IN_ROOM, f"you are not in {room!r}")
                else:
                    error = None
                    out = Outgoing(p.TypingNotice(name=member.name, room=r.name))
                    others = (m for m in r.members.values() if m is not member)
                    batch.send_all(others, out, urgent=False)
            else:
                target = self._users.get(name_key(to or ""))
                if target is None:
                    error = (p.NO_SUCH_USER, f"nobody called {to!r} is online")
                else:
                    error = None
                    if target is not member and target not in self._replaying:
                        batch.send(
                            target, Outgoing(p.TypingNotice(name=member.name, to=target.name))
                        )
        if error is not None:
            self.send_error(member, *error, ref)
            return
        batch.finish()

    # -- shutdown ---------------------------------------------------------------------------

    def announce_shutdown(self) -> list[Member]:
        """Tell everyone the server is closing; return the members (sessions are kept)."""
        with self._lock:
            members = list(self._users.values())
        batch = Batch(self.flusher)
        out = Outgoing(p.Closing(reason="shutdown"))
        for m in members:
            batch.send(m, out)
        batch.finish()
        return members

    # -- helpers ----------------------------------------------------------------------------

    def identity(self, member: Member) -> Identity:
        """Who ``member`` is for DMs: its session, and its account when its name is
        registered (a registered name is used only with its password or the owner token, or
        by the session that registered it)."""
        return self.identity_of(member.key, member.session)

    def _people_changed(self) -> None:
        if self.on_people_changed is not None and not self.closing:
            self.on_people_changed(self.people_count())

    def _broadcast_room(self, room: Room, event: p.ServerEvent) -> None:
        batch = Batch(self.flusher)
        with self._lock:
            batch.send_all(list(room.members.values()), Outgoing(event))
        batch.finish()

    def original_of(self, member: Member, ref: p.Ref | None) -> p.ChatMessage | None:
        """The message this session already sent with ``ref`` (lock held), else None."""
        if ref is None or not self._refs.may_be_used(member.session, ref):
            return None
        return self.storage.message_for_ref(token_hash(member.session), ref)

    def _new_batch(self) -> Batch:
        return Batch(self.flusher)

    def reply(self, member: Member, event: p.ServerEvent) -> None:
        member.send_event(event)

    def send_error(self, member: Member, code: str, message: str, ref: p.Ref | None) -> None:
        self.reply(member, p.ErrorReply(code=code, message=message, ref=ref))


def _storage_failed(exc: Exception) -> tuple[str, str]:
    log.error("a message could not be stored: %s", exc)
    return (p.STORAGE_FAILED, f"the server could not store your message ({exc}); send it again")
