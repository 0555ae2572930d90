"""The host's window: its fingerprint, and the admin tools (kick, ban, make admin, room
settings, topics), next to a window of someone who may not moderate; registering a name."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import QLabel, QMenu
from pytestqt.qtbot import QtBot

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol.tls import group_for_reading
from desktop_chat.net.server.server import Server
from desktop_chat.ui.account import AccountDialog
from desktop_chat.ui.admin_dialogs import RemoveDialog, RoomSettingsDialog
from desktop_chat.ui.certificates import fingerprint_lines
from desktop_chat.ui.chat_model import Kind
from desktop_chat.ui.main_window import MainWindow

from .conftest import TIMEOUT_MS, ServerFactory, WindowAt

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

WindowFactory = Callable[..., MainWindow]


@pytest.fixture
def chat_server(make_server: ServerFactory) -> Server:
    return make_server(rate_per_sec=0)


@pytest.fixture
def open_window(window_at: WindowAt, chat_server: Server) -> WindowFactory:
    """``open_window(name, host=False)``: a welcomed window; ``host`` connects as the hosting
    app does (with the server's owner token, and the server shown in the window)."""

    def make(name: str, *, host: bool = False) -> MainWindow:
        return window_at(chat_server, name, host=host)

    return make


def actions(menu: QMenu) -> dict[str, QAction]:
    return {a.text(): a for a in menu.actions() if a.text()}


def lines(window: MainWindow, key: str = "#general") -> list[str]:
    conv = window.session.find(key)
    return [] if conv is None else [e.text for e in conv.model.entries()]


def members(window: MainWindow) -> list[str]:
    conv = window.session.find("#general")
    return [] if conv is None else conv.members


def test_the_hosting_card_shows_the_fingerprint_to_copy(
    qtbot: QtBot, open_window: WindowFactory, chat_server: Server
) -> None:
    host = open_window("Host", host=True)
    card = host.hosting_card
    assert card is not None and chat_server.fingerprint is not None
    button = card.fingerprint_button
    assert button is not None and button.isVisible()
    assert button.text() == fingerprint_lines(chat_server.fingerprint)
    assert button.text().split() == group_for_reading(chat_server.fingerprint).split()
    assert len(button.text().splitlines()) == 4
    with qtbot.waitSignal(card.copied):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == group_for_reading(chat_server.fingerprint)
    assert card.fingerprint_hint is not None and "copied" in card.fingerprint_hint.text()


def test_an_admin_kicks_someone_from_the_people_list(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    host = open_window("Host", host=True)
    ben = open_window("Ben")
    cat = open_window("Cat")
    assert host.moderation.admin and not ben.moderation.admin
    qtbot.waitUntil(lambda: "Ben" in members(host), timeout=TIMEOUT_MS)

    menu = host.user_list.menu_for("Ben")
    assert {"&Kick…", "&Ban…", "Make &admin"} <= set(actions(menu))
    with qtbot.waitSignal(host.moderation.dialogOpened) as opened:
        actions(menu)["&Kick…"].trigger()
    dialog = opened.args[0]
    assert isinstance(dialog, RemoveDialog) and dialog.isVisible()
    qtbot.keyClicks(dialog.reason_edit, "too loud")
    with qtbot.waitSignal(cat.client.left, timeout=TIMEOUT_MS) as left:
        qtbot.mouseClick(dialog.confirm_button, Qt.MouseButton.LeftButton)
    assert (left.args[0].name, left.args[0].reason) == ("Ben", "kicked")
    qtbot.waitUntil(lambda: "Ben" not in members(cat), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: "Ben was removed" in lines(cat), timeout=TIMEOUT_MS)

    # Ben is told why, and his app does not walk back in on its own.
    qtbot.waitUntil(lambda: ben.client.state == "disconnected", timeout=TIMEOUT_MS)
    assert "Host removed you: too loud" in ben.banner.text()
    worker = ben.client.worker_thread()
    assert worker is not None
    qtbot.waitUntil(worker.isFinished, timeout=TIMEOUT_MS)
    # The host's window hears of the leave in its own time (the leave rides a lazy round).
    qtbot.waitUntil(lambda: "Ben" not in members(host), timeout=TIMEOUT_MS)


def test_an_admin_bans_a_name(qtbot: QtBot, open_window: WindowFactory) -> None:
    host = open_window("Host", host=True)
    ben = open_window("Ben")
    qtbot.waitUntil(lambda: "Ben" in members(host), timeout=TIMEOUT_MS)
    with qtbot.waitSignal(host.moderation.dialogOpened) as opened:
        actions(host.user_list.menu_for("Ben"))["&Ban…"].trigger()
    dialog = opened.args[0]
    assert isinstance(dialog, RemoveDialog) and dialog.ban
    with qtbot.waitSignal(host.client.requestDone, timeout=TIMEOUT_MS) as done:
        qtbot.mouseClick(dialog.confirm_button, Qt.MouseButton.LeftButton)
    assert done.args[0].what == "ban"
    qtbot.waitUntil(lambda: ben.client.state == "disconnected", timeout=TIMEOUT_MS)
    assert "banned" in ben.banner.text()


def test_make_admin_shows_the_servers_answer(qtbot: QtBot, open_window: WindowFactory) -> None:
    host = open_window("Host", host=True)
    ben = open_window("Ben")
    qtbot.waitUntil(lambda: "Ben" in members(host), timeout=TIMEOUT_MS)
    # Not registered: the server says so, in the conversation.
    actions(host.user_list.menu_for("Ben"))["Make &admin"].trigger()
    qtbot.waitUntil(
        lambda: any("no registered account" in t for t in lines(host)), timeout=TIMEOUT_MS
    )
    # Ben registers his name (Settings → Register this name…), then it works.
    settings_dialog = ben.open_settings()
    assert settings_dialog.register_button is not None
    qtbot.mouseClick(settings_dialog.register_button, Qt.MouseButton.LeftButton)
    account = settings_dialog.findChild(AccountDialog)
    assert account is not None and account.isVisible()
    account.new_edit.setText("correct horse")
    account.repeat_edit.setText("correct horse")
    qtbot.mouseClick(account.submit_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any("is registered" in t for t in lines(ben)), timeout=TIMEOUT_MS)
    link = ben.client.worker_thread().link  # type: ignore[union-attr]
    assert link is not None and link.password == "correct horse"  # for the next login
    settings_dialog.reject()

    actions(host.user_list.menu_for("Ben"))["Make &admin"].trigger()
    qtbot.waitUntil(lambda: "Ben is an admin now" in " ".join(lines(host)), timeout=TIMEOUT_MS)


def test_registering_a_taken_name_is_explained_in_the_dialog(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    ben = open_window("Ben")
    dialog = ben.open_account("register")
    dialog.new_edit.setText("short")
    dialog.repeat_edit.setText("short")
    dialog.submit()
    assert "at least 8" in dialog.error.text()
    dialog.new_edit.setText("long enough")
    dialog.repeat_edit.setText("long enough")
    with qtbot.waitSignal(dialog.succeeded, timeout=TIMEOUT_MS):
        dialog.submit()
    again = ben.open_account("register")
    again.new_edit.setText("another one")
    again.repeat_edit.setText("another one")
    again.submit()
    qtbot.waitUntil(lambda: again.error.isVisible(), timeout=TIMEOUT_MS)
    assert "registered already" in again.error.text()
    again.reject()


def test_ordinary_people_see_no_admin_tools_and_the_server_refuses_anyway(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    open_window("Host", host=True)
    ben = open_window("Ben")
    qtbot.waitUntil(lambda: "Host" in members(ben), timeout=TIMEOUT_MS)
    assert ben.client.welcome is not None and not ben.client.welcome.admin
    assert set(actions(ben.user_list.menu_for("Host"))) == {"Message Host privately"}
    assert ben.room_list.menu_for("#general") is None
    assert not ben.header.settings_button.isVisible()

    ben.client.send_request(pa.Kick(name="Host"))
    qtbot.waitUntil(
        lambda: "only the host or an admin can do that" in lines(ben), timeout=TIMEOUT_MS
    )
    conv = ben.session.find("#general")
    assert conv is not None and conv.model.entries()[-1].kind == Kind.ERROR


def test_a_topic_set_in_the_room_dialog_shows_in_another_window(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    host = open_window("Host", host=True)
    ben = open_window("Ben")
    assert host.header.settings_button.isVisible()
    assert not ben.header.topic.isVisible()
    with qtbot.waitSignal(host.moderation.dialogOpened) as opened:
        qtbot.mouseClick(host.header.settings_button, Qt.MouseButton.LeftButton)
    dialog = opened.args[0]
    assert isinstance(dialog, RoomSettingsDialog) and dialog.room == "general"
    dialog.topic_edit.setText("Friday demo <b>prep</b>")
    dialog.slow_combo.setCurrentIndex(2)  # on
    dialog.slow_spin.setValue(5)
    qtbot.mouseClick(
        dialog.buttons.button(dialog.buttons.StandardButton.Save), Qt.MouseButton.LeftButton
    )
    qtbot.waitUntil(lambda: ben.header.topic.isVisible(), timeout=TIMEOUT_MS)
    assert ben.header.topic.text() == "Friday demo <b>prep</b>"  # shown as typed, not markup
    assert ben.header.topic.textFormat() == Qt.TextFormat.PlainText
    qtbot.waitUntil(
        lambda: "Host set the topic: Friday demo <b>prep</b>" in lines(ben), timeout=TIMEOUT_MS
    )
    qtbot.waitUntil(
        lambda: any("slow mode: one message every 5 s" in t for t in lines(ben)),
        timeout=TIMEOUT_MS,
    )

    # Someone joining later sees the topic at once (it comes with the list of people).
    cat = open_window("Cat")
    qtbot.waitUntil(lambda: cat.header.topic.text() == "Friday demo <b>prep</b>")

    # Cleared from the room list's menu this time.
    menu = host.room_list.menu_for("#general")
    assert menu is not None
    with qtbot.waitSignal(host.moderation.dialogOpened) as opened:
        actions(menu)["Room &settings…"].trigger()
    dialog = opened.args[0]
    assert dialog.topic_edit.text() == "Friday demo <b>prep</b>"
    dialog.topic_edit.clear()
    dialog.accept()
    qtbot.waitUntil(lambda: not ben.header.topic.isVisible(), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: "Host cleared the topic" in lines(ben), timeout=TIMEOUT_MS)


def test_the_room_dialog_asks_for_the_new_password(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    host = open_window("Host", host=True)
    dialog = host.moderation.open_room_settings("#general")
    assert isinstance(dialog, RoomSettingsDialog)
    dialog.password_combo.setCurrentIndex(1)  # set a new password
    dialog.accept()
    assert dialog.isVisible() and dialog.error.isVisible()
    assert dialog.requests() == []  # nothing changed yet but the empty password
    dialog.password_edit.setText("sesame")
    assert dialog.requests() == [pa.RoomSettings(room="general", password="sesame")]
    with qtbot.waitSignal(host.client.noticeReceived, timeout=TIMEOUT_MS) as notice:
        dialog.accept()
    assert "needs a password to join" in notice.args[0].text


def _type(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.input.setFocus()
    qtbot.keyClicks(window.input, text)
    qtbot.keyClick(window.input, Qt.Key.Key_Return)


def test_moderation_and_room_passwords_by_slash_command(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    host = open_window("Host", host=True)
    ben = open_window("Ben Ray")
    cat = open_window("Cat")
    qtbot.waitUntil(lambda: "Cat" in members(host), timeout=TIMEOUT_MS)

    _type(qtbot, ben, "/topic mine now")  # the server refuses; the app says so
    qtbot.waitUntil(
        lambda: "only the host or an admin can do that" in lines(ben), timeout=TIMEOUT_MS
    )
    _type(qtbot, host, "/topic Friday lunch")
    qtbot.waitUntil(lambda: ben.header.topic.text() == "Friday lunch", timeout=TIMEOUT_MS)

    _type(qtbot, host, "/join Vault")
    qtbot.waitUntil(lambda: host.current_key == "#vault", timeout=TIMEOUT_MS)
    host.client.send_request(pa.RoomSettings(room="Vault", password="open sesame"))
    qtbot.waitUntil(
        lambda: any("needs a password" in t for t in lines(host, "#vault")), timeout=TIMEOUT_MS
    )
    _type(qtbot, cat, "/join Vault wrong guess")
    qtbot.waitUntil(lambda: "this room needs its password" in lines(cat), timeout=TIMEOUT_MS)
    _type(qtbot, cat, "/join Vault open sesame")
    qtbot.waitUntil(lambda: cat.current_key == "#vault", timeout=TIMEOUT_MS)

    with qtbot.waitSignal(cat.client.left, timeout=TIMEOUT_MS) as left:
        _type(qtbot, host, '/kick "Ben Ray" too loud')
    assert (left.args[0].name, left.args[0].reason) == ("Ben Ray", "kicked")
    qtbot.waitUntil(lambda: ben.client.state == "disconnected", timeout=TIMEOUT_MS)
    assert "Host removed you: too loud" in ben.banner.text()


def test_change_password_for_an_unregistered_name_offers_to_register(
    qtbot: QtBot, open_window: WindowFactory
) -> None:
    ben = open_window("Ben")
    before = lines(ben)
    dialog = ben.open_account("change")
    assert dialog.mode == "register" and dialog.old_edit is None
    assert dialog.submit_button.text() == "&Register"
    assert any("is not registered" in label.text() for label in dialog.findChildren(QLabel))
    dialog.new_edit.setText("long enough")
    dialog.repeat_edit.setText("long enough")
    with qtbot.waitSignal(dialog.succeeded, timeout=TIMEOUT_MS):
        dialog.submit()
    # Registered now (the client logs in with the password): changing asks for the old one,
    # and a wrong one is said in the dialog only, never as a red line in the conversation.
    change = ben.open_account("change")
    assert change.mode == "change" and change.old_edit is not None
    change.old_edit.setText("not the one")
    change.new_edit.setText("a new password")
    change.repeat_edit.setText("a new password")
    change.submit()
    qtbot.waitUntil(lambda: change.error.isVisible(), timeout=TIMEOUT_MS)
    assert "not right" in change.error.text()
    change.reject()
    conv = ben.session.find("#general")
    assert conv is not None
    assert not [e for e in conv.model.entries() if e.kind == Kind.ERROR]
    assert all(line in lines(ben) for line in before)
