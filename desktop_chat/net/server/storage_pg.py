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

import json
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

from desktop_chat.net.protocol.events import ChatMessage, FileInfo, Ref
from desktop_chat.net.server.storage_api import (
    MESSAGE_COLUMNS,
    READ_COLUMNS,
    Identity,
    NewMessage,
    StorageError,
    describe,
    message_from_row,
)
from desktop_chat.net.server.storage_pg_schema import (
    END_STALLED,
    ORDER_LOCK,
    Conn,
    migrate,
    returned_ids,
)
from desktop_chat.net.server.storage_pg_tables import PgSettingsTables, one_line

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
_INSERT = (
    f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({', '.join(['%s'] * 16)}) "
    "ON CONFLICT (from_session, ref) WHERE ref IS NOT NULL DO NOTHING RETURNING id"
)
# _recover writes rows again with their ids; a row whose commit did reach the database before
# the connection broke is there already.
_INSERT_AGAIN = (
    f"INSERT INTO messages (id, {MESSAGE_COLUMNS}) VALUES ({', '.join(['%s'] * 17)}) "
    "ON CONFLICT DO NOTHING"
)
_MINE_SENT = "(from_session = %(session)s OR from_account = %(account)s)"
_MINE_RECEIVED = "(to_session = %(session)s OR to_account = %(account)s)"


