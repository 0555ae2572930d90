"""The message queries both back ends run, written once: :class:`SqlMessages`, a mixin of
:class:`~desktop_chat.net.server.storage.Storage` (SQLite) and
:class:`~desktop_chat.net.server.storage_pg.PgStorage` (PostgreSQL).

The SQL here uses SQLite's parameters (``:name``; ``?`` only in the message INSERT, whose rows
are tuples); :func:`pyformat` turns them into psycopg's ``%(name)s`` and ``%s``. To keep that a
plain substitution, the SQL text holds no ``%``, no ``'`` (no string literals, so no ``:`` or
``?`` inside one), no ``::`` casts and never both kinds of parameters (checked).
What really differs between the engines stays in the back ends: locking, transactions,
connections, and the dialect's few words the hooks below supply.
"""

from __future__ import annotations

import json
import re
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any, ClassVar, Protocol, TypeVar

from desktop_chat.net.protocol.events import ChatMessage, Ref
from desktop_chat.net.server.storage_api import (
    MESSAGE_COLUMNS,
    READ_COLUMNS,
    AddsMessages,
    AfterCommit,
    Identity,
    More,
    NewMessage,
    message_from_row,
)

_T = TypeVar("_T")

# The DMs an Identity took part in (named parameters :session and :account).
MINE_SENT = "(from_session = :session OR from_account = :account)"
MINE_RECEIVED = "(to_session = :session OR to_account = :account)"
# The stored message a (session, ref) names.
BY_REF = f"SELECT {READ_COLUMNS} FROM messages WHERE from_session = :session AND ref = :ref"
SESSION_REFS = (
    "SELECT ref FROM messages WHERE from_session = :session AND ref IS NOT NULL "
    "ORDER BY id DESC LIMIT :newest"
)
DM_READABLE = (
    "SELECT 1 FROM messages WHERE id = :id AND dm_from IS NOT NULL AND "
    f"((dm_from = :key AND {MINE_SENT}) OR (dm_to = :key AND {MINE_RECEIVED}))"
)
DM_HISTORY = (
    f"SELECT {READ_COLUMNS} FROM messages WHERE "
    f"((dm_from = :key AND dm_to = :other AND {MINE_SENT}) "
    f"OR (dm_from = :other AND dm_to = :key AND {MINE_RECEIVED}))"
)
# {distinct}: the dialect's null-safe "differs" (SQLite: IS NOT; PostgreSQL: IS DISTINCT FROM).
NAME_USED = (
    "SELECT 1 FROM sessions WHERE name_key = :key AND token != :s UNION ALL "
    "SELECT 1 FROM messages WHERE sender_key = :key AND from_session {distinct} :s UNION ALL "
    "SELECT 1 FROM messages WHERE dm_to = :key AND to_session {distinct} :s LIMIT 1"
)
# claim_dms: a DM's side (sender, receiver) as (account column, name column, session column).
DM_SIDES = (("from_account", "dm_from", "from_session"), ("to_account", "dm_to", "to_session"))
LAST_ID = "SELECT MAX(id) FROM messages WHERE id <= :cap"


# A message row (NewMessage.row(), after its id when given) with ``?`` marks; and what to do
# when it meets a row already stored: its (session, ref) (a new message), or anything (a row
# written again).
NEW_ONLY = "ON CONFLICT (from_session, ref) WHERE ref IS NOT NULL DO NOTHING"
AGAIN = "ON CONFLICT DO NOTHING"


def insert_message(*, with_id: bool) -> str:
    """The INSERT of one message row, with ``?`` marks (``with_id``: its id first)."""
    cols = f"id, {MESSAGE_COLUMNS}" if with_id else MESSAGE_COLUMNS
    marks = ", ".join("?" * (cols.count(",") + 1))
    return f"INSERT INTO messages ({cols}) VALUES ({marks})"


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=256)
def pyformat(sql: str) -> str:
    """``sql`` with its ``:name`` parameters written as psycopg's ``%(name)s``, or its ``?``
    marks as ``%s``. Refuses SQL the substitution could get wrong: a ``%`` (psycopg would read
    it as a placeholder), a string literal (a ``:`` or ``?`` inside it is not a parameter), a
    ``::`` cast, or both kinds of parameters (psycopg takes one kind per statement)."""
    named = _NAMED.search(sql) is not None
    if "%" in sql or "'" in sql or "::" in sql or (named and "?" in sql):
        raise ValueError(f"not translatable to psycopg's parameters: {sql!r}")
    return _NAMED.sub(r"%(\1)s", sql) if named else sql.replace("?", "%s")


