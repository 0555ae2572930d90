"""The "Why can't I see anyone?" dialog: the real network check, restricted to loopback.

The check runs on a worker thread for its whole timeout; the GUI must stay responsive, show
the report when it ends, and leave no thread behind, even when closed in the middle.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QTimer
from pytestqt.qtbot import QtBot

from desktop_chat.settings import Settings
from desktop_chat.ui.found_servers import DiscoverySetup
from desktop_chat.ui.netcheck_dialog import NetCheckDialog
from desktop_chat.ui.start_dialog import StartDialog
from tests.helpers import T

from .conftest import TIMEOUT_MS, ServerFactory

pytestmark = pytest.mark.qt_log_ignore(
    r"^This plugin does not support (propagateSizeHints|raise)\(\)"
)

CHECK_SECONDS = 0.5


@pytest.fixture
def broadcast_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def make_dialog(qtbot: QtBot, broadcast_port: int) -> Iterator[object]:
    made: list[NetCheckDialog] = []

    def make(port: int) -> NetCheckDialog:
        dialog = NetCheckDialog(
            port,
            interfaces=["127.0.0.1"],
            broadcast_port=broadcast_port,
            timeout=T(CHECK_SECONDS),
        )
        qtbot.addWidget(dialog)
        made.append(dialog)
        return dialog

    try:
        yield make
    finally:
        for dialog in made:
            dialog.close()
            assert dialog.wait(T(5)), "the network check did not end"


def check_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "netcheck-dialog"]


def test_shows_the_report_without_blocking_the_gui(
    qtbot: QtBot, make_dialog: object, make_server: ServerFactory, broadcast_port: int
) -> None:
    title = f"Checked chat {secrets.token_hex(3)}"
    server = make_server(announce=True, broadcast_port=broadcast_port, title=title)
    dialog = make_dialog(server.port)  # type: ignore[operator]
    assert isinstance(dialog, NetCheckDialog)
    with qtbot.waitSignal(dialog.checkFinished, timeout=TIMEOUT_MS) as finished:
        dialog.show()
        assert dialog.is_running() and len(check_threads()) == 1
        assert dialog.progress.isVisible() and "Checking the network" in dialog.busy_label.text()
        assert not dialog.again_button.isEnabled()
        # The event loop keeps running meanwhile: a timer fires while the check goes on.
        ticked: list[bool] = []
        QTimer.singleShot(10, lambda: ticked.append(dialog.is_running()))
        qtbot.waitUntil(lambda: bool(ticked), timeout=TIMEOUT_MS)
        assert ticked == [True]
    report = finished.args[0]
    assert report == dialog.report_text() == dialog.report_view.toPlainText()
    assert f"Network check for port {server.port}" in report
    assert "127.0.0.1" in report and "What to try" in report
    assert title in report  # our server answered the broadcast query
    assert not dialog.is_running() and check_threads() == []
    assert not dialog.progress.isVisible() and dialog.again_button.isEnabled()
    assert dialog.copy_button.isEnabled()

    with qtbot.waitSignal(dialog.checkFinished, timeout=TIMEOUT_MS):
        dialog.again_button.click()
        assert dialog.is_running() and not dialog.start_check()  # one check at a time
    assert check_threads() == []


def test_closing_during_the_check_leaves_no_thread(
    qtbot: QtBot, make_dialog: object, free_port: int
) -> None:
    dialog = make_dialog(free_port)  # type: ignore[operator]
    assert isinstance(dialog, NetCheckDialog)
    dialog.show()
    assert dialog.is_running()
    dialog.close()  # returns at once: the check ends by itself within its deadline
    assert not dialog.isVisible() and dialog.is_running()
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=TIMEOUT_MS)
    assert check_threads() == []
    assert f"Network check for port {free_port}" in dialog.report_text()

    # Opened again, it checks again; wait() joins a running check at once (for shutdown).
    dialog.show()
    assert dialog.is_running()
    dialog.close()
    assert dialog.wait(T(5)) and check_threads() == []


def test_start_screen_opens_the_check_for_its_port(
    qtbot: QtBot, settings: Settings, broadcast_port: int, free_port: int
) -> None:
    setup = DiscoverySetup(
        interfaces=("127.0.0.1",),
        broadcast_port=broadcast_port,
        broadcast_address="127.255.255.255",
        mdns=False,
        probe_interval=0.2,
        probe_window=0.1,
        check_timeout=T(CHECK_SECONDS),
    )
    start = StartDialog(settings, discovery=setup)
    qtbot.addWidget(start)
    start.set_mode("join")
    start.show()
    found = start.found_servers
    assert found is not None and found.check_button.isVisible()
    start.port_spin.setValue(free_port)
    found.check_button.click()
    dialog = found.check_dialog()
    assert dialog is not None and dialog.isVisible() and dialog.port == free_port
    assert dialog.is_running()
    start.close()  # the start screen goes: so does the check window, without waiting
    assert not dialog.isVisible() and not found.is_browsing()
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=TIMEOUT_MS)
    assert check_threads() == []
