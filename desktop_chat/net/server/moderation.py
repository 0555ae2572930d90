"""Accounts and moderation on top of the hub: register, passwords, kick, ban, topics, room
passwords, slow mode, promotion. Every moderation request is checked here, on the server:
only the host (owner token) and admins it promoted may moderate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.names import InvalidName, name_key, normalize_name, skeleton
from desktop_chat.net.server.accounts import hash_password, password_problem, verify_password
from desktop_chat.net.server.storage import Storage

if TYPE_CHECKING:
    from desktop_chat.net.server.hub import Member, Room

log = logging.getLogger(__name__)


class ModerationMixin:
    """Mixed into :class:`~desktop_chat.net.hub.Hub`; uses its lock, users and rooms."""

    storage: Storage
    clock: Callable[[], float]  # monotonic seconds
    _lock: threading.Lock
    _users: dict[str, Member]
    _rooms: dict[str, Room]
    _registered_skeletons: dict[str, str]

    if TYPE_CHECKING:  # provided by Hub

        def _reply(self, member: Member, event: p.ServerEvent) -> None: ...
        def _error(self, member: Member, code: str, message: str, ref: p.Ref | None) -> None: ...
        def _broadcast_room(self, room: Room, event: p.ServerEvent) -> None: ...
        def _prepare_room(self, requested: str) -> Room | None: ...
        def _room_for(self, requested: str, prepared: Room | None) -> Room: ...

    def load_registered(self) -> None:
        skeleton("")  # build the look-alike table now, not during the first login storm
        self._registered_skeletons = {
            skeleton(n): name_key(n) for n in self.storage.account_names()
        }

    def _ok(self, member: Member, what: str, ref: p.Ref | None) -> None:
        self._reply(member, pa.Ok(what=what, ref=ref))

    def _admin_only(self, member: Member, ref: p.Ref | None) -> bool:
        if member.is_admin:
            return True
        self._error(member, pa.FORBIDDEN, "only the host or an admin can do that", ref)
        return False

    # -- accounts ---------------------------------------------------------------------------

    def register(self, member: Member, req: pa.Register) -> None:
        problem = password_problem(req.password)
        if problem is not None:
            self._error(member, p.BAD_MESSAGE, problem, req.ref)
            return
        if self.storage.account(member.key) is not None:
            self._error(member, p.NAME_TAKEN, "this name is registered already", req.ref)
            return
        pw_hash = hash_password(req.password)  # slow on purpose: outside every lock
        self.storage.save_account(member.key, member.name, pw_hash)
        with self._lock:
            self._registered_skeletons[skeleton(member.name)] = member.key
        log.info("%s registered their name", member.name)
        self._ok(member, req.TYPE, req.ref)

    def set_password(self, member: Member, req: pa.SetPassword) -> None:
        account = self.storage.account(member.key)
        if account is None or not verify_password(account[1], req.old):
            self._error(member, p.AUTH_FAILED, "the old password is wrong", req.ref)
            return
        problem = password_problem(req.new)
        if problem is not None:
            self._error(member, p.BAD_MESSAGE, problem, req.ref)
            return
        self.storage.save_account(member.key, account[0], hash_password(req.new), account[2])
        self._ok(member, req.TYPE, req.ref)

    def promote(self, member: Member, req: pa.Promote) -> None:
        if not self._admin_only(member, req.ref):
            return
        role = "user" if req.admin is False else "admin"
        if not self.storage.set_role(name_key(req.name), role):
            self._error(member, p.NO_SUCH_USER, f"{req.name!r} has no registered account", req.ref)
            return
        with self._lock:
            target = self._users.get(name_key(req.name))
        if target is not None:
            target.is_admin = role == "admin"
        self._ok(member, req.TYPE, req.ref)

    # -- removing people --------------------------------------------------------------------

    def kick(self, member: Member, req: pa.Kick) -> None:
        if not self._admin_only(member, req.ref):
            return
        with self._lock:
            target = self._users.get(name_key(req.name))
        if target is None:
            self._error(member, p.NO_SUCH_USER, f"nobody called {req.name!r} is online", req.ref)
            return
        self._remove(target, by=member.name, why=req.reason or "kicked")
        self._ok(member, req.TYPE, req.ref)

    def _remove(self, target: Member, *, by: str, why: str) -> None:
        target.end_session = True  # whoever hangs up first, the others learn "kicked"
        self._reply(target, p.ErrorReply(code=pa.KICKED, message=f"{by} removed you: {why}"))
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
                self._error(member, p.NAME_INVALID, str(exc), req.ref)
                return
            self.storage.add_ban("name", key, member.name)
            targets = [u for u in users if u.key == key]
        else:
            address = (req.address or "").strip()
            self.storage.add_ban("address", address, member.name)
            targets = [u for u in users if u.address[0] == address]
        for target in targets:
            if target is not member:
                self._remove(target, by=member.name, why="banned")
        self._ok(member, req.TYPE, req.ref)

    def unban(self, member: Member, req: pa.Unban) -> None:
        if not self._admin_only(member, req.ref):
            return
        if req.name is not None:
            found = self.storage.remove_ban("name", name_key(req.name))
        else:
            found = self.storage.remove_ban("address", (req.address or "").strip())
        if not found:
            self._error(member, p.NO_SUCH_USER, "no such ban", req.ref)
            return
        self._ok(member, req.TYPE, req.ref)

    # -- rooms ------------------------------------------------------------------------------

    def set_topic(self, member: Member, req: pa.SetTopic) -> None:
        if not self._admin_only(member, req.ref):
            return
        if len(req.topic) > 300:
            self._error(member, p.BAD_MESSAGE, "a topic has at most 300 characters", req.ref)
            return
        try:
            name = normalize_name(req.room)
        except InvalidName as exc:
            self._error(member, p.NAME_INVALID, str(exc), req.ref)
            return
        prepared = self._prepare_room(name)
        with self._lock:
            room = self._room_for(name, prepared)
            room.topic = req.topic or None
            key = name_key(room.name)
        self.storage.set_topic(key, room.topic)
        self._broadcast_room(room, pa.TopicChanged(room=room.name, topic=req.topic, by=member.name))
        self._ok(member, req.TYPE, req.ref)

    def room_settings(self, member: Member, req: pa.RoomSettings) -> None:
        if not self._admin_only(member, req.ref):
            return
        try:
            name = normalize_name(req.room)
        except InvalidName as exc:
            self._error(member, p.NAME_INVALID, str(exc), req.ref)
            return
        prepared = self._prepare_room(name)
        with self._lock:
            room = self._room_for(name, prepared)
        key = name_key(room.name)
        pw_hash, slow = self.storage.room_settings(key)
        notes = []
        if req.password is not None:
            pw_hash = hash_password(req.password) if req.password else None
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
        if notes:
            text = f"{member.name}: {room.name} " + " and ".join(notes)
            self._broadcast_room(room, pa.Notice(text=text, room=room.name))
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
        """A room with a password lets in admins, people already in it, and the password."""
        pw_hash, _slow = self.storage.room_settings(key)
        if pw_hash is None or member.is_admin or key in member.rooms:
            return True
        if req.password is not None and verify_password(pw_hash, req.password):
            return True
        self._error(member, p.AUTH_FAILED, "this room needs its password", req.ref)
        return False
