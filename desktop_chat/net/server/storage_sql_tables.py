"""The SQL for sessions, rooms, accounts, bans and the server's notes (``meta``) that both back
ends run, written once: :class:`SqlTables`, a mixin of
:class:`~desktop_chat.net.server.storage.Storage` and
:class:`~desktop_chat.net.server.storage_pg_tables.PgSettingsTables`. Written with ``:name``
parameters, as in :mod:`storage_sql` (whose :func:`~storage_sql.pyformat` translates them for
psycopg).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from desktop_chat.net.server.storage_api import StoredSession, token_hash
from desktop_chat.net.server.storage_sql import Run

_T = TypeVar("_T")

# A session created, or updated (its tls stays as it was created: see save_session).
SAVE_SESSION = (
    "INSERT INTO sessions (token, name_key, name, rooms, created, last_seen, tls) "
    "VALUES (:token, :name_key, :name, :rooms, :now, :now, :tls) ON CONFLICT (token) DO UPDATE "
    "SET name = excluded.name, rooms = excluded.rooms, last_seen = excluded.last_seen"
)


def session_args(
    token: str, name: str, name_key: str, rooms: Sequence[str], tls: bool
) -> dict[str, object]:
    """The parameters of :data:`SAVE_SESSION` (the token kept as its hash)."""
    return {
        "token": token_hash(token),
        "name_key": name_key,
        "name": name,
        "rooms": json.dumps(list(rooms)),
        "now": int(time.time()),
        "tls": tls,
    }


class SqlTables(ABC):
    """The methods of ``ChatStore`` for sessions, rooms, accounts, bans and meta that are the
    same SQL on both engines. A back end supplies :meth:`_tables` and keeps what differs:
    ``save_session`` (how a failure is logged), ``ensure_room``, ``room_names``,
    ``account_names`` and ``add_ban`` (dialect or order)."""

    session_ttl: float | None

    @abstractmethod
    def _tables(self, work: Callable[[Run], _T]) -> _T:
        """``work`` on the connection for sessions and rooms, each statement committed; a
        database error raised as StorageError."""
        ...

    def room(self, key: str) -> tuple[str, str | None] | None:
        """(name as first given, topic) of a room ever created, else None."""
        sql = "SELECT name, topic FROM rooms WHERE key = :key"
        row = self._tables(lambda run: run(sql, {"key": key}).fetchone())
        return None if row is None else (str(row[0]), row[1])

    def set_topic(self, key: str, topic: str | None) -> None:
        args = {"topic": topic, "key": key}
        self._tables(lambda run: run("UPDATE rooms SET topic = :topic WHERE key = :key", args))

    def load_session(self, token: str) -> StoredSession | None:
        """The session of ``token``; None if unknown or unused for longer than
        :attr:`session_ttl` (checked on every resume, not only at start; deleted then)."""
        hashed = {"token": token_hash(token)}

        def work(run: Run) -> Any:
            row = run(
                "SELECT name_key, name, rooms, last_seen, tls FROM sessions WHERE token = :token",
                hashed,
            ).fetchone()
            if row is None:
                return None
            if self.session_ttl is not None and row[3] < time.time() - self.session_ttl:
                run("DELETE FROM sessions WHERE token = :token", hashed)
                return None
            return row

        row = self._tables(work)
        if row is None:
            return None
        rooms = json.loads(row[2])
        return StoredSession(
            token=token,
            name_key=str(row[0]),
            name=str(row[1]),
            rooms=tuple(str(r) for r in rooms),
            last_seen=float(row[3]),
            tls=bool(row[4]),
        )

    def delete_session(self, token: str) -> None:
        args = {"token": token_hash(token)}
        self._tables(lambda run: run("DELETE FROM sessions WHERE token = :token", args))

    def expire_sessions(self, older_than_seconds: float) -> int:
        args = {"cutoff": int(time.time() - older_than_seconds)}
        sql = "DELETE FROM sessions WHERE last_seen < :cutoff"
        return self._tables(lambda run: run(sql, args).rowcount)

    def room_settings(self, key: str) -> tuple[str | None, int]:
        """(password hash, slow-mode seconds) of a room."""
        sql = "SELECT pw_hash, slow FROM rooms WHERE key = :key"
        row = self._tables(lambda run: run(sql, {"key": key}).fetchone())
        return (None, 0) if row is None else (row[0], int(row[1]))

    def set_room_settings(self, key: str, *, pw_hash: str | None, slow: int) -> None:
        sql = "UPDATE rooms SET pw_hash = :pw_hash, slow = :slow WHERE key = :key"
        args = {"pw_hash": pw_hash, "slow": slow, "key": key}
        self._tables(lambda run: run(sql, args))

    # -- accounts and bans --------------------------------------------------------------

    def account(self, name_key: str) -> tuple[str, str, str] | None:
        """(name, password hash, role) of a registered name, else None."""
        sql = "SELECT name, pw_hash, role FROM accounts WHERE name_key = :name_key"
        row = self._tables(lambda run: run(sql, {"name_key": name_key}).fetchone())
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

    def save_account(self, name_key: str, name: str, pw_hash: str, role: str = "user") -> None:
        sql = (
            "INSERT INTO accounts (name_key, name, pw_hash, role, created) "
            "VALUES (:name_key, :name, :pw_hash, :role, :created) ON CONFLICT (name_key) "
            "DO UPDATE SET pw_hash = excluded.pw_hash, role = excluded.role"
        )
        args: dict[str, object] = {"name_key": name_key, "name": name, "pw_hash": pw_hash}
        args.update(role=role, created=int(time.time()))
        self._tables(lambda run: run(sql, args))

    def set_role(self, name_key: str, role: str) -> bool:
        sql = "UPDATE accounts SET role = :role WHERE name_key = :name_key"
        args = {"role": role, "name_key": name_key}
        return self._tables(lambda run: run(sql, args).rowcount) > 0

    def remove_ban(self, kind: str, value: str) -> bool:
        args = {"kind": kind, "value": value}
        sql = "DELETE FROM bans WHERE kind = :kind AND value = :value"
        return self._tables(lambda run: run(sql, args).rowcount) > 0

    def is_banned(self, kind: str, value: str) -> bool:
        args = {"kind": kind, "value": value}
        sql = "SELECT 1 FROM bans WHERE kind = :kind AND value = :value"
        return self._tables(lambda run: run(sql, args).fetchone()) is not None

    # -- the server's own notes ---------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A small value the server keeps for itself (the ``meta`` table)."""
        sql = "SELECT value FROM meta WHERE key = :key"
        row = self._tables(lambda run: run(sql, {"key": key}).fetchone())
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        args = {"key": key, "value": value}
        if value is None:
            sql = "DELETE FROM meta WHERE key = :key"
        else:
            sql = (
                "INSERT INTO meta (key, value) VALUES (:key, :value) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            )
        self._tables(lambda run: run(sql, args))
