"""The desktop app's list of file transfers: each runs on a thread of its own, reports to the
GUI through one QObject bridge, and survives a lost connection and a restart of the app.

:class:`TransferManager` starts :mod:`desktop_chat.net.client.files` jobs on plain Python
threads (never the GUI thread, never the chat worker's socket). A thread reports progress by
emitting the bridge's signal; Qt queues it into the GUI thread, where the manager updates the
:class:`Transfer` and emits ``changed``. Progress is sent at most ten times a second.

A transfer that loses its connection waits and tries again (1, 2, 4... at most 15 s), while
the chat reconnects. The list of unfinished transfers (an upload's tus location, a download's
``.part`` file) is kept in ``transfers.json`` in the data folder, so after a restart they
continue from where the server stopped, once the chat welcomes us again on the same server.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from PySide6.QtCore import QObject, Signal

from desktop_chat.net.client import files as f

Kind = Literal["upload", "download"]
State = Literal["running", "waiting", "done", "failed", "cancelled"]
_REPORT_EVERY = 0.1  # seconds between progress reports
_RETRY_MAX = 15.0
# Speed is measured over the last few seconds only: a mean over the whole transfer (or one
# that counts the minutes a connection was down) shows absurd figures right after a resume.
SPEED_WINDOW = 3.0
_SPEED_MIN_SPAN = 0.5  # seconds of samples before a speed is shown at all
# A running transfer whose bytes have not moved for this long says so instead of showing the
# last speed and a time left that no longer mean anything.
STALL_AFTER = 3.0
_NOT_SAVED = ("cancel", "samples", "moved_at", "why")


@dataclass
class Transfer:
    """One upload or download, as the panel shows it and the list file keeps it."""

    id: str
    kind: Kind
    name: str
    size: int
    server: str  # "host:port fingerprint": a restart resumes only on the same server
    done: int = 0
    state: State = "running"
    detail: str = ""  # short, ours: what the row says when not running
    why: str = ""  # the whole reason (the row's tooltip)
    speed: float = 0.0  # bytes per second over the last SPEED_WINDOW seconds
    upload: f.UploadJob | None = None
    download: f.DownloadJob | None = None
    saved_to: str = ""
    gone: bool = False  # the server no longer has the file (expired): nothing to retry
    cancel: f.Cancel = field(default_factory=f.Cancel, repr=False)
    samples: deque[tuple[float, int]] = field(default_factory=deque, repr=False)
    moved_at: float = field(default_factory=time.monotonic, repr=False)  # bytes last moved

    @property
    def seconds_left(self) -> float | None:
        if self.speed <= 0 or self.state != "running":
            return None
        return (self.size - self.done) / self.speed

    def note_progress(self, done: int, now: float) -> None:
        """Bytes reached ``done``: the speed over the last SPEED_WINDOW seconds follows."""
        if done != self.done:
            self.moved_at = now
        self.done = done
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= SPEED_WINDOW:
            self.samples.popleft()
        first_at, first_done = self.samples[0]
        span = now - first_at
        self.speed = (done - first_done) / span if span >= _SPEED_MIN_SPAN else 0.0

    def restart_clock(self, now: float) -> None:
        """A new attempt: the speed starts afresh (the pause is not part of it)."""
        self.samples.clear()
        self.samples.append((now, self.done))
        self.speed, self.moved_at = 0.0, now

    def stalled(self, now: float) -> bool:
        return self.state == "running" and now - self.moved_at > STALL_AFTER


def status_line(t: Transfer, now: float, connected: bool) -> str:
    """The line under a transfer's progress bar: speed and time left while bytes move; while
    they do not, why (never a stale speed)."""
    if t.state != "running":
        return t.detail
    if t.stalled(now):
        return "stalled — waiting for the server" if connected else "reconnecting…"
    sizes = f"{human_size(t.done)} of {human_size(t.size)}"
    if t.speed <= 0:
        return sizes
    left = t.seconds_left
    eta = f", {_duration(left)} left" if left is not None else ""
    return f"{sizes} · {human_size(t.speed)}/s{eta}"


def short_reason(message: str) -> str:
    """Our own words of a transfer error, without the library's detail in brackets (that goes
    to the tooltip): "the download broke off (peer closed connection without...)" is
    "the download broke off"."""
    return message.split(" (", 1)[0].strip() or message


def _duration(seconds: float) -> str:
    s = int(seconds) + 1
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{round(s / 60)} min"
    return f"{s // 3600} h {round(s % 3600 / 60)} min"


class _Bridge(QObject):
    """The one crossing from transfer threads into the GUI thread."""

    report = Signal(str, str, object)  # transfer id, what ("progress", "done", ...), payload


class TransferManager(QObject):
    """Starts, resumes, cancels and remembers transfers.

    Signals (GUI thread):
        changed(str id): a transfer was added or its progress/state changed.
        finished(str id): a transfer is done (``saved_to`` set for downloads).
    """

    changed = Signal(str)
    finished = Signal(str)

    def __init__(self, store: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.transfers: dict[str, Transfer] = {}
        self.endpoint: f.Endpoint | None = None
        self._store = store
        self._threads: dict[str, threading.Thread] = {}
        self._bridge = _Bridge(self)
        self._bridge.report.connect(self._on_report)
        self._closed = False
        self._load()

    # -- the chat's connection ------------------------------------------------------------------

    def set_endpoint(self, endpoint: f.Endpoint | None) -> None:
        """The chat was welcomed (or lost): resume what waits for this server."""
        self.endpoint = endpoint
        if endpoint is None:
            return
        for t in self.transfers.values():
            if t.state == "waiting" and t.server == _server_key(endpoint):
                self._start(t)

    # -- requests ---------------------------------------------------------------------------------

    def send_file(self, path: Path, *, room: str | None = None, to: str | None = None) -> str:
        assert self.endpoint is not None, "not connected"
        size = path.stat().st_size
        job = f.UploadJob(str(path), path.name, size, room=room, to=to)
        t = Transfer(_new_id(), "upload", path.name, size, _server_key(self.endpoint), upload=job)
        return self._add(t)

    def fetch_file(self, info: object, folder: Path) -> str:
        """Download a ``FileInfo`` into ``folder`` (the Downloads folder)."""
        assert self.endpoint is not None, "not connected"
        fid, name, size, sha = (getattr(info, k) for k in ("id", "name", "size", "sha256"))
        job = f.DownloadJob(fid, name, size, sha, str(folder))
        t = Transfer(_new_id(), "download", name, size, _server_key(self.endpoint), download=job)
        return self._add(t)

    def cancel(self, tid: str) -> None:
        t = self.transfers.get(tid)
        if t is None or t.state in ("done", "failed", "cancelled"):
            return
        t.cancel.cancel()
        t.state, t.detail = "cancelled", "Cancelled"
        self._forget_later(t)
        self._save()
        self.changed.emit(tid)

    def close(self) -> None:
        """Stop every thread (unfinished transfers stay listed, to resume next time)."""
        self._closed = True
        for t in self.transfers.values():
            t.cancel.cancel()
        for thread in self._threads.values():
            thread.join()
        self._threads.clear()

    # -- running --------------------------------------------------------------------------------

    def _add(self, t: Transfer) -> str:
        self.transfers[t.id] = t
        self._start(t)
        self._save()
        return t.id

    def _start(self, t: Transfer) -> None:
        old = self._threads.get(t.id)
        if self._closed or self.endpoint is None or (old is not None and old.is_alive()):
            return
        t.state, t.detail, t.cancel = "running", "", f.Cancel()
        t.restart_clock(time.monotonic())
        thread = threading.Thread(
            target=self._run, args=(t, self.endpoint, t.cancel), name=f"transfer-{t.id}"
        )
        self._threads[t.id] = thread
        thread.start()
        self.changed.emit(t.id)

    def _run(self, t: Transfer, ep: f.Endpoint, cancel: f.Cancel) -> None:
        """The transfer's own thread: retries lost connections until done, failed or stopped."""
        last = [0.0]  # when progress was last reported

        def progress(done: int) -> None:
            now = time.monotonic()
            if now - last[0] >= _REPORT_EVERY or done == t.size:
                last[0] = now
                self._bridge.report.emit(t.id, "progress", (done, now))

        delay = 1.0
        while True:
            try:
                if t.upload is not None:
                    created = lambda loc: self._bridge.report.emit(t.id, "save", loc)  # noqa: E731
                    f.upload(ep, t.upload, progress, cancel, created)
                    self._bridge.report.emit(t.id, "done", "")
                else:
                    assert t.download is not None
                    path = f.download(ep, t.download, progress, cancel)
                    self._bridge.report.emit(t.id, "done", str(path))
                return
            except f.Cancelled:
                return
            except f.TransferError as exc:
                if not exc.retry:
                    gone = t.download is not None and exc.status in (404, 410)
                    self._bridge.report.emit(t.id, "gone" if gone else "failed", exc.message)
                    return
                self._bridge.report.emit(t.id, "waiting", exc.message)
            except OSError as exc:  # the local file: unreadable, disk full...
                self._bridge.report.emit(t.id, "failed", exc.strerror or str(exc))
                return
            if cancel.wait(delay):
                return
            delay = min(delay * 2, _RETRY_MAX)
            self._bridge.report.emit(t.id, "running", "")

    def _on_report(self, tid: str, what: str, payload: object) -> None:
        t = self.transfers.get(tid)
        if t is None or t.state == "cancelled":
            return
        if what == "progress":
            assert isinstance(payload, tuple)
            t.note_progress(*payload)
        elif what == "save":
            self._save()  # the upload's location: resumable from now on
        elif what == "done":
            t.state, t.done, t.detail, t.saved_to = "done", t.size, "Done", str(payload)
            self._forget_later(t)
            self._save()
            self.finished.emit(tid)
        elif what in ("failed", "gone"):
            t.state, t.gone = "failed", what == "gone"
            t.detail, t.why = f"Failed: {short_reason(str(payload))}", str(payload)
            if t.download is not None and t.download.part:
                # A final failure: nothing will continue this part (it was even left empty in
                # Downloads when the file had expired before its first byte).
                Path(t.download.part).unlink(missing_ok=True)
            self._save()
        elif what == "waiting":
            t.state, t.speed = "waiting", 0.0
            t.detail, t.why = f"Waiting to resume: {short_reason(str(payload))}", str(payload)
            self._save()
        elif what == "running":
            t.state, t.detail, t.why = "running", "", ""
            t.restart_clock(time.monotonic())
        self.changed.emit(tid)

    def _forget_later(self, t: Transfer) -> None:
        """A cancelled upload's bytes are dropped on the server too, off the GUI thread."""
        ep, up = self.endpoint, t.upload
        if t.state == "cancelled" and ep is not None and up is not None and up.location:
            location = up.location
            thread = threading.Thread(
                target=_quietly_delete, args=(ep, location), name=f"transfer-delete-{t.id}"
            )
            self._threads[t.id + "-delete"] = thread
            thread.start()
        if t.state == "cancelled" and t.download is not None and t.download.part:
            Path(t.download.part).unlink(missing_ok=True)

    # -- the list file ------------------------------------------------------------------------

    def _save(self) -> None:
        if self._store is None:
            return
        keep = []
        for t in self.transfers.values():
            if t.state not in ("running", "waiting"):
                continue
            # The cancel lock and the speed clock are not data.
            row = {k: v for k, v in vars(t).items() if k not in _NOT_SAVED}
            row["upload"] = asdict(t.upload) if t.upload else None
            row["download"] = asdict(t.download) if t.download else None
            keep.append(row)
        self._store.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._store.with_suffix(".tmp")
        tmp.write_text(json.dumps(keep), encoding="utf-8")
        tmp.replace(self._store)

    def _load(self) -> None:
        if self._store is None or not self._store.exists():
            return
        try:
            rows = json.loads(self._store.read_text(encoding="utf-8"))
            for row in rows:
                up, down = row.pop("upload"), row.pop("download")
                t = Transfer(**row)
                t.upload = f.UploadJob(**up) if up else None
                t.download = f.DownloadJob(**down) if down else None
                t.state, t.detail, t.speed = "waiting", "Waiting for the chat", 0.0
                self.transfers[t.id] = t
        except (ValueError, TypeError, KeyError, AttributeError):
            self.transfers.clear()  # a damaged list: start afresh rather than not at all


def _quietly_delete(ep: f.Endpoint, location: str) -> None:
    try:
        f.cancel_upload(ep, location)
    except f.TransferError:
        pass  # unreachable now: the server's sweeper removes it after upload_ttl


def _server_key(ep: f.Endpoint) -> str:
    return f"{ep.host}:{ep.port} {ep.fingerprint}"


def _new_id() -> str:
    return secrets.token_hex(6)


def human_size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
