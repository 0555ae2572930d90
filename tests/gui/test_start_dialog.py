"""The start screen: inline validation, remembered choices, and the app's host/join flows."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from desktop_chat import app as app_module
from desktop_chat.app import AppController
from desktop_chat.kept_sessions import KeptSessions
from desktop_chat.net.server.server import DEFAULT_PORT
from desktop_chat.settings import MAX_RECENT_SERVERS, Settings
from desktop_chat.ui.start_dialog import StartChoice, StartDialog, parse_address

from .conftest import FAST, TIMEOUT_MS, ServerFactory

# The offscreen platform cannot resize or raise windows and says so on every show().
pytestmark = pytest.mark.qt_log_ignore(
    r"^This plugin does not support (propagateSizeHints|raise)\(\)"
)


@pytest.fixture
def dialog(qtbot: QtBot, settings: Settings) -> StartDialog:
    widget = StartDialog(settings)
    qtbot.addWidget(widget)
    widget.show()
    return widget


def error_label(dialog: StartDialog, field: str) -> QLabel:
    label = dialog.findChild(QLabel, f"{field}Error")
    assert label is not None
    return label


def submit_expecting_error(qtbot: QtBot, dialog: StartDialog, field: str) -> str:
    with qtbot.assertNotEmitted(dialog.submitted):
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    label = error_label(dialog, field)
    assert label.isVisible()
    assert not dialog.is_busy()
    return label.text()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.168.1.5", ("192.168.1.5", DEFAULT_PORT)),
        ("192.168.1.5:6000", ("192.168.1.5", 6000)),
        (" mypc.local:7000 ", ("mypc.local", 7000)),
        ("localhost", ("localhost", DEFAULT_PORT)),
        ("[::1]:6001", ("::1", 6001)),
        ("[fe80::1]", ("fe80::1", DEFAULT_PORT)),
        ("fe80::1", ("fe80::1", DEFAULT_PORT)),
    ],
)
def test_parse_address_accepts(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "Type the address"),
        ("my pc", "is not an address"),
        ("host:99999", "between 1 and 65535"),
        ("host:0", "between 1 and 65535"),
        ("host:abc", "is not a port number"),
        ("host:", "is not a port number"),
        (":5151", "missing before the port"),
        ("[::1", "closing ]"),
        ("http://host", "is not"),
    ],
)
def test_parse_address_explains(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_address(text)


def test_controls_have_object_and_accessible_names(dialog: StartDialog) -> None:
    for widget in (
        dialog.name_edit,
        dialog.port_spin,
        dialog.title_edit,
        dialog.address_combo,
        dialog.host_button,
        dialog.join_button,
        dialog.start_button,
        dialog.quit_button,
    ):
        assert widget.objectName()
        assert widget.accessibleName()
    assert dialog.port_spin.value() == DEFAULT_PORT


def test_empty_name_is_explained_inline(qtbot: QtBot, dialog: StartDialog) -> None:
    dialog.set_mode("host")
    text = submit_expecting_error(qtbot, dialog, "name")
    assert "name" in text.lower()
    # typing clears the message
    qtbot.keyClicks(dialog.name_edit, "Ann")
    assert not error_label(dialog, "name").isVisible()


@pytest.mark.parametrize(
    ("name", "says"),
    [
        (" padded", "start or end with a space"),
        ("x" * 40, "at most 32"),
        ("zero\u200bwidth", "control or invisible"),
    ],
)
def test_invalid_names_are_explained(
    qtbot: QtBot, dialog: StartDialog, name: str, says: str
) -> None:
    dialog.set_mode("host")
    dialog.name_edit.setText(name)
    assert says in submit_expecting_error(qtbot, dialog, "name")


def test_bad_address_is_explained_and_can_be_fixed(qtbot: QtBot, dialog: StartDialog) -> None:
    dialog.set_mode("join")
    dialog.name_edit.setText("Ann")
    dialog.address_combo.setEditText("not an address")
    assert "is not an address" in submit_expecting_error(qtbot, dialog, "address")
    dialog.address_combo.setEditText("10.0.0.5:6000")
    assert not error_label(dialog, "address").isVisible()
    with qtbot.waitSignal(dialog.submitted, timeout=TIMEOUT_MS) as submitted:
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert submitted.args[0] == StartChoice("join", "Ann", "10.0.0.5", 6000)
    assert dialog.is_busy()
    assert "Connecting to 10.0.0.5:6000" in dialog.status_label.text()


def test_both_errors_show_at_once(qtbot: QtBot, dialog: StartDialog) -> None:
    dialog.set_mode("join")
    dialog.address_combo.setEditText("bad address")
    submit_expecting_error(qtbot, dialog, "name")
    assert error_label(dialog, "address").isVisible()


def test_host_choice_and_remembered_fields(
    qtbot: QtBot, dialog: StartDialog, settings: Settings
) -> None:
    dialog.set_mode("host")
    dialog.name_edit.setText("Ann")
    dialog.port_spin.setValue(6123)
    dialog.title_edit.setText(" Office ")
    with qtbot.waitSignal(dialog.submitted, timeout=TIMEOUT_MS) as submitted:
        dialog.submit()
    assert submitted.args[0] == StartChoice("host", "Ann", "127.0.0.1", 6123, "Office")

    again = StartDialog(settings)
    qtbot.addWidget(again)
    assert again.mode == "host"
    assert again.name_edit.text() == "Ann"
    assert again.port_spin.value() == 6123
    assert again.title_edit.text() == "Office"


def test_recent_servers_fill_the_address_list(qtbot: QtBot, settings: Settings) -> None:
    for n in range(MAX_RECENT_SERVERS + 2):
        settings.add_recent_server(f"10.0.0.{n}:5151")
    settings.add_recent_server("10.0.0.3:5151")  # again: moves to the front, not duplicated
    dialog = StartDialog(settings)
    qtbot.addWidget(dialog)
    items = [dialog.address_combo.itemText(i) for i in range(dialog.address_combo.count())]
    assert items[0] == "10.0.0.3:5151"
    assert len(items) == MAX_RECENT_SERVERS == len(set(items))
    assert dialog.address_combo.currentText() == "10.0.0.3:5151"


def test_show_error_switches_to_the_field_and_unlocks(qtbot: QtBot, dialog: StartDialog) -> None:
    dialog.set_mode("join")
    dialog.set_busy(True, "Connecting…")
    dialog.show_error("port", "Port 5151 is already in use on this computer.")
    assert dialog.mode == "host"
    assert not dialog.is_busy()
    assert dialog.error_text("port") == "Port 5151 is already in use on this computer."
    assert dialog.start_button.isEnabled()


def test_settings_survive_a_round_trip_through_the_ini_file(tmp_path: Path) -> None:
    from PySide6.QtCore import QByteArray, QSettings

    path = str(tmp_path / "round-trip.ini")
    first = Settings(QSettings(path, QSettings.Format.IniFormat))
    first.notifications = False
    first.sound = True
    first.font_size = 13
    first.theme = "dark"
    first.add_recent_server("10.0.0.1:5151")  # a one-element list: INI stores a plain string
    first.window_geometry = QByteArray(b"\x01\x02")
    first.set_value("ui/custom", True)
    first.sync()

    again = Settings(QSettings(path, QSettings.Format.IniFormat))
    assert (again.notifications, again.sound, again.font_size, again.theme) == (
        False,
        True,
        13,
        "dark",
    )
    assert again.recent_servers == ["10.0.0.1:5151"]
    assert again.window_geometry == QByteArray(b"\x01\x02")
    assert again.bool_value("ui/custom", False) is True
    again.theme = "purple"  # not a theme: back to following the system
    assert again.theme == "system"


# -- the app's flows ---------------------------------------------------------------------


def test_hosting_on_a_taken_port_shows_the_inline_error(
    qtbot: QtBot, controller: AppController
) -> None:
    dialog = controller.show_start()
    qtbot.addWidget(dialog)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        dialog.set_mode("host")
        dialog.name_edit.setText("Ann")
        dialog.port_spin.setValue(port)
        dialog.submit()
        assert f"Port {port} is already in use" in dialog.error_text("port")
    assert not dialog.is_busy()
    assert controller.server is None and controller.client is None


def test_hosting_opens_the_main_window_and_quitting_stops_everything(
    qtbot: QtBot, controller: AppController
) -> None:
    dialog = controller.show_start()
    qtbot.addWidget(dialog)
    assert controller.start(StartChoice("host", "Ann", "127.0.0.1", 0, "Ann's chat"))
    qtbot.waitUntil(lambda: controller.window is not None, timeout=TIMEOUT_MS)
    server, client, window = controller.server, controller.client, controller.window
    assert server is not None and client is not None and window is not None
    assert window.isVisible() and not dialog.isVisible()
    assert server.title == "Ann's chat"
    # The window existed before the welcome, so it shows it (not "Connecting…").
    assert window.windowTitle().endswith("Ann's chat")
    assert client.name == "Ann"
    assert server.people_count() == 1
    worker = client.worker_thread()

    controller.shutdown()
    assert controller.server is None and controller.client is None
    assert worker is not None and worker.isFinished()
    assert client.is_closed()


def test_joining_opens_the_main_window_and_remembers_the_server(
    qtbot: QtBot, controller: AppController, make_server: ServerFactory
) -> None:
    server = make_server()
    dialog = controller.show_start()
    qtbot.addWidget(dialog)
    dialog.set_mode("join")
    dialog.name_edit.setText("Ann")
    dialog.address_combo.setEditText(f"127.0.0.1:{server.port}")
    dialog.submit()
    # First time here: the fingerprint is shown to compare, and trusted.
    prompter = controller.prompter
    assert prompter is not None
    qtbot.waitUntil(lambda: prompter.dialog is not None, timeout=TIMEOUT_MS)
    assert prompter.dialog is not None and not prompter.dialog.changed
    qtbot.mouseClick(prompter.dialog.trust_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controller.window is not None, timeout=TIMEOUT_MS)
    assert controller.settings.recent_servers[0] == f"127.0.0.1:{server.port}"
    assert controller.settings.last_name == "Ann"
    assert controller.server is None


def test_joining_nobody_comes_back_with_the_reason(qtbot: QtBot, controller: AppController) -> None:
    dialog = controller.show_start()
    qtbot.addWidget(dialog)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dialog.set_mode("join")
    dialog.name_edit.setText("Ann")
    dialog.address_combo.setEditText(f"127.0.0.1:{port}")
    dialog.submit()
    qtbot.waitUntil(lambda: bool(dialog.error_text("address")), timeout=TIMEOUT_MS)
    assert dialog.error_text("address").startswith(f"Nobody answered at 127.0.0.1:{port}")
    assert not dialog.is_busy()
    assert controller.client is None


def test_cancel_while_connecting_stops_trying(qtbot: QtBot, controller: AppController) -> None:
    dialog = controller.show_start()
    qtbot.addWidget(dialog)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        dialog.set_mode("join")
        dialog.name_edit.setText("Ann")
        dialog.address_combo.setEditText(f"127.0.0.1:{silent.getsockname()[1]}")
        dialog.submit()
        assert dialog.is_busy() and dialog.quit_button.text() == "&Cancel"
        client = controller.client
        assert client is not None
        qtbot.mouseClick(dialog.quit_button, Qt.MouseButton.LeftButton)
        assert controller.client is None and client.is_closed()
        assert not dialog.is_busy() and dialog.isVisible()
        assert dialog.quit_button.text() == "&Quit"


def test_joining_with_a_taken_name_says_so(
    qtbot: QtBot, controller: AppController, make_server: ServerFactory, tmp_path: Path
) -> None:
    server = make_server()
    dialog = controller.show_start()
    qtbot.addWidget(dialog)
    # Ann is another person (another user's data folder): her kept session is not ours.
    first = AppController(
        controller.settings, timing=FAST, kept=KeptSessions(tmp_path / "ann" / "sessions.json")
    )
    try:
        first.connect_client(
            StartChoice("join", "Ann", "127.0.0.1", server.port, fingerprint=server.fingerprint)
        )
        # The window exists before its welcome: wait until Ann is really logged in.
        qtbot.waitUntil(
            lambda: first.window is not None and first.window.session.me is not None,
            timeout=TIMEOUT_MS,
        )
        dialog.set_mode("join")
        dialog.name_edit.setText("ann")
        dialog.address_combo.setEditText(f"127.0.0.1:{server.port}")
        # Given ahead, as a second person would: Ann's pin may not be stored yet, and then the
        # start screen would wait on the first-use question instead.
        dialog.set_fingerprint(server.fingerprint)
        dialog.submit()
        qtbot.waitUntil(lambda: bool(dialog.error_text("name")), timeout=TIMEOUT_MS)
        assert dialog.error_text("name").startswith("That name is taken")
    finally:
        first.shutdown()


def test_a_wrong_password_is_explained_under_the_password(
    qtbot: QtBot, controller: AppController, make_server: ServerFactory
) -> None:
    server = make_server(password="open sesame")
    dialog = controller.show_start()
    qtbot.addWidget(dialog)
    dialog.set_mode("join")
    dialog.name_edit.setText("Ann")
    dialog.address_combo.setEditText(f"127.0.0.1:{server.port}")
    dialog.password_edit.setText("guess")
    dialog.fingerprint_edit.setText(server.fingerprint)
    dialog.submit()
    qtbot.waitUntil(lambda: bool(dialog.error_text("password")), timeout=TIMEOUT_MS)
    assert "did not accept that password" in dialog.error_text("password")

    dialog.password_edit.setText("open sesame")
    dialog.submit()
    qtbot.waitUntil(lambda: controller.window is not None, timeout=TIMEOUT_MS)
    assert "password" not in repr(controller.choice)


def test_host_chat_flag_with_a_taken_port_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        status = app_module.main(
            [
                "--host-chat",
                "--port",
                str(port),
                "--name",
                "Ann",
                "--no-announce",
                "--data-dir",
                str(tmp_path / "d"),
            ]
        )
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"desktop-chat: Port {port} is already in use on this computer. Choose another port."
    ]


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert app_module.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("desktop-chat ")
