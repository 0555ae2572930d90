"""Picture previews on file cards: fetched when a card is first painted, decoded at bounded size.

The chat delegate asks (``thumbWanted``) when it paints a picture's card that has no preview;
:class:`Previews` fetches the picture on a thread of its own (at most THUMB_FETCH_CAP bytes in
memory, over the transfer code's pinned TLS) and decodes it in the GUI thread, scaled to fit
PREVIEW_BOX and under an allocation limit, so a decompression bomb gives no preview rather than
an exhausted memory. Only pictures that reach the screen are fetched, from history too.

The card keeps the preview's room from the picture's size in the message (the server read it
from the header), so rows do not jump when a preview arrives, and previews can be dropped and
fetched again: at most PREVIEW_CACHE decoded previews are kept, the least recently shown go.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QObject, QSize, Qt, Signal
from PySide6.QtGui import QImage, QImageReader
from PySide6.QtWidgets import QListView

from desktop_chat.net.client import files as f
from desktop_chat.ui.file_card import PREVIEW_BOX, preview_size

THUMB_FETCH_CAP = 16 * 1024 * 1024  # bytes of a picture fetched into memory for a preview
THUMB_ALLOC_MB = 64  # what Qt may allocate to decode one picture, whatever its header says
PREVIEW_CACHE = 256  # decoded previews kept (240×180×4 bytes each at most: about 44 MB)


def decode_thumbnail(data: bytes, box: QSize = PREVIEW_BOX) -> QImage:
    """Decode a picture scaled to fit ``box``, never allocating more than THUMB_ALLOC_MB: a
    decompression bomb (a PNG declaring 100000×100000) gives a null image, not an exhausted
    memory."""
    buffer = QBuffer()
    buffer.setData(QByteArray(data))
    buffer.open(QBuffer.OpenModeFlag.ReadOnly)
    reader = QImageReader(buffer)
    reader.setAllocationLimit(THUMB_ALLOC_MB)
    size = reader.size()
    if not size.isValid() or size.isEmpty():
        reader.setScaledSize(box)  # no size in the header: never larger than the box
    elif size.width() > box.width() or size.height() > box.height():  # shrink, never enlarge
        reader.setScaledSize(
            size.scaled(box, Qt.AspectRatioMode.KeepAspectRatio).expandedTo(QSize(1, 1))
        )
    return reader.read()


class _Bridge(QObject):
    """Carries fetched pictures from their threads into the GUI thread."""

    ready = Signal(str, object)  # file id, the picture's bytes (None: no preview)


class Previews(QObject):
    """Fetches, decodes and keeps the previews of one conversation view's cards."""

    def __init__(self, view: QListView, endpoint: Callable[[], f.Endpoint | None]) -> None:
        super().__init__(view)
        self.view = view
        self.endpoint = endpoint
        self._bridge = _Bridge(self)
        self._bridge.ready.connect(self._on_ready)
        self._waiting: dict[str, list[Any]] = {}  # file id -> entries waiting for it
        self._images: OrderedDict[str, QImage] = OrderedDict()  # file id -> its preview
        self._holders: dict[str, list[Any]] = {}  # file id -> entries showing its preview
        self._threads: list[tuple[threading.Thread, f.Cancel]] = []

    def want(self, entry: Any) -> None:
        """A picture's card is painted without its preview (the delegate's thumbWanted)."""
        file_id = entry.file.id
        image = self._images.get(file_id)
        if image is not None:
            self._images.move_to_end(file_id)
            self._show(file_id, [entry], image)
            return
        ep = self.endpoint()
        if ep is None:
            entry.thumb_asked = False  # asked again when painted after the welcome
            return
        waiting = self._waiting.setdefault(file_id, [])
        waiting.append(entry)
        if len(waiting) > 1:
            return  # the first entry for this file fetches it
        self._threads = [(t, c) for t, c in self._threads if t.is_alive()]
        cancel = f.Cancel()
        thread = threading.Thread(
            target=self._fetch, args=(ep, file_id, cancel), name=f"thumb-{file_id[:8]}"
        )
        self._threads.append((thread, cancel))
        thread.start()

    def _fetch(self, ep: f.Endpoint, file_id: str, cancel: f.Cancel) -> None:
        """A preview's own thread. The picture is decoded in the GUI thread: Qt objects made
        on plain Python threads stalled other threads' sockets in tests."""
        try:
            data: bytes | None = f.fetch(ep, file_id, THUMB_FETCH_CAP, cancel)
        except f.Cancelled:
            return
        except f.TransferError:
            data = None  # too large, expired, unreachable: the card shows its icon
        self._bridge.ready.emit(file_id, data)

    def _on_ready(self, file_id: str, data: bytes | None) -> None:
        entries = self._waiting.pop(file_id, [])
        image = decode_thumbnail(data) if data is not None else QImage()
        if image.isNull():  # a bomb, a damaged picture, or none came
            for entry in entries:
                entry.thumb_failed = True
                entry.cache_width = -1  # the icon takes the preview's room back
            self._refresh(relayout=True)
            return
        self._images[file_id] = image
        while len(self._images) > PREVIEW_CACHE:
            old, _ = self._images.popitem(last=False)
            for entry in self._holders.pop(old, []):
                entry.thumb, entry.thumb_asked = None, False  # fetched again when shown
        self._show(file_id, entries, image)

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
        for _thread, cancel in self._threads:
            cancel.cancel()
        for thread, _cancel in self._threads:
            thread.join()
        self._threads.clear()