class PgStorage(PgSettingsTables):
    """The server's database on PostgreSQL. Thread-safe; every method is short."""

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
        self._stop.set()
        if self._sweeper.is_alive():
            self._sweeper.join(timeout=10)
            if self._sweeper.is_alive():
                log.error("the session sweeper did not stop")

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

    def add_message(
        self,
        *,
        sender: str,
        text: str,
        room: str | None = None,
        room_key: str | None = None,
        dm_from: str | None = None,
        dm_to: str | None = None,
        to_name: str | None = None,
        file: FileInfo | None = None,
        me: bool = False,
        ts: int | None = None,
        by: Identity | None = None,
        to: Identity | None = None,
        ref: Ref | None = None,
    ) -> ChatMessage:
        """Store a message in the open transaction (see :class:`ChatStore`)."""
        new = NewMessage(
            sender=sender,
            text=text,
            room=room,
            room_key=room_key,
            dm_from=dm_from,
            dm_to=dm_to,
            to_name=to_name,
            file=file,
            me=me,
            ts=ts,
            by=by,
            to=to,
            ref=ref,
        )
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

    def append_ordered(
        self,
        rows: Sequence[NewMessage],
        after_commit: Callable[[list[ChatMessage]], None],
        *,
        more: Callable[[], bool] = lambda: False,
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

    def mark_file_expired(self, message_id: int) -> None:
        """The file of message ``message_id`` was removed: its ``file`` now says ``expired``."""
        with self._locked() as db:
            row = db.execute("SELECT file FROM messages WHERE id = %s", (message_id,)).fetchone()
            if row is None or not isinstance(row[0], str):
                return
            file = json.loads(row[0])
            file["expired"] = True
            db.execute(
                "UPDATE messages SET file = %s WHERE id = %s", (json.dumps(file), message_id)
            )

    def session_refs(self, session: str, newest: int) -> list[str]:
        """The last ``newest`` refs (as stored: JSON) of the session whose token hashes to
        ``session``, oldest first."""
        rows = self._read(
            lambda db: db.execute(
                "SELECT ref FROM messages WHERE from_session = %s AND ref IS NOT NULL "
                "ORDER BY id DESC LIMIT %s",
                (session, newest),
            ).fetchall()
        )
        return [str(r[0]) for r in reversed(rows)]

    def message_for_ref(self, session: str, ref: Ref) -> ChatMessage | None:
        """The message the session (token hash ``session``) already sent with this ``ref``."""
        row = self._read(
            lambda db: db.execute(
                f"SELECT {READ_COLUMNS} FROM messages WHERE from_session = %s AND ref = %s "
                "ORDER BY id LIMIT 1",
                (session, json.dumps(ref)),
            ).fetchone()
        )
        return None if row is None else replace(message_from_row(row), ref=ref)

    def room_history(
        self, room_key: str, *, before: int | None, limit: int
    ) -> tuple[list[ChatMessage], bool]:
        """Up to ``limit`` messages of a room before id ``before``, oldest first; and more?"""
        sql = f"SELECT {READ_COLUMNS} FROM messages WHERE room_key = %(room)s"
        return self._page(sql, {"room": room_key}, before, limit)

    def dm_readable(self, message_id: int, me: Identity) -> bool:
        """Is message ``message_id`` a DM that ``me`` took part in (its file may be read)?"""
        sql = (
            "SELECT 1 FROM messages WHERE id = %(id)s AND dm_from IS NOT NULL AND "
            f"((dm_from = %(key)s AND {_MINE_SENT}) OR (dm_to = %(key)s AND {_MINE_RECEIVED}))"
        )
        args = {"id": message_id, "key": me.key, "session": me.session, "account": me.account}
        return self._read(lambda db: db.execute(sql, args).fetchone()) is not None

    def dm_history(
        self, me: Identity, other_key: str, *, before: int | None, limit: int
    ) -> tuple[list[ChatMessage], bool]:
        """The private conversation of ``me`` with another user: only the DMs ``me`` took
        part in, oldest first, and whether there is more."""
        sql = (
            f"SELECT {READ_COLUMNS} FROM messages WHERE "
            f"((dm_from = %(key)s AND dm_to = %(other)s AND {_MINE_SENT}) "
            f"OR (dm_from = %(other)s AND dm_to = %(key)s AND {_MINE_RECEIVED}))"
        )
        args: dict[str, object] = {
            "key": me.key,
            "other": other_key,
            "session": me.session,
            "account": me.account,
        }
        return self._page(sql, args, before, limit)

    def _page(
        self, sql: str, args: dict[str, object], before: int | None, limit: int
    ) -> tuple[list[ChatMessage], bool]:
        if before is not None:
            sql += " AND id < %(before)s"
            args["before"] = before
        sql += " ORDER BY id DESC LIMIT %(limit)s"
        args["limit"] = limit + 1
        rows = self._read(lambda db: db.execute(sql, args).fetchall())
        more = len(rows) > limit
        return [message_from_row(r) for r in reversed(rows[:limit])], more

    def messages_since(
        self, since: int, room_keys: Iterable[str], me: Identity, *, limit: int = -1
    ) -> list[ChatMessage]:
        """Messages of these rooms and of the DMs ``me`` took part in with id > since, in id
        order (the first ``limit`` of them; all when negative), those ``me``'s session sent
        with their ``ref``."""
        cols = f"{READ_COLUMNS}, CASE WHEN from_session = %(session)s THEN ref END"
        newer = f"SELECT {cols} FROM messages WHERE id > %(since)s AND"
        parts = [
            f"{newer} room_key = ANY(%(rooms)s)",
            f"{newer} dm_from = %(key)s AND {_MINE_SENT}",
            f"{newer} dm_to = %(key)s AND {_MINE_RECEIVED}",
        ]
        sql = " UNION ".join(parts) + " ORDER BY id LIMIT %(limit)s"
        args: dict[str, object] = {
            "since": since,
            "rooms": list(room_keys),
            "key": me.key,
            "session": me.session,
            "account": me.account,
            "limit": None if limit < 0 else limit,  # LIMIT NULL: all
        }
        rows = self._read(lambda db: db.execute(sql, args).fetchall())
        out = []
        for row in rows:
            msg = message_from_row(row[:-1])
            if row[-1] is not None:
                msg = replace(msg, ref=json.loads(row[-1]))
            out.append(msg)
        return out

    def name_used_by_others(self, key: str, session: str) -> bool:
        """Has anyone but session ``session`` (a token hash) used the name ``key``?"""
        row = self._read(
            lambda db: db.execute(
                "SELECT 1 FROM sessions WHERE name_key = %(key)s AND token != %(s)s UNION ALL "
                "SELECT 1 FROM messages WHERE sender_key = %(key)s "
                "AND from_session IS DISTINCT FROM %(s)s UNION ALL "
                "SELECT 1 FROM messages WHERE dm_to = %(key)s "
                "AND to_session IS DISTINCT FROM %(s)s LIMIT 1",
                {"key": key, "s": session},
            ).fetchone()
        )
        return row is not None

    def claim_dms(self, me: Identity) -> None:
        """The session ``me`` registered its name: its DMs belong to the account from now on."""
        args = {"account": me.account, "key": me.key, "session": me.session}
        with self._locked() as db:
            for side, key, session in (
                ("from_account", "dm_from", "from_session"),
                ("to_account", "dm_to", "to_session"),
            ):
                db.execute(
                    f"UPDATE messages SET {side} = %(account)s WHERE {key} = %(key)s "
                    f"AND {session} = %(session)s",
                    args,
                )

    def last_message_id(self, upto: int | None = None) -> int:
        cap = (1 << 63) - 1 if upto is None else upto
        sql = "SELECT MAX(id) FROM messages WHERE id <= %s"
        row = self._read(lambda db: db.execute(sql, (cap,)).fetchone())
        return 0 if row is None or row[0] is None else int(row[0])


def _original(db: Conn, new: NewMessage) -> ChatMessage:
    """The stored message whose (session, ref) ``new`` repeats, with its ref."""
    assert new.by is not None and new.ref is not None
    row = db.execute(
        f"SELECT {READ_COLUMNS} FROM messages WHERE from_session = %s AND ref = %s",
        (new.by.session, json.dumps(new.ref)),
    ).fetchone()
    if row is None:
        raise StorageError("a ref conflicts with no stored message")
    return replace(message_from_row(row), ref=new.ref)


def _broken(db: Conn) -> bool:
    """Is the connection lost (closed, or its state unknown after a network error)?"""
    return db.closed or db.info.transaction_status == TransactionStatus.UNKNOWN
