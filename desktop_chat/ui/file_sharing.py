"""Sharing files from the chat window: the attach button, drag and drop, pasting an image, the
transfer panel, and what the buttons of a received file's card do (Save, Open, View).

:class:`FileSharing` is attached to a :class:`~desktop_chat.ui.main_window.MainWindow`; it owns
a :class:`~desktop_chat.ui.transfers.TransferManager` whose endpoint follows the chat client's
welcome (address, pinned certificate, session token), the cards' previews
(:mod:`~desktop_chat.ui.previews`) and the picture viewers (:mod:`~desktop_chat.ui.image_viewer`).
Cards themselves are painted by the chat delegate (:mod:`~desktop_chat.ui.file_card`). Received
files are saved to the user's Downloads folder (``$DESKTOP_CHAT_DOWNLOADS`` overrides it, for
tests) under a safe name that never overwrites another file; the card says how saving goes.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QEvent,
    QObject,
    QStandardPaths,
    Qt,
    QUrl,
)
from PySide6.QtGui import (
    QDesktopServices,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeyEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QToolButton,
    QWidget,
)

from desktop_chat.net.client import files as f
from desktop_chat.paths import data_dir
from desktop_chat.ui import file_card
from desktop_chat.ui.image_viewer import ImageViewer
from desktop_chat.ui.previews import Previews
from desktop_chat.ui.programs import is_program, looks_runnable
from desktop_chat.ui.transfer_panel import TransferPanel
from desktop_chat.ui.transfers import TransferManager, short_reason

ENV_DOWNLOADS = "DESKTOP_CHAT_DOWNLOADS"
NOT_OPENED = " · a program: not opened"  # the card's note when Open met a program's bytes


def downloads_folder() -> Path:
    override = os.environ.get(ENV_DOWNLOADS)
    if override:
        return Path(override)
    found = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DownloadLocation)
    return Path(found or Path.home())


class FileSharing(QObject):
    """Wires file sharing into one main window (see the module docstring)."""

    def __init__(self, window: Any, store: Path | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.manager = TransferManager(store or data_dir() / "transfers.json", self)
        self.panel = TransferPanel(self.manager, lambda: window.client.state == "connected")
        self._open_after: set[str] = set()
        self._saved: dict[str, Path] = {}  # file id -> where it was saved this session
        self._noted: dict[str, list[Any]] = {}  # file id -> cards that show how saving goes
        self._not_opened: set[str] = set()  # files whose bytes are a program: never opened
        self.manager.changed.connect(self._on_transfer_changed)
        self.viewers: dict[str, ImageViewer] = {}  # file id -> its open viewer
        self._pictures: dict[str, Path] = {}  # file id -> its checked copy for the viewer
        self._picture_tmp: tempfile.TemporaryDirectory[str] | None = None
        # Pasted pictures live in the data folder until sent: an upload may resume tomorrow.
        self._outgoing = data_dir() / "pasted"
        self._outgoing.mkdir(parents=True, exist_ok=True)
        composer = window.composer
        composer.layout().insertWidget(
            0, self._attach_button(composer), 0, Qt.AlignmentFlag.AlignBottom
        )
        parent_layout = composer.parentWidget().layout()
        parent_layout.insertWidget(parent_layout.indexOf(composer), self.panel)
        self.panel.follow_column(window.chat_view.parentWidget())  # the whole chat column
        window.setAcceptDrops(True)
        window.installEventFilter(self)
        window.input.installEventFilter(self)
        window.chat_view.fileAction.connect(self._on_file_action)
        # The client's own signal: it comes after client.session holds the new token.
        window.client.welcomed.connect(self._on_welcomed)
        self.manager.finished.connect(self._on_finished)
        self.previews = Previews(window.chat_view, lambda: self.manager.endpoint)
        window.chat_view.delegate.thumbWanted.connect(self.previews.want)

    def _attach_button(self, parent: QWidget) -> QToolButton:
        button = QToolButton(parent)
        button.setObjectName("attachButton")
        button.setText("📎")
        button.setAccessibleName("Attach a file")
        button.setToolTip("Send a file (or drop files on the window, or paste a picture)")
        button.clicked.connect(self.choose_files)
        self.attach_button = button
        return button

    # -- sending ---------------------------------------------------------------------------------

    def _on_welcomed(self, _welcome: object) -> None:
        c = self.window.client
        if c.address is not None and c.fingerprint and c.session:
            self.manager.set_endpoint(
                f.Endpoint(c.address[0], c.address[1], c.fingerprint, c.session)
            )

    def send_paths(self, paths: list[Path]) -> list[str]:
        conv = self.window.current()
        if conv is None or self.manager.endpoint is None:
            return []
        where = {"room": conv.name} if conv.kind == "room" else {"to": conv.name}
        return [self.manager.send_file(p, **where) for p in paths if p.is_file()]

    def send_image(self, image: QImage) -> list[str]:
        path = self._outgoing / f"pasted-{secrets.token_hex(4)}.png"
        if not image.save(str(path)):  # PNG, from the suffix
            return []
        return self.send_paths([path])

    def choose_files(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self.window, "Send files")
        self.send_paths([Path(n) for n in names])

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        dragging = kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove)
        dropping = isinstance(event, QDropEvent) and event.mimeData().hasUrls()
        if watched is self.window and dragging and dropping:
            assert isinstance(event, QDropEvent)
            event.acceptProposedAction()
            return True
        if watched is self.window and kind == QEvent.Type.Drop and isinstance(event, QDropEvent):
            urls = event.mimeData().urls()
            local = [Path(u.toLocalFile()) for u in urls if u.isLocalFile()]
            if local:
                self.send_paths(local)
                event.acceptProposedAction()
                return True
        pasting = isinstance(event, QKeyEvent) and event.matches(QKeySequence.StandardKey.Paste)
        if watched is self.window.input and kind == QEvent.Type.KeyPress and pasting:
            mime = QGuiApplication.clipboard().mimeData()
            if mime is not None and mime.hasImage() and not mime.hasText():
                self.send_image(QImage(mime.imageData()))
                return True
        return super().eventFilter(watched, event)

    # -- receiving ---------------------------------------------------------------------------

    def _on_file_action(self, entry: Any, action: str) -> None:
        """A card's button: save to Downloads, open (saved first), or view the picture."""
        info = entry.file
        if info is None or info.expired:
            return
        if action != file_card.VIEW:
            noted = self._noted.setdefault(info.id, [])
            if entry not in noted:
                noted.append(entry)
        if action == file_card.VIEW:
            self.view(info)
        elif action == file_card.OPEN:
            if is_program(info.name):
                return  # a program's card has no Open: it is never run from here
            saved = self._saved.get(info.id)
            if saved is not None and saved.is_file():
                self._open_checked(info.id, saved)  # saved already this session: no second copy
            else:
                self.save(info, open_after=True)
        else:
            self.save(info)

    def view(self, info: Any) -> ImageViewer:
        """Open the picture viewer for ``info`` (one viewer per picture: clicking again raises
        the open one)."""
        viewer = self.viewers.get(info.id)
        if viewer is not None:
            viewer.raise_()
            viewer.activateWindow()
            return viewer
        viewer = ImageViewer(info, self.manager.endpoint, self._pictures_dir(), self.window)
        viewer.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        self.viewers[info.id] = viewer
        viewer.shown.connect(lambda path: self._pictures.__setitem__(info.id, Path(path)))
        viewer.finished.connect(lambda _r: self.viewers.pop(info.id, None))
        viewer.start(self._pictures.get(info.id))
        viewer.show()
        viewer.place_on_screen()
        return viewer

    def _pictures_dir(self) -> Path:
        if self._picture_tmp is None:
            self._picture_tmp = tempfile.TemporaryDirectory(prefix="desktop-chat-pictures-")
        return Path(self._picture_tmp.name)

    def save(self, info: Any, *, open_after: bool = False) -> str | None:
        if self.manager.endpoint is None:
            return None
        folder = downloads_folder()
        folder.mkdir(parents=True, exist_ok=True)
        tid = self.manager.fetch_file(info, folder)
        if open_after:
            self._open_after.add(tid)
        return tid

    def _on_finished(self, tid: str) -> None:
        t = self.manager.transfers[tid]
        if t.download is not None and t.saved_to:
            self._saved[t.download.file_id] = Path(t.saved_to)
        if tid in self._open_after and t.saved_to and t.download is not None:
            self._open_checked(t.download.file_id, Path(t.saved_to))

    def _on_transfer_changed(self, tid: str) -> None:
        """Say on the file's card how saving it goes (the transfer panel has the details)."""
        t = self.manager.transfers[tid]
        if t.download is None or t.download.file_id not in self._noted:
            return
        if t.state == "running":
            note = f"saving… {100 * t.done // t.size} %" if t.size else "saving…"
        elif t.state == "waiting":
            note = "saving: waiting for the connection"
        elif t.state == "done":
            note = f"saved as {Path(t.saved_to).name}"
            if t.download.file_id in self._not_opened:
                note += NOT_OPENED
        elif t.state == "failed":
            note = f"not saved: {short_reason(t.why) if t.why else t.detail}"
        else:
            note = ""
        changed = False
        for entry in self._noted[t.download.file_id]:
            if entry.file_note != note:
                entry.file_note, changed = note, True
            if t.gone and not entry.file.expired:
                # Expired since the card was made: it says so now, and loses its buttons.
                entry.file = dataclasses.replace(entry.file, expired=True)
                entry.file_note, entry.cache_width, changed = "", -1, True
        if changed:
            self.window.chat_view.scheduleDelayedItemsLayout()
            self.window.chat_view.viewport().update()

    def _open_checked(self, file_id: str, path: Path) -> None:
        """Open a saved file with the desktop's program for it, unless its bytes say it is a
        program itself (an executable or a script named ``notes.txt``): that stays saved, and
        the card says why it was not opened."""
        try:
            with path.open("rb") as saved:
                head = saved.read(16)
        except OSError as exc:
            self._note(file_id, f"not opened: {exc.strerror or exc}")
            return
        if looks_runnable(head):
            self._not_opened.add(file_id)
            self._note(file_id, f"saved as {path.name}{NOT_OPENED}")
            return
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    def _note(self, file_id: str, note: str) -> None:
        for entry in self._noted.get(file_id, []):
            entry.file_note = note
        self.window.chat_view.viewport().update()

    # -- previews -----------------------------------------------------------------------------

    def close(self) -> None:
        for viewer in list(self.viewers.values()):
            viewer.stop()
            viewer.close()
        if self._picture_tmp is not None:
            self._picture_tmp.cleanup()
            self._picture_tmp = None
        self.previews.close()
        self.panel.close_panel()
        self.manager.close()
