"""The desktop client's TLS and certificate pinning, against the real server on loopback.

First use asks (and the answer is remembered), a remembered certificate is reused silently, a
changed one is refused with a warning that defaults to not connecting, a fingerprint given
ahead skips the question (and a wrong one fails), and a server without TLS is refused.
"""

from __future__ import annotations

import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from pytestqt.qtbot import QtBot

from desktop_chat import app as app_module
from desktop_chat.app import AppController
from desktop_chat.net.client.transport import NO_TLS
from desktop_chat.net.client.worker import ChatClient
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.tls import (
    client_context,
    fingerprint_of_der,
    format_fingerprint,
    group_for_reading,
)
from desktop_chat.net.server.server import Server
from desktop_chat.net.server.tls import CERT_FILE, KEY_FILE
from desktop_chat.settings import Settings
from desktop_chat.ui.certificates import CertificateDialog, CertificatePrompter
from desktop_chat.ui.start_dialog import StartChoice
from tests.helpers import T

from .conftest import FAST, TIMEOUT_MS, ServerFactory

pytestmark = pytest.mark.qt_log_ignore(
    r"^This plugin does not support (propagateSizeHints|raise)\(\)"
)


@pytest.fixture
def clients(settings: Settings) -> Iterator[list[ChatClient]]:
    made: list[ChatClient] = []
    try:
        yield made
    finally:
        for client in made:
            client.close()


def new_client(clients: list[ChatClient], settings: Settings) -> ChatClient:
    client = ChatClient(timing=FAST, pins=settings)
    clients.append(client)
    return client


def restart_with_a_new_certificate(make_server: ServerFactory, old: Server, tmp: Path) -> Server:
    """The same port, a new data folder: a new certificate (a reinstall, or an impostor)."""
    port = old.port
    old.close()
    return make_server(port=port, data_dir=tmp)


def test_first_use_asks_then_the_pin_is_reused_silently(
    qtbot: QtBot, make_server: ServerFactory, clients: list[ChatClient], settings: Settings
) -> None:
    server = make_server()
    first = new_client(clients, settings)
    with qtbot.waitSignal(first.certificateUnknown, timeout=TIMEOUT_MS) as asked:
        first.connect_to("127.0.0.1", server.port, "alice")
    assert asked.args == ["127.0.0.1", server.port, server.fingerprint]
    assert server.people_count() == 0  # nothing is said before the person decides
    assert first.state == "connecting"
    with qtbot.waitSignal(first.welcomed, timeout=TIMEOUT_MS):
        first.accept_certificate(asked.args[2])
    assert settings.pinned_fingerprint("127.0.0.1", server.port) == server.fingerprint
    assert first.fingerprint == server.fingerprint

    second = new_client(clients, settings)
    with (
        qtbot.assertNotEmitted(second.certificateUnknown),
        qtbot.assertNotEmitted(second.certificateChanged),
        qtbot.waitSignal(second.welcomed, timeout=TIMEOUT_MS),
    ):
        second.connect_to("127.0.0.1", server.port, "bob")


def test_refusing_the_first_certificate_does_not_connect(
    qtbot: QtBot, make_server: ServerFactory, clients: list[ChatClient], settings: Settings
) -> None:
    server = make_server()
    client = new_client(clients, settings)
    with qtbot.waitSignal(client.certificateUnknown, timeout=TIMEOUT_MS):
        client.connect_to("127.0.0.1", server.port, "alice")
    with qtbot.waitSignal(client.connectionFailed, timeout=TIMEOUT_MS) as failed:
        client.reject_certificate()
    assert failed.args[0] == "certificate_rejected"
    assert settings.pinned_fingerprint("127.0.0.1", server.port) is None
    assert server.people_count() == 0


