"""What the server asks of its database: :class:`ChatStore`, and the one error both back ends
raise, :class:`StorageError`.

Two back ends implement it: :mod:`~desktop_chat.net.server.storage` (SQLite, one file in the
data folder, the default that needs nothing installed) and
:mod:`~desktop_chat.net.server.storage_pg` (PostgreSQL, shared by several server processes).
:func:`open_store` picks one from the ``--database`` setting; PostgreSQL's client library is
imported only when a ``postgresql://`` URL is given.

Two ways to store a message:

- :meth:`ChatStore.add_message` puts it in an open transaction that :meth:`ChatStore.commit`
  (the flusher's group commit, before each round of writes) makes durable. The hub calls it
  under its own lock, so ids are handed out in the order messages are fanned out: enough for
  one process.
- :meth:`ChatStore.append_ordered` stores a batch in a critical section of its own (SQLite: a
  lock of this process; PostgreSQL: an advisory lock of the whole database, so every process
  of a cluster), commits it and calls back while still inside it. Whatever the callback does
  (publish to the other processes) happens in id order across all processes.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from logging import Logger
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from desktop_chat.net.protocol.events import ChatMessage, FileInfo, Ref

SQLITE_FILE = "chat.sqlite3"  # the SQLite database's name in the data folder
URL_SCHEMES = ("postgresql", "postgres")


class StorageError(Exception):
    """The database could not do what was asked: a full disk, a lock held by another process,
    PostgreSQL unreachable. A write that raises it stored nothing."""


class NewerDatabase(StorageError):
    """The database was made by a newer version of the program (a higher schema version):
    refused rather than misread. One line, for the person who started the server."""

    def __init__(self, had: int, known: int) -> None:
        super().__init__(
            f"the database has schema version {had}, made by a newer Desktop Chat; this "
            f"program knows up to {known}: upgrade it (or use another database)"
        )


def token_hash(token: str) -> str:
    """What the database keeps of a session token: its SHA-256 (hex). A stolen database file
    (or backup) does not let anyone resume someone else's session."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who asks for DMs: a name key, the SHA-256 of its session token, and the account (the
    name key again) when the session is logged in to the registered name, else None."""

    key: str
    session: str
    account: str | None = None


@dataclass(frozen=True, slots=True)
class StoredSession:
    token: str
    name_key: str
    name: str
    rooms: tuple[str, ...]  # room names as spelled by the room's creator
    last_seen: float
    tls: bool = False  # created over TLS: resumed only over TLS


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store, as :meth:`ChatStore.add_message` takes it (see there)."""

    sender: str
    text: str
    room: str | None = None
    room_key: str | None = None
    dm_from: str | None = None
    dm_to: str | None = None
    to_name: str | None = None
    file: FileInfo | None = None
    me: bool = False
    ts: int | None = None
    by: Identity | None = None
    to: Identity | None = None
    ref: Ref | None = None

    def row(self) -> tuple[object, ...]:
        """The row's values after its id, in the order of :data:`MESSAGE_COLUMNS`."""
        when = int(time.time() * 1000) if self.ts is None else self.ts
        by, to = self.by, self.to
        return (
            when,
            self.sender,
            self.room_key,
            self.room,
            self.dm_from,
            self.dm_to,
            self.to_name,
            self.text,
            None if self.file is None else json.dumps(self.file.to_dict()),
            self.me,
            None if by is None else by.key,
            None if by is None else by.session,
            None if to is None else to.session,
            None if by is None else by.account,
            None if to is None else to.account,
            None if self.ref is None else json.dumps(self.ref),
        )

    def stored(self, msg_id: int, row: tuple[object, ...]) -> ChatMessage:
        """The message as stored with id ``msg_id`` and values ``row`` (from :meth:`row`),
        without ``ref``: the hub adds it to the sender's copy only."""
        ts = row[0]
        assert isinstance(ts, int)
        return ChatMessage(
            id=msg_id,
            ts=ts,
            from_=self.sender,
            text=self.text,
            room=self.room,
            to=self.to_name,
            file=self.file,
            me=True if self.me else None,
        )


