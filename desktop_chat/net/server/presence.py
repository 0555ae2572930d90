"""Who is online on the other processes of a cluster, and whose a name is.

Each process keeps a replica (:attr:`PresenceMixin.remote`: process -> name key -> user) built
from Redis when it (re)subscribes and kept current by the events every process publishes
when one of its members logs in, joins, parts or leaves. The replica is read and changed under
the hub's lock, so a ``users`` list (local members plus the replica) is always consistent
with the ``joined``/``left`` events that follow it.

In Redis: ``users:<process>`` (a hash: name key -> the user as JSON, what a process loads at
start) and ``name:<skeleton>`` (which process, name key and session hold a name, look-alikes
included: one key per skeleton). A name is claimed with a compare-and-set script; a name held
by a process whose heartbeat is gone is taken over. A session that resumes on this process
while its old connection is open on another takes the name over, and the ``login`` event says
so: the other process drops its connection silently (``replaced``), nobody sees it leave.

A process whose heartbeat expired (SIGKILL, a lost machine) is noticed by the others at their
next beat: its users are shown leaving (``left``, reason ``disconnected``) and its names freed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.names import skeleton
from desktop_chat.net.server.backplane import Backplane, Event
from desktop_chat.net.server.fanout import Batch, Member, Outgoing
from desktop_chat.net.server.guard import LoginRefused
from desktop_chat.net.server.storage_api import Identity, token_hash

if TYPE_CHECKING:
    from desktop_chat.net.server.hub import Hub

log = logging.getLogger(__name__)
BUSY_RECONNECTING = "the chat server is busy reconnecting; try again in a moment"

# Set both keys (the name key's and the look-alike skeleton's) to ARGV[1] if they hold
# ARGV[2] and ARGV[3] ('' = absent): 1; else what they hold ('' = absent).
_CLAIM = """
local a = redis.call('GET', KEYS[1]) or ''
local b = redis.call('GET', KEYS[2]) or ''
if a == ARGV[2] and b == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], ARGV[1])
  return 1
