"""The picture viewer: a received picture at full size, scaled down to fit the screen.

The picture is fetched with the transfer code (:func:`desktop_chat.net.client.files.download`:
TLS with the chat's pin, SHA-256 checked before the file is used) on a thread of its own into
a folder the window owns, then decoded in the GUI thread at the size it is shown at, under an
allocation limit: a decompression bomb (a small file whose header promises 100000×100000
pixels) is refused by Qt before a pixel is inflated, and the viewer says so.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, QSize, Qt, Signal
from PySide6.QtGui import QCloseEvent, QGuiApplication, QImage, QImageReader, QPixmap
from PySide6.QtWidgets import QDialog, QLabel, QVBoxLayout, QWidget

from desktop_chat.net.client import files as f
from desktop_chat.net.protocol.events import FileInfo
from desktop_chat.ui.file_card import display_name, human_size

VIEW_ALLOC_MB = 256  # what Qt may allocate to decode one picture (a 64-megapixel photo fits)
VIEW_MAX_BYTES = 256 * 1024 * 1024  # bigger files are saved or opened, not viewed here
_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}


def decode_to_fit(path: Path, box: QSize) -> tuple[QImage, str]:
    """The picture at ``path`` scaled to fit ``box`` (never enlarged), and '' — or a null
    image and why it cannot be shown."""
    reader = QImageReader(str(path))
    reader.setAllocationLimit(VIEW_ALLOC_MB)
    reader.setAutoTransform(True)  # a phone photo's EXIF rotation
    size = reader.size()
    if size.isValid() and (size.width() > box.width() or size.height() > box.height()):
        reader.setScaledSize(
            size.scaled(box, Qt.AspectRatioMode.KeepAspectRatio).expandedTo(QSize(1, 1))
        )
    image = reader.read()
    if not image.isNull():
        return image, ""
    said = f" (it says it is {size.width()}×{size.height()} pixels)" if size.isValid() else ""
    return image, (
        f"This picture cannot be shown{said}: it is damaged, or larger than "
        f"{VIEW_ALLOC_MB} MB once decoded. Save it to look at it with another program."
    )


class _Bridge(QObject):
    progress = Signal(int)
    done = Signal(str)
    failed = Signal(str)


class ImageViewer(QDialog):
    """Shows one received picture (see the module docstring).

    Signals:
        shown(str path): the picture was fetched, checked and is on screen.
        failed(str why): it cannot be shown; the dialog says why.
    """

    shown = Signal(str)
    failed = Signal(str)

    def __init__(
        self, info: FileInfo, endpoint: f.Endpoint | None, folder: Path, parent: QWidget
    ) -> None:
        super().__init__(parent)
        self.setObjectName("imageViewer")
        self.info = info
        self.endpoint = endpoint
        self.folder = folder
        self.path: Path | None = None
        self.error = ""
        self.setWindowTitle(display_name(info.name))
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setAccessibleName(f"Picture {display_name(info.name)}")
        self.status = QLabel("Loading…")
        self.status.setWordWrap(True)
        self.status.setProperty("role", "muted")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.status)
        self._bridge = _Bridge(self)
        self._bridge.progress.connect(self._on_progress)
        self._bridge.done.connect(self._on_done)
        self._bridge.failed.connect(self._fail)
        self._cancel = f.Cancel()
        self._thread: threading.Thread | None = None

    def start(self, cached: Path | None = None) -> None:
        """Show ``cached`` (fetched before) or fetch the picture first."""
        if cached is not None and cached.is_file():
            self._on_done(str(cached))
        elif self.info.size > VIEW_MAX_BYTES:
            self._fail(f"Too large to view here ({human_size(self.info.size)}): save it instead.")
        elif self.endpoint is None:
            self._fail("Not connected to the chat: the picture cannot be fetched now.")
        else:
            suffix = _SUFFIXES.get(self.info.mime or "", "")
            job = f.DownloadJob(
                self.info.id,
                f"{self.info.sha256[:32]}{suffix}",  # our own name: the sender's is a label
                self.info.size,
                self.info.sha256,
                str(self.folder),
            )
            self._thread = threading.Thread(
                target=self._fetch, args=(self.endpoint, job), name=f"viewer-{self.info.id[:8]}"
            )
            self._thread.start()

    def _fetch(self, ep: f.Endpoint, job: f.DownloadJob) -> None:
        """The viewer's own thread: one attempt (the user can click again)."""
        try:
            path = f.download(ep, job, self._bridge.progress.emit, self._cancel)
        except f.Cancelled:
            return
        except f.TransferError as exc:
            self._bridge.failed.emit(f"The picture could not be fetched: {exc.message}")
            return
        except OSError as exc:
            self._bridge.failed.emit(f"The picture could not be stored: {exc.strerror or exc}")
            return
        self._bridge.done.emit(str(path))

    def _on_progress(self, done: int) -> None:
        if self.info.size:
            self.status.setText(f"Loading… {100 * done // self.info.size} %")

    def _box(self) -> QSize:
        screen = self.screen() or QGuiApplication.primaryScreen()
        available = screen.availableGeometry().size()
        # Room for the frame, the margins and the line under the picture.
        return QSize(
            max(available.width() * 9 // 10 - 40, 64), max(available.height() * 9 // 10 - 80, 64)
        )

    def _on_done(self, path: str) -> None:
        self.path = Path(path)
        image, why = decode_to_fit(self.path, self._box())
        if image.isNull():
            self._fail(why)
            return
        self.picture.setPixmap(QPixmap.fromImage(image))
        width, height = self.info.width, self.info.height
        full = f"{width}×{height}" if width and height else ""
        scale = ""
        if width and image.width() < width:
            scale = f", shown at {100 * image.width() // width} %"
        self.status.setText(f"{display_name(self.info.name)} · {full}{scale}")
        self.adjustSize()
        self.place_on_screen()
        self.shown.emit(path)

    def place_on_screen(self) -> None:
        """Centre over the window it came from, but wholly on its screen: a big picture next
        to a window near the screen's edge would otherwise hang off it (Qt centres a dialog
        over its parent; not every window manager moves it back)."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        area = screen.availableGeometry()
        parent = self.parentWidget()
        centre = parent.window().geometry().center() if parent is not None else area.center()
        size = self.frameGeometry().size()
        x = min(max(centre.x() - size.width() // 2, area.left()), area.right() + 1 - size.width())
        y = min(max(centre.y() - size.height() // 2, area.top()), area.bottom() + 1 - size.height())
        self.move(max(x, area.left()), max(y, area.top()))

    def _fail(self, why: str) -> None:
        self.error = why
        self.picture.clear()
        self.picture.setText("⚠")
        self.status.setText(why)
        self.failed.emit(why)

    def stop(self) -> None:
        """Cancel a fetch under way and wait for its thread."""
        self._cancel.cancel()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def done(self, result: int) -> None:
        self.stop()
        super().done(result)

    def closeEvent(self, e: QCloseEvent) -> None:
        self.stop()
        super().closeEvent(e)
