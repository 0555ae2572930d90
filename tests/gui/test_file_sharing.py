"""File sharing from the window against a real TLS server: drop a file in one window and save
it from another with its hash checked, paste a picture, cancel, resume after a restart of the
transfer list, and a decompression bomb that stays a bounded thumbnail."""

from __future__ import annotations

import hashlib
import os
import resource
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSize, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QProgressBar
from pytestqt.qtbot import QtBot

from desktop_chat.net.client import files as f
from desktop_chat.net.server.server import Server
from desktop_chat.ui.file_sharing import ENV_DOWNLOADS
from desktop_chat.ui.main_window import MainWindow
from desktop_chat.ui.previews import decode_thumbnail
from desktop_chat.ui.transfers import TransferManager
from tests.gui.conftest import TIMEOUT_MS, WindowAt
from tests.test_client_files import _Relay

WindowFactory = Callable[[str], MainWindow]


@pytest.fixture
def downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "Downloads"
    monkeypatch.setenv(ENV_DOWNLOADS, str(folder))
    return folder


@pytest.fixture
def open_window(qtbot: QtBot, window_at: WindowAt, server: Server) -> WindowFactory:
    def make(name: str) -> MainWindow:
        window = window_at(server, name)
        qtbot.waitUntil(lambda: window.files.manager.endpoint is not None, timeout=TIMEOUT_MS)
        return window

    return make


def _file_entries(window: MainWindow) -> list[Any]:
    conv = window.session.find("#general")
    return [] if conv is None else [e for e in conv.model.entries() if e.file is not None]


