"""``/files`` over HTTP: tus 1.0.0 uploads (core, creation, termination) and ranged downloads.

Every request names its sender with ``Authorization: Bearer <session>``; the hub says who that
is (:meth:`Hub.identify`) and :meth:`Hub.may_read` says whether they
may see a file (the same rule as the history of its room or DM). Routes:

- ``OPTIONS /files``: what this server supports (no token needed);
- ``POST /files``: a new upload (``Upload-Length``, ``Upload-Metadata`` with ``filename`` and
  ``room`` or ``to``) → 201 and ``Location: /files/uploads/<id>``;
- ``HEAD``/``PATCH``/``DELETE /files/uploads/<id>``: its offset, more bytes, abandon it (only
  for the session that created it; anyone else gets 404);
- ``GET``/``HEAD /files/<file id>``: the content, whole or one ``Range`` (206).

PATCH bodies stream from the socket to the store in the connection's own thread; a download
is written by :meth:`Transport.send_file`. Only PNG, JPEG, GIF and WebP are served inline;
every answer has ``nosniff`` and a CSP under which nothing runs (``sandbox``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from typing import TYPE_CHECKING
from urllib.parse import quote

import h11

from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.names import InvalidName, name_key, normalize_name
from desktop_chat.net.server.file_records import StoredFile, StoreFull, TooLarge, Upload
from desktop_chat.net.server.sharing import Reader
from desktop_chat.net.server.sniff_media import INLINE_TYPES, safe_label

if TYPE_CHECKING:
    from desktop_chat.net.server.http import HttpExchange

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_UPLOADS = "/files/uploads/"
# A body we refused is read (and dropped) for up to this long / this much, so that closing
# does not reset the connection before the client has read the answer.
_LINGER = 2.0
_LINGER_BYTES = 64 << 20
FILE_SECURITY = [
    ("Content-Security-Policy", "default-src 'none'; sandbox; frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
]


class _Refused(Exception):
    """An answer other than success: status, reason text, extra headers."""

    def __init__(self, status: int, text: str, extra: list[tuple[str, str]] | None = None):
        super().__init__(text)
        self.status = status
        self.text = text
        self.extra = extra or []


class FilesEndpoint:
    """One request to ``/files`` on an :class:`HttpExchange`."""

    def __init__(self, exchange: HttpExchange, request: h11.Request, target: str) -> None:
        self.exchange = exchange
        self.request = request
        self.target = target
        self.ctx = exchange.ctx
        self.store = exchange.ctx.files
        self.method = request.method.decode("ascii", "replace")

    def handle(self) -> None:
        try:
            self._dispatch()
        except _Refused as refused:
            self._answer(refused.status, refused.text, refused.extra)
            if not self.exchange.request_complete():
                # Closing with unread input would reset the connection, and the answer with
                # it: read (and drop) what is still coming for a moment first.
                self.exchange.transport.finish_reading(_LINGER, _LINGER_BYTES)

    def _dispatch(self) -> None:
        if self.method == "OPTIONS" and self.target == "/files":
            self._answer(204, "", self._capabilities())
            return
        download = not self.target.startswith(_UPLOADS) and self.target != "/files"
        if not download and self._header(b"tus-resumable") != TUS_VERSION:
            raise _Refused(412, "Tus-Resumable: 1.0.0 is required", self._capabilities())
        reader = self._reader()
        if self.target == "/files":
            if self.method != "POST":
                raise _Refused(405, "POST a new upload here", [("Allow", "POST, OPTIONS")])
            self._create(reader)
        elif not download:
            upload = self._own_upload(reader, self.target[len(_UPLOADS) :])
            if self.method == "HEAD":
                self._answer(200, "", [*self._offset(upload), ("Cache-Control", "no-store")])
            elif self.method == "PATCH":
                self._patch(reader, upload)
            elif self.method == "DELETE":
                self._delete(upload)
            else:
                raise _Refused(405, "HEAD, PATCH or DELETE", [("Allow", "HEAD, PATCH, DELETE")])
        elif self.method in ("GET", "HEAD"):
            self._download(reader, self.target[len("/files/") :])
        else:
            raise _Refused(405, "GET or HEAD", [("Allow", "GET, HEAD")])

    # -- who ----------------------------------------------------------------------------------

    def _reader(self) -> Reader:
        auth = self._header(b"authorization") or ""
        scheme, _, token = auth.partition(" ")
        reader = None
        if scheme.lower() == "bearer" and token.strip():
            reader = self.ctx.hub.identify(token.strip())
        if reader is None:
            raise _Refused(401, "a valid session token is needed", [("WWW-Authenticate", "Bearer")])
        return reader

    def _own_upload(self, reader: Reader, upload_id: str) -> Upload:
        upload = self.store.upload(upload_id) if _ID.fullmatch(upload_id) else None
        if upload is None or upload.session != reader.session:
            raise _Refused(404, "no such upload")
        return upload

    # -- uploads ------------------------------------------------------------------------------

    def _create(self, reader: Reader) -> None:
        length = _number(self._header(b"upload-length"))
        if length is None:
            raise _Refused(400, "Upload-Length (a number of bytes) is required")
        if length > self.store.max_file_size:
            raise _Refused(413, f"files may have up to {self.store.max_file_size} bytes")
        meta = _metadata(self._header(b"upload-metadata") or "")
        name = meta.get("filename")
        if not name:
            raise _Refused(400, "Upload-Metadata needs a filename")
        room, to = meta.get("room"), meta.get("to")
        if (room is None) == (to is None):
            raise _Refused(400, "Upload-Metadata needs exactly one of room or to")
        room_key = to_key = to_name = None
        if room is not None:
            room_key = _key(room)
            if room_key is None or room_key not in reader.rooms:
                raise _Refused(403, "you are not in that room")
        else:
            to_key = _key(to or "")
            to_name = None if to_key is None else self.ctx.hub.online_name(to_key)
            if to_name is None:
                raise _Refused(404, "nobody of that name is online")
        try:
            upload = self.store.create_upload(
                session=reader.session, name=safe_label(name), length=length,
                room_key=room_key, to_key=to_key, to_name=to_name,
            )  # fmt: skip
        except TooLarge as exc:
            raise _Refused(413, str(exc)) from exc
        except StoreFull as exc:
            raise _Refused(507, str(exc)) from exc
        self._answer(201, "", [("Location", f"{_UPLOADS}{upload.id}"), ("Upload-Offset", "0")])

    def _patch(self, reader: Reader, upload: Upload) -> None:
        ctype = (self._header(b"content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/offset+octet-stream":
            raise _Refused(415, "Content-Type must be application/offset+octet-stream")
        offset = _number(self._header(b"upload-offset"))
        if offset != upload.offset:
            raise _Refused(409, f"the upload is at offset {upload.offset}", self._offset(upload))
        declared = _number(self._header(b"content-length"))
        if declared is not None and offset + declared > upload.length:
            raise _Refused(413, "more bytes than the upload's Upload-Length")
        if not self.store.claim(upload.id):
            raise _Refused(423, "another request is writing this upload", [("Retry-After", "1")])
        try:
            current = self.store.upload(upload.id)
            if current is None or current.offset != upload.offset:  # swept or written meanwhile
                raise _Refused(409, "the upload changed; ask its offset again")
            self.exchange.transport.mark_bulk()
            try:
                new_offset = self.store.write(upload, self.exchange.body(self.request))
            except TooLarge as exc:
                raise _Refused(413, str(exc)) from exc
            except StoreFull as exc:
                log.warning("upload %s refused: %s", upload.id[:8], exc)
                raise _Refused(507, str(exc)) from exc
            extra = [("Upload-Offset", str(new_offset))]
            if new_offset == upload.length:
                extra.append(("Upload-Message-Id", str(self._complete(reader, upload))))
        finally:
            self.store.release(upload.id)
        self._answer(204, "", extra)

    def _complete(self, reader: Reader, upload: Upload) -> int:
        """The last byte arrived: store the file and send its message; the message's id."""
        if upload.room_key is not None and upload.room_key not in reader.rooms:
            raise _Refused(403, "you left that room before the upload finished")
        dm_from = reader.key if upload.to_key is not None else None
        stored = self.store.finish(
            upload, room_key=upload.room_key, dm_from=dm_from, dm_to=upload.to_key
        )
        info = p.FileInfo(
            id=stored.id, name=stored.name, size=stored.size, sha256=stored.sha256,
            mime=stored.mime, width=stored.width, height=stored.height,
        )  # fmt: skip
        room = None if upload.room_key is None else reader.rooms[upload.room_key]
        msg = self.ctx.hub.share_file(reader, info, room=room, to=upload.to_name)
        self.store.set_message(stored.id, msg.id)
        return msg.id

    def _delete(self, upload: Upload) -> None:
        if not self.store.claim(upload.id):
            raise _Refused(423, "another request is writing this upload", [("Retry-After", "1")])
        try:
            self.store.delete_upload(upload.id)
        finally:
            self.store.release(upload.id)
        self._answer(204, "")

    # -- downloads ----------------------------------------------------------------------------

    def _download(self, reader: Reader, file_id: str) -> None:
        stored = self.store.file(file_id) if _ID.fullmatch(file_id) else None
        if stored is None or not self.ctx.hub.may_read(
            reader, room_key=stored.room_key, message_id=stored.message_id
        ):
            raise _Refused(404, "no such file")  # 404, not 403: existence is not revealed
        if stored.expired:
            raise _Refused(410, "this file has expired")
        try:
            fd = os.open(self.store.blob_path(stored.sha256), os.O_RDONLY)
        except FileNotFoundError as exc:
            raise _Refused(410, "this file has expired") from exc
        try:
            self._send(stored, fd)
        finally:
            os.close(fd)

    def _send(self, stored: StoredFile, fd: int) -> None:
        size = stored.size
        extra = [
            ("Accept-Ranges", "bytes"),
            ("ETag", f'"{stored.sha256}"'),
            ("Cache-Control", "private, max-age=86400"),
            ("Content-Disposition", disposition(stored)),
        ]
        wanted = self._header(b"range")
        span = None if wanted is None else parse_range(wanted, size)
        if span == "unsatisfiable":
            raise _Refused(
                416, "that range is not in the file", [("Content-Range", f"bytes */{size}")]
            )
        status, start, length = 200, 0, size
        if isinstance(span, tuple):
            status, start, length = 206, span[0], span[1] - span[0]
            extra.append(("Content-Range", f"bytes {span[0]}-{span[1] - 1}/{size}"))
        if self.method == "HEAD":
            self.exchange.respond(
                status, b"", stored.mime, head=True, length=length, extra=extra,
                security=FILE_SECURITY,
            )  # fmt: skip
            return
        self.exchange.transport.mark_bulk()
        self.exchange.respond_file(
            status, stored.mime, fd, start, length, extra=extra, security=FILE_SECURITY
        )

    # -- helpers ------------------------------------------------------------------------------

    def _header(self, name: bytes) -> str | None:
        for key, value in self.request.headers:
            if key == name:
                return value.decode("latin-1").strip()
        return None

    def _offset(self, upload: Upload) -> list[tuple[str, str]]:
        return [("Upload-Offset", str(upload.offset)), ("Upload-Length", str(upload.length))]

    def _capabilities(self) -> list[tuple[str, str]]:
        return [
            ("Tus-Version", TUS_VERSION),
            ("Tus-Extension", "creation,termination"),
            ("Tus-Max-Size", str(self.store.max_file_size)),
        ]

    def _answer(self, status: int, text: str, extra: list[tuple[str, str]] | None = None) -> None:
        body = f"{text}\n".encode() if text else b""
        self.exchange.respond(
            status, body, "text/plain; charset=utf-8",
            extra=[("Tus-Resumable", TUS_VERSION), *(extra or [])], security=FILE_SECURITY,
        )  # fmt: skip


