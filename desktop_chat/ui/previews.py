"""Picture previews on file cards: fetched while the card is on screen, decoded at bounded size.

The chat delegate asks (``thumbWanted``) when it paints a picture's card that has no preview.
:class:`Previews` queues the ask and fetches at most MAX_FETCHES pictures at once, each on a
thread of its own (at most THUMB_FETCH_CAP bytes in memory, over the transfer code's pinned
TLS), and only for cards still on screen: when the view scrolls, fetches of cards scrolled away
are cancelled and asks for them dropped (they ask again when painted again), and new fetches
wait until the view has been still for SETTLE_MS (not while it follows the newest message).
So a conversation of many large pictures costs a viewer who scrolls past them at most
MAX_FETCHES × THUMB_FETCH_CAP of memory.

A picture is decoded on its fetch thread (Qt lets go of the Python lock while it decodes: the
window stays responsive), scaled to fit PREVIEW_BOX, under an allocation limit: THUMB_ALLOC_MB,
raised for a picture whose header says at most PREVIEW_MAX_PIXELS (Qt's PNG reader decodes at
full size before scaling, so a 5000×4000 screenshot needs 80 MB), one such big decode at a
time. A decompression bomb, or a bigger picture, gives no preview and the card says why.

The card keeps the preview's room from the picture's size in the message (the server read it
from the header), so rows do not jump when a preview arrives, and previews can be dropped and
fetched again: at most PREVIEW_CACHE decoded previews are kept, the least recently shown go.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QObject, QPoint, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QImageReader
from PySide6.QtWidgets import QListView

from desktop_chat.net.client import files as f
from desktop_chat.ui.file_card import DAMAGED, PREVIEW_BOX, TOO_LARGE, preview_size

MAX_FETCHES = 2  # previews fetched at once
SETTLE_MS = 120  # after a scroll, fetches start once the view has been still this long
THUMB_FETCH_CAP = 16 * 1024 * 1024  # bytes of a picture fetched into memory for a preview
THUMB_ALLOC_MB = 64  # what Qt may allocate to decode one picture, whatever its header says
PREVIEW_MAX_PIXELS = 50_000_000  # up to this the limit is raised to the header's full size
PREVIEW_CACHE = 256  # decoded previews kept (240×180×4 bytes each at most: about 44 MB)

_big_decode = threading.Lock()  # one decode above THUMB_ALLOC_MB at a time, in all windows


def _bytes_per_pixel(data: bytes) -> int:
    """What Qt allocates per pixel: 8 for a 16-bit PNG (it decodes to RGBA64), else 4."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 24 and data[24] == 16:
        return 8
    return 4


def decode_thumbnail(data: bytes, box: QSize = PREVIEW_BOX) -> tuple[QImage, str]:
    """Decode a picture scaled to fit ``box``: the preview and '', or a null image and why
    (TOO_LARGE, DAMAGED). Qt never allocates more than THUMB_ALLOC_MB, or the header's full size
    when that is at most PREVIEW_MAX_PIXELS: a decompression bomb (a PNG declaring
    100000×100000) is refused before a pixel is inflated."""
    buffer = QBuffer()
    buffer.setData(QByteArray(data))
    buffer.open(QBuffer.OpenModeFlag.ReadOnly)
    reader = QImageReader(buffer)
    size = reader.size()
    limit = THUMB_ALLOC_MB
    if size.isValid() and not size.isEmpty():
        pixels = size.width() * size.height()
        if pixels > PREVIEW_MAX_PIXELS:
            return QImage(), TOO_LARGE
        full_mb = pixels * _bytes_per_pixel(data) // (1024 * 1024) + 1
        limit = max(limit, full_mb)
    reader.setAllocationLimit(limit)
    if not size.isValid() or size.isEmpty():
        reader.setScaledSize(box)  # no size in the header: never larger than the box
    elif size.width() > box.width() or size.height() > box.height():  # shrink, never enlarge
        reader.setScaledSize(
            size.scaled(box, Qt.AspectRatioMode.KeepAspectRatio).expandedTo(QSize(1, 1))
        )
    if limit > THUMB_ALLOC_MB:
        with _big_decode:
            image = reader.read()
    else:
        image = reader.read()
    # The limit fits the header's full size: a picture that still fails is damaged.
    return image, "" if not image.isNull() else DAMAGED


class _Bridge(QObject):
    """Carries decoded previews from their threads into the GUI thread."""

    ready = Signal(str, object, str)  # file id, the preview (None: none), why not


@dataclass(eq=False)
class _Fetch:
    thread: threading.Thread
    cancel: f.Cancel
    entries: list[Any] = field(default_factory=list)