def test_a_changed_certificate_is_a_warning_that_does_not_connect(
    qtbot: QtBot,
    make_server: ServerFactory,
    clients: list[ChatClient],
    settings: Settings,
    tmp_path: Path,
) -> None:
    old = make_server()
    old_fp = old.fingerprint
    assert old_fp is not None
    settings.pin_fingerprint("127.0.0.1", old.port, old_fp)
    new = restart_with_a_new_certificate(make_server, old, tmp_path / "reinstalled")
    assert new.fingerprint != old_fp

    client = new_client(clients, settings)
    prompter = CertificatePrompter(client, lambda: None)
    with qtbot.waitSignal(prompter.asked, timeout=TIMEOUT_MS) as asked:
        client.connect_to("127.0.0.1", new.port, "alice")
    dialog = asked.args[0]
    assert isinstance(dialog, CertificateDialog) and dialog.changed
    qtbot.addWidget(dialog)
    # Both fingerprints, grouped for reading; the safe button is the default one.
    assert dialog.pinned_view.text().split() == group_for_reading(old_fp).split()
    assert dialog.fingerprint_view.text().split() == group_for_reading(new.fingerprint).split()
    assert dialog.refuse_button.isDefault() and not dialog.trust_button.isDefault()
    assert dialog.trust_button.text() == "&Trust the new certificate"
    assert new.people_count() == 0 and client.state == "connecting"

    with qtbot.waitSignal(client.connectionFailed, timeout=TIMEOUT_MS) as failed:
        qtbot.keyClick(dialog, Qt.Key.Key_Return)  # Enter: the default, "Don't connect"
    assert failed.args[0] == "certificate_changed"
    assert "did not connect" in failed.args[1]
    assert new.people_count() == 0
    assert settings.pinned_fingerprint("127.0.0.1", new.port) == old_fp  # nothing replaced


def test_trusting_the_new_certificate_connects_and_replaces_the_pin(
    qtbot: QtBot,
    make_server: ServerFactory,
    clients: list[ChatClient],
    settings: Settings,
    tmp_path: Path,
) -> None:
    old = make_server()
    assert old.fingerprint is not None
    settings.pin_fingerprint("127.0.0.1", old.port, old.fingerprint)
    new = restart_with_a_new_certificate(make_server, old, tmp_path / "reinstalled")
    client = new_client(clients, settings)
    prompter = CertificatePrompter(client, lambda: None)
    with qtbot.waitSignal(prompter.asked, timeout=TIMEOUT_MS) as asked:
        client.connect_to("127.0.0.1", new.port, "alice")
    dialog = asked.args[0]
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(client.welcomed, timeout=TIMEOUT_MS):
        qtbot.mouseClick(dialog.trust_button, Qt.MouseButton.LeftButton)
    assert settings.pinned_fingerprint("127.0.0.1", new.port) == new.fingerprint


def test_a_changed_certificate_during_a_reconnect_stops_it(
    qtbot: QtBot,
    make_server: ServerFactory,
    clients: list[ChatClient],
    settings: Settings,
    tmp_path: Path,
) -> None:
    old = make_server(data_dir=tmp_path / "before")
    client = new_client(clients, settings)
    with qtbot.waitSignal(client.welcomed, timeout=TIMEOUT_MS):
        client.connect_to("127.0.0.1", old.port, "alice", fingerprint=old.fingerprint)
    failures: list[str] = []
    client.connectionFailed.connect(lambda code, _message: failures.append(code))
    with qtbot.waitSignal(client.certificateChanged, timeout=TIMEOUT_MS) as changed:
        new = restart_with_a_new_certificate(make_server, old, tmp_path / "after")
    assert changed.args[2:] == [old.fingerprint, new.fingerprint]
    assert new.people_count() == 0
    with qtbot.waitSignal(
        client.stateChanged,
        check_params_cb=lambda state, _detail: state == "disconnected",
        timeout=TIMEOUT_MS,
    ) as state:
        client.reject_certificate()
    assert "no longer has the certificate you trusted" in state.args[1]
    worker = client.worker_thread()
    assert worker is not None
    qtbot.waitUntil(worker.isFinished, timeout=TIMEOUT_MS)  # no more attempts on its own
    assert failures == []  # not a first connection: the window shows "disconnected"
    assert new.people_count() == 0


def test_a_fingerprint_given_ahead_skips_the_question_and_is_pinned(
    qtbot: QtBot, make_server: ServerFactory, clients: list[ChatClient], settings: Settings
) -> None:
    server = make_server()
    assert server.fingerprint is not None
    client = new_client(clients, settings)
    with (
        qtbot.assertNotEmitted(client.certificateUnknown),
        qtbot.waitSignal(client.welcomed, timeout=TIMEOUT_MS),
    ):
        # In the form openssl prints (colons, capitals): any usual spelling is read.
        client.connect_to(
            "127.0.0.1", server.port, "alice", fingerprint=format_fingerprint(server.fingerprint)
        )
    assert settings.pinned_fingerprint("127.0.0.1", server.port) == server.fingerprint


