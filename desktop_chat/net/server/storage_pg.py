"""PostgreSQL storage: the chat database shared by several server processes (``--database
postgresql://…``). The same semantics as the SQLite back end (:mod:`storage`); only the engine
differs. Imported only when a PostgreSQL URL is given (psycopg is not needed otherwise).

Connections, and why:

- the *writer*: one connection, guarded by a lock, for everything that touches ``messages``.
  :meth:`add_message` inserts into a transaction it leaves open; :meth:`commit` (the flusher,
  before each round of writes) commits it: the group commit, one commit per round. Reads of
  messages go through it too, because they must see the messages the hub has already fanned
  out but not yet committed (a resume's replay, a resent ``ref``), as SQLite's single
  connection does.
- a pool (psycopg_pool) for the other tables (sessions, rooms, accounts, bans, meta): each
  statement commits on its own (autocommit), as in SQLite outside the group.
- the *ordered* connection, opened on first use, for :meth:`append_ordered`: it holds the
  session-level advisory lock that makes store-then-publish one critical section for the
  whole cluster. If the process dies, PostgreSQL drops its connection and so the lock.

Ids come from one identity sequence: server-wide and strictly increasing in the order they are
handed out. A failed statement aborts PostgreSQL's whole transaction: the messages of the round
already handed out are written again with their ids (``_recover``), as after SQLite's full
disk. If the connection is lost they are kept in memory and written on the next commit that
reaches the database. Every failure is raised as
:class:`~desktop_chat.net.server.storage_api.StorageError` (``save_session`` and ``commit`` log
it instead, as in SQLite).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from desktop_chat.net.protocol.events import ChatMessage
from desktop_chat.net.server.storage_api import (
    AfterCommit,
    More,
    NewMessage,
    StorageError,
    describe,
    message_from_row,
    stop_thread,
)
from desktop_chat.net.server.storage_pg_schema import (
    END_STALLED,
    ORDER_LOCK,
    Conn,
    migrate,
    returned_ids,
)
from desktop_chat.net.server.storage_pg_tables import PgSettingsTables, one_line, runner
from desktop_chat.net.server.storage_sql import (
    AGAIN,
    NEW_ONLY,
    Run,
    SqlMessages,
    insert_message,
    original_row,
    pyformat,
)

CONNECT_TIMEOUT = 5  # seconds to reach the database before a call fails
POOL_WAIT = 2.0  # seconds a call waits for a pooled connection (longer: the database is gone)
POOL_SIZE = 8  # pooled connections at most (sessions, rooms, accounts...)
RECONNECT_PAUSE = 1.0  # seconds between attempts to reach a database that did not answer
SWEEP_CHECK = 2.0  # seconds between looks at whether a session sweep is due
EXPIRE_EVERY = 600.0  # seconds between sweeps of expired sessions
# The ordering lock (append_ordered): a holder that stops answering (paused, host lost) loses
# its session, and the lock, after LOCK_HOLD s idle (idle_session_timeout, or a waiter's
# _end_stalled_holder); a waiter gives up after LOCK_WAIT (lock_timeout: storage_failed).
# LOCK_WAIT > LOCK_HOLD > a Redis publish's 2 s timeout.
LOCK_HOLD = 10.0
LOCK_WAIT = 15.0

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# A new message: one whose (session, ref) is stored already is not stored again (the unique
# index of schema step 3 decides, whichever process checked what before), and returns no id.
_INSERT = pyformat(f"{insert_message(with_id=False)} {NEW_ONLY} RETURNING id")
# _recover writes rows again with their ids; a row whose commit did reach the database before
# the connection broke is there already.
_INSERT_AGAIN = pyformat(f"{insert_message(with_id=True)} {AGAIN}")


class PgStorage(SqlMessages, PgSettingsTables):
    """The server's database on PostgreSQL. Thread-safe; every method is short."""

    _DISTINCT = "IS DISTINCT FROM"
    _ALL = None  # LIMIT NULL: no limit

    def __init__(self, url: str) -> None:
        self.url = url
        self.session_ttl: float | None = None  # seconds; set by the server (None: keep all)
        self.expire_every = EXPIRE_EVERY
        self.expired_round = threading.Event()  # set after each sweep (tests wait for it)
        self._lock = threading.Lock()  # the writer connection and _pending
        self._ordered = threading.Lock()  # the ordered connection
        self._pending: list[tuple[object, ...]] = []  # rows (with ids) since the last commit
        self._closed = False
        self._retry_at = 0.0  # monotonic time before which the writer does not reconnect
        self._db: Conn | None = self._connect()
        self._order_db: Conn | None = None
        self._order_used = 0.0  # time.monotonic() of the ordered connection's last round
        self._holding = False  # the ordered connection kept the lock for the next round
        try:
            migrate(self._db)
        except psycopg.Error as exc:
            self._db.close()
            raise StorageError(f"cannot prepare the database: {one_line(exc)}") from exc
        except BaseException:
            self._db.close()
            raise
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            name="dc-pg",
            timeout=POOL_WAIT,
            # A connection the database dropped (restart, failover) is replaced when taken,
            # not failed on: a round trip per use, off the message path.
            check=ConnectionPool.check_connection,
            open=True,
        )
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="dc-pg-sweep")
        self._sweeper.start()

    def _connect(self) -> Conn:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            raise StorageError(f"cannot reach {describe(self.url)}: {one_line(exc)}") from exc

    # -- lifecycle ----------------------------------------------------------------------

    def _sweep_loop(self) -> None:
        next_sweep = time.monotonic()
        while not self._stop.wait(min(SWEEP_CHECK, self.expire_every)):
            if self.session_ttl is not None and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.expire_every
                try:
                    self.expire_sessions(self.session_ttl)
                except StorageError as exc:
                    log.warning("expired sessions not swept: %s", exc)
                self.expired_round.set()

    def stop_background(self) -> None:
        """Stop the session sweeper (the database stays open)."""
        stop_thread(self._stop, self._sweeper, "the session sweeper", log)

    def close(self) -> None:
        self.stop_background()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._commit_pending()
            finally:
                if self._db is not None:
                    self._db.close()
        with self._ordered:  # after the writer's lock, never inside it (append_ordered's order)
            self._drop_ordered()
        self._pool.close()

    @contextmanager
    def _locked(self) -> Iterator[Conn]:
        """The writer connection, under its lock, for a statement or two: a failure is put
        right (the round's messages written again) and raised as :class:`StorageError`."""
        with self._lock:
            if self._closed:
                raise StorageError("the database is closed")
            try:
                yield self._writer()
            except psycopg.Error as exc:
                self._after_error()
                raise StorageError(one_line(exc)) from exc

    def _read(self, work: Callable[[Conn], _T]) -> _T:
        """``work`` (statements that only read) on the writer connection, under its lock. A
        connection the database dropped (a restart) is only found out when used: then once
        more on a fresh one (which first writes again what the old one lost), so a request
        fails only while the database is really out of reach."""
        with self._lock:
            if self._closed:
                raise StorageError("the database is closed")
            for again in (False, True):
                try:
                    return work(self._writer())
                except psycopg.Error as exc:
                    stale = not again and (self._db is None or _broken(self._db))
                    self._after_error()
                    if not stale:
                        raise StorageError(one_line(exc)) from exc
                    log.info("the database connection was lost (%s): connecting again", exc)
            raise AssertionError("unreachable")

    def _writer(self) -> Conn:
        """The writer connection (lock held), connected again if it was lost; after a failed
        attempt, calls fail at once for a moment (the hub's lock is held meanwhile)."""
        if self._db is None or self._db.closed:
            self._db = None
            if time.monotonic() < self._retry_at:
                raise StorageError("the database is unreachable; trying again in a moment")
            self._retry_at = time.monotonic() + RECONNECT_PAUSE
            self._db = self._connect()
            self._retry_at = 0.0
            self._recover()
            if self._db is None:
                raise StorageError("the connection to the database was lost again")
        return self._db

    def _after_error(self) -> None:
        """After a failed statement (lock held): end the aborted transaction and write the
        round's messages again; forget a broken connection (the next call reconnects)."""
        db = self._db
        if db is None:
            return
        if _broken(db):
            db.close()
            self._db = None
            return
        if db.info.transaction_status == TransactionStatus.INERROR:
            try:
                db.execute("ROLLBACK")
            except psycopg.Error as exc:
                log.warning("rollback failed: %s", one_line(exc))
                db.close()
                self._db = None
                return
        self._recover()

    def _recover(self) -> None:
        """Write again, with their ids and in a transaction of their own, the messages an
        aborted transaction took with it (lock held; the connection idle)."""
        db = self._db
        if not self._pending or db is None or db.closed:
            return
        if db.info.transaction_status != TransactionStatus.IDLE:
            return
        rows, self._pending = self._pending, []
        try:
            with db.transaction(), db.cursor() as cur:
                cur.executemany(_INSERT_AGAIN, rows)
        except psycopg.Error as exc:
            self._pending = rows  # kept for the next attempt
            log.error("%d messages could not be written again yet: %s", len(rows), one_line(exc))
            if _broken(db):
                db.close()
                self._db = None

    # -- messages -----------------------------------------------------------------------

    def _add(self, new: NewMessage) -> ChatMessage:
        """Store a message in the open transaction (see :class:`ChatStore`)."""
        row = new.row()
        with self._locked() as db:
            # Not committed here: the flusher commits before it writes (see commit()).
            if db.info.transaction_status == TransactionStatus.IDLE:
                db.execute("BEGIN")
            found = db.execute(_INSERT, row).fetchone()
            if found is None:
                return _original(db, new)
            msg_id = int(found[0])
            self._pending.append((msg_id, *row))
        return new.stored(msg_id, row)

    def commit(self) -> None:
        """Make every stored message durable (group commit: one per round of writes)."""
        with self._lock:
            if not self._closed:
                self._commit_pending()

    def _commit_pending(self) -> None:
        """Commit the open transaction (lock held); a failure is logged, and the messages
        are kept for the next round."""
        if self._db is None and not self._pending:
            return  # connection lost and nothing to write: the next message reconnects
        try:
            db = self._writer()
            status = db.info.transaction_status
            if status == TransactionStatus.INTRANS:
                db.execute("COMMIT")
                self._pending.clear()
            elif status == TransactionStatus.INERROR:
                self._after_error()
            else:
                self._recover()
        except (psycopg.Error, StorageError) as exc:
            log.error("commit failed: %s", exc)
            if isinstance(exc, psycopg.Error):
                self._after_error()

    def _append(
        self, rows: Sequence[NewMessage], after_commit: AfterCommit, more: More
    ) -> list[ChatMessage]:
        """Store ``rows`` and commit them under the cluster-wide advisory lock, then call
        ``after_commit`` before unlocking (see :class:`ChatStore`)."""
        if not rows:
            return []
        self.commit()  # this process's grouped messages first: they have lower ids
        values = [new.row() for new in rows]
        with self._ordered:
            if self._closed:
                raise StorageError("the database is closed")
            db = self._ordered_db()
            held, self._holding = self._holding, False
            done = False
            try:
                try:
                    # One round trip: the server takes the lock, then runs the transaction
                    # (a pipeline's statements run in order, each after the one before).
                    with db.cursor() as cur:
                        with db.pipeline():
                            if held:
                                # The last round kept the lock: let go of it first, so that
                                # another process waiting for it goes before us (PostgreSQL
                                # queues us behind it).
                                cur.execute("SELECT pg_advisory_unlock(%s)", (ORDER_LOCK,))
                            cur.execute("SELECT pg_advisory_lock(%s)", (ORDER_LOCK,))
                            with db.transaction():
                                cur.executemany(_INSERT, values, returning=True)
                        ids = returned_ids(cur, len(values))
                    # Rows that met their ref already stored: answered with the original
                    # (committed: the unique index waited for it).
                    stored = [
                        _original(db, new) if i is None else new.stored(i, r)
                        for new, i, r in zip(rows, ids, values, strict=True)
                    ]
                except psycopg.Error as exc:
                    if isinstance(exc, psycopg.errors.LockNotAvailable):
                        self._end_stalled_holder()
                    raise StorageError(one_line(exc)) from exc
                after_commit(stored)
                done = True
                return stored
            finally:
                if done and more():
                    # The next round follows at once and unlocks in its own first round
                    # trip: one round trip less per round while messages keep coming.
                    self._holding = True
                else:
                    self._unlock_ordered(db)  # whether or not the lock was taken

    def _end_stalled_holder(self) -> None:
        """We waited LOCK_WAIT for the ordering lock: end the session of a holder that has
        not moved for LOCK_HOLD. idle_session_timeout cannot do it when the holder stopped
        halfway through sending its round (its session then counts as active, waiting for
        the rest): this is the bound for that case. The next round gets the lock."""
        try:
            with self._pooled() as db:
                db.execute(END_STALLED, (ORDER_LOCK, f"{LOCK_HOLD} seconds"))
        except (psycopg.Error, StorageError) as exc:
            log.warning("could not end a stalled holder of the ordering lock: %s", exc)

    def _ordered_db(self) -> Conn:
        now = time.monotonic()
        if self._order_db is not None and now - self._order_used > LOCK_HOLD / 2:
            self._drop_ordered()  # PostgreSQL may be about to end it as idle: a fresh one
        if self._order_db is None or self._order_db.closed:
            self._order_db = self._connect()
            hold = int(LOCK_HOLD * 1000)
            for name, ms in (("lock_timeout", int(LOCK_WAIT * 1000)),
                             ("idle_in_transaction_session_timeout", hold),
                             ("idle_session_timeout", hold)):  # fmt: skip
                try:
                    self._order_db.execute(f"SET {name} = {ms}")
                except psycopg.Error as exc:  # idle_session_timeout: PostgreSQL 14 or newer
                    log.warning("the ordering lock's %s is not set: %s", name, one_line(exc))
        self._order_used = now
        return self._order_db

    def _unlock_ordered(self, db: Conn) -> None:
        try:
            if db.info.transaction_status == TransactionStatus.INERROR:
                db.execute("ROLLBACK")
            db.execute("SELECT pg_advisory_unlock(%s)", (ORDER_LOCK,))
        except psycopg.Error as exc:
            # Closing the connection releases the lock too.
            log.warning("advisory unlock failed (%s): the connection is closed", one_line(exc))
            self._drop_ordered()

    def _drop_ordered(self) -> None:
        self._holding = False  # closing the connection lets go of the lock
        if self._order_db is not None:
            self._order_db.close()
            self._order_db = None

    def _reading(self, work: Callable[[Run], _T]) -> _T:
        return self._read(lambda db: work(runner(db)))

    def _writing(self, work: Callable[[Run], _T]) -> _T:
        with self._locked() as db:
            return work(runner(db))

    def _in_rooms(self, room_keys: Iterable[str]) -> tuple[str, dict[str, object]]:
        return "room_key = ANY(:rooms)", {"rooms": list(room_keys)}


def _original(db: Conn, new: NewMessage) -> ChatMessage:
    """The stored message whose (session, ref) ``new`` repeats, with its ref."""
    row = original_row(runner(db), new)
    if row is None:
        raise StorageError("a ref conflicts with no stored message")
    return replace(message_from_row(row), ref=new.ref)


def _broken(db: Conn) -> bool:
    """Is the connection lost (closed, or its state unknown after a network error)?"""
    return db.closed or db.info.transaction_status == TransactionStatus.UNKNOWN
