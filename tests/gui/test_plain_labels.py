"""Text from the network is never drawn as Qt rich text: a fake server that answers the TLS
hello in plain JSON cannot put a heading or a disguised link on the start screen."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from desktop_chat.app import AppController
from desktop_chat.ui.header import ChatStatusBar

from .conftest import TIMEOUT_MS

pytestmark = pytest.mark.qt_log_ignore(
    r"^This plugin does not support (propagateSizeHints|raise)\(\)"
)

LURE = (
    '<h1 style="color:red">Security update required</h1>'
    '<a href="http://evil.example/">Download the fix</a>'
)


@pytest.fixture(params=["update_required", "server_full"])
def fake_server(request: pytest.FixtureRequest) -> Iterator[int]:
    """A server that answers whatever comes first with one plain JSON error line."""
    listener = socket.create_server(("127.0.0.1", 0))
    line = json.dumps({"type": "error", "code": request.param, "message": LURE}) + "\n"

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)  # the client's TLS hello
            conn.sendall(line.encode())

    thread = threading.Thread(target=answer, name="fake-server")
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(5)
        listener.close()


def test_a_fake_servers_words_never_reach_the_start_screen(
    qtbot: QtBot, controller: AppController, fake_server: int
) -> None:
    dialog = controller.show_start()
    qtbot.addWidget(dialog)
    dialog.set_mode("join")
    dialog.name_edit.setText("Ann")
    dialog.address_combo.setEditText(f"127.0.0.1:{fake_server}")
    dialog.submit()
    fields = ("address", "general", "name", "password")
    qtbot.waitUntil(lambda: any(dialog.error_text(f) for f in fields), timeout=TIMEOUT_MS)
    shown = " ".join(dialog.error_text(f) for f in fields)
    assert "Security update" not in shown and "evil" not in shown
    assert "127.0.0.1" in shown  # our own words, naming the address
    for label in dialog.findChildren(QLabel):
        if label.objectName().endswith("Error") or label.objectName() == "statusLabel":
            assert label.textFormat() == Qt.TextFormat.PlainText, label.objectName()


def test_status_bar_shows_server_words_as_plain_text(qtbot: QtBot) -> None:
    bar = ChatStatusBar()
    qtbot.addWidget(bar)
    bar.set_state("disconnected", LURE)
    assert bar.state_label.textFormat() == Qt.TextFormat.PlainText
    assert bar.state_label.text() == LURE  # shown as the characters it is
