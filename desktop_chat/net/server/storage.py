"""SQLite storage: messages (rooms and DMs), sessions and rooms, in one file in the data folder.
The default back end of :class:`~desktop_chat.net.server.storage_api.ChatStore` (PostgreSQL's
is :mod:`storage_pg`); its ``append_ordered`` critical section is a lock of this process.

Durability, exactly: the database runs in WAL mode with ``synchronous=NORMAL``. Messages are
inserted into an open transaction, and the server's writer loop commits it before each round of
socket writes (group commit): so a message anyone saw is in the WAL file, and one commit covers
every message of a round. A commit writes to the WAL but does not ``fsync``; SQLite fsyncs at
checkpoints. Hence:

- the server process crashing (or being killed) loses nothing anyone received: the WAL is in
  the operating system's cache and is replayed on the next open (messages accepted but not yet
  sent to anyone, a round's worth, can be lost, and their ids handed out again);
- a power loss or kernel crash can lose the transactions since the last checkpoint (a
  background thread checkpoints every 2 seconds: about the last 2 seconds of messages). The
  database stays consistent; message ids of lost messages may be handed out again.

This is SQLite's own group commit: no fsync per message. One connection, guarded by a lock,
serves all threads; callers keep each call short.

Privacy: the database file (and its ``-wal``/``-shm`` companions) is readable by its owner only,
session tokens are stored as their SHA-256, and every DM records who took part (the sending and
receiving sessions, and the account when the name was registered), so a DM is served only to
those identities (see :class:`Identity`). The schema and its numbered history of steps live
in ``storage_schema.py``.

Failures: a write that meets a full disk or another process's lock (after ``BUSY_TIMEOUT_MS``)
raises :data:`StorageError` and stores nothing of that message. SQLite then rolls back the
*whole* open transaction, so the messages of the round already handed out are written again
(``_recover``): nothing anyone may have received is lost to a full disk.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from desktop_chat.net.protocol.events import ChatMessage
from desktop_chat.net.server.storage_api import (
    AfterCommit,
    More,
    NewMessage,
    StorageError,
    message_from_row,
    stop_thread,
)
from desktop_chat.net.server.storage_api import Identity as Identity
from desktop_chat.net.server.storage_api import StoredSession as StoredSession
from desktop_chat.net.server.storage_api import token_hash as token_hash
from desktop_chat.net.server.storage_schema import migrate
from desktop_chat.net.server.storage_sql import (
    AGAIN,
    NEW_ONLY,
    Run,
    SqlMessages,
    insert_message,
    original_row,
)
from desktop_chat.net.server.storage_sql_tables import SAVE_SESSION, SqlTables, session_args
from desktop_chat.net.server.storage_tables import SettingsTables

CHECKPOINT_EVERY = 2.0  # seconds between background WAL checkpoints
BUSY_TIMEOUT_MS = 500  # how long a write waits for another process's lock before it fails
EXPIRE_EVERY = 600.0  # seconds between sweeps of expired sessions

log = logging.getLogger(__name__)

__all__ = ["Identity", "Storage", "StorageError", "StoredSession", "token_hash"]

# A new message: one whose (session, ref) is stored already is not stored again (the unique
# index of schema step 5 decides, whoever checked what before).
_INSERT_NEW = f"{insert_message(with_id=True)} {NEW_ONLY}"
# _recover writes rolled-back rows again; one whose ref was stored meanwhile stays out (as on
# PostgreSQL) rather than block every later recovery.
_INSERT_AGAIN = f"{insert_message(with_id=True)} {AGAIN}"
_T = TypeVar("_T")


def _owner_only(path: Path) -> None:
    """Create ``path`` readable by its owner only (or make it so): it holds every DM."""
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if p.exists():
            os.chmod(p, 0o600)
    if not path.exists():
        no_follow = getattr(os, "O_NOFOLLOW", 0)  # not on Windows
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | no_follow, 0o600)
        os.close(fd)


class Storage(SqlMessages, SqlTables, SettingsTables):
    """The server's database. Thread-safe; every method is one short transaction."""

    _DISTINCT = "IS NOT"
    _ALL = -1  # LIMIT -1: no limit

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._ordered = threading.Lock()  # append_ordered's critical section
        # SQLite gives the -wal and -shm files the database file's permissions.
        if str(path) != ":memory:":
            _owner_only(self.path)
        self.session_ttl: float | None = None  # seconds; set by the server (None: keep all)
        self.expire_every = EXPIRE_EVERY
        self.expired_round = threading.Event()  # set after each sweep (tests wait for it)
        self._db = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=5.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # Checkpoints (which fsync) run in a thread of their own, never in the commit that the
        # server's writer loop makes before sending: measured, an automatic checkpoint there
        # stalled every delivery for 10-20 ms every ~300 commits.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="dc-checkpoint")
        self._pending: list[tuple[object, ...]] = []  # rows written since the last commit
        with self._lock:
            try:
                migrate(self._db)
            except BaseException:
                self._db.close()
                raise
            # After the migrations (which may wait for a lock): from now on a write that
            # meets another process's lock fails soon, since the hub's lock is held meanwhile.
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._closed = False
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=5.0)
        next_sweep = time.monotonic()
        try:
            while not self._stop.wait(min(CHECKPOINT_EVERY, self.expire_every)):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.OperationalError as exc:  # busy: the next round will do it
                    log.debug("checkpoint postponed: %s", exc)
                if self.session_ttl is not None and time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.expire_every
                    self.expire_sessions(self.session_ttl)
                    self.expired_round.set()
        finally:
            db.close()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The connection's lock, for one short statement or two: a database error is put
        right (:meth:`_recover`) and raised as :class:`StorageError`."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                if not self._closed:
                    self._recover()
                raise StorageError(str(exc)) from exc

    def stop_background(self) -> None:
        """Stop the checkpoint thread (the database stays open)."""
        stop_thread(self._stop, self._checkpointer, "the checkpoint thread", log)

    def close(self) -> None:
        self.stop_background()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._db.in_transaction:
                    self._db.execute("COMMIT")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()

    # -- messages ---------------------------------------------------------------------------

    def _add(self, new: NewMessage) -> ChatMessage:
        """Store ``new``; return it with its server-wide id (without ``ref``: the hub adds it
        to the sender's copy only).

        ``new.by`` and ``new.to`` are the identities that took part (``to`` for DMs): only
        they are ever served the DM again (see :meth:`dm_history`). ``ref`` is kept with the
        message, found again by ``by``'s session (sending exactly once). Raises
        :data:`StorageError` when it cannot be written (disk full, database locked by another
        process): then nothing of it was stored."""
        row = new.row()
        with self._lock:
            # Not committed here: the server's writer loop commits (see commit()) before it
            # puts anything on the wire, so one commit covers every message of a round. A
            # failed INSERT undoes itself (statement rollback) and leaves the others in place.
            try:
                if not self._db.in_transaction:
                    self._db.execute("BEGIN")
                cur = self._db.execute(_INSERT_NEW, (None, *row))
                original = None if cur.rowcount else self._original(new)
            except sqlite3.Error as exc:
                self._recover()
                raise StorageError(str(exc)) from exc
            if original is not None:
                return original
            msg_id = cur.lastrowid
            assert msg_id is not None
            self._pending.append((msg_id, *row))
        return new.stored(msg_id, row)

    def _original(self, new: NewMessage) -> ChatMessage:
        """The stored message whose (session, ref) ``new`` repeats, with its ref (lock held)."""
        row = original_row(self._db.execute, new)
        if row is None:
            raise sqlite3.IntegrityError("a ref conflicts with no stored message")
        return replace(message_from_row(row), ref=new.ref)

    def _append(
        self, rows: Sequence[NewMessage], after_commit: AfterCommit, more: More
    ) -> list[ChatMessage]:
        """Store ``rows`` and commit them in a critical section of this process, then call
        ``after_commit`` with them before leaving it (see :class:`ChatStore`). Raises
        :data:`StorageError` when they could not be stored: then none of them was."""
        with self._ordered:
            values = [new.row() for new in rows]
            with self._lock:
                if self._closed:
                    raise StorageError("the database is closed")
                self._commit_pending()  # the group commit's rows first: they have lower ids
                if self._db.in_transaction:
                    raise StorageError("earlier messages are not committed yet")
                stored: list[ChatMessage] = []
                try:
                    self._db.execute("BEGIN")
                    for new, row in zip(rows, values, strict=True):
                        cur = self._db.execute(_INSERT_NEW, (None, *row))
                        if cur.rowcount:
                            stored.append(new.stored(cur.lastrowid or 0, row))
                        else:
                            stored.append(self._original(new))
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    # This transaction holds these rows only: undoing it stores none of them.
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise StorageError(str(exc)) from exc
            after_commit(stored)
            return stored

    def commit(self) -> None:
        """Make every stored message durable (group commit: one per round of writes)."""
        with self._lock:
            if not self._closed:
                self._commit_pending()

    def _commit_pending(self) -> None:
        """Commit the open transaction, if any (lock held). A failure is logged and what it
        took with it put back (or kept for the next round)."""
        if not self._db.in_transaction:
            self._recover()  # rows a failed write could not put back yet, if any
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error:
            # The writer loop must survive a full disk: put back what SQLite rolled
            # back, or keep the transaction for the next round.
            log.exception("commit failed")
            self._recover()
        else:
            self._pending.clear()

    def _recover(self) -> None:
        """After a failed write (lock held): SQLite rolls back the *whole* open transaction on
        a full disk, taking with it messages already handed out (and maybe on the wire): write
        them again, with their ids, in a transaction of their own."""
        if self._db.in_transaction or not self._pending:
            return
        rows, self._pending = self._pending, []
        try:
            self._db.execute("BEGIN")
            self._db.executemany(_INSERT_AGAIN, rows)
            self._db.execute("COMMIT")
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._pending = rows  # kept for the next attempt
            log.exception("%d messages could not be written again yet", len(rows))

    def cap_pages(self, pages: int) -> int:
        """Cap the database at ``pages`` pages (``PRAGMA max_page_count``; 0: no cap beyond
        SQLite's own); return the cap in force. A full disk on demand, for the fault tests."""
        with self._locked():
            if pages <= 0:
                pages = 0xFFFFFFFE
            pages = max(pages, int(self._db.execute("PRAGMA page_count").fetchone()[0]))
            return int(self._db.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0])

    def _reading(self, work: Callable[[Run], _T]) -> _T:
        with self._locked():
            return work(self._db.execute)

    def _writing(self, work: Callable[[Run], _T]) -> _T:
        return self._reading(work)  # one connection, one lock: writes take the same path

    def _tables(self, work: Callable[[Run], _T]) -> _T:
        return self._reading(work)  # sessions and rooms: the same connection and lock

    def _in_rooms(self, room_keys: Iterable[str]) -> tuple[str, dict[str, object]]:
        rooms: dict[str, object] = {f"r{i}": k for i, k in enumerate(room_keys)}
        return f"room_key IN ({','.join(f':{name}' for name in rooms)})", rooms

    # -- rooms ------------------------------------------------------------------------------

    def ensure_room(self, key: str, name: str) -> str:
        """Create the room if new; return its name as first given."""
        with self._locked():
            self._db.execute("INSERT OR IGNORE INTO rooms (key, name) VALUES (?, ?)", (key, name))
            row = self._db.execute("SELECT name FROM rooms WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    def room_names(self) -> list[tuple[str, str]]:
        """(key, name as first given) of every room ever created."""
        with self._locked():
            return [(str(k), str(n)) for k, n in self._db.execute("SELECT key, name FROM rooms")]

    # -- sessions ---------------------------------------------------------------------------

    def save_session(
        self, token: str, name: str, name_key: str, rooms: Sequence[str], *, tls: bool = False
    ) -> None:
        """Create or update a session (kept as the token's hash); ``tls`` counts only when the
        session is created: a session begun over TLS stays TLS-only. Best effort: with the disk
        full or the database locked by another process it is logged, and the session lives on
        in memory meanwhile."""
        with self._lock:
            try:
                self._db.execute(SAVE_SESSION, session_args(token, name, name_key, rooms, tls))
            except sqlite3.Error as exc:
                self._recover()
                log.warning("a session was not saved: %s", exc)
