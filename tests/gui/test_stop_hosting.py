"""Ending a hosted chat: the host is asked before stopping it for others, can stop hosting and
keep the window, and the people in the chat are told the host stopped it."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QPushButton
from pytestqt.qtbot import QtBot

from desktop_chat.app import AppController
from desktop_chat.net.client.worker import ChatClient
from desktop_chat.net.server.server import Server
from desktop_chat.ui.host_control import HOST_STOPPED_LINE, YOU_STOPPED
from desktop_chat.ui.main_window import MainWindow
from desktop_chat.ui.notifications import SilentSound
from desktop_chat.ui.preferences import MemorySettings
from desktop_chat.ui.start_choice import StartChoice
from tests.gui.conftest import FAST, TIMEOUT_MS
from tests.helpers import LineClient


def _host(qtbot: QtBot, controller: AppController) -> MainWindow:
    assert controller.start(StartChoice("host", "Hal", "127.0.0.1", 0, "Hal's chat"))
    qtbot.waitUntil(lambda: controller.window is not None, timeout=TIMEOUT_MS)
    assert controller.window is not None
    return controller.window


def _stop_button(box: QMessageBox) -> QPushButton:
    for button in box.buttons():
        if box.buttonRole(button) == QMessageBox.ButtonRole.DestructiveRole:
            assert isinstance(button, QPushButton)
            return button
    raise AssertionError("no stop button")


def test_quitting_with_people_online_asks_first(qtbot: QtBot, controller: AppController) -> None:
    window = _host(qtbot, controller)
    server = controller.server
    assert server is not None
    with LineClient(server.address) as bob:
        bob.login("Bob")
        qtbot.waitUntil(lambda: server.people_count() == 2, timeout=TIMEOUT_MS)
        with qtbot.waitSignal(window.host_control.askOpened, timeout=TIMEOUT_MS) as asked:
            assert not window.close()
        box = asked.args[0]
        assert "1 other person is in this chat." in box.text()
        assert window.isVisible() and server.people_count() == 2  # nothing stopped yet
        box.reject()  # Cancel: the chat goes on
        assert window.isVisible()
        with qtbot.waitSignal(window.host_control.askOpened, timeout=TIMEOUT_MS) as asked:
            window.close()
        qtbot.mouseClick(_stop_button(asked.args[0]), Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=TIMEOUT_MS)
        assert bob.expect("closing")["reason"] == "shutdown"
        bob.assert_closed()


def test_quitting_alone_does_not_ask(qtbot: QtBot, controller: AppController) -> None:
    window = _host(qtbot, controller)
    with qtbot.assertNotEmitted(window.host_control.askOpened):
        assert window.close()
    assert not window.isVisible()


def test_stop_hosting_keeps_the_window(qtbot: QtBot, controller: AppController) -> None:
    window = _host(qtbot, controller)
    server = controller.server
    assert server is not None and window.host_control.stop_action is not None
    with LineClient(server.address) as bob:
        bob.login("Bob")
        bob.send_json(type="say", room="general", text="hi Hal")
        bob.expect("message")
        conv = window.session.find("#general")
        assert conv is not None
        qtbot.waitUntil(
            lambda: "hi Hal" in [e.text for e in conv.model.entries()], timeout=TIMEOUT_MS
        )
        with qtbot.waitSignal(window.host_control.askOpened, timeout=TIMEOUT_MS) as asked:
            window.host_control.stop_action.trigger()
        with qtbot.waitSignal(window.host_control.stopped, timeout=TIMEOUT_MS):
            qtbot.mouseClick(_stop_button(asked.args[0]), Qt.MouseButton.LeftButton)
        assert bob.expect("closing")["reason"] == "shutdown"
    assert window.isVisible()
    assert window.banner.text() == YOU_STOPPED
    assert not window.input.isEnabled()
    assert "hi Hal" in [e.text for e in conv.model.entries()]  # still there to read
    with qtbot.assertNotEmitted(window.host_control.askOpened):
        assert window.close()  # nothing left to stop


def test_people_in_the_chat_read_that_the_host_stopped_it(
    qtbot: QtBot, make_server: Callable[..., Server]
) -> None:
    server = make_server()
    client = ChatClient(timing=FAST)
    window = MainWindow(client, None, MemorySettings(), sound=SilentSound())
    qtbot.addWidget(window)
    window.show()
    try:
        client.connect_to("127.0.0.1", server.port, "Ann", fingerprint=server.fingerprint)
        qtbot.waitUntil(lambda: window.current_key == "#general", timeout=TIMEOUT_MS)
        server.close()
        qtbot.waitUntil(lambda: window.banner.text().startswith("The host stopped the chat"))
        conv = window.session.find("#general")
        assert conv is not None
        assert [e.text for e in conv.model.entries()].count(HOST_STOPPED_LINE) == 1
    finally:
        window.close()


def test_quit_counts_only_people_still_connected(qtbot: QtBot, controller: AppController) -> None:
    window = _host(qtbot, controller)
    server = controller.server
    assert server is not None
    with LineClient(server.address) as bob:
        bob.login("Bob")
        qtbot.waitUntil(lambda: window.host_control.others() == 1, timeout=TIMEOUT_MS)
    # Bob's connection ended without a quit: his session waits to be resumed (the window
    # greys him), but nobody is connected to be disconnected, so quitting does not ask.
    qtbot.waitUntil(lambda: window.host_control.others() == 0, timeout=TIMEOUT_MS)
    with qtbot.assertNotEmitted(window.host_control.askOpened):
        assert window.close()
