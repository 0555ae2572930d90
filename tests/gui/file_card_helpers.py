"""Helpers for the file card tests: share a file as another user (straight through the tus
client, so any name can be given), find a card's row and the parts of its card, click them,
and a relay that holds a download still mid-way."""

from __future__ import annotations

import socket
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, QPoint, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from pytestqt.qtbot import QtBot

from desktop_chat.net.client import files as f
from desktop_chat.net.server.server import Server
from desktop_chat.ui.file_card import CardGeometry
from desktop_chat.ui.main_window import MainWindow
from tests.helpers import T


def share(server: Server, token: str, path: Path, name: str | None = None, **where: str) -> None:
    """Upload ``path`` as the user of ``token`` under ``name`` (any string) to a room or DM."""
    ep = f.Endpoint("127.0.0.1", server.port, server.fingerprint or "", token)
    job = f.UploadJob(str(path), name or path.name, path.stat().st_size, **where)
    f.upload(ep, job, lambda _done: None, f.Cancel())


def file_entries(window: MainWindow, key: str = "#general") -> list[Any]:
    conv = window.session.find(key)
    return [] if conv is None else [e for e in conv.model.entries() if e.file is not None]


def card_of(window: MainWindow, entry: Any) -> tuple[QModelIndex, CardGeometry]:
    """The entry's row (scrolled into view) and where its card's parts are (viewport px)."""
    view = window.chat_view
    model = view.chat_model()
    assert model is not None
    row = next(r for r in range(model.rowCount()) if model.entry(r) is entry)
    index = model.index(row)
    view.scrollTo(index)
    rect = view.visualRect(index)
    return index, view.delegate.card_geometry(entry, rect, view.delegate.fonts(view.font()))


def click(qtbot: QtBot, window: MainWindow, at: QPoint) -> None:
    qtbot.mouseClick(window.chat_view.viewport(), Qt.MouseButton.LeftButton, pos=at)


def picture(path: Path, width: int, height: int) -> Path:
    """A PNG: sky over sand with a sun, so a screenshot shows something real."""
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("#4a90d9"))
    for y in range(height * 7 // 10, height):
        for x in range(width):
            image.setPixelColor(x, y, QColor("#e8c07d"))
    sun = QColor("#f6d76b")
    cx, cy, r = width * 3 // 4, height // 4, max(height // 8, 2)
    for y in range(cy - r, cy + r):
        for x in range(cx - r, cx + r):
            if (x - cx) ** 2 + (y - cy) ** 2 <= r * r:
                image.setPixelColor(x, y, sun)
    assert image.save(str(path))
    return path


def bomb_png(width: int, height: int) -> bytes:
    """A small PNG whose header promises width×height pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1_000_000)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)


class StallingRelay:
    """A TCP relay to the server. The first connection to carry more than ``stall_after``
    bytes towards the client stops there (a download held mid-way), and drops on
    :meth:`release`, like a pulled cable; ``down`` counts the bytes carried towards clients."""

    def __init__(self, target: tuple[str, int], stall_after: int) -> None:
        self.target = target
        self.stall_after: int | None = stall_after
        self.stalled = threading.Event()
        self.gate = threading.Event()
        self.down = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, name="relay-accept")]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                a, _ = self.listener.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(self.target, timeout=T(5))
                b.settimeout(None)
            except OSError:
                a.close()  # the server is down: like a refused connection
                continue
            with self.lock:
                self.socks += [a, b]
            for src, dst, down in ((a, b, False), (b, a, True)):
                t = threading.Thread(target=self._pipe, args=(src, dst, down), name="relay-pipe")
                self.threads.append(t)
                t.start()

    def _pipe(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        carried = 0
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if not down:
                    continue
                carried += len(data)
                with self.lock:
                    self.down += len(data)
                    stall = self.stall_after is not None and carried > self.stall_after
                    if stall:
                        self.stall_after = None
                if stall:
                    self.stalled.set()
                    self.gate.wait(T(30))
                    return  # and the connection drops, whatever was still on its way
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def release(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self.gate.set()
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(T(5))
        for s in socks:
            s.close()


class GateRelay:
    """A TCP relay to the server that holds everything towards the client until :meth:`open`
    (pictures held on their way, so fetches stay in flight); ``accepted`` counts connections."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.gate = threading.Event()
        self.accepted = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._accept, name="gate-accept")]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                a, _ = self.listener.accept()
                b = socket.create_connection(self.target, timeout=T(5))
                b.settimeout(None)
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.socks += [a, b]
            for src, dst, down in ((a, b, False), (b, a, True)):
                t = threading.Thread(target=self._pipe, args=(src, dst, down), name="gate-pipe")
                self.threads.append(t)
                t.start()

    def _pipe(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        try:
            while data := src.recv(65536):
                if down:
                    self.gate.wait(T(30))
                dst.sendall(data)
        except OSError:
            pass  # the other side went: so does this direction
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # closed already

    def open(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self.gate.set()
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already
        for t in self.threads:
            t.join(T(5))
        for s in socks:
            s.close()


def plain_png(path: Path, width: int, height: int, colour: str) -> Path:
    """A PNG of one colour with a white band at the top (fast to make at any size)."""
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor(colour))
    painter = QPainter(image)
    painter.fillRect(0, 0, width, max(height // 10, 1), QColor("#ffffff"))
    painter.end()
    assert image.save(str(path))
    return path
