"""The main window against a real in-process server on loopback, driven like a user would."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QFontInfo,
    QGuiApplication,
    QImage,
    QPainter,
    QPalette,
)
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QDialogButtonBox,
    QStyle,
    QStyleOptionButton,
    QWidget,
)
from pytestqt.qtbot import QtBot

from desktop_chat import __version__
from desktop_chat.net.client.worker import ChatClient, ClientTiming
from desktop_chat.net.protocol.events import Left
from desktop_chat.net.server.server import Server
from desktop_chat.ui.chat_model import Kind, Role
from desktop_chat.ui.conversations import ListRole
from desktop_chat.ui.join_dialog import JoinRoomDialog
from desktop_chat.ui.main_window import MainWindow
from desktop_chat.ui.preferences import MemorySettings
from desktop_chat.ui.settings_dialog import SettingsValues
from desktop_chat.ui.theme import DARK, LIGHT, apply_theme
from tests.gui.conftest import FAST, TIMEOUT_MS, WindowAt

WindowFactory = Callable[..., MainWindow]

# The offscreen platform cannot pass a dialog's size limits to a window system and says so.
OFFSCREEN_DIALOG = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


@dataclass
class Opened:
    window: MainWindow
    client: ChatClient


@pytest.fixture
def chat_server(make_server: Callable[..., Server]) -> Server:
    # No flood control: some tests send more than a person would.
    return make_server(rate_per_sec=0)


@pytest.fixture
def open_window(window_at: WindowAt, chat_server: Server) -> WindowFactory:
    """``open_window(name)``: a real MainWindow connected to the server, welcomed."""

    def make(
        name: str,
        *,
        server: Server | None = None,
        timing: ClientTiming = FAST,
        settings: MemorySettings | None = None,
    ) -> MainWindow:
        return window_at(chat_server, name, hosted=server, timing=timing, settings=settings)

    return make


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.input.setFocus()
    qtbot.keyClicks(window.input, text)
    qtbot.keyClick(window.input, Qt.Key.Key_Return)


def texts_of(window: MainWindow, key: str) -> list[str]:
    conv = window.session.find(key)
    return [] if conv is None else [e.text for e in conv.model.entries()]


def wait_text(qtbot: QtBot, window: MainWindow, key: str, text: str) -> None:
    qtbot.waitUntil(lambda: text in texts_of(window, key), timeout=TIMEOUT_MS)


def members(window: MainWindow, key: str = "#general") -> list[str]:
    conv = window.session.find(key)
    return [] if conv is None else conv.members


# -- talking ------------------------------------------------------------------------------------


def test_what_one_window_types_the_other_shows(qtbot: QtBot, open_window: WindowFactory) -> None:
    ann = open_window("Ann")
    ben = open_window("Ben")
    send(qtbot, ann, "hello from Ann")
    wait_text(qtbot, ben, "#general", "hello from Ann")
    wait_text(qtbot, ann, "#general", "hello from Ann")  # the server's echo
    assert ann.input.toPlainText() == ""
    entry = next(e for e in ben.session.find("#general").model.entries() if e.sender == "Ann")
    assert entry.kind == Kind.MESSAGE and not entry.own


def test_shift_enter_makes_a_new_line_and_up_recalls(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    ann = open_window("Ann")
    ann.input.setFocus()
    qtbot.keyClicks(ann.input, "one")
    qtbot.keyClick(ann.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(ann.input, "two")
    assert ann.input.toPlainText() == "one\ntwo"
    qtbot.keyClick(ann.input, Qt.Key.Key_Return)
    wait_text(qtbot, ann, "#general", "one\ntwo")
    qtbot.keyClick(ann.input, Qt.Key.Key_Up)
    assert ann.input.toPlainText() == "one\ntwo"


def test_people_and_their_count_follow_joins_and_leaves(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    ann = open_window("Ann")
    assert ann.user_list.count() == 1
    ben = open_window("Ben")
    qtbot.waitUntil(lambda: ann.user_list.count() == 2, timeout=TIMEOUT_MS)
    assert ann.user_list.header.text() == "PEOPLE — 2"
    assert ann.user_list.model.names() == ["Ann", "Ben"]
    assert ann.header.subtitle.text() == "2 people here"
    wait_text(qtbot, ann, "#general", "Ben joined")
    ben.leave_chat()  # quitting the app would keep his session (greyed a while)
    qtbot.waitUntil(lambda: ann.user_list.count() == 1, timeout=TIMEOUT_MS)
    assert ann.user_list.header.text() == "PEOPLE — 1"
    assert any(t.startswith("Ben ") for t in texts_of(ann, "#general")[-1:])


def test_a_direct_message_opens_its_own_private_conversation(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    ann = open_window("Ann")
    ben = open_window("Ben")
    qtbot.waitUntil(lambda: ann.user_list.count() == 2, timeout=TIMEOUT_MS)
    row = ann.user_list.model.names().index("Ben")
    view = ann.user_list.view
    pos = view.visualRect(ann.user_list.model.index(row)).center()
    # A real double-click: press and release, then the double-click event.
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert ann.current_key == "@ben"
    assert ann.header.lock.isVisibleTo(ann)
    assert "Private" in ann.header.subtitle.text()
    with qtbot.waitSignal(ben.notified, timeout=TIMEOUT_MS) as note:
        send(qtbot, ann, "just between us")
    assert note.args[0] == "@ann"
    assert "private" in note.args[1]
    wait_text(qtbot, ben, "@ann", "just between us")
    assert "just between us" not in texts_of(ben, "#general")
    rows = ben.session.conversations
    idx = rows.index(rows.row_of("@ann"))
    assert idx.data(ListRole.PRIVATE) is True
    assert ben.session.find("@ann").unread == 1  # Ben was looking at general


def test_a_hidden_room_gets_an_unread_badge_and_a_notification(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    ann = open_window("Ann")
    ben = open_window("Ben")
    send(qtbot, ann, "/join lunch")
    qtbot.waitUntil(lambda: ann.current_key == "#lunch", timeout=TIMEOUT_MS)
    send(qtbot, ben, "/join lunch")
    qtbot.waitUntil(lambda: ben.current_key == "#lunch", timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: len(members(ann, "#lunch")) == 2, timeout=TIMEOUT_MS)
    ann.show_conversation("#general")
    with qtbot.waitSignal(ann.notified, timeout=TIMEOUT_MS) as note:
        send(qtbot, ben, "pizza?")
    assert note.args == ["#lunch", "Ben in #lunch", "pizza?"]
    lunch = ann.session.find("#lunch")
    assert lunch.unread == 1
    rows = ann.session.conversations
    index = rows.index(rows.row_of("#lunch"))
    assert index.data(ListRole.UNREAD) == 1
    assert index.data(Qt.ItemDataRole.FontRole).bold()
    assert ann.windowTitle().startswith("(1) ")
    ann.show_conversation("#lunch")
    assert lunch.unread == 0
    assert not rows.index(rows.row_of("#lunch")).data(Qt.ItemDataRole.FontRole).bold()


def test_a_mention_of_me_is_highlighted_and_notifies(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    ann = open_window("Ann")
    ben = open_window("Ben")
    ann.notifier.prefs.every_message = False  # mentions notify anyway
    with qtbot.waitSignal(ann.notified, timeout=TIMEOUT_MS) as note:
        send(qtbot, ben, "@ann have a look")
    wait_text(qtbot, ann, "#general", "@ann have a look")
    model = ann.session.find("#general").model
    row = next(r for r in range(model.rowCount()) if model.entry(r).text == "@ann have a look")
    assert model.index(row).data(Role.MENTION) is True
    assert "mentioned you" in note.args[1]


def test_hostile_markup_is_shown_literally(qtbot: QtBot, open_window: WindowFactory) -> None:
    ann = open_window("Ann")
    ben = open_window("Ben")
    hostile = "<b>bold?</b> <img src=x onerror=alert(1)> <a href='http://x'>link</a>"
    send(qtbot, ben, hostile)
    wait_text(qtbot, ann, "#general", hostile)
    model = ann.session.find("#general").model
    row = next(r for r in range(model.rowCount()) if model.entry(r).sender == "Ben")
    assert model.index(row).data(Qt.ItemDataRole.DisplayRole) == hostile
    fonts = ann.chat_view.delegate.fonts(ann.chat_view.font())
    layout, _ = ann.chat_view.delegate.text_layout(model.entry(row), 3000, fonts)
    assert layout.text() == hostile
    assert layout.formats() == [] or all(f.format.fontWeight() < 600 for f in layout.formats())
    assert ann.header.title.textFormat() == Qt.TextFormat.PlainText


def test_typing_is_announced_and_expires(qtbot: QtBot, open_window: WindowFactory) -> None:
    ann = open_window("Ann")
    ben = open_window("Ben")
    ann.input.setFocus()
    qtbot.keyClicks(ann.input, "hel")
    qtbot.waitUntil(lambda: ben.typing_label.text() == "Ann is typing…", timeout=TIMEOUT_MS)
    conv = ben.session.find("#general")
    assert conv.typing_names(now=10**9) == []  # notices expire after a few seconds
    # A second burst of keys within 3 s sends nothing more.
    assert ann.session.typing("#general") is False


def test_commands(qtbot: QtBot, open_window: WindowFactory) -> None:
    ann = open_window("Ann")
    ben = open_window("Ben")
    send(qtbot, ann, "/me waves")
    wait_text(qtbot, ben, "#general", "* Ann waves")
    entry = next(e for e in ben.session.find("#general").model.entries() if e.sender == "Ann")
    assert entry.kind == Kind.ACTION
    send(qtbot, ann, "/msg Ben psst")
    assert ann.current_key == "@ben"
    wait_text(qtbot, ben, "@ann", "psst")
    send(qtbot, ann, "/nonsense")
    assert "Unknown command" in texts_of(ann, "@ben")[-1]
    send(qtbot, ann, "//not a command")
    wait_text(qtbot, ben, "@ann", "/not a command")
    with qtbot.waitSignal(ben.client.left, timeout=TIMEOUT_MS) as gone:
        send(qtbot, ann, "/quit bye")
    assert isinstance(gone.args[0], Left) and gone.args[0].reason == "quit"
    assert not ann.isVisible()


def test_scrolling_up_fetches_older_history_without_jumping(
    qtbot: QtBot,
    open_window: WindowFactory,
    make_client: Callable[..., ChatClient],
    chat_server: Server,
) -> None:
    writer = make_client()
    writer.connect_to("127.0.0.1", chat_server.port, "Writer", fingerprint=chat_server.fingerprint)
    got: list[int] = []
    writer.messageReceived.connect(lambda m: got.append(m.id))
    for i in range(120):
        writer.say("general", f"old message {i}")
    qtbot.waitUntil(lambda: len(got) == 120, timeout=TIMEOUT_MS)
    ann = open_window("Ann")
    model = ann.session.find("#general").model
    qtbot.waitUntil(lambda: model.total >= 50, timeout=TIMEOUT_MS)
    view = ann.chat_view
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum())
    oldest_before = model.oldest_id()
    bar.setValue(bar.minimum() + 60)
    anchor_row = view.indexAt(QPoint(10, 30)).row()
    anchor = model.entry(anchor_row)
    anchor_y = view.visualRect(model.index(anchor_row)).top()
    bar.setValue(0)
    qtbot.waitUntil(lambda: model.oldest_id() < oldest_before, timeout=TIMEOUT_MS)
    new_row = next(r for r in range(model.rowCount()) if model.entry(r) is anchor)
    qtbot.waitUntil(lambda: abs(view.visualRect(model.index(new_row)).top() - anchor_y) <= 60)
    assert new_row > anchor_row
    assert "old message 0" in [e.text for e in model.entries()][:60]


@OFFSCREEN_DIALOG
def test_the_plus_button_joins_a_room_the_server_lists(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    ann = open_window("Ann")
    ben = open_window("Ben")
    send(qtbot, ben, "/join games")
    qtbot.waitUntil(lambda: ben.current_key == "#games", timeout=TIMEOUT_MS)
    qtbot.mouseClick(ann.room_list.add_button, Qt.MouseButton.LeftButton)
    dialog = ann.findChild(JoinRoomDialog)
    assert dialog is not None and dialog.isVisible()

    def listed() -> list[str]:
        return [dialog.rooms.item(i).text() for i in range(dialog.rooms.count())]

    qtbot.waitUntil(lambda: any("games" in t for t in listed()), timeout=TIMEOUT_MS)
    row = next(i for i, t in enumerate(listed()) if "games" in t)
    rect = dialog.rooms.visualItemRect(dialog.rooms.item(row))
    qtbot.mouseClick(dialog.rooms.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(dialog.rooms.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: ann.current_key == "#games", timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: members(ann, "#games") == ["Ann", "Ben"], timeout=TIMEOUT_MS)
    assert [c.key for c in ann.session.conversations.conversations()] == ["#general", "#games"]


def test_parting_a_room_removes_it(qtbot: QtBot, open_window: WindowFactory) -> None:
    ann = open_window("Ann")
    send(qtbot, ann, "/join lunch")
    qtbot.waitUntil(lambda: ann.current_key == "#lunch", timeout=TIMEOUT_MS)
    send(qtbot, ann, "/part")
    qtbot.waitUntil(lambda: ann.session.find("#lunch") is None, timeout=TIMEOUT_MS)
    assert ann.current_key == "#general"
    ann.open_dm("Nobody")
    qtbot.keyClick(ann.input, Qt.Key.Key_W, Qt.KeyboardModifier.ControlModifier)
    assert ann.session.find("@nobody") is None  # Ctrl+W closes a DM


# -- keyboard, status, hosting, dialogs ------------------------------------------------------------


def test_keyboard_switches_conversations_and_focuses_the_input(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    ann = open_window("Ann")
    ben = open_window("Ben")
    ann.activateWindow()
    qtbot.waitUntil(ann.isActiveWindow)
    assert ann.input.hasFocus()  # focus is in the input after connecting
    send(qtbot, ann, "/join lunch")
    qtbot.waitUntil(lambda: ann.current_key == "#lunch", timeout=TIMEOUT_MS)
    ann.open_dm("Ben")
    assert ann.current_key == "@ben"
    keys = [c.key for c in ann.session.conversations.conversations()]
    assert keys == ["#general", "#lunch", "@ben"]
    qtbot.keyClick(ann.input, Qt.Key.Key_Tab, Qt.KeyboardModifier.ControlModifier)
    assert ann.current_key == "#general"
    qtbot.keyClick(
        ann.input,
        Qt.Key.Key_Backtab,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert ann.current_key == "@ben"
    qtbot.keyClick(ann.input, Qt.Key.Key_2, Qt.KeyboardModifier.AltModifier)
    assert ann.current_key == "#lunch"
    ann.chat_view.setFocus()
    qtbot.keyClick(ann.chat_view, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert ann.input.hasFocus()
    assert ben.session.find("#general") is not None


def test_status_bar_shows_state_server_and_latency(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    quick = ClientTiming(ping_interval=0.05, reconnect_base=0.05, reconnect_max=0.2)
    ann = open_window("Ann", timing=quick)
    assert ann.status.state == "connected"
    assert ann.server_title.text() == "Test chat"
    assert "Test chat" in ann.windowTitle()
    qtbot.waitUntil(lambda: ann.status.latency_label.text().endswith(" ms"), timeout=TIMEOUT_MS)
    ann.client.stateChanged.emit("reconnecting", "Reconnecting in 3 s…")
    assert ann.status.state_label.text() == "Reconnecting in 3 s…"
    assert ann.banner.isVisibleTo(ann)
    ann.client.stateChanged.emit("connected", "Connected")
    assert not ann.banner.isVisibleTo(ann)


def test_hosting_shows_addresses_copied_in_one_click_and_closes_the_server(
    qtbot: QtBot, open_window: WindowFactory, chat_server: Server
) -> None:
    ann = open_window("Ann", server=chat_server)
    card = ann.hosting_card
    assert card is not None
    addresses = chat_server.join_addresses()
    assert [b.text() for b in card.buttons] == addresses
    with qtbot.waitSignal(card.copied):
        qtbot.mouseClick(card.buttons[0], Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == addresses[0]
    assert "hosting" in ann.status.server_label.text()
    ann.close()
    assert ann.client.is_closed()
    assert chat_server.connection_count() == 0


def test_closing_windows_leaves_no_thread(qtbot: QtBot, open_window: WindowFactory) -> None:
    before = set(threading.enumerate())
    ann = open_window("Ann")
    ben = open_window("Ben")
    workers = [w.client.worker_thread() for w in (ann, ben)]
    assert all(w is not None and w.isRunning() for w in workers)
    ann.close()
    ben.close()
    assert all(w is not None and w.isFinished() for w in workers)
    assert ann.client.is_closed() and ben.client.is_closed()
    ann.close()  # closing twice is harmless

    def only_old_threads() -> None:
        # The server's connection threads end a moment after the windows hang up.
        now = set(threading.enumerate())
        assert now <= before | {t for t in now if t.daemon}, now - before

    qtbot.waitUntil(only_old_threads, timeout=TIMEOUT_MS)


@OFFSCREEN_DIALOG
def test_settings_change_theme_and_notifications(qtbot: QtBot, open_window: WindowFactory) -> None:
    settings = MemorySettings(theme="light")
    ann = open_window("Ann", settings=settings)
    dialog = ann.open_settings()
    assert dialog.name_edit.text() == "Ann"
    dialog.theme_combo.setCurrentIndex(dialog.theme_combo.findData("dark"))
    dialog.tray_check.setChecked(False)
    dialog.every_check.setChecked(False)
    dialog.accept()
    assert settings.theme == "dark"
    assert settings.notifications is False
    assert ann.notifier.prefs.every_message is False
    assert ann.theme is DARK
    assert QApplication.palette().window().color().name() == DARK.window
    ann.apply_settings(
        SettingsValues(
            name="Ann", theme="light", font_size=14, show_joins=False, notify=ann.notifier.prefs
        )
    )
    assert ann.chat_view.font().pointSize() == 14
    assert ann.session.show_joins is False


@OFFSCREEN_DIALOG
def test_about_shows_the_version(qtbot: QtBot, open_window: WindowFactory) -> None:
    ann = open_window("Ann")
    about = ann.open_about()
    assert __version__ in about.version_label.text()
    about.close()


def test_widgets_have_object_and_accessible_names(qtbot: QtBot, open_window: WindowFactory) -> None:
    ann = open_window("Ann")
    for name in ("messageInput", "chatView", "userList", "roomList"):
        widget = ann.findChild(QWidget, name)
        assert widget is not None, name
        assert widget.accessibleName(), name


def test_the_theme_applies_while_choosing_and_cancel_goes_back(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    ann = open_window("Ann", settings=MemorySettings(theme="light"))
    dialog = ann.open_settings()
    combo = dialog.theme_combo
    combo.setCurrentIndex(combo.findData("dark"))
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    assert ann.theme is DARK  # at once, before OK
    assert app.palette().color(QPalette.ColorRole.Window) == QColor(DARK.window)
    dialog.reject()
    assert ann.theme is LIGHT and ann.settings.theme == "light"
    assert app.palette().color(QPalette.ColorRole.Window) == QColor(LIGHT.window)


def test_dark_theme_check_boxes_show_and_dialog_buttons_have_no_stock_icons(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    ann = open_window("Ann")
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    apply_theme(app, DARK)
    dialog = ann.open_settings()
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert ok.icon().isNull()
    for checked in (False, True):
        box = QCheckBox("Sounds")
        qtbot.addWidget(box)
        box.setChecked(checked)
        box.resize(box.sizeHint())
        image = box.grab().toImage()
        indicator = box.style().subElementRect(
            QStyle.SubElement.SE_CheckBoxIndicator, _option(box), box
        )
        background = QColor(DARK.window)
        # Some pixel of the box's frame (or fill, when checked) stands out from the window.
        contrast = max(
            abs(image.pixelColor(x, indicator.center().y()).lightness() - background.lightness())
            for x in range(indicator.left(), indicator.right() + 1)
        )
        assert contrast >= 60, (checked, contrast)
    dialog.reject()


def _option(box: QCheckBox) -> QStyleOptionButton:
    option = QStyleOptionButton()
    option.initFrom(box)
    return option


def test_the_people_list_keeps_no_selection(qtbot: QtBot, open_window: WindowFactory) -> None:
    ann = open_window("Ann")
    open_window("Ben")
    qtbot.waitUntil(lambda: ann.user_list.count() == 2, timeout=TIMEOUT_MS)
    view = ann.user_list.view
    row = ann.user_list.model.names().index("Ben")
    pos = view.visualRect(ann.user_list.model.index(row)).center()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert view.selectionModel().selectedIndexes() == []


def test_emoji_are_drawn_not_as_empty_boxes(qtbot: QtBot, open_window: WindowFactory) -> None:
    open_window("Ann")  # the window makes sure an emoji font backs the app's fonts

    def drawn(text: str) -> QImage:
        image = QImage(48, 40, QImage.Format.Format_ARGB32)
        image.fill(QColor("#ffffff"))
        painter = QPainter(image)
        painter.setFont(QFont())
        painter.setPen(QColor("#000000"))
        painter.drawText(6, 30, text)
        painter.end()
        return image

    box = drawn("\U000f0000")  # a private-use character: no font has it, Qt draws a box
    for emoji in ("\U0001f44d", "\U0001f389", "\U0001f355", "\U0001f600"):
        assert drawn(emoji) != box, emoji


def test_the_emoji_font_backs_the_text_fonts_without_replacing_them(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    open_window("Ann")
    for font in (
        QFont(),
        QFont("monospace"),
        QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont),
    ):
        assert "emoji" not in QFontInfo(font).family().lower(), font.family()
