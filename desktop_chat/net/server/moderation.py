"""Accounts and moderation on top of the hub: register, passwords, kick, ban, topics, room
passwords, slow mode, promotion. Every moderation request is checked here, on the server:
only the host (owner token) and admins it promoted may moderate, by rank: owner > admins >
users, and nobody can kick or ban the owner or someone of higher rank.

Every password here (register, change, room passwords) crosses only an encrypted or loopback
connection (``tls_required`` otherwise), is hashed or checked in the bounded argon2 pool, and
room-password guesses go through the same throttle as logins.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.names import InvalidName, name_key, normalize_name, skeleton
from desktop_chat.net.server.accounts import (
    hash_password,
    password_problem,
    room_account,
    verify_password,
)
from desktop_chat.net.server.guard import Busy
from desktop_chat.net.server.storage_api import ChatStore, Identity

if TYPE_CHECKING:
    from desktop_chat.net.server.cluster import Cluster
    from desktop_chat.net.server.fanout import Member, Room
    from desktop_chat.net.server.guard import Guard


class Ranked(Protocol):
    """Someone whose rank counts: a member here, or one of another process (a cluster)."""

    @property
    def name(self) -> str: ...
    @property
    def is_admin(self) -> bool: ...
    @property
    def is_owner(self) -> bool: ...


def rank(member: Ranked) -> int:
    """Owner (2) > admins (1) > users (0)."""
    return 2 if member.is_owner else 1 if member.is_admin else 0


log = logging.getLogger(__name__)
_T = TypeVar("_T")


class ModerationMixin:
    """Mixed into :class:`~desktop_chat.net.hub.Hub`; uses its lock, users and rooms."""

    storage: ChatStore
    clock: Callable[[], float]  # monotonic seconds
    guard: Guard
    _lock: threading.Lock
    _users: dict[str, Member]
    _rooms: dict[str, Room]
    _registered_skeletons: dict[str, str]
    _registered_keys: set[str]
    cluster: Cluster | None

    if TYPE_CHECKING:  # provided by Hub

        def reply(self, member: Member, event: p.ServerEvent) -> None: ...
        def send_error(
            self, member: Member, code: str, message: str, ref: p.Ref | None
        ) -> None: ...
        def _broadcast_room(self, room: Room, event: p.ServerEvent) -> None: ...
        def _prepare_room(self, requested: str) -> Room | None: ...
        def _room_for(self, requested: str, prepared: Room | None) -> Room: ...
        def identity(self, member: Member) -> Identity: ...

    def load_registered(self) -> None:
        skeleton("")  # build the look-alike table now, not during the first login storm
        names = self.storage.account_names()
        self._registered_skeletons = {skeleton(n): name_key(n) for n in names}
        self._registered_keys = {name_key(n) for n in names}

    def _ok(self, member: Member, what: str, ref: p.Ref | None) -> None:
        self.reply(member, pa.Ok(what=what, ref=ref))

    def _admin_only(self, member: Member, ref: p.Ref | None) -> bool:
        if member.is_admin:
            return True
        self.send_error(member, pa.FORBIDDEN, "only the host or an admin can do that", ref)
        return False

    def _outranks(self, member: Member, target: Ranked, ref: p.Ref | None) -> bool:
        """May ``member`` act against ``target``? Never against the owner or a higher rank."""
        if target.is_owner or rank(target) > rank(member):
            self.send_error(member, pa.FORBIDDEN, f"{target.name} outranks you", ref)
            return False
        return True

    def _password_allowed(self, member: Member, ref: p.Ref | None) -> bool:
        """Only over TLS or loopback (unless the host allowed plain passwords)."""
        refusal = self.guard.rule.refusal(member.secure, member.address[0])
        if refusal is None:
            return True
        self.send_error(member, p.TLS_REQUIRED, refusal, ref)
        return False

    def _argon(self, member: Member, ref: p.Ref | None, work: Callable[[], _T]) -> _T | None:
        """Run an argon2 hash or check in the server's bounded pool; None when it is full
        (the member was told ``rate_limited``)."""
        try:
            return self.guard.pool.run(work)
        except Busy as exc:
            self.send_error(member, p.RATE_LIMITED, str(exc), ref)
            return None

    # -- accounts ---------------------------------------------------------------------------

    def register(self, member: Member, req: pa.Register) -> None:
        """Claim the name in use with a password: only for the session that has been using it
        (or a name never used), never a name with someone else's history."""
        if not self._password_allowed(member, req.ref):
            return
        problem = password_problem(req.password)
        if problem is not None:
            self.send_error(member, p.BAD_MESSAGE, problem, req.ref)
            return
        if self.storage.account(member.key) is not None:
            self.send_error(member, p.NAME_TAKEN, "this name is registered already", req.ref)
            return
        me = self.identity(member)
        if self.storage.name_used_by_others(member.key, me.session):
            self.send_error(
                member,
                p.NAME_TAKEN,
                "someone else has used this name here before, so it cannot be registered "
                "from this session; register a name of your own",
                req.ref,
            )
            return
        pw_hash = self._argon(member, req.ref, lambda: hash_password(req.password))
        if pw_hash is None:
            return
        self.storage.save_account(member.key, member.name, pw_hash)
        self.storage.claim_dms(Identity(member.key, me.session, member.key))
        with self._lock:
            self._registered_skeletons[skeleton(member.name)] = member.key
            self._registered_keys.add(member.key)
        if self.cluster is not None:
            self.cluster.registered(member.key, member.name)
        log.info("%s registered their name", member.name)
        self._ok(member, req.TYPE, req.ref)

    def set_password(self, member: Member, req: pa.SetPassword) -> None:
        if not self._password_allowed(member, req.ref):
            return
        account = self.storage.account(member.key)
        address = member.address[0]
        throttle = self.guard.throttle
        if account is None or throttle.wait(address, member.key, trusted=True) > 0:
            self.send_error(member, p.AUTH_FAILED, "the old password is wrong", req.ref)
            return
        right = self._argon(member, req.ref, lambda: verify_password(account[1], req.old))
        if right is None:
            return
        if not right:
            throttle.failed(address, member.key)
            self.send_error(member, p.AUTH_FAILED, "the old password is wrong", req.ref)
            return
        problem = password_problem(req.new)
        if problem is not None:
            self.send_error(member, p.BAD_MESSAGE, problem, req.ref)
            return
        pw_hash = self._argon(member, req.ref, lambda: hash_password(req.new))
        if pw_hash is None:
            return
        self.storage.save_account(member.key, account[0], pw_hash, account[2])
        self._ok(member, req.TYPE, req.ref)

    def promote(self, member: Member, req: pa.Promote) -> None:
        if not self._admin_only(member, req.ref):
            return
        role = "user" if req.admin is False else "admin"
        key = name_key(req.name)
        with self._lock:
            online = self._users.get(key)
        if online is not None and not self._outranks(member, online, req.ref):
            return
        with self._lock:
            elsewhere = None if self.cluster is None else self.cluster.remote_user(key)
        if elsewhere is not None and not self._outranks(member, elsewhere, req.ref):
            return
        if not self.storage.set_role(key, role):
            self.send_error(
                member, p.NO_SUCH_USER, f"{req.name!r} has no registered account", req.ref
            )
            return
        with self._lock:
            target = self._users.get(key)
        if target is not None:
            target.is_admin = role == "admin"
        if self.cluster is not None:
            self.cluster.set_role_remote(key, role == "admin")
        self._ok(member, req.TYPE, req.ref)

    # -- removing people --------------------------------------------------------------------

    def kick(self, member: Member, req: pa.Kick) -> None:
        if not self._admin_only(member, req.ref):
            return
        key = name_key(req.name)
        with self._lock:
            target = self._users.get(key)
            elsewhere = None if self.cluster is None else self.cluster.remote_user(key)
        if target is None and elsewhere is not None and self.cluster is not None:
            if self._outranks(member, elsewhere, req.ref):
                self.cluster.remove_remote(elsewhere, by=member.name, why=req.reason or "kicked")
                self._ok(member, req.TYPE, req.ref)
            return
        if target is None:
            self.send_error(
                member, p.NO_SUCH_USER, f"nobody called {req.name!r} is online", req.ref
            )
            return
        if not self._outranks(member, target, req.ref):
            return
        self.remove_member(target, by=member.name, why=req.reason or "kicked")
        self._ok(member, req.TYPE, req.ref)

    def remove_member(self, target: Member, *, by: str, why: str) -> None:
        target.end_session = True  # whoever hangs up first, the others learn "kicked"
        self.reply(target, p.ErrorReply(code=pa.KICKED, message=f"{by} removed you: {why}"))
        target.outbox.wait_drained(2.0)  # let them read why before the line goes dead
        target.abort("kicked")
        log.info("%s removed %s (%s)", by, target.name, why)

    def ban(self, member: Member, req: pa.Ban) -> None:
        if not self._admin_only(member, req.ref):
            return
        with self._lock:
            users = list(self._users.values())
        if req.name is not None:
            try:
                key = name_key(normalize_name(req.name))
            except InvalidName as exc:
                self.send_error(member, p.NAME_INVALID, str(exc), req.ref)
                return
            targets = [u for u in users if u.key == key]
            with self._lock:
                elsewhere = None if self.cluster is None else self.cluster.remote_user(key)
            ranked: list[Ranked] = [*targets, *([elsewhere] if elsewhere else [])]
            if any(not self._outranks(member, t, req.ref) for t in ranked):
                return
            self.storage.add_ban("name", key, member.name)
            if elsewhere is not None and self.cluster is not None:
                self.cluster.remove_remote(elsewhere, by=member.name, why="banned")
        else:
            address = (req.address or "").strip()
            self.storage.add_ban("address", address, member.name)
            # The owner and higher ranks stay (the owner passes bans), so a ban on 127.0.0.1
            # never locks the hosting app out of its own chat.
            targets = [u for u in users if u.address[0] == address and rank(u) <= rank(member)]
            targets = [u for u in targets if not u.is_owner]
            if self.cluster is not None:
                self.cluster.ban_address_remote(address, by=member.name, rank=rank(member))
        for target in targets:
            if target is not member:
                self.remove_member(target, by=member.name, why="banned")
        self._ok(member, req.TYPE, req.ref)

    def unban(self, member: Member, req: pa.Unban) -> None:
        if not self._admin_only(member, req.ref):
            return
        if req.name is not None:
            found = self.storage.remove_ban("name", name_key(req.name))
        else:
            found = self.storage.remove_ban("address", (req.address or "").strip())
        if not found:
            self.send_error(member, p.NO_SUCH_USER, "no such ban", req.ref)
            return
        self._ok(member, req.TYPE, req.ref)

    # -- rooms ------------------------------------------------------------------------------

    def set_topic(self, member: Member, req: pa.SetTopic) -> None:
        if not self._admin_only(member, req.ref):
            return
        if len(req.topic) > 300:
            self.send_error(member, p.BAD_MESSAGE, "a topic has at most 300 characters", req.ref)
            return
        try:
            name = normalize_name(req.room)
        except InvalidName as exc:
            self.send_error(member, p.NAME_INVALID, str(exc), req.ref)
            return
        prepared = self._prepare_room(name)
        with self._lock:
            room = self._room_for(name, prepared)
            room.topic = req.topic or None
            key = name_key(room.name)
        self.storage.set_topic(key, room.topic)
        self._broadcast_room(room, pa.TopicChanged(room=room.name, topic=req.topic, by=member.name))
        if self.cluster is not None:
            self.cluster.room_changed(key, topic=req.topic, by=member.name)
        self._ok(member, req.TYPE, req.ref)

    def room_settings(self, member: Member, req: pa.RoomSettings) -> None:
        if not self._admin_only(member, req.ref):
            return
        try:
            name = normalize_name(req.room)
        except InvalidName as exc:
            self.send_error(member, p.NAME_INVALID, str(exc), req.ref)
            return
        prepared = self._prepare_room(name)
        with self._lock:
            room = self._room_for(name, prepared)
        key = name_key(room.name)
        pw_hash, slow = self.storage.room_settings(key)
        notes = []
        if req.password:
            if not self._password_allowed(member, req.ref):
                return
            new_hash = self._argon(member, req.ref, lambda: hash_password(req.password or ""))
            if new_hash is None:
                return
            pw_hash = new_hash
        elif req.password is not None:
            pw_hash = None
        if req.password is not None:
            notes.append("needs a password to join now" if pw_hash else "is open to all now")
        if req.slow is not None:
            slow = req.slow
            notes.append(
                f"is in slow mode: one message every {slow} s"
                if slow
                else "is no longer in slow mode"
            )
        self.storage.set_room_settings(key, pw_hash=pw_hash, slow=slow)
        with self._lock:
            room.slow = slow
            room.locked = pw_hash is not None
        text = f"{member.name}: {room.name} " + " and ".join(notes) if notes else None
        if text is not None:
            self._broadcast_room(room, pa.Notice(text=text, room=room.name))
        if self.cluster is not None:
            self.cluster.room_changed(key, slow=slow, locked=pw_hash is not None, notice=text)
        self._ok(member, req.TYPE, req.ref)

    def slow_mode_wait(self, member: Member, room: Room, key: str) -> float:
        """Seconds the member must still wait to speak in a slow-mode room (lock held)."""
        if not room.slow or member.is_admin:
            return 0.0
        now = self.clock()
        last = member.last_said.get(key)
        if last is not None and now - last < room.slow:
            return room.slow - (now - last)
        member.last_said[key] = now
        return 0.0

    def may_join(self, member: Member, req: p.Join, key: str) -> bool:
        """A room with a password lets in admins, people already in it, and the password
        (sent only over TLS or loopback, throttled like a login, checked in the pool)."""
        pw_hash, _slow = self.storage.room_settings(key)
        if pw_hash is None or member.is_admin or key in member.rooms:
            return True
        if req.password is None:
            self.send_error(member, p.AUTH_FAILED, "this room needs its password", req.ref)
            return False
        if not self._password_allowed(member, req.ref):
            return False
        address, which = member.address[0], room_account(key)
        wait = self.guard.throttle.wait(address, which)
        if wait > 0:
            self.send_error(
                member, p.AUTH_FAILED, f"wrong room password; wait {math.ceil(wait)} s", req.ref
            )
            return False
        right = self._argon(member, req.ref, lambda: verify_password(pw_hash, req.password or ""))
        if right is None:
            return False
        if right:
            self.guard.throttle.succeeded(address, which)
            return True
        self.guard.throttle.failed(address, which)
        self.send_error(member, p.AUTH_FAILED, "this room needs its password", req.ref)
        return False
