"""The chat database's schema and its history: numbered steps, applied on open.

:data:`MIGRATIONS` is the schema's history, oldest first; step N brings a database from
``PRAGMA user_version`` N-1 to N, in one transaction with the version bump. Steps are only
ever appended, never edited once released. Databases made by 0.1 have user_version 0 and the
base tables already: the first step tolerates that.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from desktop_chat.net.protocol.names import name_key
from desktop_chat.net.server.storage_api import NewerDatabase
from desktop_chat.net.server.storage_api import token_hash as token_hash

log = logging.getLogger(__name__)

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
    """1: the tables as 0.1 made them (every statement tolerates a 0.1 database)."""
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            db.execute(statement)
    columns = {r[1] for r in db.execute("PRAGMA table_info(rooms)")}
    if "pw_hash" not in columns:  # databases made before room settings existed
        db.execute("ALTER TABLE rooms ADD COLUMN pw_hash TEXT")
        db.execute("ALTER TABLE rooms ADD COLUMN slow INTEGER NOT NULL DEFAULT 0")


def _privacy_dm_owners(db: sqlite3.Connection) -> None:
    """2: who took part in each message, and whether a session began over TLS.

    Old DMs have no session: each side is given to the registered account of its name only if
    that account already existed when the DM was written (a registered name could then only be
    used with its password); every other old DM is served to nobody.
    """
    for column in ("sender_key", "from_session", "to_session", "from_account", "to_account"):
        db.execute(f"ALTER TABLE messages ADD COLUMN {column} TEXT")
    db.execute("UPDATE messages SET sender_key = dc_name_key(sender)")
    for side, key in (("from_account", "dm_from"), ("to_account", "dm_to")):
        db.execute(
            f"UPDATE messages SET {side} = {key} WHERE {key} IS NOT NULL AND EXISTS "
            f"(SELECT 1 FROM accounts a WHERE a.name_key = messages.{key} "
            "AND a.created * 1000 <= messages.ts)"
        )
    db.execute("CREATE INDEX IF NOT EXISTS messages_sender ON messages (sender_key)")
    db.execute("ALTER TABLE sessions ADD COLUMN tls INTEGER NOT NULL DEFAULT 0")


def _privacy_hashed_tokens(db: sqlite3.Connection) -> None:
    """3: session tokens are kept as their SHA-256 only."""
    db.execute("UPDATE sessions SET token = dc_sha256(token)")


def _message_refs(db: sqlite3.Connection) -> None:
    """4: sending exactly once: each accepted ``ref`` is kept with its message (same row, so
    same transaction), found by the sending session (``from_session``, a token hash)."""
    db.execute("ALTER TABLE messages ADD COLUMN ref TEXT")
    db.execute(
        "CREATE INDEX messages_session_ref ON messages (from_session, ref) WHERE ref IS NOT NULL"
    )


def _refs_once(db: sqlite3.Connection) -> None:
    """5: a ``ref`` is stored once per session, whichever process stores it: a unique index
    (the database, not a check before the insert, decides). Duplicates that slipped in
    before keep their earliest copy; the later ones lose their ref (the message stays)."""
    db.execute(
        "UPDATE messages SET ref = NULL WHERE ref IS NOT NULL AND from_session IS NOT NULL "
        "AND id > (SELECT MIN(o.id) FROM messages o "
        "WHERE o.from_session = messages.from_session AND o.ref = messages.ref)"
    )
    db.execute("DROP INDEX IF EXISTS messages_session_ref")
    db.execute(
        "CREATE UNIQUE INDEX messages_session_ref ON messages (from_session, ref) "
        "WHERE ref IS NOT NULL"
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1_base,
    _privacy_dm_owners,
    _privacy_hashed_tokens,
    _message_refs,
    _refs_once,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> int:
    """Apply the steps a database lacks; return the version it had. ``db`` is in autocommit
    mode. A database newer than this code is refused (:class:`NewerDatabase`) rather than
    misread."""
    db.create_function("dc_name_key", 1, name_key, deterministic=True)
    db.create_function("dc_sha256", 1, token_hash, deterministic=True)
    had = int(db.execute("PRAGMA user_version").fetchone()[0])
    if had > SCHEMA_VERSION:
        raise NewerDatabase(had, SCHEMA_VERSION)
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