# append_ordered's callback (given the stored messages) and its "another call follows at once?".
AfterCommit = Callable[[list[ChatMessage]], None]
More = Callable[[], bool]

# The columns NewMessage.row() fills, after the id.
MESSAGE_COLUMNS = (
    "ts, sender, room_key, room, dm_from, dm_to, to_name, text, file, me, "
    "sender_key, from_session, to_session, from_account, to_account, ref"
)

# The columns a message is read back from (see message_from_row).
READ_COLUMNS = "id, ts, sender, room, to_name, text, file, me"


def message_from_row(row: Sequence[object]) -> ChatMessage:
    """A message as read with :data:`READ_COLUMNS`."""
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


class AddsMessages(Protocol):
    """How :class:`ChatStore` takes a new message: :meth:`add_message` with its fields as
    keywords, stored by :meth:`_add`. A back end subclasses it and inherits
    :meth:`add_message`."""

    def _add(self, new: NewMessage) -> ChatMessage:
        """Store ``new`` in the open transaction; return it with its server-wide id
        (without ``ref``). If the sending session already stored a message with this
        ``ref`` (the database's unique index says so), nothing is stored and that original
        is returned *with* its ``ref``: the caller answers the resend with it. Raises
        :class:`StorageError` when it cannot be written: then nothing of it was stored,
        and the messages already added are kept."""
        ...

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
        by: Identity | None = None,
        to: Identity | None = None,
        ref: Ref | None = None,
    ) -> ChatMessage:
        """:meth:`_add` a message with these fields (see :class:`NewMessage`)."""
        new = NewMessage(
            sender=sender,
            text=text,
            room=room,
            room_key=room_key,
            dm_from=dm_from,
            dm_to=dm_to,
            to_name=to_name,
            file=file,
            me=me,
            ts=ts,
            by=by,
            to=to,
            ref=ref,
        )
        return self._add(new)


class ChatStore(AddsMessages, Protocol):
    """The server's database, whichever back end. Thread-safe; every method is short.

    Every method may raise :class:`StorageError` when the database fails (except
    :meth:`save_session` and :meth:`commit`, which log and carry on).
    """

    session_ttl: float | None  # seconds an unused session lives (None: keep all)
    expire_every: float  # seconds between background sweeps of expired sessions
    expired_round: threading.Event  # set after each sweep (tests wait for it)

    def stop_background(self) -> None:
        """Stop the background thread(s) (the database stays open)."""

    def close(self) -> None: ...

    # -- messages -----------------------------------------------------------------------

    def commit(self) -> None:
        """Make every added message durable (the group commit; failures are logged and the
        messages kept for the next round)."""

    def append_ordered(
        self, rows: Sequence[NewMessage], after_commit: AfterCommit, *, more: More = lambda: False
    ) -> list[ChatMessage]:
        """Store ``rows`` in one critical section (see the module docstring): insert, commit,
        call ``after_commit`` with the stored messages (in id order) while still inside it,
        then leave it. A row whose (session, ``ref``) is stored already is not stored
        again: its place in the list (and in the callback's) holds the original, *with*
        its ``ref`` (new messages come without). Raises :class:`StorageError` (and calls
        nothing) when the rows could not be stored: then none of them was. ``more()``, asked
        at the end, says another call follows at once: a back end may then keep its lock
        for it (PostgreSQL: the next round lets go of it and takes it again in one round
        trip, behind any other process waiting)."""
        ...

    def mark_file_expired(self, message_id: int) -> None: ...
    def session_refs(self, session: str, newest: int) -> list[str]: ...
    def message_for_ref(self, session: str, ref: Ref) -> ChatMessage | None: ...

    def room_history(
        self, room_key: str, *, before: int | None, limit: int
    ) -> tuple[list[ChatMessage], bool]: ...

    def dm_readable(self, message_id: int, me: Identity) -> bool: ...

    def dm_history(
        self, me: Identity, other_key: str, *, before: int | None, limit: int
    ) -> tuple[list[ChatMessage], bool]: ...

    def messages_since(
        self, since: int, room_keys: Iterable[str], me: Identity, *, limit: int = -1
    ) -> list[ChatMessage]: ...

    def name_used_by_others(self, key: str, session: str) -> bool: ...
    def claim_dms(self, me: Identity) -> None: ...
    def last_message_id(self, upto: int | None = None) -> int:
        """The highest message id stored (at most ``upto`` if given), 0 if none."""
        ...

    # -- rooms --------------------------------------------------------------------------

    def room(self, key: str) -> tuple[str, str | None] | None: ...
    def ensure_room(self, key: str, name: str) -> str: ...
    def room_names(self) -> list[tuple[str, str]]: ...
    def set_topic(self, key: str, topic: str | None) -> None: ...
    def room_settings(self, key: str) -> tuple[str | None, int]: ...
    def set_room_settings(self, key: str, *, pw_hash: str | None, slow: int) -> None: ...

    # -- sessions -----------------------------------------------------------------------

    def save_session(
        self, token: str, name: str, name_key: str, rooms: Sequence[str], *, tls: bool = False
    ) -> None: ...

    def load_session(self, token: str) -> StoredSession | None: ...
    def delete_session(self, token: str) -> None: ...
    def expire_sessions(self, older_than_seconds: float) -> int: ...

    # -- accounts, bans, the server's notes ---------------------------------------------

    def account(self, name_key: str) -> tuple[str, str, str] | None: ...
    def account_names(self) -> list[str]: ...
    def save_account(self, name_key: str, name: str, pw_hash: str, role: str = "user") -> None: ...
    def set_role(self, name_key: str, role: str) -> bool: ...
    def add_ban(self, kind: str, value: str, by_name: str) -> None: ...
    def remove_ban(self, kind: str, value: str) -> bool: ...
    def is_banned(self, kind: str, value: str) -> bool: ...
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str | None) -> None: ...


