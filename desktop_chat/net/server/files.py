"""The file store: unfinished uploads, finished files, their blobs, the quota and retention.

Layout in the data folder: ``files/uploads/<upload id>.part`` (bytes received so far),
``files/blobs/<sha256>`` (finished content, one blob per distinct content however often it
is shared) and ``files/files.sqlite3`` (the records). A file name is only a label in the
database; no path is ever made from anything a client sent — upload ids and file ids are
ours (128+ random bits, URL-safe), blobs are named by their hash.

The records live in their own SQLite file rather than as a migration of the chat database:
they belong with the blobs they describe (the folder can be wiped or moved as a unit) and the
chat database's schema stays the chat's. The store's lock guards the records and the quota
arithmetic only; bytes are written by the uploading connection's own thread outside it.

Several server processes may share the folder (``--workers``): the records are changed in
SQLite write transactions (``BEGIN IMMEDIATE``), which serialise the processes where a thread
lock serialises threads; an upload being written is claimed with an exclusive ``flock`` on its
``.part`` file, so a PATCH that lands on another process waits its turn (423) and no sweeper
removes it; running hashes are per process and rebuilt from the file when another process
wrote last.

Quota: the blobs plus the declared length of every unfinished upload (reserved when it is
created) never exceed ``quota``. When a new upload does not fit, the oldest files are expired
(their blob removed once no file uses it, the record kept as ``expired``) until it does.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # Windows: one process per folder there (--workers needs Linux)
    fcntl = None  # type: ignore[assignment]

from desktop_chat.net.server.file_records import (
    FILE_COLUMNS,
    SCHEMA,
    UPLOAD_COLUMNS,
    StoredFile,
    StoreFull,
    TooLarge,
    Upload,
    file_row,
)
from desktop_chat.net.server.sniff_media import HEAD_BYTES, detect

log = logging.getLogger(__name__)

_WRITE_SIZE = 1 << 20  # bytes gathered before one writev() to the temporary file
_WRITEV_PIECES = 64  # more pieces than this are joined first (the kernel takes at most 1024)


class FileStore:
    """Thread-safe. ``on_expired(message_id)`` is told when retention removes a file."""

    def __init__(
        self,
        folder: Path,
        *,
        max_file_size: int,
        quota: int,
        upload_ttl: float,
        on_expired: Callable[[int], None] | None = None,
    ) -> None:
        self.folder = folder
        self.max_file_size = max_file_size
        self.quota = quota
        self.upload_ttl = upload_ttl
        self.on_expired = on_expired
        self._uploads = folder / "uploads"
        self._blobs = folder / "blobs"
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # uploads a connection of this process is writing
        self._claims: dict[str, int] = {}  # upload id -> the descriptor holding its flock
        # Running hashes of uploads in progress: (offset hashed, hasher). Lost on restart,
        # then rebuilt from the temporary file.
        self._hashers: dict[str, tuple[int, hashlib._Hash]] = {}
        self._db = sqlite3.connect(
            str(folder / "files.sqlite3"), check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def start_sweeping(self) -> None:
        """Remove abandoned uploads now and then in a thread of their own (see close)."""
        self.sweep()
        self._remove_orphan_blobs()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="dc-file-sweeper")
        self._sweeper.start()

    def _sweep_loop(self) -> None:
        every = max(0.05, min(60.0, self.upload_ttl / 4))
        while not self._stop.wait(every):
            try:
                self.sweep()
            except (OSError, sqlite3.Error):
                log.exception("sweeping abandoned uploads failed; trying again later")

    def stop_sweeping(self) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=10)

    def close(self) -> None:
        self.stop_sweeping()
        with self._lock:
            self._db.close()

    # -- uploads ------------------------------------------------------------------------------

    def create_upload(
        self,
        *,
        session: str,
        name: str,
        length: int,
        room_key: str | None = None,
        to_key: str | None = None,
        to_name: str | None = None,
    ) -> Upload:
        """Reserve ``length`` bytes for a new upload. Raises TooLarge or StoreFull."""
        if length > self.max_file_size:
            raise TooLarge(f"the limit is {self.max_file_size} bytes per file")
        now = time.time()
        upload = Upload(
            secrets.token_urlsafe(24), session, name, room_key, to_key, to_name, length, 0, now, now
        )
        expired: list[int] = []
        full: str | None = None
        try:
            with self._writing():
                if self._reserved_locked() + length > self.quota:
                    # Unfinished uploads hold the room: removing files would not help.
                    full = "the server's file store is full; try again later"
                while full is None and self._used_locked() + length > self.quota:
                    message_id = self._expire_oldest_locked()
                    if message_id is None:
                        full = "the server's file store is full"
                    elif message_id > 0:
                        expired.append(message_id)
                if full is None:  # else what was expired (blobs gone) is committed all the same
                    self._db.execute(
                        f"INSERT INTO uploads ({UPLOAD_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (upload.id, session, name, room_key, to_key, to_name, length, 0, now, now),
                    )
                    # Made while the row's transaction is open: a sweeper (of any process)
                    # that sees the file without its row looks again once this commits.
                    self._part(upload.id).touch()
        finally:
            self._tell_expired(expired)
        if full is not None:
            raise StoreFull(full)
        return upload

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction on the records, under the thread lock: ``BEGIN IMMEDIATE``
        waits for any other process's (up to the connection's timeout), so read-then-write
        steps (the quota) are not interleaved with theirs."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def upload(self, upload_id: str) -> Upload | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?", (upload_id,)
            ).fetchone()
        return None if row is None else Upload(*row)

    def claim(self, upload_id: str) -> bool:
        """Mark an upload as being written by the caller; False if another connection (of
        this process or another one sharing the folder) is."""
        with self._lock:
            if upload_id in self._busy:
                return False
            fd = _lock_file(self._part(upload_id))
            if fd is False:
                return False
            self._busy.add(upload_id)
            if fd is not None:
                self._claims[upload_id] = fd
            return True

    def release(self, upload_id: str) -> None:
        with self._lock:
            self._busy.discard(upload_id)
            fd = self._claims.pop(upload_id, None)
        if fd is not None:
            os.close(fd)  # and with it the flock

    def _busy_anywhere(self, upload_id: str) -> bool:
        """Is someone (here or in another process) writing this upload? (lock held)"""
        if upload_id in self._busy:
            return True
        fd = _lock_file(self._part(upload_id))
        if fd is False:
            return True
        if fd is not None:
            os.close(fd)
        return False

    def write(self, upload: Upload, chunks: Iterable[bytes]) -> int:
        """Append ``chunks`` to a claimed upload, hashing as they come; return the new offset.

        Raises TooLarge past the declared length (the bytes before it are kept) and StoreFull
        when the disk is full (the partial write is cut off). Whatever else ends the stream
        (the peer going away) keeps every byte received, so the upload can be resumed.
        """
        offset = upload.offset
        hasher = self._hasher(upload)
        path = self._part(upload.id)
        pending: list[bytes] = []
        pending_size = 0
        try:
            with path.open("r+b", buffering=0) as out:
                out.truncate(offset)  # a crash may have left bytes past the recorded offset
                out.seek(offset)
                try:
                    for chunk in chunks:
                        if offset + pending_size + len(chunk) > upload.length:
                            raise TooLarge("more bytes than the upload's Upload-Length")
                        pending.append(chunk)
                        pending_size += len(chunk)
                        if pending_size >= _WRITE_SIZE:
                            offset = self._flush(out, pending, hasher, offset)
                            pending_size = 0
                finally:
                    # What arrived before the stream ended (or went too far) is kept: tus
                    # resumes from there.
                    if pending:
                        offset = self._flush(out, pending, hasher, offset)
        finally:
            self._hashers[upload.id] = (offset, hasher)
            try:
                with self._lock:
                    self._db.execute(
                        "UPDATE uploads SET offset = ?, touched = ? WHERE id = ?",
                        (offset, time.time(), upload.id),
                    )
            except sqlite3.Error as exc:  # e.g. the disk is full: the next PATCH cuts back
                log.warning("could not record an upload's offset: %s", exc)
        return offset

    def _flush(
        self, out: BinaryIO, pending: list[bytes], hasher: hashlib._Hash, offset: int
    ) -> int:
        """Write what is pending at ``offset`` (``out`` is unbuffered: what write() accepted
        is in the file); on failure cut the file back to ``offset``, never a torn chunk.

        The pieces go out in one ``writev`` and are hashed one by one, never joined: joining
        copies every byte while holding the interpreter lock, and this thread runs at a lower
        priority (``Transport.mark_bulk``), so a chat thread waiting for the lock would wait
        for a thread the kernel lets run last."""
        if len(pending) > _WRITEV_PIECES:  # many small pieces (a chunked body): one copy
            pending[:] = [b"".join(pending)]
        size = sum(map(len, pending))
        try:
            done = os.writev(out.fileno(), pending)
            if done < size:  # a short write (rare): the rest as one piece
                rest = memoryview(b"".join(pending))[done:]
                while rest:
                    rest = rest[out.write(rest) or 0 :]
        except OSError as exc:
            pending.clear()
            try:
                os.truncate(out.fileno(), offset)
                out.seek(offset)
            except OSError:
                log.warning("could not cut back a failed upload write")
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise StoreFull("the server's disk is full") from exc
            raise
        for piece in pending:
            hasher.update(piece)
        pending.clear()
        return offset + size

    def _hasher(self, upload: Upload) -> hashlib._Hash:
        known = self._hashers.pop(upload.id, None)
        if known is not None and known[0] == upload.offset:
            return known[1]
        hasher = hashlib.sha256()  # restarted server, or a cut-back write: hash what is kept
        with self._part(upload.id).open("rb") as f:
            left = upload.offset
            while left > 0:
                block = f.read(min(left, _WRITE_SIZE))
                if not block:
                    break
                hasher.update(block)
                left -= len(block)
        return hasher

    def finish(
        self,
        upload: Upload,
        *,
        room_key: str | None = None,
        dm_from: str | None = None,
        dm_to: str | None = None,
    ) -> StoredFile:
        """Turn a complete upload into a file: its blob (one per content) and its record."""
        known = self._hashers.pop(upload.id, None)
        hasher = known[1] if known is not None and known[0] == upload.length else None
        if hasher is None:  # restarted server: hash the whole file again
            hasher = self._hasher(replace(upload, offset=upload.length))
        sha = hasher.hexdigest()
        part = self._part(upload.id)
        with part.open("rb") as f:
            m = detect(f.read(HEAD_BYTES))
        stored = StoredFile(
            secrets.token_urlsafe(24), sha, upload.name, upload.length, m.mime, m.width,
            m.height, room_key, dm_from, dm_to, None, False,
        )  # fmt: skip
        # One step under the lock: retention must not remove a blob between our finding it
        # and the record that keeps it alive.
        # In a write transaction: another process's retention or orphan sweep waits for it.
        with self._writing():
            blob = self._blobs / sha
            if blob.exists():
                part.unlink()
            else:
                os.replace(part, blob)
            self._db.execute("DELETE FROM uploads WHERE id = ?", (upload.id,))
            self._db.execute(
                f"INSERT INTO files ({FILE_COLUMNS}, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*file_row(stored), time.time()),
            )
        return stored

    def delete_upload(self, upload_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
            self._hashers.pop(upload_id, None)
        self._part(upload_id).unlink(missing_ok=True)

    def sweep(self, now: float | None = None) -> int:
        """Remove uploads untouched for ``upload_ttl`` (and stray temporary files)."""
        cutoff = (time.time() if now is None else now) - self.upload_ttl
        with self._lock:
            stale = [
                str(r[0])
                for r in self._db.execute("SELECT id FROM uploads WHERE touched < ?", (cutoff,))
                if not self._busy_anywhere(str(r[0]))
            ]
            known = {str(r[0]) for r in self._db.execute("SELECT id FROM uploads")}
        for upload_id in stale:
            self.delete_upload(upload_id)
        for part in self._uploads.glob("*.part"):
            if part.stem not in known:
                with self._lock:  # made since `known` was read (here or elsewhere)? keep it
                    row = self._db.execute(
                        "SELECT 1 FROM uploads WHERE id = ?", (part.stem,)
                    ).fetchone()
                if row is None:
                    part.unlink(missing_ok=True)
        return len(stale)

    def _remove_orphan_blobs(self) -> None:
        """Blobs no live file uses (a crash between storing a blob and its record)."""
        with self._writing():  # no process finishes an upload meanwhile
            live = {
                str(r[0]) for r in self._db.execute("SELECT sha256 FROM files WHERE expired = 0")
            }
            for blob in self._blobs.iterdir():
                if blob.name not in live:
                    log.info("removing an unused blob %s", blob.name[:12])
                    blob.unlink(missing_ok=True)

    def _part(self, upload_id: str) -> Path:
        return self._uploads / f"{upload_id}.part"

    # -- files --------------------------------------------------------------------------------

    def set_message(self, file_id: str, message_id: int) -> None:
        with self._lock:
            self._db.execute("UPDATE files SET message_id = ? WHERE id = ?", (message_id, file_id))

    def file(self, file_id: str) -> StoredFile | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {FILE_COLUMNS} FROM files WHERE id = ?", (file_id,)
            ).fetchone()
        if row is None:
            return None
        values = list(row)
        values[11] = bool(values[11])
        return StoredFile(*values)

    def blob_path(self, sha256: str) -> Path:
        return self._blobs / sha256

    def used(self) -> int:
        with self._lock:
            return self._used_locked()

    def _used_locked(self) -> int:
        blobs = self._db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM "
            "(SELECT DISTINCT sha256, size FROM files WHERE expired = 0)"
        ).fetchone()[0]
        return int(blobs) + self._reserved_locked()

    def _reserved_locked(self) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(length), 0) FROM uploads").fetchone()
        return int(row[0])

    def _expire_oldest_locked(self) -> int | None:
        """Expire the oldest live file: its message id (0 if none yet), None if none left."""
        row = self._db.execute(
            "SELECT id, sha256, message_id FROM files WHERE expired = 0 ORDER BY created LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        file_id, sha, message_id = row
        self._db.execute("UPDATE files SET expired = 1 WHERE id = ?", (file_id,))
        still_used = self._db.execute(
            "SELECT 1 FROM files WHERE sha256 = ? AND expired = 0", (sha,)
        ).fetchone()
        if still_used is None:
            (self._blobs / sha).unlink(missing_ok=True)
        log.info("file %s expired to make room", file_id)
        return int(message_id or 0)

    def _tell_expired(self, message_ids: list[int]) -> None:
        if self.on_expired is not None:
            for message_id in message_ids:
                self.on_expired(message_id)


def _lock_file(path: Path) -> int | bool | None:
    """Take an exclusive ``flock`` on ``path`` without waiting: the descriptor that holds it,
    False if another holder has it, None where there is nothing to lock (the file is gone, or
    a system without flock: only this process's claims count there)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    except BaseException:
        os.close(fd)
        raise
    return fd


def default_quota(folder: Path) -> int:
    """The smaller of 20 GiB and half the free disk where the store lives."""
    folder.mkdir(parents=True, exist_ok=True)
    stat = os.statvfs(folder)
    return min(20 << 30, stat.f_bavail * stat.f_frsize // 2)
