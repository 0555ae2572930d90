"""The main window at small sizes: the side panels give way, the conversation keeps at least
CHAT_MIN pixels, and the hosting card never covers the conversation list nor cuts the
fingerprint."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pytestqt.qtbot import QtBot

from desktop_chat.net.client.worker import ChatClient
from desktop_chat.net.server.server import Server
from desktop_chat.ui.columns import CHAT_MIN, column_widths
from desktop_chat.ui.main_window import MainWindow
from desktop_chat.ui.notifications import SilentSound
from desktop_chat.ui.preferences import MemorySettings
from tests.gui.conftest import FAST, TIMEOUT_MS

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


@pytest.fixture
def host_window(qtbot: QtBot, make_server: Callable[..., Server]) -> Iterator[MainWindow]:
    server = make_server()
    client = ChatClient(timing=FAST)
    window = MainWindow(client, server, MemorySettings(), sound=SilentSound())
    qtbot.addWidget(window)
    window.show()
    client.connect_to(
        "127.0.0.1", server.port, "Hal", owner=server.owner_token, fingerprint=server.fingerprint
    )
    qtbot.waitUntil(lambda: window.current_key == "#general", timeout=TIMEOUT_MS)
    window.session.open_dm("Bob")
    try:
        yield window
    finally:
        window.shutdown()
        window.close()


def test_column_widths_give_the_conversation_room_first() -> None:
    assert column_widths(1100) == (240, 640, 220)
    side, chat, people = column_widths(800)
    assert chat >= CHAT_MIN and people >= 140 and side + chat + people == 800
    side, chat, people = column_widths(640)
    assert (chat >= CHAT_MIN, people) == (True, 0)
    assert column_widths(1440, people_wanted=False)[2] == 0


@pytest.mark.parametrize(("width", "height"), [(640, 420), (800, 600), (1440, 900)])
def test_at_each_size_the_chat_keeps_room_and_the_card_covers_nothing(
    qtbot: QtBot, host_window: MainWindow, width: int, height: int
) -> None:
    w = host_window
    w.resize(width, height)
    qtbot.waitUntil(lambda: w.width() == width and w.height() == height, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: w.chat_view.width() >= CHAT_MIN - 20, timeout=TIMEOUT_MS)
    assert w.splitter.sizes()[1] >= CHAT_MIN
    w.grab().save(f"/tmp/layout-{width}x{height}.png")
    card = w.hosting_card
    assert card is not None
    rooms = w.room_list
    # The conversation list ends above the card and keeps room for its rows.
    rooms_bottom = rooms.mapTo(w, rooms.rect().bottomLeft()).y()
    assert rooms_bottom <= card.mapTo(w, card.rect().topLeft()).y()
    assert rooms.height() >= 100
    button = card.fingerprint_button
    assert button is not None
    if button.isVisible():  # shown whole, or folded away (the code and the dialog have it)
        assert button.geometry().right() <= card.contentsRect().right()
    else:
        assert card.compact and card.invite_button is not None and card.invite_button.isVisible()
    if width >= 800:
        assert w.user_list.isVisible()
    else:
        assert not w.user_list.isVisible() and w.columns.folded
        w.people_action.trigger()  # the person's choice: off, and it stays off when wider
        w.resize(1200, height)
        qtbot.waitUntil(lambda: w.width() == 1200, timeout=TIMEOUT_MS)
        assert not w.user_list.isVisible()
