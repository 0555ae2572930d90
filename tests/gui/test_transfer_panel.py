"""The desktop transfer panel against a real TLS server: finished rows clear themselves and
failed ones stay, the panel never takes more than a third of the chat column (it scrolls),
a transfer whose bytes stop moving says "stalled" instead of a stale speed, and an error
shows our short words with the whole reason in the tooltip."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from pytestqt.qtbot import QtBot

from desktop_chat.net.client import files as f
from desktop_chat.net.server.server import Server
from desktop_chat.ui import transfer_panel, transfers
from desktop_chat.ui.file_sharing import ENV_DOWNLOADS
from desktop_chat.ui.main_window import MainWindow
from tests.gui.conftest import TIMEOUT_MS, WindowAt
from tests.test_client_files import _Relay


@pytest.fixture
def downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "Downloads"
    folder.mkdir()
    monkeypatch.setenv(ENV_DOWNLOADS, str(folder))
    return folder


@pytest.fixture
def open_window(qtbot: QtBot, window_at: WindowAt, server: Server) -> Callable[[str], MainWindow]:
    def make(name: str) -> MainWindow:
        window = window_at(server, name)
        window.resize(800, 600)
        qtbot.waitUntil(lambda: window.files.manager.endpoint is not None, timeout=TIMEOUT_MS)
        return window

    return make


def test_done_rows_clear_themselves_failed_ones_stay_and_the_panel_stays_a_third(
    qtbot: QtBot,
    open_window: Callable[[str], MainWindow],
    tmp_path: Path,
    downloads: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transfer_panel, "CLEAR_DONE_AFTER", 1.0)
    alice = open_window("alice")
    panel = alice.files.panel
    manager = alice.files.manager
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"file{i}.bin")
        paths[-1].write_bytes(os.urandom(20_000))
    # A download of a file the server never had: it fails, for good.
    missing = SimpleNamespace(id="f" + "0" * 31, name="lost.bin", size=10, sha256="0" * 64)
    failed = manager.fetch_file(missing, downloads)
    sent = alice.files.send_paths(paths)
    assert len(sent) == 8 and len(panel.rows) == 9
    column = alice.chat_view.parentWidget()
    # Nine rows would be ~400 px: the panel stays within a third of the column, scrolling.
    assert panel.height() <= column.height() // 3
    assert sum(r.sizeHint().height() for r in panel.rows.values()) > panel.height()
    qtbot.waitUntil(
        lambda: all(manager.transfers[t].state == "done" for t in sent), timeout=TIMEOUT_MS
    )
    qtbot.waitUntil(lambda: manager.transfers[failed].state == "failed", timeout=TIMEOUT_MS)
    alice.grab().save(str(tmp_path / "panel-full.png"))
    qtbot.waitUntil(lambda: list(panel.rows) == [failed], timeout=TIMEOUT_MS)
    row = panel.rows[failed]
    assert row.detail.text().startswith("Failed: ") and row.dismiss.isVisible()
    assert row.detail.toolTip() == manager.transfers[failed].why  # the whole reason
    alice.grab().save(str(tmp_path / "panel-after.png"))
    assert panel.isVisible() and panel.height() <= column.height() // 3
    assert panel.height() >= row.sizeHint().height()  # one row: shown whole
    row.dismiss.click()
    assert not panel.rows and not panel.isVisible()


class _HeldRelay(_Relay):
    """A relay whose bytes from the server can be held back (a server that stops sending)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.flowing = threading.Event()
        self.flowing.set()
        self.hold_after: int | None = None  # bytes, after which it holds
        super().__init__(target)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                while not self.flowing.wait(0.05):
                    if self.listener.fileno() == -1:
                        return
                dst.sendall(data)
                self.moved += len(data)
                if self.hold_after is not None and self.moved > self.hold_after:
                    self.hold_after = None
                    self.flowing.clear()
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def test_a_download_whose_bytes_stop_says_stalled_not_a_stale_speed(
    qtbot: QtBot,
    open_window: Callable[[str], MainWindow],
    server: Server,
    connect: object,
    tmp_path: Path,
    downloads: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transfers, "STALL_AFTER", 1.0)
    alice, bob = open_window("alice"), open_window("bob")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(48 << 20))
    (up,) = alice.files.send_paths([source])
    alice_t = alice.files.manager.transfers[up]
    qtbot.waitUntil(lambda: alice_t.state == "done", timeout=4 * TIMEOUT_MS)
    conv = bob.session.find("#general")
    assert conv is not None

    def entry() -> object:
        files = [e for e in conv.model.entries() if e.file is not None]
        return files[0].file if files else None

    qtbot.waitUntil(lambda: entry() is not None, timeout=TIMEOUT_MS)
    relay = _HeldRelay(server.address)
    try:
        ep = bob.files.manager.endpoint
        assert ep is not None
        bob.files.manager.endpoint = f.Endpoint(
            ep.host, ep.port, ep.fingerprint, ep.token, ("127.0.0.1", relay.port)
        )
        relay.hold_after = 8 << 20  # the server stops sending after 8 MiB
        tid = bob.files.manager.fetch_file(entry(), downloads)
        t = bob.files.manager.transfers[tid]
        row = bob.files.panel.rows[tid]
        qtbot.waitUntil(lambda: "stalled" in row.detail.text(), timeout=TIMEOUT_MS)
        assert row.detail.text() == "stalled — waiting for the server"
        assert 0 < t.done < t.size and t.state == "running"
        bob.grab().save(str(tmp_path / "stalled.png"))
        relay.flowing.set()
        qtbot.waitUntil(lambda: t.state == "done", timeout=4 * TIMEOUT_MS)
    finally:
        relay.flowing.set()
        relay.close()
