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
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from desktop_chat.net.protocol.events import ChatMessage, FileInfo

SCHEMA_VERSION = 1
CHECKPOINT_EVERY = 2.0  # seconds between background WAL checkpoints

log = logging.getLogger(__name__)

_SCHEMA = """
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
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="dc-checkpoint")
        with self._lock:
            self._db.executescript(_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(rooms)")}
            if "pw_hash" not in columns:  # databases made before room settings existed
                self._db.execute("ALTER TABLE rooms ADD COLUMN pw_hash TEXT")
                self._db.execute("ALTER TABLE rooms ADD COLUMN slow INTEGER NOT NULL DEFAULT 0")
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
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

    def stop_background(self) -> None:
        """Stop the checkpoint thread (the database stays open)."""
        self._stop.set()
        if self._checkpointer.is_alive():
            self._checkpointer.join(timeout=10)
            if self._checkpointer.is_alive():
                log.error("the checkpoint thread did not stop")

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
    ) -> ChatMessage:
        """Store (and commit) a message; return it with its server-wide id."""
        when = int(time.time() * 1000) if ts is None else ts
        file_json = None if file is None else json.dumps(file.to_dict())
        with self._lock:
            # Not committed here: the server's writer loop commits (see commit()) before it
            # puts anything on the wire, so one commit covers every message of a round.
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            cur = self._db.execute(
                "INSERT INTO messages (ts, sender, room_key, room, dm_from, dm_to, to_name, "
                "text, file, me) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (when, sender, room_key, room, dm_from, dm_to, to_name, text, file_json, int(me)),
            )
            msg_id = cur.lastrowid
        assert msg_id is not None
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

    def mark_file_expired(self, message_id: int) -> None:
        """The file of message ``message_id`` was removed: its ``file`` now says ``expired``."""
        with self._lock:
            row = self._db.execute(
                "SELECT file FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None or not isinstance(row[0], str):
                return
            file = json.loads(row[0])
            file["expired"] = True
            self._db.execute(
                "UPDATE messages SET file = ? WHERE id = ?", (json.dumps(file), message_id)
            )

    def commit(self) -> None:
        """Make every stored message durable (group commit: one per round of writes)."""
        with self._lock:
            if not self._closed and self._db.in_transaction:
                self._db.execute("COMMIT")

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
        self, since: int, room_keys: Iterable[str], user_key: str
    ) -> list[ChatMessage]:
        """Every message of these rooms and of the user's DMs with id > since, in id order."""
        keys = list(room_keys)
        marks = ",".join("?" * len(keys))
        parts = [
            f"SELECT {_COLUMNS} FROM messages WHERE id > ? AND room_key IN ({marks})",
            f"SELECT {_COLUMNS} FROM messages WHERE id > ? AND dm_from = ?",
            f"SELECT {_COLUMNS} FROM messages WHERE id > ? AND dm_to = ?",
        ]
        sql = " UNION ".join(parts) + " ORDER BY id"
        args: list[object] = [since, *keys, since, user_key, since, user_key]
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_row_to_message(r) for r in rows]

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

    def set_topic(self, key: str, topic: str | None) -> None:
        with self._lock:
            self._db.execute("UPDATE rooms SET topic = ? WHERE key = ?", (topic, key))

    # -- sessions ---------------------------------------------------------------------------

    def save_session(self, token: str, name: str, name_key: str, rooms: Sequence[str]) -> None:
        now = int(time.time())
        with self._lock:
            self._db.execute(
                "INSERT INTO sessions (token, name_key, name, rooms, created, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(token) DO UPDATE SET "
                "name = excluded.name, rooms = excluded.rooms, last_seen = excluded.last_seen",
                (token, name_key, name, json.dumps(list(rooms)), now, now),
            )

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
