"""Moderation across the processes of a cluster: kicking, banning and promoting someone who is
connected to another process.

Bans and roles live in the shared database, so a banned name or address is refused at login on
every process (the guard asks the database). What is left is acting on people online
elsewhere: the moderator's process checks ranks against its replica and publishes the action;
the process that holds the target's connection carries it out as its own moderators would.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p
from desktop_chat.net.server.backplane import Backplane, Event
from desktop_chat.net.server.fanout import Batch, Outgoing
from desktop_chat.net.server.moderation import rank

if TYPE_CHECKING:
    from desktop_chat.net.server.fanout import Member
    from desktop_chat.net.server.hub import Hub
    from desktop_chat.net.server.presence import RemoteUser

log = logging.getLogger(__name__)


class AdminMixin:
    """Mixed into :class:`~desktop_chat.net.server.cluster.Cluster`."""

    hub: Hub
    bp: Backplane
    remote: dict[str, dict[str, RemoteUser]]
    _handlers: dict[str, Callable[[Event], None]]

    def init_admin(self) -> None:
        self._handlers.update(
            remove=self._on_remove, role=self._on_role, banaddr=self._on_banaddr,
            room=self._on_room,
        )  # fmt: skip

    # -- the moderator's side ---------------------------------------------------------------

    def remove_remote(self, user: RemoteUser, *, by: str, why: str) -> None:
        """Have ``user``'s process remove it (kicked, or banned by name)."""
        self.bp.publish({"t": "remove", "k": user.key, "by": by, "why": why})

    def ban_address_remote(self, address: str, *, by: str, rank: int) -> None:
        """Have every other process remove its users from ``address`` of rank ``rank`` or
        lower (never the owner)."""
        self.bp.publish({"t": "banaddr", "addr": address, "by": by, "rank": rank})

    def set_role_remote(self, key: str, admin: bool) -> None:
        self.bp.publish({"t": "role", "k": key, "admin": admin})

    def room_changed(
        self,
        key: str,
        *,
        topic: str | None = None,
        by: str | None = None,
        slow: int | None = None,
        locked: bool | None = None,
        notice: str | None = None,
    ) -> None:
        """A room's topic (``topic``, ``by``) or settings (``slow``, ``locked``, the
        ``notice`` its people read) changed: the other processes' live copies follow."""
        self.bp.publish(
            {"t": "room", "rk": key, "topic": topic, "by": by, "slow": slow,
             "locked": locked, "notice": notice}
        )  # fmt: skip

    # -- the target's side ------------------------------------------------------------------

    def _later(self, target: Member, by: str, why: str) -> None:
        # Removing waits (briefly) for the target to read why: never on the subscriber thread,
        # which delivers everyone's messages.
        worker = threading.Thread(
            target=self.hub.remove_member,
            args=(target,),
            kwargs={"by": by, "why": why},
            name="dc-cluster-remove",
        )  # not a daemon: it ends once the target is told (remove_member's wait is bounded)
        worker.start()

    def _on_remove(self, event: Event) -> None:
        if event["proc"] == self.bp.proc:
            return
        with self.hub._lock:
            target = self.hub._users.get(str(event["k"]))
        if target is not None:
            self._later(target, str(event["by"]), str(event["why"]))

    def _on_banaddr(self, event: Event) -> None:
        if event["proc"] == self.bp.proc:
            return
        with self.hub._lock:
            users = list(self.hub._users.values())
        for user in users:
            banned = user.address[0] == event["addr"] and rank(user) <= int(event["rank"])
            if banned and not user.is_owner:
                self._later(user, str(event["by"]), "banned")

    def _on_room(self, event: Event) -> None:
        if event["proc"] == self.bp.proc:
            return
        hub = self.hub
        batch = Batch(hub.flusher)
        with hub._lock:
            room = hub._rooms.get(str(event["rk"]))
            if room is not None:
                told: list[p.ServerEvent] = []
                if event.get("by") is not None:
                    topic = str(event.get("topic") or "")
                    room.topic = topic or None
                    told.append(pa.TopicChanged(room=room.name, topic=topic, by=str(event["by"])))
                if event.get("slow") is not None:
                    room.slow = int(event["slow"])
                    room.locked = bool(event.get("locked"))
                if event.get("notice") is not None:
                    told.append(pa.Notice(text=str(event["notice"]), room=room.name))
                for what in told:
                    batch.send_all(list(room.members.values()), Outgoing(what))
        batch.finish()

    def _on_role(self, event: Event) -> None:
        key, admin = str(event["k"]), bool(event["admin"])
        with self.hub._lock:
            for users in self.remote.values():
                if key in users:
                    users[key].admin = admin
            target = self.hub._users.get(key)
            if target is not None:
                target.is_admin = admin
