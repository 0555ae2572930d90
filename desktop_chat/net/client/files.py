"""The desktop app's file transfers, without Qt: tus uploads and ranged downloads that resume.

Each request is one HTTP/1.1 exchange (spoken with ``h11``) on its own connection to the chat
port, always over TLS with the chat link's certificate pin: a server whose certificate is not
the pinned one gets nothing, not even the session token. Everything here blocks; the caller
runs it on a thread of its own (never the GUI thread, never the chat worker's socket) and
stops it with :meth:`Cancel.cancel`, which also closes the socket in use, so a transfer stuck
in a read ends at once.

* :func:`upload` creates the upload (``POST``) or asks where it stopped (``HEAD``), then sends
  the rest in one ``PATCH``. The location is handed to the caller as soon as it exists, so a
  lost connection or a restart of the app continues from the server's offset.
* :func:`download` writes to ``<dest>.part``, continues an existing one with ``Range``, checks
  the SHA-256 over the whole file, and only then moves it to a new name that never overwrites
  (see :mod:`savenames`).
* :func:`fetch` reads a small file (a thumbnail) into memory, refusing more than a cap.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h11

from desktop_chat.net.client.savenames import claim_unique, safe_name
from desktop_chat.net.client.tls_stream import TlsStream
from desktop_chat.net.protocol.tls import client_context, fingerprint_of_der

# Bytes per file read, socket write, hash update and progress call: each of those lets other
# threads run, and a busy one may then keep the interpreter for its switch interval (5 ms).
CHUNK = 1 << 20
TIMEOUT = 30.0  # seconds without progress before a connection counts as lost

Progress = Callable[[int], None]  # bytes done so far (of the whole file)


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom: the chat server's address, its pinned certificate, our session."""

    host: str
    port: int
    fingerprint: str
    token: str
    route: tuple[str, int] | None = None  # connect here instead (a tunnel); Host stays ours


class Cancelled(Exception):
    """The transfer was cancelled."""