end
return {a, b}
"""
_RELEASE = """
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
return 0
"""


@dataclass
class RemoteUser:
    """A member of another process, as the replica knows it."""

    key: str
    name: str
    hash: str  # SHA-256 of its session token: DM ownership, replacing a resumed session
    account: str | None
    admin: bool = False
    owner: bool = False  # logged in with the owner token: nobody may act against it
    rooms: dict[str, str] = field(default_factory=dict)  # room key -> room name

    @property
    def identity(self) -> Identity:
        return Identity(self.key, self.hash, self.account)

    @property
    def is_admin(self) -> bool:
        return self.admin

    @property
    def is_owner(self) -> bool:
        return self.owner

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.key, "n": self.name, "h": self.hash, "a": self.account,
                "adm": self.admin, "own": self.owner, "r": self.rooms}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RemoteUser:
        rooms = {str(k): str(v) for k, v in dict(d["r"]).items()}
        account = None if d.get("a") is None else str(d["a"])
        return cls(
            str(d["k"]), str(d["n"]), str(d["h"]), account, bool(d.get("adm")),
            bool(d.get("own")), rooms,
        )  # fmt: skip


def name_value(proc: str, key: str, session_hash: str) -> str:
    return json.dumps({"p": proc, "k": key, "h": session_hash}, separators=(",", ":"))


class PresenceMixin:
    """Mixed into :class:`~desktop_chat.net.server.cluster.Cluster`."""

    hub: Hub
    bp: Backplane
    last_id: dict[Member, int]
    _handlers: dict[str, Callable[[Event], None]]

    if TYPE_CHECKING:

        def _on_typing(self, event: Event) -> None: ...

    def init_presence(self) -> None:
        self.remote: dict[str, dict[str, RemoteUser]] = {}
        self._grace_until = 0.0  # no process counts as dead before (after an outage)
        self._handlers.update(
            login=self._on_login, join=self._on_join, part=self._on_part, left=self._on_left,
            sync=self._on_sync, registered=self._on_registered, typing=self._on_typing,
        )  # fmt: skip

    # -- queries (hub lock held) -------------------------------------------------------------

    def remote_user(self, key: str) -> RemoteUser | None:
        for users in self.remote.values():
            user = users.get(key)
            if user is not None:
                return user
        return None

    def remote_people(self, room_key: str) -> list[RemoteUser]:
        return [u for users in self.remote.values() for u in users.values() if room_key in u.rooms]

    def remote_count(self) -> int:
        """People on other processes (once each, should two list one for a moment)."""
        return len({key for users in self.remote.values() for key in users})

    def remote_rooms(self) -> dict[str, tuple[str, int]]:
        """Room key -> (name, people on other processes)."""
        found: dict[str, tuple[str, int]] = {}
        for users in self.remote.values():
            for user in users.values():
                for rkey, rname in user.rooms.items():
                    found[rkey] = (rname, found.get(rkey, (rname, 0))[1] + 1)
        return found

    # -- names ------------------------------------------------------------------------------

    def _slots(self, name: str, key: str) -> list[str]:
        return [self.bp.key("name", key), self.bp.key("look", skeleton(name))]

    def claim_name(self, name: str, key: str, session: str) -> str | None:
        """Hold ``name`` for this process (hub lock held, local checks passed). Returns the
        process it was taken from if that process has this very session online (a resume
        moving here), else None. Raises LoginRefused when it is someone else's."""
        # People read this; the log says what is actually down.
        unreachable = LoginRefused(p.SERVER_FULL, BUSY_RECONNECTING)
        if not self.bp.up.is_set():
            log.warning("login of %s refused: the backplane (Redis) is unreachable", name)
            raise unreachable
        other = self.remote_user(key)
        if other is not None and other.hash != token_hash(session):
            # Online on another process even if Redis' name key says otherwise (e.g. just
            # rewritten by a process back from a partition): the replica has the last word.
            raise LoginRefused(p.NAME_TAKEN, f"the name {name!r} is in use")
        try:
            return self._claim(name, key, token_hash(session))
        except self.bp.errors() as exc:
            log.warning("login of %s refused: the backplane (Redis) failed: %s", name, exc)
            raise unreachable from exc

    def _claim(self, name: str, key: str, session_hash: str) -> str | None:
        mine = name_value(self.bp.proc, key, session_hash)
        expected = ["", ""]
        moved_from = None
        for _ in range(4):
            got = self.bp.redis.eval(_CLAIM, 2, *self._slots(name, key), mine, *expected)
            if got == 1:
                return moved_from
            expected = [str(v) for v in got]
            for value in expected:
                old = json.loads(value) if value else None
                if old is None or old["p"] == self.bp.proc:
                    continue  # free, or ours: the hub's own tables decided already
                if not self.bp.alive([old["p"]]):
                    continue  # its process is dead: taken over
                if old["k"] != key:
                    raise LoginRefused(p.NAME_TAKEN, f"{name!r} looks the same as a name in use")
                if old["h"] != session_hash:
                    raise LoginRefused(p.NAME_TAKEN, f"the name {name!r} is in use")
                moved_from = str(old["p"])  # this session, online there: it moves here
        raise LoginRefused(p.NAME_TAKEN, f"the name {name!r} is in use")

    def _release(self, proc: str, name: str, key: str, session_hash: str) -> None:
        value = name_value(proc, key, session_hash)
        self.bp.redis.eval(_RELEASE, 2, *self._slots(name, key), value)

    # -- our members (called by the hub after its lock) --------------------------------------

    def user_of(self, member: Member) -> RemoteUser:
        ident = self.hub.identity(member)
        return RemoteUser(
            member.key, member.name, ident.session, ident.account, member.is_admin,
            member.is_owner, dict(member.rooms),
        )  # fmt: skip

    def _announce(self, event: Event, member: Member | None = None, gone: bool = False) -> None:
        """Update our hash in Redis and publish ``event``; an outage is only logged (our
        presence is written again when Redis is back)."""
        try:
            users = self.bp.key("users", self.bp.proc)
            if member is not None and gone:
                self.bp.redis.hdel(users, member.key)
                self._release(self.bp.proc, member.name, member.key, token_hash(member.session))
            elif member is not None:
                self.bp.redis.hset(users, member.key, json.dumps(self.user_of(member).to_dict()))
        except self.bp.errors() as exc:
            log.warning("backplane: presence not written: %s", exc)
        self.bp.publish(event)

    def logged_in(self, member: Member, replaced: str | None) -> None:
        user = self.user_of(member)
        with self.hub._lock:
            # The name is ours now (claim_name said so): whoever the replica still lists
            # under it on another process — a dead one not reaped yet, or the one this
            # session moved from — is this person, here. Left there, a later reaping would
            # tell everyone here that they left.
            for users in self.remote.values():
                users.pop(member.key, None)
        self._announce({"t": "login", "u": user.to_dict(), "from": replaced}, member)

    def joined_room(self, member: Member, rkey: str, rname: str) -> None:
        self._announce({"t": "join", "k": member.key, "rk": rkey, "rn": rname}, member)

    def parted(self, member: Member, rkey: str) -> None:
        self._announce({"t": "part", "k": member.key, "rk": rkey}, member)

    def left(self, member: Member, reason: str) -> None:
        self._announce({"t": "left", "k": member.key, "reason": reason}, member, gone=True)

    def registered(self, key: str, name: str) -> None:
        self.bp.publish({"t": "registered", "k": key, "n": name})

    # -- events from the other processes -----------------------------------------------------

    def _tell(self, batch: Batch, rkey: str, event: p.ServerEvent) -> None:
        room = self.hub._rooms.get(rkey)
        if room is not None:
            batch.send_all(list(room.members.values()), Outgoing(event), urgent=False)

    def _on_login(self, event: Event) -> None:
        proc = str(event["proc"])
        if proc == self.bp.proc:
            return
        user = RemoteUser.from_dict(event["u"])
        hub = self.hub
        batch = Batch(hub.flusher)
        dropped = None
        with hub._lock:
            local = hub._users.get(user.key)
            if local is not None and token_hash(local.session) == user.hash:
                # The session resumed on that process: drop ours without a `left`.
                dropped = local
                hub.drop_replaced(local)
                self.last_id.pop(local, None)
            moved = dropped is not None or event.get("from") is not None
            for users in self.remote.values():
                moved = users.pop(user.key, None) is not None or moved
            self.remote.setdefault(proc, {})[user.key] = user
            if not moved:
                for rkey, rname in user.rooms.items():
                    self._tell(batch, rkey, p.Joined(room=rname, name=user.name))
        batch.finish()
        if dropped is not None:
            dropped.abort("replaced")
            # No longer ours (its name is the other process's now): out of our list.
            self.bp.redis.hdel(self.bp.key("users", self.bp.proc), user.key)

    def _on_join(self, event: Event) -> None:
        self._room_change(event, joined=True)

    def _on_part(self, event: Event) -> None:
        self._room_change(event, joined=False)

    def _room_change(self, event: Event, *, joined: bool) -> None:
        proc = str(event["proc"])
        if proc == self.bp.proc:
            return
        batch = Batch(self.hub.flusher)
        with self.hub._lock:
            user = self.remote.get(proc, {}).get(str(event["k"]))
            rkey = str(event["rk"])
            if user is not None and joined and rkey not in user.rooms:
                user.rooms[rkey] = str(event["rn"])
                self._tell(batch, rkey, p.Joined(room=user.rooms[rkey], name=user.name))
            elif user is not None and not joined and rkey in user.rooms:
                rname = user.rooms.pop(rkey)
                self._tell(batch, rkey, p.Left(room=rname, name=user.name, reason="part"))
        batch.finish()

    def _on_left(self, event: Event) -> None:
        proc = str(event["proc"])
        if proc == self.bp.proc:
            return
        batch = Batch(self.hub.flusher)
        with self.hub._lock:
            user = self.remote.get(proc, {}).pop(str(event["k"]), None)
            if user is not None:
                self._say_left(batch, user, str(event["reason"]))
        batch.finish()

    def _say_left(self, batch: Batch, user: RemoteUser, reason: str) -> None:
        for rkey, rname in user.rooms.items():
            self._tell(batch, rkey, p.Left(room=rname, name=user.name, reason=reason))

    def _on_sync(self, event: Event) -> None:
        proc = str(event["proc"])
        if proc == self.bp.proc:
            return
        users = [RemoteUser.from_dict(u) for u in event["users"]]
        batch = Batch(self.hub.flusher)
        with self.hub._lock:
            self._replace(batch, proc, {u.key: u for u in users})
        batch.finish()

    def _replace(self, batch: Batch, proc: str, users: dict[str, RemoteUser]) -> None:
        """Make ``users`` process ``proc``'s list, telling rooms of the difference (lock)."""
        old = self.remote.get(proc, {})
        for key, user in old.items():
            now = users.get(key)
            for rkey, rname in user.rooms.items():
                if now is None or rkey not in now.rooms:
                    self._tell(
                        batch, rkey, p.Left(room=rname, name=user.name, reason="disconnected")
                    )
        for key, user in users.items():
            was = old.get(key)
            for rkey, rname in user.rooms.items():
                if was is None or rkey not in was.rooms:
                    self._tell(batch, rkey, p.Joined(room=rname, name=user.name))
        self.remote[proc] = users

    def _on_registered(self, event: Event) -> None:
        with self.hub._lock:
            self.hub._registered_skeletons[skeleton(str(event["n"]))] = str(event["k"])
            self.hub._registered_keys.add(str(event["k"]))

    # -- liveness ---------------------------------------------------------------------------

    def reap_dead(self) -> None:
        """After each heartbeat: the users of processes whose heartbeat expired leave."""
        if time.monotonic() < self._grace_until or not self.bp.up.is_set():
            return
        with self.hub._lock:
            procs = list(self.remote)
        alive = self.bp.alive(procs)
        dead = [proc for proc in procs if proc not in alive]
        for proc in dead:
            batch = Batch(self.hub.flusher)
            with self.hub._lock:
                users = self.remote.pop(proc, {})
                for user in users.values():
                    if not self._online_elsewhere(user.key):
                        self._say_left(batch, user, "disconnected")
            batch.finish()
            for user in users.values():
                self._release(proc, user.name, user.key, user.hash)
            self.bp.redis.delete(self.bp.key("users", proc))
            log.info("backplane: process %s is gone; %d users left", proc, len(users))

    def _online_elsewhere(self, key: str) -> bool:
        """Is ``key`` online here or on a live process (lock held)? A dead process's user
        who already came back is not shown leaving."""
        return key in self.hub._users or any(key in users for users in self.remote.values())

    def _sweep_names(self, held: set[str]) -> None:
        """Free the name keys nobody holds any more: ours but not in ``held`` (people who left
        while Redis was unreachable, or all of them at a clean stop) and those of dead
        processes (killed with nobody left to reap them, or from an earlier run)."""
        r, proc = self.bp.redis, self.bp.proc
        slots = [s for kind in ("name", "look") for s in r.scan_iter(self.bp.key(kind, "*"), 500)]
        owners: dict[str, tuple[str, str]] = {}
        for slot, value in zip(slots, r.mget(slots) if slots else [], strict=True):
            if value:
                owners[str(slot)] = (str(value), str(json.loads(value).get("p")))
        alive = self.bp.alive(sorted({o for _, o in owners.values() if o != proc}))
        pipe = r.pipeline(transaction=False)
        for slot, (value, owner) in owners.items():
            if (slot not in held) if owner == proc else (owner not in alive):
                pipe.eval(_RELEASE, 1, slot, value)  # unless it changed hands meanwhile
        pipe.execute()

    def withdraw_presence(self) -> None:
        """A clean stop: this process's users and names out of Redis (its users' sessions
        are kept: they resume elsewhere or later, and claim their names again)."""
        try:
            self._sweep_names(set())
            self.bp.redis.delete(self.bp.key("users", self.bp.proc))
        except self.bp.errors() as exc:
            log.warning("backplane: could not withdraw our users' names: %s", exc)

    def _reclaim(self, user: RemoteUser) -> bool:
        """Hold ``user``'s name (and look-alike key) again unless a live other process holds
        it; False then."""
        r, proc = self.bp.redis, self.bp.proc
        slots = self._slots(user.name, user.key)
        mine = name_value(proc, user.key, user.hash)
        for _ in range(4):
            held = [str(v or "") for v in r.mget(slots)]
            for value in held:
                other = json.loads(value)["p"] if value and value != mine else None
                if other is not None and other != proc and self.bp.alive([str(other)]):
                    return False
            if r.eval(_CLAIM, 2, *slots, mine, *held) == 1:
                return True
        return False

    def _drop_lost(self, members: list[Member]) -> None:
        """Close the connections of ``members``, whose names went to someone else while this
        process counted as dead: their rooms here see them leave; the other processes had
        seen them leave already. A resume of theirs is then refused (``name_taken``)."""
        hub = self.hub
        batch = Batch(hub.flusher)
        with hub._lock:
            for member in members:
                if hub._users.get(member.key) is not member:
                    continue
                log.warning("%s lost its name while this process counted as dead", member.name)
                user = self.user_of(member)
                hub.drop_replaced(member)
                self.last_id.pop(member, None)
                self._say_left(batch, user, "disconnected")
        batch.finish()
        for member in members:
            member.abort("disconnected")

    def resync_presence(self, first: bool) -> None:
        """On (re)subscribing: write our presence again (Redis may have restarted empty),
        publish it, and load the others' (a process that has not written its own yet keeps
        its old entry: it will publish its ``sync`` soon)."""
        hub = self.hub
        with hub._lock:
            members = list(hub._users.values())
            ours = [self.user_of(m) for m in members]
        # Names first, compare-and-set: one taken meanwhile by someone on a live process (we
        # were taken for dead: paused, or cut off from Redis) stays theirs; ours ends here.
        lost = {user.key for user in ours if not self._reclaim(user)}
        if lost:
            self._drop_lost([m for m in members if m.key in lost])
            ours = [user for user in ours if user.key not in lost]
        r, proc = self.bp.redis, self.bp.proc
        pipe = r.pipeline()
        pipe.delete(self.bp.key("users", proc))
        for user in ours:
            pipe.hset(self.bp.key("users", proc), user.key, json.dumps(user.to_dict()))
        pipe.execute()
        self._sweep_names({slot for u in ours for slot in self._slots(u.name, u.key)})
        self.bp.publish({"t": "sync", "users": [u.to_dict() for u in ours]})
        found: dict[str, dict[str, RemoteUser]] = {}
        for rkey in r.scan_iter(match=self.bp.key("users", "*")):
            other = str(rkey).rsplit(":", 1)[-1]
            if other != proc:
                raw = r.hgetall(rkey)
                found[other] = {str(k): RemoteUser.from_dict(json.loads(v)) for k, v in raw.items()}
        alive = self.bp.alive(list(found))
        dead = [other for other in found if other not in alive]
        if dead:  # nobody reaped them (e.g. every process was stopped): their lists go
            r.delete(*(self.bp.key("users", other) for other in dead))
        batch = Batch(hub.flusher)
        with hub._lock:
            for other, users in found.items():
                if other in alive:
                    self._replace(batch, other, users)
        batch.finish()
        if not first:
            self._grace_until = time.monotonic() + self.bp.ttl
