"""The smaller tables of the PostgreSQL chat database: sessions, rooms, accounts, bans, room
settings and the server's own notes (``meta``), as a mixin of
:class:`~desktop_chat.net.server.storage_pg.PgStorage`: the SQL both back ends share is in
:mod:`storage_sql_tables`; here is where it runs (:meth:`PgSettingsTables._tables`) and what
only PostgreSQL says. Each statement runs on a pooled connection and commits on its own; a
failure is raised as :class:`StorageError`."""

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
from desktop_chat.net.server.storage_sql import Run, pyformat
from desktop_chat.net.server.storage_sql_tables import SAVE_SESSION, SqlTables, session_args

_T = TypeVar("_T")

log = logging.getLogger(__name__)


def runner(db: Conn) -> Run:
    """Runs the shared SQL (``:name`` parameters) on a psycopg connection."""
    return lambda sql, args: db.execute(pyformat(sql), args)


def one_line(exc: BaseException) -> str:
    """The first line of a database error (psycopg's connection errors run to several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PgSettingsTables(SqlTables):
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

    # -- accounts and bans --------------------------------------------------------------

    def account_names(self) -> list[str]:
        with self._pooled() as db:
            rows = db.execute("SELECT name FROM accounts ORDER BY name_key").fetchall()
        return [str(r[0]) for r in rows]

    def add_ban(self, kind: str, value: str, by_name: str) -> None:
        with self._pooled() as db:
            db.execute(
                "INSERT INTO bans (kind, value, by_name, created) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (kind, value) DO UPDATE SET by_name = excluded.by_name, "
                "created = excluded.created",
                (kind, value, by_name, int(time.time())),
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