def _drop(window: MainWindow, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    where = QPoint(100, 100)
    enter = QDragEnterEvent(
        where,
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QGuiApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(
        QPointF(where),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    # QApplication::notify() looks up the drag manager's current target for a Drop, which only
    # a real drag has (sending one crashes): the window's drop handler gets the event directly.
    assert window.files.eventFilter(window, drop)
    assert drop.isAccepted()


def test_a_dropped_file_reaches_another_window_and_is_saved_with_its_hash_checked(
    qtbot: QtBot, open_window: WindowFactory, tmp_path: Path, downloads: Path
) -> None:
    alice, bob = open_window("alice"), open_window("bob")
    data = os.urandom(1_500_000)
    source = tmp_path / "holiday.bin"
    source.write_bytes(data)
    _drop(alice, [source])
    bars = alice.files.panel.findChildren(QProgressBar)
    assert len(bars) == 1 and alice.files.panel.isVisible()
    qtbot.waitUntil(lambda: len(_file_entries(bob)) == 1, timeout=TIMEOUT_MS)
    entry = _file_entries(bob)[0]
    assert entry.file.name == "holiday.bin" and entry.sender == "alice"
    assert entry.text.startswith("📎 holiday.bin (1.4 MB)")
    assert bars[0].value() == 1000

    downloads.mkdir()
    (downloads / "holiday.bin").write_bytes(b"already here")
    tid = bob.files.save(entry.file)
    assert tid is not None
    t = bob.files.manager.transfers[tid]
    qtbot.waitUntil(lambda: t.state == "done", timeout=TIMEOUT_MS)
    saved = Path(t.saved_to)
    assert saved.name == "holiday (2).bin"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert (downloads / "holiday.bin").read_bytes() == b"already here"


def test_a_pasted_picture_becomes_a_png_upload(qtbot: QtBot, open_window: WindowFactory) -> None:
    alice, bob = open_window("alice"), open_window("bob")
    image = QImage(64, 48, QImage.Format.Format_RGB32)
    image.fill(QColor("orange"))
    QGuiApplication.clipboard().setImage(image)
    alice.input.setFocus()
    qtbot.keyClick(alice.input, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    (t,) = alice.files.manager.transfers.values()
    qtbot.waitUntil(lambda: t.state == "done", timeout=2 * TIMEOUT_MS)
    qtbot.waitUntil(lambda: len(_file_entries(bob)) == 1, timeout=TIMEOUT_MS)
    info = _file_entries(bob)[0].file
    assert (info.mime, info.width, info.height) == ("image/png", 64, 48)
    assert alice.input.toPlainText() == ""  # the picture was sent, not pasted as text
    # The card shows a preview, decoded at bounded size, and the row grew to hold it.
    entry = _file_entries(bob)[0]
    qtbot.waitUntil(lambda: entry.thumb is not None, timeout=TIMEOUT_MS)
    assert (entry.thumb.width(), entry.thumb.height()) == (64, 48)
    assert entry.thumb.pixelColor(10, 10) == QColor("orange")


def test_cancel_stops_the_upload_and_the_server_drops_it(
    qtbot: QtBot, open_window: WindowFactory, tmp_path: Path
) -> None:
    alice = open_window("alice")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(16 * 1024 * 1024))
    (tid,) = alice.files.send_paths([source])
    t = alice.files.manager.transfers[tid]
    qtbot.waitUntil(
        lambda: t.upload is not None and t.upload.location is not None, timeout=TIMEOUT_MS
    )
    row = alice.files.panel.rows[tid]
    qtbot.mouseClick(row.cancel, Qt.MouseButton.LeftButton)
    assert t.state == "cancelled" and row.detail.text() == "Cancelled"
    ep = alice.files.manager.endpoint
    assert ep is not None and t.upload is not None and t.upload.location is not None
    location = t.upload.location

    def gone() -> bool:
        answer, _ = f._call(ep, f.Cancel(), "HEAD", location)
        return answer.status == 404

    qtbot.waitUntil(gone, timeout=TIMEOUT_MS)


def test_an_upload_continues_after_a_restart_of_the_app(
    qtbot: QtBot, server: Server, connect: Any, tmp_path: Path
) -> None:
    alice, bob = connect("alice"), connect("bob")
    ep = f.Endpoint("127.0.0.1", server.port, server.fingerprint or "", alice.welcome_session)
    store = tmp_path / "transfers.json"
    data = os.urandom(8_000_000)
    source = tmp_path / "film.bin"
    source.write_bytes(data)
    relay = _Relay(server.address)  # the network cable, pulled after about 2 MB
    relay.cut_after = 2_000_000
    first = TransferManager(store)
    first.set_endpoint(
        f.Endpoint(ep.host, ep.port, ep.fingerprint, ep.token, ("127.0.0.1", relay.port))
    )
    try:
        states: list[str] = []
        first.changed.connect(lambda tid: states.append(first.transfers[tid].state))
        tid = first.send_file(source, room="general")
        t = first.transfers[tid]
        # The retry comes a second after "waiting": the app quits before it.
        qtbot.waitUntil(lambda: "waiting" in states, timeout=3 * TIMEOUT_MS)
        assert t.upload is not None and t.upload.location is not None
        location = t.upload.location

        def server_has_some() -> bool:
            answer, _ = f._call(ep, f.Cancel(), "HEAD", location)
            return int(answer.headers["upload-offset"]) > 0

        qtbot.waitUntil(server_has_some, timeout=TIMEOUT_MS)
    finally:
        first.close()  # the app quits while it waits to resume
        relay.close()
    assert store.exists()

    second = TransferManager(store)
    try:
        again = second.transfers[tid]
        assert again.state == "waiting" and again.upload is not None
        assert again.upload.location == t.upload.location  # type: ignore[union-attr]
        firsts: list[int] = []  # the first progress: where the server said to continue
        second._bridge.report.connect(
            lambda _t, what, data: firsts.append(data[0]) if what == "progress" else None
        )
        second.set_endpoint(ep)
        qtbot.waitUntil(lambda: again.state == "done", timeout=TIMEOUT_MS)
    finally:
        second.close()
    msg = bob.expect("message")
    assert msg["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert 0 < firsts[0] < len(data), firsts[:3]  # continued, not started over
    assert "film.bin" not in store.read_text()  # a finished transfer is no longer listed


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    crc = struct.pack(">I", zlib.crc32(chunk))
    idat = zlib.compress(b"\0" * 1_000_000)  # a little data that inflates a lot
    idat_chunk = b"IDAT" + idat
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + crc
        + struct.pack(">I", len(idat))
        + idat_chunk
        + struct.pack(">I", zlib.crc32(idat_chunk))
    )


@pytest.mark.qt_log_ignore("QImageIOHandler: Rejecting image as it exceeds")
def test_a_decompression_bomb_stays_a_bounded_thumbnail(tmp_path: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    image, why = decode_thumbnail(_png_header(100_000, 100_000), QSize(240, 180))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert image.isNull()  # refused from its header, before a pixel was inflated
    assert why == "too large to preview"
    assert grown_mb < 100, grown_mb
    ordinary = QImage(640, 480, QImage.Format.Format_RGB32)
    ordinary.fill(QColor("teal"))
    assert ordinary.save(str(tmp_path / "teal.png"))
    thumb, why = decode_thumbnail((tmp_path / "teal.png").read_bytes(), QSize(240, 180))
    assert (thumb.width(), thumb.height()) == (240, 180) and why == ""