class Previews(QObject):
    """Fetches, decodes and keeps the previews of one conversation view's cards."""

    def __init__(self, view: QListView, endpoint: Callable[[], f.Endpoint | None]) -> None:
        super().__init__(view)
        self.view = view
        self.endpoint = endpoint
        self._bridge = _Bridge(self)
        self._bridge.ready.connect(self._on_ready)
        self._queue: OrderedDict[str, list[Any]] = OrderedDict()  # asked, not fetched yet
        self._running: dict[str, _Fetch] = {}  # file id -> its fetch (at most MAX_FETCHES)
        self._images: OrderedDict[str, QImage] = OrderedDict()  # file id -> its preview
        self._holders: dict[str, list[Any]] = {}  # file id -> entries showing its preview
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self._pump)
        view.verticalScrollBar().valueChanged.connect(self._on_scrolled)

    @property
    def fetching(self) -> int:
        """How many previews are being fetched now."""
        return len(self._running)

    def want(self, entry: Any) -> None:
        """A picture's card is painted without its preview (the delegate's thumbWanted)."""
        file_id = entry.file.id
        image = self._images.get(file_id)
        if image is not None:
            self._images.move_to_end(file_id)
            self._show(file_id, [entry], image)
            return
        running = self._running.get(file_id)
        if running is not None:
            running.entries.append(entry)
            return
        self._queue.setdefault(file_id, []).append(entry)
        self._pump()

    def _on_screen(self) -> set[int]:
        """The ids of the entries whose rows are on screen now."""
        view = self.view
        model = view.model()
        if model is None or not view.isVisible():
            return set()
        height = view.viewport().height()
        top = view.indexAt(QPoint(1, 0))
        row = top.row() if top.isValid() else 0
        shown: set[int] = set()
        entry_of = getattr(model, "entry", None)
        while entry_of is not None and row < model.rowCount():
            rect = view.visualRect(model.index(row, 0))
            if rect.top() >= height:
                break
            if rect.bottom() >= 0:
                shown.add(id(entry_of(row)))
            row += 1
        return shown

    def _on_scrolled(self, _value: int) -> None:
        """Cancel fetches of cards scrolled away, drop their asks; new fetches wait for the
        view to settle."""
        shown = self._on_screen()
        for fetch in self._running.values():
            if not fetch.cancel.cancelled and not any(id(e) in shown for e in fetch.entries):
                fetch.cancel.cancel()  # its slot is free once its thread has ended
        self._drop_unseen(shown)
        bar = self.view.verticalScrollBar()
        if bar.value() >= bar.maximum():
            # Following the newest messages (a busy chat scrolls for every one): waiting for
            # the view to settle would keep new pictures waiting as long as people talk.
            self._settle.stop()
            self._pump()
        else:
            self._settle.start()

    def _drop_unseen(self, shown: set[int]) -> None:
        for file_id, entries in list(self._queue.items()):
            if not any(id(e) in shown for e in entries):
                del self._queue[file_id]
                for entry in entries:
                    entry.thumb_asked = False  # asked again when painted again

    def _pump(self) -> None:
        """Start fetches for queued cards on screen while there is room."""
        if self._settle.isActive() or not self._queue or len(self._running) >= MAX_FETCHES:
            return
        ep = self.endpoint()
        if ep is None:
            for entries in self._queue.values():
                for entry in entries:
                    entry.thumb_asked = False  # asked again when painted after the welcome
            self._queue.clear()
            return
        self._drop_unseen(self._on_screen())
        while self._queue and len(self._running) < MAX_FETCHES:
            file_id, entries = self._queue.popitem(last=False)
            cancel = f.Cancel()
            thread = threading.Thread(
                target=self._fetch, args=(ep, file_id, cancel), name=f"thumb-{file_id[:8]}"
            )
            self._running[file_id] = _Fetch(thread, cancel, entries)
            thread.start()

    def _fetch(self, ep: f.Endpoint, file_id: str, cancel: f.Cancel) -> None:
        """A preview's own thread: fetch, decode, hand over (exactly once)."""
        image: QImage | None = None
        why = ""
        try:
            data = f.fetch(ep, file_id, THUMB_FETCH_CAP, cancel)
            image, why = decode_thumbnail(data)
        except f.Cancelled:
            why = "cancelled"
        except f.TransferError as exc:
            why = TOO_LARGE if "too large" in exc.message else ""  # expired, unreachable
        self._bridge.ready.emit(file_id, image, why)

    def _on_ready(self, file_id: str, image: QImage | None, why: str) -> None:
        fetch = self._running.pop(file_id, None)
        if fetch is None:
            return  # closed meanwhile
        fetch.thread.join()  # it has handed over: only its return is left
        entries = fetch.entries
        if fetch.cancel.cancelled:
            shown = self._on_screen()
            for entry in entries:
                if id(entry) in shown:  # back on screen meanwhile: fetched again
                    self._queue.setdefault(file_id, []).append(entry)
                else:
                    entry.thumb_asked = False  # scrolled away: asked again when shown again
        elif image is None or image.isNull():  # a bomb, too big, damaged, or none came
            for entry in entries:
                entry.thumb_failed = True
                entry.thumb_note = why
                entry.cache_width = -1  # the icon takes the preview's room back
            self._refresh(relayout=True)
        else:
            self._images[file_id] = image
            while len(self._images) > PREVIEW_CACHE:
                old, _ = self._images.popitem(last=False)
                for entry in self._holders.pop(old, []):
                    entry.thumb, entry.thumb_asked = None, False  # fetched again when shown
            self._show(file_id, entries, image)
        self._pump()

    def _show(self, file_id: str, entries: list[Any], image: QImage) -> None:
        holders = self._holders.setdefault(file_id, [])
        resized = False
        for entry in entries:
            entry.thumb = image
            if entry not in holders:
                holders.append(entry)
            if (image.width(), image.height()) != preview_size(entry.file):
                entry.cache_width, resized = -1, True  # the header's size was not the picture's
        self._refresh(relayout=resized)

    def _refresh(self, *, relayout: bool) -> None:
        if relayout:
            self.view.scheduleDelayedItemsLayout()
        self.view.viewport().update()

    def close(self) -> None:
        self._settle.stop()
        self._queue.clear()
        fetches = list(self._running.values())
        self._running.clear()
        for fetch in fetches:
            fetch.cancel.cancel()
        for fetch in fetches:
            fetch.thread.join()
