"""The file store's records: what an unfinished upload and a stored file are, and the tables
that keep them (``files/files.sqlite3``, beside the blobs; see :mod:`files`)."""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY, session TEXT NOT NULL, name TEXT NOT NULL,
    room_key TEXT, to_key TEXT, to_name TEXT,
    length INTEGER NOT NULL, offset INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, touched REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,
    mime TEXT NOT NULL, width INTEGER, height INTEGER,
    room_key TEXT, dm_from TEXT, dm_to TEXT, message_id INTEGER,
    created REAL NOT NULL, expired INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS files_sha ON files (sha256) WHERE expired = 0;
CREATE INDEX IF NOT EXISTS files_age ON files (created) WHERE expired = 0;
"""
UPLOAD_COLUMNS = "id, session, name, room_key, to_key, to_name, length, offset, created, touched"
FILE_COLUMNS = (
    "id, sha256, name, size, mime, width, height, room_key, dm_from, dm_to, message_id, expired"
)


class TooLarge(Exception):
    """Over the per-file limit, or more bytes than the upload declared."""


class StoreFull(Exception):
    """The quota (or the disk) has no room for this; nothing partial is kept as a file."""


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    session: str  # the uploader's session token
    name: str  # the label, already made safe
    room_key: str | None
    to_key: str | None
    to_name: str | None
    length: int
    offset: int
    created: float
    touched: float


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    sha256: str
    name: str
    size: int
    mime: str
    width: int | None
    height: int | None
    room_key: str | None
    dm_from: str | None
    dm_to: str | None
    message_id: int | None
    expired: bool


def file_row(f: StoredFile) -> tuple[object, ...]:
    return (
        f.id, f.sha256, f.name, f.size, f.mime, f.width, f.height,
        f.room_key, f.dm_from, f.dm_to, f.message_id, int(f.expired),
    )  # fmt: skip