def test_a_wrong_fingerprint_fails_without_asking(
    qtbot: QtBot, make_server: ServerFactory, clients: list[ChatClient], settings: Settings
) -> None:
    server = make_server()
    client = new_client(clients, settings)
    wrong = "ab" * 32
    with (
        qtbot.assertNotEmitted(client.certificateUnknown),
        qtbot.waitSignal(client.connectionFailed, timeout=TIMEOUT_MS) as failed,
    ):
        client.connect_to("127.0.0.1", server.port, "alice", fingerprint=wrong)
    assert failed.args[0] == "certificate_mismatch"
    assert server.people_count() == 0
    assert settings.pinned_fingerprint("127.0.0.1", server.port) is None
    with pytest.raises(ValueError, match="64"):
        client.connect_to("127.0.0.1", server.port, "alice", fingerprint="not hex")


def test_a_server_without_encryption_is_refused_clearly(
    qtbot: QtBot, make_server: ServerFactory, clients: list[ChatClient], settings: Settings
) -> None:
    server = make_server(tls="off")
    client = new_client(clients, settings)
    with qtbot.waitSignal(client.connectionFailed, timeout=TIMEOUT_MS) as failed:
        client.connect_to("127.0.0.1", server.port, "alice")
    assert failed.args[0] == NO_TLS
    assert "does not offer encryption" in failed.args[1]
    assert server.people_count() == 0


def test_big_messages_and_bursts_cross_tls_intact(
    qtbot: QtBot, make_server: ServerFactory, clients: list[ChatClient], settings: Settings
) -> None:
    """Several TLS records per line, and more than the socket takes at once: the client's
    ciphertext backlog and its reads of many records in one go."""
    server = make_server(rate_per_sec=0)
    alice, bob = new_client(clients, settings), new_client(clients, settings)
    for client, name in ((alice, "alice"), (bob, "bob")):
        with qtbot.waitSignal(client.welcomed, timeout=TIMEOUT_MS):
            client.connect_to("127.0.0.1", server.port, name, fingerprint=server.fingerprint)
    got: list[str] = []
    bob.messageReceived.connect(lambda m: got.append(m.text))
    big = "é" + "x" * 60_000
    alice.say("general", big)
    burst = [f"line {n}" for n in range(300)]
    for text in burst:
        alice.say("general", text)
    qtbot.waitUntil(lambda: len(got) == 301, timeout=TIMEOUT_MS)
    assert got == [big, *burst]


def test_the_server_reads_a_request_sent_with_the_last_handshake_bytes(
    make_server: ServerFactory,
) -> None:
    """A client may send its first request in the same packet as the end of the handshake
    (this client does, and browsers do): the server finds it in its TLS buffer."""
    server = make_server()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context().wrap_bio(incoming, outgoing)
    with socket.create_connection(("127.0.0.1", server.port), timeout=T(5.0)) as sock:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(65_536)
                assert data
                incoming.write(data)
        tls.write(b'{"type":"hello","protocol":1,"name":"eve"}\n')
        sock.sendall(outgoing.read())  # Finished and the hello, in one write
        reply = b""
        while b"\n" not in reply:
            data = sock.recv(65_536)
            assert data, "the server closed without answering"
            incoming.write(data)
            try:
                reply += tls.read(65_536)
            except ssl.SSLWantReadError:
                continue
    assert b'"type":"welcome"' in reply
    assert fingerprint_of_der(tls.getpeercert(binary_form=True) or b"") == server.fingerprint


# -- the app: start screen and flags ---------------------------------------------------------


