"""SQLite storage: messages (rooms and DMs), sessions and rooms, in one file in the data folder.

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

Failures: a write that meets a full disk or another process's lock (after ``BUSY_TIMEOUT_MS``)
raises :data:`StorageError` and stores nothing of that message. SQLite then rolls back the
*whole* open transaction, so the messages of the round already handed out are written again
(``_recover``): nothing anyone may have received is lost to a full disk.

Schema: :data:`MIGRATIONS` is the numbered history of the schema (``PRAGMA user_version``);
opening a database applies the steps it lacks, in order, each in its own transaction. A schema
change is a new step appended to that list, never an edit of a released one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from desktop_chat.net.protocol.events import ChatMessage, FileInfo, Ref

CHECKPOINT_EVERY = 2.0  # seconds between background WAL checkpoints
BUSY_TIMEOUT_MS = 500  # how long a write waits for another process's lock before it fails

log = logging.getLogger(__name__)

StorageError = sqlite3.Error  # what a failed write raises (disk full, locked by someone else)

# Version 1: the schema as it stood before migrations were numbered (databases made by 0.1 and
# 0.2 have user_version 0 and these tables already: every statement tolerates that).
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    sender TEXT NOT NULL,
    room_key TEXT,
    room TEXT,
    dm_from TEXT,
    dm_to TEXT,
    to_name TEXT,
    text TEXT NOT NULL,
    file TEXT,
    me INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_room ON messages (room_key, id) WHERE room_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_dm_from ON messages (dm_from, id) WHERE dm_from IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_dm_to ON messages (dm_to, id) WHERE dm_to IS NOT NULL;
CREATE TABLE IF NOT EXISTS rooms (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    topic TEXT,
    pw_hash TEXT,
    slow INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS accounts (
    name_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    pw_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'user',
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bans (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    by_name TEXT,
    created INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS sessions (
    token TEXT PRIMARY KEY,
    name_key TEXT NOT NULL,
    name TEXT NOT NULL,
    rooms TEXT NOT NULL,
    created INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
"""


