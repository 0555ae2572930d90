"""Picture previews against a real TLS server: at most MAX_FETCHES fetched at once and only
for cards on screen while 200 pictures scroll past, and honest previews of big pictures (a
5000×4000 PNG gets one; a decompression bomb gets "too large to preview")."""

from __future__ import annotations

import os
import resource
import threading
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_chat.net.client import files as f
from desktop_chat.net.server.server import Server
from desktop_chat.ui import file_card, previews
from desktop_chat.ui.main_window import MainWindow
from tests.gui.conftest import TIMEOUT_MS
from tests.gui.file_card_helpers import GateRelay, bomb_png, card_of, file_entries, plain_png, share
from tests.gui.test_file_cards import _wait_card, bob

__all__ = ["bob"]  # a fixture, shared with test_file_cards


def _fetch_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("thumb-"))


def _on_screen(window: MainWindow) -> list[Any]:
    view = window.chat_view
    model = view.chat_model()
    assert model is not None
    height = view.viewport().height()
    shown = []
    for row in range(model.rowCount()):
        rect = view.visualRect(model.index(row))
        if rect.bottom() >= 0 and rect.top() < height and model.entry(row).file is not None:
            shown.append(model.entry(row))
    return shown


def test_at_most_two_previews_are_fetched_at_once_and_only_for_cards_on_screen(
    qtbot: QtBot, server: Server, connect: Any, bob: MainWindow, tmp_path: Path
) -> None:
    relay = GateRelay(("127.0.0.1", server.port))  # holds the pictures on their way
    try:
        manager = bob.files.manager
        ep = manager.endpoint
        assert ep is not None
        manager.set_endpoint(f.Endpoint(ep.host, ep.port, ep.fingerprint, ep.token,
                                        ("127.0.0.1", relay.port)))  # fmt: skip
        carol = connect("carol")
        for i in range(200):
            path = plain_png(tmp_path / f"p{i}.png", 300, 200, f"#{i:02x}80c0")
            share(server, carol.welcome_session, path, room="general")
        qtbot.waitUntil(lambda: len(file_entries(bob)) == 200, timeout=4 * TIMEOUT_MS)
        view = bob.chat_view
        model = view.chat_model()
        assert model is not None
        view.scroll_to_newest()
        view.viewport().repaint()
        first_seen = _on_screen(bob)
        bar = view.verticalScrollBar()
        peak = _fetch_threads()
        for _step in range(1000):  # from the newest picture up to the oldest
            bar.setValue(bar.value() - view.viewport().height() // 2)
            view.viewport().repaint()
            QApplication.processEvents()
            peak = max(peak, _fetch_threads())
            if bar.value() == 0 and not model.hidden_older:
                break
        assert bar.value() == 0 and not model.hidden_older
        assert peak <= previews.MAX_FETCHES, peak
        assert bob.files.previews.fetching <= previews.MAX_FETCHES
        # The pictures scrolled past were not fetched (or their fetch was cancelled): they
        # are asked for again when they come back on screen.
        qtbot.waitUntil(lambda: not any(e.thumb_asked for e in first_seen), timeout=TIMEOUT_MS)
        assert first_seen and all(e.thumb is None for e in first_seen)
        relay.open()
        top = _on_screen(bob)
        assert top and top[0].file.name == "p0.png"
        qtbot.waitUntil(lambda: all(e.thumb is not None for e in top), timeout=TIMEOUT_MS)
        assert top[0].thumb.pixelColor(10, 100) == QColor("#0080c0")
        fetched = sum(1 for e in file_entries(bob) if e.thumb is not None)
        assert fetched < 40, fetched  # what was on screen, not all 200
        assert relay.accepted < 200, relay.accepted
    finally:
        relay.close()


@pytest.mark.qt_log_ignore("QImageIOHandler: Rejecting image as it exceeds")
def test_a_big_picture_gets_a_preview_and_a_bomb_says_too_large(
    qtbot: QtBot, server: Server, connect: Any, bob: MainWindow, tmp_path: Path
) -> None:
    carol = connect("carol")
    big = plain_png(tmp_path / "screenshot.png", 5000, 4000, "#2f9e6e")  # 80 MB decoded
    assert big.stat().st_size < previews.THUMB_FETCH_CAP
    share(server, carol.welcome_session, big, room="general")
    bomb = tmp_path / "huge.png"
    bomb.write_bytes(bomb_png(100_000, 100_000))  # 40 GB once decoded
    share(server, carol.welcome_session, bomb, room="general")
    entry = _wait_card(qtbot, bob, "screenshot.png")
    bad = _wait_card(qtbot, bob, "huge.png")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    card_of(bob, entry)
    bob.chat_view.viewport().repaint()
    qtbot.waitUntil(lambda: entry.thumb is not None or entry.thumb_failed, timeout=TIMEOUT_MS)
    assert (entry.thumb.width(), entry.thumb.height()) == (225, 180), entry.thumb_note
    assert entry.thumb.pixelColor(100, 100) == QColor("#2f9e6e")
    assert entry.thumb.pixelColor(100, 5) == QColor("#ffffff")
    _index, card = card_of(bob, bad)
    bob.chat_view.viewport().repaint()
    qtbot.waitUntil(lambda: bad.thumb_failed, timeout=TIMEOUT_MS)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert bad.thumb is None and bad.thumb_note == "too large to preview"
    assert grown_mb < 200, grown_mb  # the screenshot's 80 MB once, never the bomb's 40 GB
    _index, card = card_of(bob, bad)
    assert card.picture.width() == file_card.ICON_W  # the icon stands in
    assert bob.chat_view.file_action_at(QPoint(card.picture.center())) is not None
    meta = file_card.meta_text(bad.file, "carol", bad.file_note or bad.thumb_note)
    assert meta == "1.0 KB · 100000×100000 · too large to preview · from carol", meta
    bob.chat_view.scroll_to_newest()
    folder = Path(os.environ.get("DESKTOP_CHAT_CARD_SCREENSHOTS") or tmp_path)
    assert bob.grab().save(str(folder / "files-card-big.png"))
    # A damaged picture says so, not "too large".
    image, why = previews.decode_thumbnail(big.read_bytes()[:5000])
    assert image.isNull() and why == "no preview: the picture is damaged"


def test_a_card_scrolled_away_and_back_mid_fetch_still_gets_its_preview(
    qtbot: QtBot, server: Server, connect: Any, bob: MainWindow, tmp_path: Path
) -> None:
    relay = GateRelay(("127.0.0.1", server.port))
    try:
        manager = bob.files.manager
        ep = manager.endpoint
        assert ep is not None
        manager.set_endpoint(f.Endpoint(ep.host, ep.port, ep.fingerprint, ep.token,
                                        ("127.0.0.1", relay.port)))  # fmt: skip
        carol = connect("carol")
        for i in range(12):
            path = plain_png(tmp_path / f"q{i}.png", 300, 200, f"#c0{i:02x}40")
            share(server, carol.welcome_session, path, room="general")
        last = _wait_card(qtbot, bob, "q11.png")
        view = bob.chat_view
        view.scroll_to_newest()
        view.viewport().repaint()
        qtbot.waitUntil(lambda: bob.files.previews.fetching > 0, timeout=TIMEOUT_MS)
        assert last in _on_screen(bob) and last.thumb_asked
        bar = view.verticalScrollBar()
        bottom = bar.value()
        bar.setValue(0)  # away: its fetch is cancelled...
        bar.setValue(bottom)  # ...and back before that fetch has ended
        view.viewport().repaint()  # painted while its preview is still asked for
        relay.open()
        qtbot.waitUntil(lambda: last.thumb is not None, timeout=TIMEOUT_MS)
        assert last.thumb.pixelColor(100, 100) == QColor("#c00b40")
    finally:
        relay.close()