class Rows(Protocol):
    """What both drivers' cursors give back."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> Sequence[Any]: ...


# Runs one statement with named parameters (as written here) and returns its cursor.
Run = Callable[[str, Mapping[str, object]], Rows]


def original_row(run: Run, new: NewMessage) -> Any:
    """The stored row whose (session, ref) ``new`` repeats (None if there is none)."""
    assert new.by is not None and new.ref is not None
    return run(BY_REF, {"session": new.by.session, "ref": json.dumps(new.ref)}).fetchone()


class SqlMessages(AddsMessages):
    """The message methods of :class:`~desktop_chat.net.server.storage_api.ChatStore` that
    are the same SQL on both engines. A back end supplies how a statement runs
    (:meth:`_reading`, :meth:`_writing`), how a new message is stored
    (:meth:`~desktop_chat.net.server.storage_api.AddsMessages._add`), and the dialect's words
    (:attr:`_DISTINCT`, :attr:`_ALL`, :meth:`_in_rooms`)."""

    _DISTINCT: ClassVar[str]  # null-safe "differs"
    _ALL: ClassVar[object]  # a LIMIT that means no limit

    @abstractmethod
    def _reading(self, work: Callable[[Run], _T]) -> _T:
        """``work`` (statements that only read) on the connection that sees uncommitted
        messages; a database error raised as StorageError."""
        ...

    @abstractmethod
    def _writing(self, work: Callable[[Run], _T]) -> _T:
        """``work`` (statements that write messages) in the open transaction."""
        ...

    @abstractmethod
    def _append(
        self, rows: Sequence[NewMessage], after_commit: AfterCommit, more: More
    ) -> list[ChatMessage]:
        """:meth:`append_ordered` in the back end's critical section."""
        ...

    @abstractmethod
    def _in_rooms(self, room_keys: Iterable[str]) -> tuple[str, dict[str, object]]:
        """The condition "room_key is one of these" and its parameters."""
        ...

    def append_ordered(
        self, rows: Sequence[NewMessage], after_commit: AfterCommit, *, more: More = lambda: False
    ) -> list[ChatMessage]:
        """Store ``rows`` and commit them in one critical section, calling ``after_commit``
        with them before leaving it (see :class:`ChatStore`)."""
        return self._append(rows, after_commit, more)

    def mark_file_expired(self, message_id: int) -> None:
        """The file of message ``message_id`` was removed: its ``file`` now says ``expired``."""

        def work(run: Run) -> None:
            row = run("SELECT file FROM messages WHERE id = :id", {"id": message_id}).fetchone()
            if row is None or not isinstance(row[0], str):
                return
            file = json.loads(row[0])
            file["expired"] = True
            args = {"file": json.dumps(file), "id": message_id}
            run("UPDATE messages SET file = :file WHERE id = :id", args)

        self._writing(work)

    def session_refs(self, session: str, newest: int) -> list[str]:
        """The last ``newest`` refs (as stored: JSON) of the session whose token hashes to
        ``session``, oldest first."""
        args = {"session": session, "newest": newest}
        rows = self._reading(lambda run: run(SESSION_REFS, args).fetchall())
        return [str(r[0]) for r in reversed(rows)]

    def message_for_ref(self, session: str, ref: Ref) -> ChatMessage | None:
        """The message the session (token hash ``session``) already sent with this ``ref``
        (its echo), else None."""
        args = {"session": session, "ref": json.dumps(ref)}
        row = self._reading(lambda run: run(f"{BY_REF} ORDER BY id LIMIT 1", args).fetchone())
        return None if row is None else replace(message_from_row(row), ref=ref)

    def room_history(
        self, room_key: str, *, before: int | None, limit: int
    ) -> tuple[list[ChatMessage], bool]:
        """Up to ``limit`` messages of a room before id ``before``, oldest first; and more?"""
        sql = f"SELECT {READ_COLUMNS} FROM messages WHERE room_key = :room"
        return self._page(sql, {"room": room_key}, before, limit)

    def dm_readable(self, message_id: int, me: Identity) -> bool:
        """Is message ``message_id`` a DM that ``me`` took part in (its file may be read)?"""
        args = {"id": message_id, "key": me.key, "session": me.session, "account": me.account}
        return self._reading(lambda run: run(DM_READABLE, args).fetchone()) is not None

    def dm_history(
        self, me: Identity, other_key: str, *, before: int | None, limit: int
    ) -> tuple[list[ChatMessage], bool]:
        """The private conversation of ``me`` with another user (name key), oldest first, and
        whether there is more: only the DMs ``me`` took part in."""
        args: dict[str, object] = {
            "key": me.key,
            "other": other_key,
            "session": me.session,
            "account": me.account,
        }
        return self._page(DM_HISTORY, args, before, limit)

    def _page(
        self, sql: str, args: dict[str, object], before: int | None, limit: int
    ) -> tuple[list[ChatMessage], bool]:
        if before is not None:
            sql += " AND id < :before"
            args["before"] = before
        sql += " ORDER BY id DESC LIMIT :limit"
        args["limit"] = limit + 1
        rows = self._reading(lambda run: run(sql, args).fetchall())
        more = len(rows) > limit
        return [message_from_row(r) for r in reversed(rows[:limit])], more

    def messages_since(
        self, since: int, room_keys: Iterable[str], me: Identity, *, limit: int = -1
    ) -> list[ChatMessage]:
        """Messages of these rooms and of the DMs ``me`` took part in with id > since, in id
        order (the first ``limit`` of them; all when negative). Those that ``me``'s session
        sent carry their ``ref`` again, so a resuming client sees which of its sends
        arrived."""
        in_rooms, rooms = self._in_rooms(room_keys)
        cols = f"{READ_COLUMNS}, CASE WHEN from_session = :session THEN ref END"
        newer = f"SELECT {cols} FROM messages WHERE id > :since AND"
        parts = [
            f"{newer} {in_rooms}",
            f"{newer} dm_from = :key AND {MINE_SENT}",
            f"{newer} dm_to = :key AND {MINE_RECEIVED}",
        ]
        sql = " UNION ".join(parts) + " ORDER BY id LIMIT :limit"
        args: dict[str, object] = {
            "since": since,
            "key": me.key,
            "session": me.session,
            "account": me.account,
            "limit": self._ALL if limit < 0 else limit,
            **rooms,
        }
        rows = self._reading(lambda run: run(sql, args).fetchall())
        out = []
        for row in rows:
            msg = message_from_row(row[:-1])
            if row[-1] is not None:
                msg = replace(msg, ref=json.loads(row[-1]))
            out.append(msg)
        return out

    def name_used_by_others(self, key: str, session: str) -> bool:
        """Has anyone but session ``session`` (a token hash) used the name ``key``: a stored
        session, a message sent or a DM received (messages from before sessions were recorded
        count as someone else's)?"""
        sql = NAME_USED.format(distinct=self._DISTINCT)
        args = {"key": key, "s": session}
        return self._reading(lambda run: run(sql, args).fetchone()) is not None

    def claim_dms(self, me: Identity) -> None:
        """The session ``me`` registered its name: its DMs belong to the account from now on."""
        args = {"account": me.account, "key": me.key, "session": me.session}

        def work(run: Run) -> None:
            for side, key, session in DM_SIDES:
                sql = f"UPDATE messages SET {side} = :account WHERE {key} = :key "
                run(f"{sql}AND {session} = :session", args)

        self._writing(work)

    def last_message_id(self, upto: int | None = None) -> int:
        """The highest message id stored (at most ``upto`` if given), 0 if none."""
        cap = (1 << 63) - 1 if upto is None else upto
        row = self._reading(lambda run: run(LAST_ID, {"cap": cap}).fetchone())
        return 0 if row is None or row[0] is None else int(row[0])