class TransferError(Exception):
    """A transfer failed. ``retry``: worth trying again later (the connection was lost, the
    server was busy); else final (refused, expired, corrupt)."""

    def __init__(self, message: str, *, retry: bool, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry
        self.status = status


class Cancel:
    """Cancels one transfer from any thread, closing its socket so no read waits on."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()
        with self._lock:
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed: nothing waits on it

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds`` unless cancelled first; True when cancelled."""
        return self._event.wait(seconds)

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled

    def use(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
        if sock is not None and self._event.is_set():
            raise Cancelled


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lowercase names


class _Exchange:
    """One request and its answer on a fresh TLS connection with the pin checked."""

    def __init__(self, ep: Endpoint, cancel: Cancel) -> None:
        self.cancel = cancel
        try:
            raw = socket.create_connection(ep.route or (ep.host, ep.port), timeout=TIMEOUT)
        except OSError as exc:
            raise TransferError(
                f"could not reach the chat: {exc.strerror or exc}", retry=True
            ) from None
        try:
            cancel.use(raw)
        except Cancelled:
            raw.close()
            raise
        self.sock = TlsStream(raw, client_context())
        try:
            self.sock.handshake()
        except (OSError, ssl.SSLError) as exc:
            self.close()
            cancel.check()
            raise TransferError(f"no encrypted link: {exc}", retry=True) from None
        der = self.sock.peer_certificate()
        if not der or fingerprint_of_der(der) != ep.fingerprint:
            self.close()
            raise TransferError("the server's certificate is not the chat's", retry=False)
        self.conn = h11.Connection(h11.CLIENT)
        self.ep = ep

    def close(self) -> None:
        self.cancel.use(None)
        self.sock.close()

    def _write(self, data: bytes) -> None:
        if data:
            self._io(lambda: self.sock.sendall(data))

    def _io(self, action: Callable[[], object]) -> object:
        try:
            return action()
        except (OSError, ssl.SSLError) as exc:
            self.cancel.check()
            raise TransferError(f"the connection was lost ({exc})", retry=True) from None

    def _next(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = self._io(self.sock.recv)
                assert isinstance(data, bytes)
                self.conn.receive_data(data)
                continue
            assert not isinstance(event, type)
            return event

    def request(
        self, method: str, target: str, headers: dict[str, str], body: Iterator[bytes] | None = None
    ) -> Answer:
        all_headers = {
            "Host": _host_header(self.ep.host, self.ep.port),
            "Authorization": f"Bearer {self.ep.token}",
            "Tus-Resumable": "1.0.0",
            "Connection": "close",
            **headers,
        }
        if method in ("POST", "HEAD", "GET", "DELETE") and "Content-Length" not in all_headers:
            all_headers["Content-Length"] = "0"
        try:
            # The head goes out with the first piece of the body, in one write.
            pending = self.conn.send(
                h11.Request(method=method, target=target, headers=list(all_headers.items()))
            )
            for chunk in body or ():
                self.cancel.check()
                pending = (pending or b"") + (self.conn.send(h11.Data(data=chunk)) or b"")
                self._write(pending)
                pending = b""
            pending = (pending or b"") + (self.conn.send(h11.EndOfMessage()) or b"")
            self._write(pending)
            while True:
                event = self._next()
                if isinstance(event, h11.Response):
                    break
        except h11.ProtocolError as exc:
            raise TransferError(f"the server's answer made no sense ({exc})", retry=True) from None
        heads = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
        return Answer(event.status_code, heads)

    def body(self) -> Iterator[bytes]:
        try:
            while True:
                event = self._next()
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return
        except h11.ProtocolError as exc:
            raise TransferError(f"the download broke off ({exc})", retry=True) from None

    def text(self) -> str:
        return b"".join(self.body())[:500].decode(errors="replace").strip()


def _host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _call(
    ep: Endpoint,
    cancel: Cancel,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: Iterator[bytes] | None = None,
) -> tuple[Answer, str]:
    """One exchange whose answer body is a line of text (or nothing)."""
    ex = _Exchange(ep, cancel)
    try:
        answer = ex.request(method, target, headers or {}, body)
        return answer, ex.text() if method != "HEAD" else ""
    finally:
        ex.close()


def _refused(answer: Answer, text: str) -> TransferError:
    retry = answer.status in (423, 500, 502, 503, 504)
    return TransferError(text or f"the server answered {answer.status}", retry=retry,
                         status=answer.status)  # fmt: skip


# -- uploads ----------------------------------------------------------------------------------


@dataclass
class UploadJob:
    """What an upload needs to continue after a restart: kept by the caller."""

    path: str
    name: str
    size: int
    room: str | None = None
    to: str | None = None
    location: str | None = None  # the tus upload, once created


def _metadata(job: UploadJob) -> str:
    fields = {"filename": job.name}
    if job.room is not None:
        fields["room"] = job.room
    else:
        assert job.to is not None
        fields["to"] = job.to
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


def _file_chunks(path: str, offset: int, progress: Progress, cancel: Cancel) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(offset)
        done = offset
        while chunk := f.read(CHUNK):
            cancel.check()
            yield chunk
            done += len(chunk)
            progress(done)


def upload(
    ep: Endpoint,
    job: UploadJob,
    progress: Progress,
    cancel: Cancel,
    created: Callable[[str], None] = lambda _location: None,
) -> int:
    """Send ``job`` (creating or continuing its upload); return the file message's id.

    ``created(location)`` is called once the upload exists, before any byte is sent. While
    the server still finishes the request of a lost connection (``423``, ``Retry-After``) or
    had another offset (``409``), this waits as told and asks again, a few times.
    """
    for _attempt in range(10):
        try:
            return _upload_once(ep, job, progress, cancel, created)
        except _Busy as busy:
            if cancel.wait(busy.seconds):
                raise Cancelled from None
    raise TransferError("the server stayed busy with this upload", retry=True)


class _Busy(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


def _upload_once(
    ep: Endpoint,
    job: UploadJob,
    progress: Progress,
    cancel: Cancel,
    created: Callable[[str], None],
) -> int:
    offset = 0
    if job.location is not None:
        answer, text = _call(ep, cancel, "HEAD", job.location)
        if answer.status == 200:
            offset = int(answer.headers.get("upload-offset", "0"))
        elif answer.status in (404, 410):
            job.location = None  # swept by the server or never finished: start over
        else:
            raise _refused(answer, text)
    if job.location is None:
        headers = {"Upload-Length": str(job.size), "Upload-Metadata": _metadata(job)}
        answer, text = _call(ep, cancel, "POST", "/files", headers)
        if answer.status != 201 or "location" not in answer.headers:
            raise _refused(answer, text)
        job.location = answer.headers["location"]
        created(job.location)
    progress(offset)
    headers = {
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(job.size - offset),
    }
    try:
        chunks = _file_chunks(job.path, offset, progress, cancel)
        answer, text = _call(ep, cancel, "PATCH", job.location, headers, chunks)
    except FileNotFoundError:
        raise TransferError(f"{job.path} is no longer there", retry=False) from None
    if answer.status in (409, 423):
        raise _Busy(min(float(answer.headers.get("retry-after", "0") or 0), 10.0))
    if answer.status != 204 or "upload-message-id" not in answer.headers:
        raise _refused(answer, text)
    return int(answer.headers["upload-message-id"])


def cancel_upload(ep: Endpoint, location: str) -> None:
    """Ask the server to drop an unfinished upload (its bytes and reservation). While the
    request of the cancelled transfer still writes it (``423``), wait as told and ask again."""
    pause = Cancel()
    for _attempt in range(10):
        answer, text = _call(ep, pause, "DELETE", location)
        if answer.status in (204, 404):
            return
        if answer.status != 423:
            raise _refused(answer, text)
        pause.wait(min(float(answer.headers.get("retry-after", "1") or 1), 10.0))
    raise TransferError("the server stayed busy with this upload", retry=True)


# -- downloads --------------------------------------------------------------------------------


@dataclass
class DownloadJob:
    """A file to fetch into ``folder``; ``part`` is where its bytes gather meanwhile."""

    file_id: str
    name: str
    size: int
    sha256: str
    folder: str
    part: str = ""  # chosen on the first attempt, kept for resuming

    def part_path(self) -> Path:
        if not self.part:
            claimed = claim_unique(Path(self.folder), safe_name(self.name) + ".part")
            self.part = str(claimed)
        return Path(self.part)


def download(ep: Endpoint, job: DownloadJob, progress: Progress, cancel: Cancel) -> Path:
    """Fetch the file (continuing ``job.part``), check its hash, and move it to a name of its
    own in ``job.folder``; return that path. An expired file raises a final TransferError."""
    part = job.part_path()
    digest = hashlib.sha256()
    have = part.stat().st_size if part.exists() else 0
    if have > job.size:
        have = 0
    headers = {"Range": f"bytes={have}-"} if 0 < have < job.size else {}
    if have < job.size:
        ex = _Exchange(ep, cancel)
        try:
            answer = ex.request("GET", f"/files/{job.file_id}", headers)
            if answer.status in (404, 410):
                raise TransferError("the file has expired on the server", retry=False,
                                    status=answer.status)  # fmt: skip
            if answer.status == 200:
                have = 0  # the whole file came back: start the part over
            elif answer.status != 206:
                raise _refused(answer, ex.text())
            with open(part, "r+b" if have else "wb") as out:
                _hash_prefix(out, have, digest)
                out.seek(have)
                out.truncate()
                for chunk in _gathered(ex.body()):
                    out.write(chunk)
                    digest.update(chunk)
                    have += len(chunk)
                    progress(have)
                    cancel.check()
        finally:
            ex.close()
    else:
        with open(part, "rb") as f:
            _hash_prefix(f, have, digest)
    if have != job.size:
        raise TransferError("the download broke off", retry=True)
    if digest.hexdigest() != job.sha256:
        part.unlink(missing_ok=True)
        job.part = ""
        raise TransferError("the file arrived damaged (its SHA-256 did not match)", retry=False)
    final = claim_unique(Path(job.folder), safe_name(job.name))
    os.replace(part, final)
    return final


def _gathered(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks`` joined into pieces of about :data:`CHUNK` bytes (what one socket read gives
    can be much less): fewer file writes, hash updates and progress calls."""
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= CHUNK:
            yield b"".join(pending)
            pending.clear()
            size = 0
    if pending:
        yield b"".join(pending)


def _hash_prefix(f: object, length: int, digest: hashlib._Hash) -> None:
    """Hash the first ``length`` bytes already on disk (a resumed part)."""
    assert hasattr(f, "read") and hasattr(f, "seek")
    f.seek(0)
    left = length
    while left > 0:
        block = f.read(min(CHUNK, left))
        if not block:
            break
        digest.update(block)
        left -= len(block)


def fetch(ep: Endpoint, file_id: str, cap: int, cancel: Cancel | None = None) -> bytes:
    """The whole file in memory (a thumbnail's source), refused when it is over ``cap``."""
    ex = _Exchange(ep, cancel or Cancel())
    try:
        answer = ex.request("GET", f"/files/{file_id}", {})
        if answer.status in (404, 410):
            raise TransferError("the file has expired on the server", retry=False,
                                status=answer.status)  # fmt: skip
        if answer.status != 200:
            raise _refused(answer, ex.text())
        if int(answer.headers.get("content-length", cap + 1)) > cap:
            raise TransferError("too large to preview", retry=False)
        out = bytearray()
        for chunk in ex.body():
            out += chunk
            if len(out) > cap:
                raise TransferError("too large to preview", retry=False)
        return bytes(out)
    finally:
        ex.close()