def _number(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 19:
        return None
    return int(value)


def _key(name: str) -> str | None:
    try:
        return name_key(normalize_name(name))
    except InvalidName:
        return None


def _metadata(value: str) -> dict[str, str]:
    """tus ``Upload-Metadata``: ``key base64,key base64``; keys without value are allowed."""
    out: dict[str, str] = {}
    for pair in value.split(","):
        if not pair.strip():
            continue
        key, _, encoded = pair.strip().partition(" ")
        try:
            out[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise _Refused(400, f"Upload-Metadata {key!r} is not base64 of UTF-8") from exc
    return out


def parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """``bytes=a-b`` (one range) → (start, end exclusive); "unsatisfiable"; None: ignore it
    (several ranges or another unit: the whole file is sent, as RFC 9110 allows)."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    if not first:  # the last N bytes
        n = _number(last)
        if n is None:
            return None
        if n == 0 or size == 0:
            return "unsatisfiable"
        return (max(0, size - n), size)
    start = _number(first)
    end = _number(last) if last else size - 1
    if start is None or end is None:
        return None
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    return (start, min(end, size - 1) + 1)


def disposition(stored: StoredFile) -> str:
    """``inline`` for the four image types, ``attachment`` for everything else; the name in
    an ASCII fallback and, exactly, as RFC 8187 UTF-8 (so no byte of it can break out)."""
    kind = "inline" if stored.mime in INLINE_TYPES else "attachment"
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\%;' else "_" for c in stored.name)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(stored.name, safe='')}"
