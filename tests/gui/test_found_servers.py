"""The Join screen's live list of chats found on the network, for real.

Real servers announce themselves with zeroconf bound to 127.0.0.1 and answer broadcast probes
on a UDP port of the test's own (sent to 127.255.255.255): nothing leaves the machine, and the
list must follow them as they start, fill up and stop.
"""

from __future__ import annotations

import dataclasses
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPersistentModelIndex, Qt
from pytestqt.qtbot import QtBot

from desktop_chat.app import AppController
from desktop_chat.net.discovery.advert import FoundServer
from desktop_chat.net.protocol.invite import comparison_code
from desktop_chat.settings import Settings
from desktop_chat.ui.found_servers import (
    SERVER_ROLE,
    Column,
    DiscoverySetup,
    FoundServersModel,
    FoundServersWidget,
)
from desktop_chat.ui.start_dialog import StartChoice, StartDialog
from tests.helpers import LineClient

from .conftest import FAST, TIMEOUT_MS, ServerFactory

pytestmark = pytest.mark.qt_log_ignore(
    r"^This plugin does not support (propagateSizeHints|raise)\(\)"
)


@pytest.fixture
def broadcast_port() -> int:
    """A UDP port for this test's broadcast queries and answers (free when chosen)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def setup(broadcast_port: int) -> DiscoverySetup:
    """Discovery kept on loopback, probing quickly so hosts come and go within a second."""
    return DiscoverySetup(
        interfaces=("127.0.0.1",),
        broadcast_port=broadcast_port,
        broadcast_address="127.255.255.255",
        probe_interval=0.2,
        probe_window=0.1,
        missed_probes=2,
        check_timeout=0.5,
    )


@pytest.fixture
def dialog(qtbot: QtBot, settings: Settings, setup: DiscoverySetup) -> Iterator[StartDialog]:
    widget = StartDialog(settings, discovery=setup)
    qtbot.addWidget(widget)
    widget.set_mode("join")
    widget.show()
    try:
        yield widget
    finally:
        widget.close()  # hidden: its browser is closed and its threads joined


def unique_title() -> str:
    return f"Found chat {secrets.token_hex(3)}"


def listed(widget: FoundServersWidget, title: str) -> list[FoundServer]:
    # Other programs on this machine may announce on loopback too: look at ours only.
    return [s for s in widget.servers() if s.title == title]


def cell(widget: FoundServersWidget, title: str, column: Column, role: int) -> object:
    model = widget.model
    for row in range(model.rowCount()):
        if model.server(row).title == title:
            return model.data(model.index(row, column), role)
    raise AssertionError(f"{title!r} is not listed")


def text(widget: FoundServersWidget, title: str, column: Column) -> object:
    return cell(widget, title, column, Qt.ItemDataRole.DisplayRole)


def found_widget(dialog: StartDialog) -> FoundServersWidget:
    assert dialog.found_servers is not None
    return dialog.found_servers


def double_click(qtbot: QtBot, widget: FoundServersWidget, title: str) -> None:
    row = [s.title for s in widget.servers()].index(title)
    view = widget.view
    rect = view.visualRect(widget.model.index(row, Column.CHAT))
    # As a mouse does it: QTest's double-click alone lacks the first press a view needs.
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def discovery_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("discovery", "zeroconf"))]


def found(name: str, title: str, people: int = 0, port: int = 5151) -> FoundServer:
    return FoundServer(
        name=name,
        title=title,
        addresses=("192.168.1.5",),
        port=port,
        protocol=1,
        tls="offered",
        password=False,
        people=people,
        fingerprint=None,
        source="mdns",
    )


# -- the model ---------------------------------------------------------------------------


def test_model_updates_rows_in_place_by_name(qapp: object, qtmodeltester: object) -> None:
    model = FoundServersModel()
    qtmodeltester.check(model)  # type: ignore[attr-defined]
    a, b, c = found("a", "Alpha"), found("b", "Bravo", port=5152), found("c", "Charlie", port=3)
    model.set_servers([a, c])
    bravo_row = QPersistentModelIndex(model.index(0, 0))
    model.set_servers([a, b, c])
    assert model.servers() == [a, b, c]
    alpha = QPersistentModelIndex(model.index(0, 0))
    bravo = QPersistentModelIndex(model.index(1, 0))
    assert bravo_row.row() == 0  # "a" stayed where it was

    # A people count changes: the same rows, so a selection on them survives.
    model.set_servers([found("a", "Alpha", people=4), b, c])
    assert alpha.isValid() and alpha.row() == 0
    assert model.data(model.index(0, Column.PEOPLE)) == "4"

    # Heard by broadcast first, then by mDNS: a new name, the same place to join, same row.
    by_mdns = found("Bravo (pc:5152)", "Bravo", port=5152)
    model.set_servers([found("a", "Alpha", people=4), by_mdns, c])
    assert bravo.isValid() and bravo.row() == 1
    assert model.data(model.index(1, 0), SERVER_ROLE) == by_mdns

    # A renamed title moves its row; a host that stops goes.
    model.set_servers([c, found("a", "Zulu")])
    assert [s.name for s in model.servers()] == ["c", "a"]
    assert alpha.isValid() and alpha.row() == 1 and not bravo.isValid()
    model.set_servers([])
    assert model.rowCount() == 0


def test_nothing_found_says_so(qtbot: QtBot, broadcast_port: int) -> None:
    quiet = DiscoverySetup(
        interfaces=("127.0.0.1",),
        broadcast_port=broadcast_port,  # nobody answers on it
        broadcast_address="127.255.255.255",
        mdns=False,
        probe_interval=0.2,
        probe_window=0.1,
    )
    widget = FoundServersWidget(quiet, quiet_after=0.05)
    qtbot.addWidget(widget)
    assert "Not looking" in widget.placeholder.text()
    widget.start()
    try:
        assert widget.is_browsing()
        assert "Looking for chats" in widget.placeholder.text()
        qtbot.waitUntil(lambda: "No chats found yet" in widget.placeholder.text())
        assert widget.stack.currentWidget() is widget.placeholder
    finally:
        widget.stop()
    assert not widget.is_browsing()
    assert not [n for n in discovery_threads() if n == "discovery-probes"]


# -- the Join screen ---------------------------------------------------------------------


def test_join_screen_lists_a_host_live(
    qtbot: QtBot, dialog: StartDialog, make_server: ServerFactory, broadcast_port: int
) -> None:
    widget = found_widget(dialog)
    assert widget.isVisible() and widget.is_browsing()
    title = unique_title()
    server = make_server(announce=True, broadcast_port=broadcast_port, title=title)
    qtbot.waitUntil(lambda: len(listed(widget, title)) == 1, timeout=TIMEOUT_MS)
    assert widget.stack.currentWidget() is widget.view
    (host,) = listed(widget, title)
    assert host.join_address == f"127.0.0.1:{server.port}"
    assert text(widget, title, Column.PEOPLE) == "0"
    assert text(widget, title, Column.SECURITY) == "Encrypted"
    assert text(widget, title, Column.ADDRESS) == f"127.0.0.1:{server.port}"
    assert widget.select(host.name)
    selected = QPersistentModelIndex(widget.view.currentIndex())

    # Whichever way it was heard first, mDNS (zeroconf) reports it too; its row stays put.
    qtbot.waitUntil(
        lambda: [s.source for s in listed(widget, title)] == ["mdns"], timeout=TIMEOUT_MS
    )
    assert selected.isValid() and widget.selected() == listed(widget, title)[0]

    with LineClient(server.address) as alice:
        alice.login("alice")
        qtbot.waitUntil(lambda: text(widget, title, Column.PEOPLE) == "1", timeout=TIMEOUT_MS)
        tip = str(cell(widget, title, Column.CHAT, Qt.ItemDataRole.ToolTipRole))
        assert "1 person" in tip and "No password" in tip

    server.close()
    qtbot.waitUntil(lambda: not listed(widget, title), timeout=TIMEOUT_MS)


def test_password_and_encryption_are_shown(
    qtbot: QtBot,
    dialog: StartDialog,
    make_server: ServerFactory,
    broadcast_port: int,
    tmp_path: Path,
) -> None:
    widget = found_widget(dialog)
    private, plain = unique_title(), unique_title()
    make_server(announce=True, broadcast_port=broadcast_port, title=private, password="pw")
    make_server(
        announce=True,
        broadcast_port=broadcast_port,
        title=plain,
        tls="off",
        data_dir=tmp_path / "plain",
    )
    qtbot.waitUntil(
        lambda: len(listed(widget, private)) == 1 and len(listed(widget, plain)) == 1,
        timeout=TIMEOUT_MS,
    )
    decoration = Qt.ItemDataRole.DecorationRole
    lock = cell(widget, private, Column.CHAT, decoration)
    no_lock = cell(widget, plain, Column.CHAT, decoration)
    assert lock is not None and no_lock is not None  # a blank icon keeps titles aligned
    assert lock.cacheKey() != no_lock.cacheKey()  # type: ignore[attr-defined]
    shield = cell(widget, private, Column.SECURITY, decoration)
    no_shield = cell(widget, plain, Column.SECURITY, decoration)
    assert shield.cacheKey() not in (no_shield.cacheKey(), lock.cacheKey())  # type: ignore[attr-defined]
    assert no_shield.cacheKey() == no_lock.cacheKey()  # type: ignore[attr-defined]
    assert text(widget, plain, Column.SECURITY) == "Not encrypted"
    accessible = str(cell(widget, private, Column.CHAT, Qt.ItemDataRole.AccessibleTextRole))
    assert "password needed" in accessible and "encrypted" in accessible

    # Double-clicking a chat with a password asks for it instead of failing to join.
    dialog.name_edit.setText("Ann")
    with qtbot.assertNotEmitted(dialog.submitted):
        double_click(qtbot, widget, private)
    assert "needs a password" in dialog.error_text("password")
    (host,) = listed(widget, private)
    assert dialog.address_combo.currentText() == host.join_address


def test_clicking_fills_in_and_double_clicking_joins(
    qtbot: QtBot, dialog: StartDialog, make_server: ServerFactory, broadcast_port: int
) -> None:
    widget = found_widget(dialog)
    title = unique_title()
    server = make_server(announce=True, broadcast_port=broadcast_port, title=title)
    qtbot.waitUntil(lambda: len(listed(widget, title)) == 1, timeout=TIMEOUT_MS)
    dialog.name_edit.setText("Ann")
    dialog.set_address("10.9.9.9:7000")

    row = [s.title for s in widget.servers()].index(title)
    rect = widget.view.visualRect(widget.model.index(row, Column.ADDRESS))
    with qtbot.assertNotEmitted(dialog.submitted):
        qtbot.mouseClick(widget.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert dialog.address_combo.currentText() == f"127.0.0.1:{server.port}"
    # The announced fingerprint is not taken as given (anyone can announce): it is asked.
    assert dialog.fingerprint_edit.text() == ""

    # From the keyboard: Enter on a row chooses it, then the default button joins.
    dialog.set_address("10.9.9.9:7000")
    widget.view.setFocus()
    assert widget.select(listed(widget, title)[0].name)
    with qtbot.waitSignal(dialog.submitted, timeout=TIMEOUT_MS) as submitted:
        qtbot.keyClick(widget.view, Qt.Key.Key_Return)
    assert submitted.args[0].port == server.port
    dialog.set_busy(False)  # as the app does when joining fails

    with qtbot.waitSignal(dialog.submitted, timeout=TIMEOUT_MS) as submitted:
        double_click(qtbot, widget, title)
    choice = submitted.args[0]
    assert isinstance(choice, StartChoice)
    assert (choice.mode, choice.name, choice.host, choice.port) == (
        "join",
        "Ann",
        "127.0.0.1",
        server.port,
    )
    assert choice.fingerprint is None
    assert dialog.is_busy() and not widget.isEnabled()


def test_double_click_joins_and_the_host_is_remembered(
    qtbot: QtBot,
    settings: Settings,
    setup: DiscoverySetup,
    make_server: ServerFactory,
    broadcast_port: int,
    tmp_path: Path,
) -> None:
    controller = AppController(
        settings,
        data_dir=tmp_path / "hosted",
        announce=False,
        bind_host="127.0.0.1",
        timing=FAST,
        discovery=setup,
    )
    try:
        title = unique_title()
        server = make_server(announce=True, broadcast_port=broadcast_port, title=title)
        dialog = controller.show_start()
        qtbot.addWidget(dialog)
        dialog.set_mode("join")
        dialog.name_edit.setText("Ann")
        widget = found_widget(dialog)
        qtbot.waitUntil(lambda: len(listed(widget, title)) == 1, timeout=TIMEOUT_MS)
        double_click(qtbot, widget, title)
        # First contact from the list: asked, with the code the host's window shows.
        prompter = controller.prompter
        assert prompter is not None
        qtbot.waitUntil(lambda: prompter.dialog is not None, timeout=TIMEOUT_MS)
        assert prompter.dialog is not None and server.fingerprint is not None
        assert prompter.dialog.code_view.text() == comparison_code(server.fingerprint)
        qtbot.mouseClick(prompter.dialog.trust_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: controller.window is not None, timeout=TIMEOUT_MS)
        assert settings.recent_servers[0] == f"127.0.0.1:{server.port}"
        # The start screen went away, and its discovery with it.
        assert not dialog.isVisible() and not widget.is_browsing()
        assert widget.servers() == []
    finally:
        controller.shutdown()


def test_discovery_runs_only_while_the_start_screen_is_open(
    qtbot: QtBot, settings: Settings, setup: DiscoverySetup
) -> None:
    dialog = StartDialog(settings, discovery=setup)
    qtbot.addWidget(dialog)
    widget = found_widget(dialog)
    assert not widget.is_browsing() and "discovery-probes" not in discovery_threads()
    dialog.show()
    assert widget.is_browsing() and "discovery-probes" in discovery_threads()
    dialog.set_mode("host")  # the list belongs to the Join page, but it keeps looking
    assert not widget.isVisible() and widget.is_browsing()
    dialog.set_mode("join")
    assert widget.isVisible()
    dialog.hide()
    assert not widget.is_browsing() and discovery_threads() == []
    dialog.show()
    assert widget.is_browsing()
    dialog.close()
    assert not widget.is_browsing() and discovery_threads() == []


def test_without_discovery_nothing_is_listed(qtbot: QtBot, settings: Settings) -> None:
    dialog = StartDialog(settings)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.found_servers is None
    assert "discovery-probes" not in discovery_threads()


def test_enter_with_one_chat_listed_and_no_address_joins_it(
    qtbot: QtBot,
    settings: Settings,
    setup: DiscoverySetup,
    make_server: ServerFactory,
    broadcast_port: int,
) -> None:
    # Broadcasts on this test's own port only: mDNS on loopback would also list the chats
    # other programs on this machine announce, and this is about exactly one.
    dialog = StartDialog(settings, discovery=dataclasses.replace(setup, mdns=False))
    qtbot.addWidget(dialog)
    dialog.set_mode("join")
    dialog.show()
    try:
        widget = found_widget(dialog)
        title = unique_title()
        server = make_server(announce=True, broadcast_port=broadcast_port, title=title)
        qtbot.waitUntil(lambda: len(widget.servers()) == 1, timeout=TIMEOUT_MS)
        assert listed(widget, title)
        dialog.name_edit.setText("Ann")
        dialog.set_address("")
        dialog.name_edit.setFocus()
        with qtbot.waitSignal(dialog.submitted, timeout=TIMEOUT_MS) as submitted:
            qtbot.keyClick(dialog.name_edit, Qt.Key.Key_Return)
        assert submitted.args[0].port == server.port
        assert dialog.error_text("address") == ""
    finally:
        dialog.close()  # its discovery threads are joined


def test_the_host_page_is_as_tall_as_it_needs_and_errors_do_not_shrink_it(
    qtbot: QtBot, dialog: StartDialog
) -> None:
    layout = dialog.layout()
    assert layout is not None
    qtbot.waitExposed(dialog)
    join_height = dialog.height()
    dialog.set_mode("host")
    needed = layout.totalHeightForWidth(dialog.width())
    assert dialog.height() <= needed + 2 < join_height - 100  # no gap left by the Join page
    dialog.set_mode("join")
    assert dialog.height() >= layout.totalHeightForWidth(dialog.width()) - 2
    dialog.name_edit.setText("")
    dialog.submit()  # an error under the name
    assert dialog.error_text("name")
    with_error = dialog.height()
    qtbot.keyClicks(dialog.name_edit, "Ann")  # typing clears it: the window stays put
    assert not dialog.error_text("name") and dialog.height() == with_error