def _v1_base(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            db.execute(statement)
    columns = {r[1] for r in db.execute("PRAGMA table_info(rooms)")}
    if "pw_hash" not in columns:  # databases made before room settings existed
        db.execute("ALTER TABLE rooms ADD COLUMN pw_hash TEXT")
        db.execute("ALTER TABLE rooms ADD COLUMN slow INTEGER NOT NULL DEFAULT 0")


def _v2_message_refs(db: sqlite3.Connection) -> None:
    # Sending exactly once: each accepted `ref` is kept with its message (in the same row, so
    # in the same transaction), keyed by the sending session.
    db.execute("ALTER TABLE messages ADD COLUMN session TEXT")
    db.execute("ALTER TABLE messages ADD COLUMN ref TEXT")
    db.execute("CREATE INDEX messages_session_ref ON messages (session, ref) WHERE ref IS NOT NULL")


# The schema's history, oldest first: step N (1-based) brings a database from user_version
# N-1 to N. Steps are only ever appended; a released step is never edited. Each runs in one
# transaction together with its user_version bump.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1_base,
    _v2_message_refs,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> int:
    """Apply the steps a database lacks (``PRAGMA user_version``); return the version it had.

    ``db`` is in autocommit mode (``isolation_level=None``). A database newer than this code
    is refused rather than misread.
    """
    had = int(db.execute("PRAGMA user_version").fetchone()[0])
    if had > SCHEMA_VERSION:
        raise RuntimeError(
            f"the database has schema version {had}; this program knows up to {SCHEMA_VERSION}"
        )
    for version in range(had + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version - 1](db)
            db.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        log.info("database schema upgraded to version %d", version)
    return had


_INSERT = (
    "INSERT INTO messages (id, ts, sender, room_key, room, dm_from, dm_to, to_name, text, file, "
    "me, session, ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "id, ts, sender, room, to_name, text, file, me"


@dataclass(frozen=True, slots=True)
class StoredSession:
    token: str
    name_key: str
    name: str
    rooms: tuple[str, ...]  # room names as spelled by the room's creator
    last_seen: float


def _row_to_message(row: Sequence[object]) -> ChatMessage:
    msg_id, ts, sender, room, to_name, text, file_json, me = row
    file = None
    if isinstance(file_json, str):
        file = FileInfo.from_dict(json.loads(file_json))
    return ChatMessage(
        id=int(msg_id),  # type: ignore[call-overload]
        ts=int(ts),  # type: ignore[call-overload]
        from_=str(sender),
        text=str(text),
        room=None if room is None else str(room),
        to=None if to_name is None else str(to_name),
        file=file,
        me=True if me else None,
    )


class Storage:
    """The server's database. Thread-safe; every method is one short transaction."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
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
        self._pending: list[tuple[object, ...]] = []  # rows written since the last commit
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="dc-checkpoint", daemon=True
        )
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
        try:
            while not self._stop.wait(CHECKPOINT_EVERY):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.OperationalError as exc:  # busy: the next round will do it
                    log.debug("checkpoint postponed: %s", exc)
        finally:
            db.close()

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer.is_alive():
            self._checkpointer.join(timeout=10)
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
        session: str | None = None,
        ref: Ref | None = None,
    ) -> ChatMessage:
        """Store a message; return it with its server-wide id (without ``ref``: the hub adds
        it to the sender's copy only).

        Raises :data:`StorageError` when it cannot be written (disk full, database locked by
        another process): then nothing of it was stored.
        """
        when = int(time.time() * 1000) if ts is None else ts
        file_json = None if file is None else json.dumps(file.to_dict())
        ref_json = None if ref is None else json.dumps(ref)
        with self._lock:
            # Not committed here: the server's writer loop commits (see commit()) before it
            # puts anything on the wire, so one commit covers every message of a round. A
            # failed INSERT undoes itself (statement rollback) and leaves the others in place.
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            row = (
                when,
                sender,
                room_key,
                room,
                dm_from,
                dm_to,
                to_name,
                text,
                file_json,
                int(me),
                session,
                ref_json,
            )
            try:
                cur = self._db.execute(_INSERT, (None, *row))
            except sqlite3.Error:
                self._recover()
                raise
            msg_id = cur.lastrowid
            assert msg_id is not None
            self._pending.append((msg_id, *row))
        return ChatMessage(
            id=msg_id,
            ts=when,
            from_=sender,
            text=text,
            room=room,
            to=to_name,
            file=file,
            me=True if me else None,
        )

    def commit(self) -> None:
        """Make every stored message durable (group commit: one per round of writes)."""
        with self._lock:
            if self._closed:
                return
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
            self._db.executemany(_INSERT, rows)
            self._db.execute("COMMIT")
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._pending = rows  # kept for the next attempt
            log.exception("%d messages could not be written again yet", len(rows))

    def cap_pages(self, pages: int) -> int:
        """Cap the database at ``pages`` pages (``PRAGMA max_page_count``; 0: no cap beyond
        SQLite's own); return the cap in force. A full disk on demand, for the fault tests."""
        with self._lock:
            if pages <= 0:
                pages = 0xFFFFFFFE
            pages = max(pages, int(self._db.execute("PRAGMA page_count").fetchone()[0]))
            return int(self._db.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0])

    def session_refs(self, session: str, newest: int) -> list[str]:
        """The session's last ``newest`` refs (as stored: JSON), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ref FROM messages WHERE session = ? AND ref IS NOT NULL "
                "ORDER BY id DESC LIMIT ?",
                (session, newest),
            ).fetchall()
        return [str(r[0]) for r in reversed(rows)]

    def message_for_ref(self, session: str, ref: Ref) -> ChatMessage | None:
        """The message this session already sent with this ``ref`` (its echo), else None."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE session = ? AND ref = ? "
                "ORDER BY id LIMIT 1",
                (session, json.dumps(ref)),
            ).fetchone()
        return None if row is None else replace(_row_to_message(row), ref=ref)

    def room_history(
        self, room_key: str, *, before: int | None, limit: int
    ) -> tuple[list[ChatMessage], bool]:
        """Up to ``limit`` messages of a room before id ``before``, oldest first; and more?"""
        sql = f"SELECT {_COLUMNS} FROM messages WHERE room_key = ?"
        args: list[object] = [room_key]
        return self._page(sql, args, before, limit)

    def dm_history(
        self, a_key: str, b_key: str, *, before: int | None, limit: int
    ) -> tuple[list[ChatMessage], bool]:
        """The private conversation between two users (name keys), oldest first; and more?"""
        sql = (
            f"SELECT {_COLUMNS} FROM messages WHERE "
            "((dm_from = ? AND dm_to = ?) OR (dm_from = ? AND dm_to = ?))"
        )
        return self._page(sql, [a_key, b_key, b_key, a_key], before, limit)

    def _page(
        self, sql: str, args: list[object], before: int | None, limit: int
    ) -> tuple[list[ChatMessage], bool]:
        if before is not None:
            sql += " AND id < ?"
            args.append(before)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit + 1)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        more = len(rows) > limit
        return [_row_to_message(r) for r in reversed(rows[:limit])], more

    def messages_since(
        self,
        since: int,
        room_keys: Iterable[str],
        user_key: str,
        *,
        limit: int = -1,
        session: str | None = None,
    ) -> list[ChatMessage]:
        """Messages of these rooms and of the user's DMs with id > since, in id order (the
        first ``limit`` of them). Those that ``session`` sent carry their ``ref`` again, so a
        resuming client sees which of its sends arrived."""
        keys = list(room_keys)
        marks = ",".join("?" * len(keys))
        cols = f"{_COLUMNS}, CASE WHEN session = ? THEN ref END"
        parts = [
            f"SELECT {cols} FROM messages WHERE id > ? AND room_key IN ({marks})",
            f"SELECT {cols} FROM messages WHERE id > ? AND dm_from = ?",
            f"SELECT {cols} FROM messages WHERE id > ? AND dm_to = ?",
        ]
        sql = " UNION ".join(parts) + " ORDER BY id LIMIT ?"
        args: list[object] = [session, since, *keys]
        args += [session, since, user_key, session, since, user_key, limit]
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        out = []
        for row in rows:
            msg = _row_to_message(row[:-1])
            if row[-1] is not None:
                msg = replace(msg, ref=json.loads(row[-1]))
            out.append(msg)
        return out

    def last_message_id(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(id) FROM messages").fetchone()
        return int(row[0] or 0)

    # -- rooms ------------------------------------------------------------------------------

    def room(self, key: str) -> tuple[str, str | None] | None:
        """(name as first given, topic) of a room ever created, else None."""
        with self._lock:
            row = self._db.execute("SELECT name, topic FROM rooms WHERE key = ?", (key,)).fetchone()
        return None if row is None else (str(row[0]), row[1])

    def ensure_room(self, key: str, name: str) -> str:
        """Create the room if new; return its name as first given."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO rooms (key, name) VALUES (?, ?)", (key, name))
            row = self._db.execute("SELECT name FROM rooms WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    def room_names(self) -> list[tuple[str, str]]:
        """(key, name as first given) of every room ever created."""
        with self._lock:
            return [(str(k), str(n)) for k, n in self._db.execute("SELECT key, name FROM rooms")]

    def set_topic(self, key: str, topic: str | None) -> None:
        with self._lock:
            self._db.execute("UPDATE rooms SET topic = ? WHERE key = ?", (topic, key))

    # -- sessions ---------------------------------------------------------------------------

    def save_session(self, token: str, name: str, name_key: str, rooms: Sequence[str]) -> None:
        """Remember a session's rooms. Best effort: with the disk full or the database locked
        by another process it is logged, and the session lives on in memory meanwhile."""
        now = int(time.time())
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO sessions (token, name_key, name, rooms, created, last_seen) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(token) DO UPDATE SET "
                    "name = excluded.name, rooms = excluded.rooms, last_seen = excluded.last_seen",
                    (token, name_key, name, json.dumps(list(rooms)), now, now),
                )
            except sqlite3.Error as exc:
                self._recover()
                log.warning("session %s… not saved: %s", token[:6], exc)

    def load_session(self, token: str) -> StoredSession | None:
        with self._lock:
            row = self._db.execute(
                "SELECT token, name_key, name, rooms, last_seen FROM sessions WHERE token = ?",
                (token,),
            ).fetchone()
        if row is None:
            return None
        rooms = json.loads(row[3])
        return StoredSession(
            token=row[0],
            name_key=row[1],
            name=row[2],
            rooms=tuple(str(r) for r in rooms),
            last_seen=float(row[4]),
        )

    def delete_session(self, token: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE token = ?", (token,))

    def expire_sessions(self, older_than_seconds: float) -> int:
        cutoff = int(time.time() - older_than_seconds)
        with self._lock:
            cur = self._db.execute("DELETE FROM sessions WHERE last_seen < ?", (cutoff,))
        return cur.rowcount

    # -- accounts and bans ------------------------------------------------------------------

    def account(self, name_key: str) -> tuple[str, str, str] | None:
        """(name, password hash, role) of a registered name, else None."""
        with self._lock:
            row = self._db.execute(
                "SELECT name, pw_hash, role FROM accounts WHERE name_key = ?", (name_key,)
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

    def account_names(self) -> list[str]:
        with self._lock:
            return [str(r[0]) for r in self._db.execute("SELECT name FROM accounts")]

    def save_account(self, name_key: str, name: str, pw_hash: str, role: str = "user") -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO accounts (name_key, name, pw_hash, role, created) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name_key) DO UPDATE SET "
                "pw_hash = excluded.pw_hash, role = excluded.role",
                (name_key, name, pw_hash, role, int(time.time())),
            )

    def set_role(self, name_key: str, role: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "UPDATE accounts SET role = ? WHERE name_key = ?", (role, name_key)
            )
        return cur.rowcount > 0

    def add_ban(self, kind: str, value: str, by_name: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO bans (kind, value, by_name, created) VALUES (?, ?, ?, ?)",
                (kind, value, by_name, int(time.time())),
            )

    def remove_ban(self, kind: str, value: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM bans WHERE kind = ? AND value = ?", (kind, value))
        return cur.rowcount > 0

    def is_banned(self, kind: str, value: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM bans WHERE kind = ? AND value = ?", (kind, value)
            ).fetchone()
        return row is not None

    def room_settings(self, key: str) -> tuple[str | None, int]:
        """(password hash, slow-mode seconds) of a room."""
        with self._lock:
            row = self._db.execute(
                "SELECT pw_hash, slow FROM rooms WHERE key = ?", (key,)
            ).fetchone()
        return (None, 0) if row is None else (row[0], int(row[1]))

    def set_room_settings(self, key: str, *, pw_hash: str | None, slow: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE rooms SET pw_hash = ?, slow = ? WHERE key = ?", (pw_hash, slow, key)
            )
