"""One process's way into the cluster's critical section: store, then publish, in id order.

Messages to store queue here; one writer thread takes everything queued into one
:meth:`ChatStore.append_ordered` — one INSERT, one COMMIT and one pipelined PUBLISH under the
cluster-wide lock — and then tells each sender how it went. That is the group commit of a
cluster: while one round is in the critical section (several round trips to PostgreSQL and
one to Redis), the next round gathers. A connection does not wait for its message to be stored
(its echo comes from the subscription like everyone's copy), so a client that pipelines many
messages fills a round on its own.

If Redis cannot take a round's messages they are stored all the same (nothing accepted is
lost); the refs of those messages are kept in :attr:`Sequencer.unsent_refs` until the
catch-up after the outage has given each sender its copy with its ref.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from desktop_chat.net.protocol import events as p
from desktop_chat.net.server.backplane import Backplane, Event
from desktop_chat.net.server.storage_api import ChatStore, NewMessage, StorageError

log = logging.getLogger(__name__)

MAX_QUEUED = 4096  # submissions (a message each, from say/dm) queued at most; then senders wait

Done = Callable[[list[p.ChatMessage], StorageError | None], None]


class _Pending:
    """One caller's rows in a round, and whom to tell how it went."""

    __slots__ = ("done", "rows")

    def __init__(self, rows: list[NewMessage], done: Done) -> None:
        self.rows = rows
        self.done = done


class Sequencer:
    """Stores and publishes this process's messages, in rounds, on a thread of its own."""

    def __init__(self, storage: ChatStore, backplane: Backplane) -> None:
        self.storage = storage
        self.bp = backplane
        # id -> (session hash, ref): written by the writer thread, read and pruned by the
        # subscriber's catch-up, hence a lock of its own.
        self.unsent_refs: dict[int, tuple[str, p.Ref]] = {}
        self._unsent_lock = threading.Lock()
        self._cond = threading.Condition()
        self._waiting: list[_Pending] = []
        self._stopping = False
        self._thread: threading.Thread | None = None

    def unsent_ref(self, msg_id: int) -> tuple[str, p.Ref | None]:
        """(sender's session hash, ref) of a stored message Redis never carried, or ("", None)."""
        with self._unsent_lock:
            return self.unsent_refs.get(msg_id, ("", None))

    def forget_refs(self, upto: int) -> None:
        """The catch-up has delivered every message up to id ``upto``: their refs are done
        (newer ones, stored since the catch-up read the database, are kept)."""
        with self._unsent_lock:
            for msg_id in [i for i in self.unsent_refs if i <= upto]:
                del self.unsent_refs[msg_id]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dc-cluster-writer")
        self._thread.start()

    def stop(self) -> None:
        """Store what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            if self._thread.is_alive():
                log.error("the cluster's writer thread did not stop")

    def submit(self, rows: list[NewMessage], done: Done) -> None:
        """Queue ``rows``; ``done(messages, None)`` once stored and published, or
        ``done([], error)`` if they could not be stored (then none was). Called on the
        writer thread: keep it short."""
        with self._cond:
            # A sender waits while the queue is full (PostgreSQL slower than the senders):
            # as it would if it stored its message itself.
            while len(self._waiting) >= MAX_QUEUED and not self._stopping:
                self._cond.wait()
            if self._stopping or self._thread is None:
                closing = True
            else:
                closing = False
                self._waiting.append(_Pending(rows, done))
                self._cond.notify_all()
        if closing:
            done([], StorageError("the server is closing"))

    def store(self, rows: list[NewMessage]) -> list[p.ChatMessage]:
        """Queue ``rows`` and wait until they are stored and published (raises
        :class:`StorageError` if they could not be stored)."""
        finished = threading.Event()
        outcome: list[tuple[list[p.ChatMessage], StorageError | None]] = []

        def done(msgs: list[p.ChatMessage], error: StorageError | None) -> None:
            outcome.append((msgs, error))
            finished.set()

        self.submit(rows, done)
        finished.wait()
        msgs, error = outcome[0]
        if error is not None:
            raise error
        return msgs

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stopping:
                    self._cond.wait()
                if not self._waiting:
                    return  # stopping, and everything queued is written
                batch, self._waiting = self._waiting, []
                self._cond.notify_all()  # room in the queue again
            self._round(batch)

    def _round(self, batch: list[_Pending]) -> None:
        rows = [row for pending in batch for row in pending.rows]
        try:
            msgs = self.storage.append_ordered(
                rows, lambda m: self._publish(rows, m), more=lambda: bool(self._waiting)
            )
        except StorageError as exc:
            log.error("%d messages could not be stored: %s", len(rows), exc)
            if len(batch) > 1 and refused_rows(exc):
                # The database refused a row (bad data): one sender's bad message must not
                # fail everyone else's, so each sender's rows are tried on their own.
                for pending in batch:
                    self._round([pending])
                return
            for pending in batch:
                self._tell(pending, [], exc)
            return
        except Exception:
            # A bug must not end the writer thread: every later send would wait forever.
            # The senders hear that their messages were not stored.
            log.exception("storing %d messages failed", len(rows))
            for pending in batch:
                self._tell(pending, [], StorageError("an internal error"))
            return
        at = 0
        for pending in batch:
            self._tell(pending, msgs[at : at + len(pending.rows)], None)
            at += len(pending.rows)

    @staticmethod
    def _tell(pending: _Pending, msgs: list[p.ChatMessage], error: StorageError | None) -> None:
        try:
            pending.done(msgs, error)
        except Exception:
            log.exception("telling a sender how its message went failed")

    def _publish(self, rows: list[NewMessage], msgs: list[p.ChatMessage]) -> None:
        """In the critical section: the stored messages to every process, in id order, as one
        event (one PUBLISH, and one message to parse and one hold of the hub's lock for each
        receiver, however many messages the round has)."""
        items: list[Event] = []
        for row, msg in zip(rows, msgs, strict=True):
            item: Event = {
                "m": msg.to_dict(), "rk": row.room_key, "fk": row.dm_from, "tk": row.dm_to,
                "sk": None if row.by is None else row.by.key,
                "h": "" if row.by is None else row.by.session, "ref": row.ref,
                # Whose DM it is (session hash, account): never a later holder of a name.
                "fa": None if row.by is None else row.by.account,
                "th": None if row.to is None else row.to.session,
                "ta": None if row.to is None else row.to.account,
            }  # fmt: skip
            if msg.ref is not None:
                # A resend whose original another process stored: only the sender's session
                # is answered (it has the original already if its last_id says so).
                item["once"] = True
            items.append(item)
        events: list[Event] = [{"t": "msgs", "ms": items}]
        # Tried once (the cluster's lock is held meanwhile): if Redis cannot take them, the
        # other processes fill the gap from the database when the next message or this
        # process's "stored" event reaches them, and this process's catch-up after the
        # outage gives each sender its copy with its ref.
        if not self.bp.publish_many(events):
            with self._unsent_lock:
                for item in items:
                    if item["ref"] is not None:
                        self.unsent_refs[item["m"]["id"]] = (item["h"], item["ref"])


def refused_rows(exc: StorageError) -> bool:
    """The database answered and refused the data (not: could not be reached)."""
    return isinstance(exc.__cause__, psycopg.DataError | psycopg.IntegrityError)
