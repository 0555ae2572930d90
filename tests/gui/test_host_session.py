"""The hosting window resumes its own session when it hosts again from the same data folder:
the rooms it was in and its private conversations are back, as for any client that
reconnects (the server keeps sessions across restarts)."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from desktop_chat.app import AppController
from desktop_chat.settings import Settings
from desktop_chat.ui.main_window import MainWindow
from desktop_chat.ui.start_choice import StartChoice
from tests.gui.conftest import FAST, TIMEOUT_MS
from tests.helpers import LineClient


def _host(qtbot: QtBot, controller: AppController, name: str = "Hal") -> MainWindow:
    assert controller.start(StartChoice("host", name, "127.0.0.1", 0, "Hal's chat"))
    qtbot.waitUntil(lambda: controller.window is not None, timeout=TIMEOUT_MS)
    assert controller.window is not None
    return controller.window


def test_the_host_is_back_in_its_rooms_and_dms_after_hosting_again(
    qtbot: QtBot, settings: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "hosted"
    first = AppController(
        settings, data_dir=data, announce=False, bind_host="127.0.0.1", timing=FAST
    )
    try:
        window = _host(qtbot, first)
        assert first.server is not None
        window.session.join("lounge")
        qtbot.waitUntil(lambda: window.current_key == "#lounge", timeout=TIMEOUT_MS)
        with LineClient(first.server.address) as bob:
            bob.login("Bob")
            bob.send_json(type="dm", to="Hal", text="psst")
            qtbot.waitUntil(lambda: window.session.find("@bob") is not None, timeout=TIMEOUT_MS)
            bob.send_json(type="quit")
    finally:
        first.shutdown()

    second = AppController(
        settings, data_dir=data, announce=False, bind_host="127.0.0.1", timing=FAST
    )
    try:
        window = _host(qtbot, second)
        assert second.client is not None and second.client.welcome is not None
        assert second.client.welcome.resumed is True
        qtbot.waitUntil(lambda: window.session.find("#lounge") is not None, timeout=TIMEOUT_MS)
        lounge = window.session.find("#lounge")
        assert lounge is not None and lounge.joined
        dm = window.session.find("@bob")
        assert dm is not None
        qtbot.waitUntil(
            lambda: [e.text for e in dm.model.entries()] == ["psst"], timeout=TIMEOUT_MS
        )
        # The server agrees: someone joining the lounge finds the host there.
        assert second.server is not None
        with LineClient(second.server.address) as carol:
            carol.login("Carol")
            carol.send_json(type="join", room="lounge")
            users = carol.expect("users", skip=("typing", "ping", "joined", "left"))
            assert "Hal" in users["names"]
    finally:
        second.shutdown()
        for ctl in (first, second):
            if ctl.dialog is not None:
                ctl.dialog.deleteLater()
