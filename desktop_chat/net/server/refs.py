"""Sending exactly once: which ``ref`` each live session already used, and for which message.

The contract makes ``ref`` on ``say``/``dm`` an idempotency key per session: a repeated ``ref``
is answered with the original ``message`` and stores nothing. The durable record is the
``ref`` column of the stored message (so it survives a crash with the message itself); this
module keeps a bounded in-memory index of the recent ones, so that the common case — a new
``ref`` — costs a dictionary lookup and no query. It holds only a hash of each ``ref`` (about
70 bytes an entry): it is a filter, and a collision merely costs one indexed query.

A session whose index is *complete* (every ``ref`` it ever used is in memory: it is new, or it
resumed with at most :data:`KEEP` stored, which login loads, and never passed the cap since)
needs no query on a miss. Otherwise a miss is checked against the database's index.
"""

from __future__ import annotations

import json
import time

from desktop_chat.net.protocol.events import Ref

KEEP = 1000  # refs remembered per session in memory (the contract asks for at least 1,000)


def ref_key(ref: Ref) -> str:
    """``1`` and ``"1"`` are different refs: key by their JSON, as the database stores them."""
    return json.dumps(ref)


class _SessionRefs:
    __slots__ = ("complete", "doubt_until", "seen")

    def __init__(self, *, complete: bool, doubt_until: float = 0.0) -> None:
        self.seen: dict[int, None] = {}  # hashes of ref keys, oldest first
        self.complete = complete
        self.doubt_until = doubt_until  # monotonic time until which the database decides


class RecentRefs:
    """Per session, the ``ref``s it used lately. Not thread-safe: used under the hub's lock."""

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._sessions: dict[str, _SessionRefs] = {}

    def start(
        self, session: str, stored: list[str] | None = None, *, doubt_for: float = 0.0
    ) -> None:
        """A session logged in. ``stored``: the ref keys the database holds for it, oldest
        first (None or empty for a new session); more than :data:`KEEP` of them and only the
        newest are kept here, the database answering for the rest. ``doubt_for``: seconds
        during which the database answers for every ref (a session resumed from another
        process of a cluster, which may still be storing what it sent there)."""
        if session in self._sessions:
            return
        stored = stored or []
        doubt_until = time.monotonic() + doubt_for if doubt_for else 0.0
        known = _SessionRefs(complete=len(stored) <= self._keep, doubt_until=doubt_until)
        known.seen.update((hash(key), None) for key in stored[-self._keep :])
        self._sessions[session] = known

    @property
    def keep(self) -> int:
        return self._keep

    def forget(self, session: str) -> None:
        """Its connection ended: the database keeps answering for it."""
        self._sessions.pop(session, None)

    def may_be_used(self, session: str, ref: Ref) -> bool:
        """False only when ``ref`` is certainly new for this session (no query needed)."""
        known = self._sessions.get(session)
        if known is None:
            return True
        if hash(ref_key(ref)) in known.seen or not known.complete:
            return True
        return bool(known.doubt_until) and time.monotonic() < known.doubt_until

    def add(self, session: str, ref: Ref) -> None:
        """The session's message with ``ref`` was accepted."""
        known = self._sessions.get(session)
        if known is None:
            return
        known.seen[hash(ref_key(ref))] = None
        if len(known.seen) > self._keep:
            del known.seen[next(iter(known.seen))]
            known.complete = False  # the oldest now lives only in the database
