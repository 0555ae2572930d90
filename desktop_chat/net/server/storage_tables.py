"""SQLite's own statements for accounts and bans (the SQL both back ends share is in
:mod:`storage_sql_tables`), as a mixin of :class:`~desktop_chat.net.server.storage.Storage`
(one connection and one lock for everything)."""

from __future__ import annotations

import sqlite3
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING


class SettingsTables:
    """What differs from PostgreSQL for accounts and bans; uses :class:`Storage`'s connection
    and lock (whose errors are raised as
    :class:`~desktop_chat.net.server.storage_api.StorageError`)."""

    _db: sqlite3.Connection

    if TYPE_CHECKING:  # provided by Storage

        def _locked(self) -> AbstractContextManager[None]: ...

    def account_names(self) -> list[str]:
        with self._locked():
            return [str(r[0]) for r in self._db.execute("SELECT name FROM accounts")]

    def add_ban(self, kind: str, value: str, by_name: str) -> None:
        with self._locked():
            self._db.execute(
                "INSERT OR REPLACE INTO bans (kind, value, by_name, created) VALUES (?, ?, ?, ?)",
                (kind, value, by_name, int(time.time())),
            )
