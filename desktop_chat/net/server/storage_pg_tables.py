"""The smaller tables of the PostgreSQL chat database: sessions, rooms, accounts, bans, room
settings and the server's own notes (``meta``), as a mixin of
:class:`~desktop_chat.net.server.storage_pg.PgStorage`. Each statement runs on a pooled
connection and commits on its own; a failure is raised as :class:`StorageError`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from desktop_chat.net.server.storage_api import StorageError
from desktop_chat.net.server.storage_pg_schema import Conn
from desktop_chat.net.server.storage_sql import (
    SAVE_SESSION,
    Run,
    SqlSessions,
    pyformat,
    session_args,
)

_T = TypeVar("_T")

log = logging.getLogger(__name__)


def runner(db: Conn) -> Run:
    """Runs the shared SQL (``:name`` parameters) on a psycopg connection."""
    return lambda sql, args: db.execute(pyformat(sql), args)


def one_line(exc: BaseException) -> str:
    """The first line of a database error (psycopg's connection errors run to several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PgSettingsTables(SqlSessions):
    """Sessions, rooms, accounts, bans, room settings and meta, on :class:`PgStorage`'s
    pool."""

    _pool: ConnectionPool[Conn]
    session_ttl: float | None

    @contextmanager
    def _pooled(self) -> Iterator[Conn]:
        try:
            with self._pool.connection() as db:
                yield db
        except psycopg.Error as exc:
            raise StorageError(one_line(exc)) from exc

    def _tables(self, work: Callable[[Run], _T]) -> _T:
        with self._pooled() as db:
            return work(runner(db))

    # -- rooms --------------------------------------------------------------------------

    def ensure_room(self, key: str, name: str) -> str:
        """Create the room if new; return its name as first given."""
        with self._pooled() as db:
            db.execute(
                "INSERT INTO rooms (key, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (key, name)
            )
            row = db.execute("SELECT name FROM rooms WHERE key = %s", (key,)).fetchone()
        assert row is not None
        return str(row[0])

    def room_names(self) -> list[tuple[str, str]]:
        """(key, name as first given) of every room ever created."""
        with self._pooled() as db:
            rows = db.execute("SELECT key, name FROM rooms ORDER BY key").fetchall()
        return [(str(k), str(n)) for k, n in rows]

    def room_settings(self, key: str) -> tuple[str | None, int]:
        """(password hash, slow-mode seconds) of a room."""
        with self._pooled() as db:
            row = db.execute("SELECT pw_hash, slow FROM rooms WHERE key = %s", (key,)).fetchone()
        return (None, 0) if row is None else (row[0], int(row[1]))

    def set_room_settings(self, key: str, *, pw_hash: str | None, slow: int) -> None:
        with self._pooled() as db:
            db.execute(
                "UPDATE rooms SET pw_hash = %s, slow = %s WHERE key = %s", (pw_hash, slow, key)
            )

    # -- accounts and bans --------------------------------------------------------------

    def account(self, name_key: str) -> tuple[str, str, str] | None:
        """(name, password hash, role) of a registered name, else None."""
        with self._pooled() as db:
            row = db.execute(
                "SELECT name, pw_hash, role FROM accounts WHERE name_key = %s", (name_key,)
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

    def account_names(self) -> list[str]:
        with self._pooled() as db:
            rows = db.execute("SELECT name FROM accounts ORDER BY name_key").fetchall()
        return [str(r[0]) for r in rows]

    def save_account(self, name_key: str, name: str, pw_hash: str, role: str = "user") -> None:
        with self._pooled() as db:
            db.execute(
                "INSERT INTO accounts (name_key, name, pw_hash, role, created) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name_key) DO UPDATE SET "
                "pw_hash = excluded.pw_hash, role = excluded.role",
                (name_key, name, pw_hash, role, int(time.time())),
            )

    def set_role(self, name_key: str, role: str) -> bool:
        with self._pooled() as db:
            cur = db.execute("UPDATE accounts SET role = %s WHERE name_key = %s", (role, name_key))
        return cur.rowcount > 0

    def add_ban(self, kind: str, value: str, by_name: str) -> None:
        with self._pooled() as db:
            db.execute(
                "INSERT INTO bans (kind, value, by_name, created) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (kind, value) DO UPDATE SET by_name = excluded.by_name, "
                "created = excluded.created",
                (kind, value, by_name, int(time.time())),
            )

    def remove_ban(self, kind: str, value: str) -> bool:
        with self._pooled() as db:
            cur = db.execute("DELETE FROM bans WHERE kind = %s AND value = %s", (kind, value))
        return cur.rowcount > 0

    def is_banned(self, kind: str, value: str) -> bool:
        with self._pooled() as db:
            row = db.execute(
                "SELECT 1 FROM bans WHERE kind = %s AND value = %s", (kind, value)
            ).fetchone()
        return row is not None

    # -- the server's own notes ---------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A small value the server keeps for itself (the ``meta`` table)."""
        with self._pooled() as db:
            row = db.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        with self._pooled() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = %s", (key,))
            else:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    # -- sessions -----------------------------------------------------------------------

    def save_session(
        self, token: str, name: str, name_key: str, rooms: Sequence[str], *, tls: bool = False
    ) -> None:
        """Create or update a session (kept as the token's hash); ``tls`` counts only when
        the session is created. Best effort: a failure is logged, the session lives on in
        memory meanwhile."""
        try:
            with self._pooled() as db:
                db.execute(pyformat(SAVE_SESSION), session_args(token, name, name_key, rooms, tls))
        except StorageError as exc:
            log.warning("a session was not saved: %s", exc)
