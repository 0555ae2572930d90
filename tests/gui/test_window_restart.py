"""The server restarts under a connected window: after the reconnect, every message sent
meanwhile appears exactly once, in order, and the window says what is happening."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pytestqt.qtbot import QtBot

from desktop_chat.net.client.worker import ChatClient
from desktop_chat.net.server.server import Server
from desktop_chat.ui.main_window import MainWindow
from desktop_chat.ui.notifications import SilentSound
from desktop_chat.ui.preferences import MemorySettings
from tests.gui.conftest import FAST, TIMEOUT_MS
from tests.helpers import LineClient


def _texts(window: MainWindow) -> list[str]:
    conv = window.session.find("#general")
    return [] if conv is None else [e.text for e in conv.model.entries()]


def test_restart_under_a_window_loses_nothing_and_shows_nothing_twice(
    qtbot: QtBot, make_server: Callable[..., Server], data_dir: Path
) -> None:
    first = make_server(rate_per_sec=0)
    port, fingerprint = first.port, first.fingerprint
    client = ChatClient(timing=FAST)
    window = MainWindow(client, None, MemorySettings(), sound=SilentSound())
    qtbot.addWidget(window)
    window.show()
    states: list[str] = []
    client.stateChanged.connect(lambda state, _detail: states.append(state))
    try:
        client.connect_to("127.0.0.1", port, "alice", fingerprint=fingerprint)
        qtbot.waitUntil(lambda: window.session.me is not None, timeout=TIMEOUT_MS)
        with LineClient(first.address) as bob:
            bob.login("bob")
            bob.send_json(type="say", room="general", text="before")
            qtbot.waitUntil(lambda: "before" in _texts(window), timeout=TIMEOUT_MS)

        with qtbot.waitSignal(
            client.stateChanged,
            timeout=TIMEOUT_MS,
            check_params_cb=lambda s, _d: s == "reconnecting",
        ):
            first.close()
        # A new server process on the same port and data folder: sessions and ids survive.
        second = make_server(rate_per_sec=0, port=port)
        sent = [f"while away {i}" for i in range(5)]
        with LineClient(second.address) as carol:
            carol.login("carol")
            for text in sent:
                carol.send_json(type="say", room="general", text=text)
            for _ in sent:
                carol.expect("message")
            qtbot.waitUntil(lambda: all(t in _texts(window) for t in sent), timeout=TIMEOUT_MS)
            carol.send_json(type="say", room="general", text="after")
            qtbot.waitUntil(lambda: "after" in _texts(window), timeout=TIMEOUT_MS)
        texts = _texts(window)
        shown = [t for t in texts if t in (*sent, "before", "after")]
        assert shown == ["before", *sent, "after"]  # each once, in order
        assert "reconnecting" in states
        assert states[-1] == "connected"
    finally:
        window.close()
