"""A big file through the desktop app's transfer code (``TransferManager`` and its threads,
``net/client/files.py``) against a real TLS server: it arrives whole (SHA-256 checked at both
ends), moved off the GUI thread, with progress reported a bounded number of times."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from pytestqt.qtbot import QtBot

from desktop_chat.net.client import files as f
from desktop_chat.net.protocol import events as p
from desktop_chat.net.server.server import Server
from desktop_chat.ui.transfers import TransferManager
from tests.gui.conftest import TIMEOUT_MS

SIZE = 64 << 20


def _big_file(path: Path) -> str:
    """SIZE bytes that are not one block repeated (a misplaced block would be caught); their
    SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for i in range(SIZE >> 20):
            block = i.to_bytes(4, "big") + os.urandom((1 << 20) - 4)
            out.write(block)
            digest.update(block)
    return digest.hexdigest()


class _Reports:
    """Counts a manager's progress reports and notes which threads sent them."""

    def __init__(self, manager: TransferManager) -> None:
        self.progress = 0
        self.threads: set[int] = set()
        manager._bridge.report.connect(self._on_report, type=_direct())

    def _on_report(self, _tid: str, what: str, _payload: object) -> None:
        if what == "progress":
            self.progress += 1
            self.threads.add(threading.get_ident())


def _direct() -> Any:
    from PySide6.QtCore import Qt

    return Qt.ConnectionType.DirectConnection  # runs in the sending (transfer) thread


def test_a_64_mib_file_goes_up_and_down_whole_with_bounded_progress(
    qtbot: QtBot, server: Server, connect: Any, tmp_path: Path
) -> None:
    alice, bob = connect("alice"), connect("bob")
    source = tmp_path / "film.bin"
    sha = _big_file(source)
    fp = server.fingerprint or ""

    sender = TransferManager()
    receiver = TransferManager()
    try:
        sender.set_endpoint(f.Endpoint("127.0.0.1", server.port, fp, alice.welcome_session))
        receiver.set_endpoint(f.Endpoint("127.0.0.1", server.port, fp, bob.welcome_session))
        reports = _Reports(sender), _Reports(receiver)

        began = time.monotonic()
        up = sender.transfers[sender.send_file(source, room="general")]
        qtbot.waitUntil(lambda: up.state == "done", timeout=6 * TIMEOUT_MS)
        info = bob.expect("message")["file"]
        assert (info["size"], info["sha256"]) == (SIZE, sha)  # the server hashed it whole

        folder = tmp_path / "Downloads"
        folder.mkdir()
        down_id = receiver.fetch_file(
            p.FileInfo(id=info["id"], name=info["name"], size=SIZE, sha256=sha), folder
        )
        down = receiver.transfers[down_id]
        qtbot.waitUntil(lambda: down.state == "done", timeout=6 * TIMEOUT_MS)
        seconds = time.monotonic() - began
    finally:
        sender.close()
        receiver.close()

    saved = Path(down.saved_to)
    assert saved.name == "film.bin" and saved.stat().st_size == SIZE
    with saved.open("rb") as fh:
        assert hashlib.file_digest(fh, "sha256").hexdigest() == sha
    assert up.done == down.done == SIZE
    gui = threading.get_ident()
    for r in reports:
        # Progress comes from the transfer's own thread, never the GUI's, and at most ten
        # times a second (plus the last one), however many chunks moved.
        assert r.progress >= 1 and gui not in r.threads
        assert r.progress <= seconds * 10 + 2, (r.progress, seconds)