def test_a_wrong_fingerprint_on_the_start_screen_is_explained_under_it(
    qtbot: QtBot, controller: AppController, make_server: ServerFactory
) -> None:
    server = make_server()
    dialog = controller.show_start()
    qtbot.addWidget(dialog)
    dialog.set_mode("join")
    dialog.name_edit.setText("Ann")
    dialog.address_combo.setEditText(f"127.0.0.1:{server.port}")
    dialog.fingerprint_edit.setText("12")
    dialog.submit()
    assert "64 digits" in dialog.error_text("fingerprint")  # checked before connecting
    assert controller.client is None

    dialog.fingerprint_edit.setText(group_for_reading("cd" * 32))
    dialog.submit()
    qtbot.waitUntil(lambda: bool(dialog.error_text("fingerprint")), timeout=TIMEOUT_MS)
    assert "not the one you gave" in dialog.error_text("fingerprint")
    assert controller.window is None and server.people_count() == 0


def test_hosting_never_asks_about_its_own_certificate(
    qtbot: QtBot, controller: AppController
) -> None:
    assert controller.start(StartChoice("host", "Ann", "127.0.0.1", 0, "Ann's chat"))
    prompter = controller.prompter
    assert prompter is not None
    with qtbot.assertNotEmitted(prompter.asked):
        qtbot.waitUntil(lambda: controller.window is not None, timeout=TIMEOUT_MS)
    server, client = controller.server, controller.client
    assert server is not None and client is not None
    assert client.fingerprint == server.fingerprint
    assert client.welcome is not None and client.welcome.admin is True


def test_settings_keep_pins_per_address(tmp_path: Path) -> None:
    path = str(tmp_path / "pins.ini")
    first = Settings(QSettings(path, QSettings.Format.IniFormat))
    first.pin_fingerprint("MyPC.local", 5151, "ab" * 32)
    first.pin_fingerprint("fe80::1", 5151, "cd" * 32)
    again = Settings(QSettings(path, QSettings.Format.IniFormat))
    assert again.pinned_fingerprint("mypc.local", 5151) == "ab" * 32
    assert again.pinned_fingerprint("FE80::1", 5151) == "cd" * 32
    assert again.pinned_fingerprint("mypc.local", 5152) is None


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--join", "127.0.0.1", "--fingerprint", "xyz"], "--fingerprint: a SHA-256"),
        (["--fingerprint", "ab" * 32], "--fingerprint goes with --join"),
    ],
)
def test_fingerprint_flag_is_checked(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app_module.main(argv) == 2
    assert says in capsys.readouterr().err


def test_resumed_session_keeps_the_same_certificate(
    qtbot: QtBot,
    make_server: ServerFactory,
    clients: list[ChatClient],
    settings: Settings,
    tmp_path: Path,
) -> None:
    """A restart that keeps the data folder keeps the certificate: reconnects say nothing."""
    data = tmp_path / "kept"
    first = make_server(data_dir=data)
    client = new_client(clients, settings)
    with qtbot.waitSignal(client.welcomed, timeout=TIMEOUT_MS):
        client.connect_to("127.0.0.1", first.port, "alice", fingerprint=first.fingerprint)
    port = first.port
    with qtbot.waitSignal(
        client.stateChanged,
        check_params_cb=lambda state, _detail: state == "reconnecting",
        timeout=TIMEOUT_MS,
    ):
        first.close()
    # A copy of the folder would do as well: the certificate lives in its two files.
    assert {CERT_FILE, KEY_FILE} <= {f.name for f in data.iterdir()}
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    with (
        qtbot.assertNotEmitted(client.certificateChanged),
        qtbot.waitSignal(client.welcomed, timeout=TIMEOUT_MS) as welcome,
    ):
        make_server(port=port, data_dir=moved)
    assert isinstance(welcome.args[0], p.Welcome) and welcome.args[0].resumed


def test_giving_up_while_asked_closes_the_question(
    qtbot: QtBot, controller: AppController, make_server: ServerFactory
) -> None:
    server = make_server()
    controller.show_start()
    assert controller.dialog is not None
    qtbot.addWidget(controller.dialog)
    controller.start(StartChoice("join", "Ann", "127.0.0.1", server.port))
    prompter = controller.prompter
    assert prompter is not None
    with qtbot.waitSignal(prompter.asked, timeout=TIMEOUT_MS) as asked:
        pass
    dialog = asked.args[0]
    assert dialog.isVisible() and dialog.parent() is controller.dialog
    with qtbot.assertNotEmitted(prompter.answered):
        controller.dialog.cancelled.emit()  # the start screen's Cancel
    assert not dialog.isVisible()
    assert controller.client is None and server.people_count() == 0