def stop_thread(stop: threading.Event, thread: threading.Thread, what: str, log: Logger) -> None:
    """Set ``stop`` and wait (10 s at most) for a back end's background ``thread`` to end;
    logged on ``log`` if it did not."""
    stop.set()
    if thread.is_alive():
        thread.join(timeout=10)
        if thread.is_alive():
            log.error("%s did not stop", what)


def is_database_url(database: str) -> bool:
    """Does ``database`` name a database :func:`open_store` can open?"""
    return urlsplit(database).scheme.lower() in URL_SCHEMES


def describe(url: str) -> str:
    """A database or Redis URL fit to show in a log or an error: every password masked
    (``user:password@`` and a ``password=`` in the query)."""
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:
        return "(a URL that cannot be read)"  # not shown: it may hold a password
    netloc, query = parts.netloc, parts.query
    if has_password:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, "***" if k.lower() in _SECRET_KEYS else v) for k, v in pairs]
        query = urlencode(masked, safe="*")
    return parts._replace(netloc=netloc, query=query).geturl()


def has_password(url: str) -> bool:
    """Does ``url`` carry a password (which ``ps`` would show if it came as an argument)?"""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            return True
    except ValueError:
        return False
    return any(k.lower() in _SECRET_KEYS for k, _v in parse_qsl(parts.query))


_SECRET_KEYS = frozenset({"password", "passwd", "pass", "sslpassword"})


def open_store(database: str | None, data_dir: Path) -> ChatStore:
    """Open the chat database: ``None`` is the SQLite file in ``data_dir``; a
    ``postgresql://`` (or ``postgres://``) URL is that PostgreSQL database. Raises
    :class:`StorageError` with one line saying what is wrong (not a database URL, the
    database unreachable)."""
    if database is None:
        from desktop_chat.net.server.storage import Storage

        return Storage(data_dir / SQLITE_FILE)
    if not is_database_url(database):
        raise StorageError(
            f"{describe(database)!r} is not a database URL; give postgresql://user@host/dbname"
        )
    try:
        from desktop_chat.net.server.storage_pg import PgStorage  # psycopg: only when asked
    except ImportError as exc:  # e.g. the bundled server, made for SQLite only
        raise StorageError(
            f"PostgreSQL support is not installed here ({exc.name} is missing): install "
            "Desktop Chat with pip (it brings psycopg) to use a postgresql:// database"
        ) from exc
    return PgStorage(database)
