"""A joiner's app keeps its session on each chat it joined (``sessions.json`` in the data
folder, readable by its owner only) and resumes it on the next start: back in its rooms, with
its DMs. Leaving the chat ends the session and forgets it."""

from __future__ import annotations

import stat
from pathlib import Path

from pytestqt.qtbot import QtBot

from desktop_chat.app import AppController
from desktop_chat.kept_sessions import KeptSessions, server_key
from desktop_chat.net.server.server import Server
from desktop_chat.settings import Settings
from desktop_chat.ui.main_window import MainWindow
from desktop_chat.ui.start_choice import StartChoice
from tests.gui.conftest import FAST, TIMEOUT_MS
from tests.helpers import LineClient


def _join(qtbot: QtBot, ctl: AppController, server: Server) -> MainWindow:
    choice = StartChoice("join", "Jo", "127.0.0.1", server.port, fingerprint=server.fingerprint)
    assert ctl.start(choice)
    qtbot.waitUntil(lambda: ctl.window is not None, timeout=TIMEOUT_MS)
    assert ctl.window is not None
    return ctl.window


def _controller(settings: Settings, kept: KeptSessions) -> AppController:
    return AppController(settings, announce=False, bind_host="127.0.0.1", timing=FAST, kept=kept)


def test_a_restarted_joiner_is_back_in_its_rooms_and_dms_and_leaving_forgets_it(
    qtbot: QtBot, settings: Settings, server: Server, tmp_path: Path
) -> None:
    kept = KeptSessions(tmp_path / "data" / "sessions.json")
    first = _controller(settings, kept)
    try:
        window = _join(qtbot, first, server)
        window.session.join("lounge")
        qtbot.waitUntil(lambda: window.current_key == "#lounge", timeout=TIMEOUT_MS)
        with LineClient(server.address) as bob:
            bob.login("Bob")
            bob.send_json(type="dm", to="Jo", text="psst")
            qtbot.waitUntil(lambda: window.session.find("@bob") is not None, timeout=TIMEOUT_MS)
            bob.send_json(type="quit")
    finally:
        first.shutdown()  # the app quits (or the machine logs out): the session is kept
    assert stat.S_IMODE(kept.path.stat().st_mode) == 0o600
    key = server_key("127.0.0.1", server.port, server.fingerprint or "")
    assert kept.get(key) is not None

    second = _controller(settings, kept)
    try:
        window = _join(qtbot, second, server)
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
        with LineClient(server.address) as carol:
            carol.login("Carol")
            carol.send_json(type="join", room="lounge")
            users = carol.expect("users", skip=("typing", "ping", "joined", "left"))
            assert "Jo" in users["names"]
            window.leave_chat()  # the "Leave the chat" menu item
            left = carol.expect("left", where=lambda m: m["name"] == "Jo")
            assert left["reason"] == "quit"
    finally:
        second.shutdown()
    assert kept.get(key) is None  # the next start is a fresh login
    for ctl in (first, second):
        if ctl.dialog is not None:
            ctl.dialog.deleteLater()
