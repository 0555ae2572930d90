"""The smaller tables of the chat database: accounts, bans, room settings and the server's own
notes (``meta``), as a mixin of :class:`~desktop_chat.net.server.storage.Storage` (one
connection and one lock for everything)."""

from __future__ import annotations

import sqlite3
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING


class SettingsTables:
    """Accounts, bans, room settings and meta; uses :class:`Storage`'s connection and lock
    (whose errors are raised as :class:`~desktop_chat.net.server.storage_api.StorageError`)."""

    _db: sqlite3.Connection

    if TYPE_CHECKING:  # provided by Storage

        def _locked(self) -> AbstractContextManager[None]: ...

    # -- accounts and bans ------------------------------------------------------------------

    def account(self, name_key: str) -> tuple[str, str, str] | None:
        """(name, password hash, role) of a registered name, else None."""
        with self._locked():
            row = self._db.execute(
                "SELECT name, pw_hash, role FROM accounts WHERE name_key = ?", (name_key,)
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

    def account_names(self) -> list[str]:
        with self._locked():
            return [str(r[0]) for r in self._db.execute("SELECT name FROM accounts")]

    def save_account(self, name_key: str, name: str, pw_hash: str, role: str = "user") -> None:
        with self._locked():
            self._db.execute(
                "INSERT INTO accounts (name_key, name, pw_hash, role, created) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name_key) DO UPDATE SET "
                "pw_hash = excluded.pw_hash, role = excluded.role",
                (name_key, name, pw_hash, role, int(time.time())),
            )

    def set_role(self, name_key: str, role: str) -> bool:
        with self._locked():
            cur = self._db.execute(
                "UPDATE accounts SET role = ? WHERE name_key = ?", (role, name_key)
            )
        return cur.rowcount > 0

    def add_ban(self, kind: str, value: str, by_name: str) -> None:
        with self._locked():
            self._db.execute(
                "INSERT OR REPLACE INTO bans (kind, value, by_name, created) VALUES (?, ?, ?, ?)",
                (kind, value, by_name, int(time.time())),
            )

    def remove_ban(self, kind: str, value: str) -> bool:
        with self._locked():
            cur = self._db.execute("DELETE FROM bans WHERE kind = ? AND value = ?", (kind, value))
        return cur.rowcount > 0

    def is_banned(self, kind: str, value: str) -> bool:
        with self._locked():
            row = self._db.execute(
                "SELECT 1 FROM bans WHERE kind = ? AND value = ?", (kind, value)
            ).fetchone()
        return row is not None

    def room_settings(self, key: str) -> tuple[str | None, int]:
        """(password hash, slow-mode seconds) of a room."""
        with self._locked():
            row = self._db.execute(
                "SELECT pw_hash, slow FROM rooms WHERE key = ?", (key,)
            ).fetchone()
        return (None, 0) if row is None else (row[0], int(row[1]))

    def set_room_settings(self, key: str, *, pw_hash: str | None, slow: int) -> None:
        with self._locked():
            self._db.execute(
                "UPDATE rooms SET pw_hash = ?, slow = ? WHERE key = ?", (pw_hash, slow, key)
            )

    # -- the server's own notes ---------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A small value the server keeps for itself (the ``meta`` table)."""
        with self._locked():
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        with self._locked():
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
