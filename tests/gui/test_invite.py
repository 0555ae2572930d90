"""Inviting people: the hosting window's QR code and invitation link, and joining by
invitation (no trust question: the fingerprint came from the host)."""

from __future__ import annotations

import pytest
import segno
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication
from pytestqt.qtbot import QtBot

from desktop_chat.app import AppController
from desktop_chat.net.protocol.invite import (
    comparison_code,
    invite_link,
    parse_invite,
    web_url,
)
from desktop_chat.ui.invite_dialog import qr_pixmap
from desktop_chat.ui.start_choice import StartChoice
from tests.gui.conftest import TIMEOUT_MS

FP = "0123456789abcdef" * 4


def test_invitation_links_round_trip_and_bad_ones_say_why() -> None:
    link = invite_link("192.168.1.5", 5151, FP)
    assert link == f"desktop-chat://192.168.1.5:5151/?fp={FP}"
    assert parse_invite(link).port == 5151
    assert parse_invite(web_url("fe80::1", 6000, FP)).host == "fe80::1"
    assert parse_invite(f"https://host:7000/#fp={FP.upper()}").fingerprint == FP
    for bad, why in (
        ("ftp://host:5151/?fp=" + FP, "not a Desktop Chat invitation"),
        ("desktop-chat://host/?fp=" + FP, "no port"),
        ("desktop-chat://host:5151/", "no fingerprint"),
        ("desktop-chat://host:5151/?fp=12", "damaged"),
        ("desktop-chat://host:99999/?fp=" + FP, "damaged"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_invite(bad)
    code = comparison_code(FP)
    assert [len(g) for g in code.split()] == [4, 4, 4, 4] and code.replace(" ", "").isdigit()
    assert comparison_code("f" + FP[1:]) != code


def test_the_qr_code_is_the_address_module_for_module(qtbot: QtBot) -> None:
    url = web_url("192.168.1.5", 5151, FP)
    image = qr_pixmap(url).toImage()
    matrix = segno.make(url, error="m").matrix
    count = len(matrix) + 8
    module = image.width() // count
    assert image.width() == image.height() == module * count and module >= 2
    for y, row in enumerate(matrix):
        for x, on in enumerate(row):
            centre = image.pixelColor(
                (x + 4) * module + module // 2, (y + 4) * module + module // 2
            )
            assert (centre == QColor("#000000")) == bool(on)
    assert image.pixelColor(1, 1) == QColor("#ffffff")  # the quiet zone


def test_the_host_invites_and_a_desktop_joins_by_invitation_without_a_question(
    qtbot: QtBot, controller: AppController
) -> None:
    host_ctl = controller
    assert host_ctl.start(StartChoice("host", "Hal", "127.0.0.1", 0, "Hal's chat"))
    qtbot.waitUntil(lambda: host_ctl.window is not None, timeout=TIMEOUT_MS)
    window = host_ctl.window
    assert window is not None and host_ctl.server is not None
    hosted = host_ctl.server
    assert hosted.fingerprint is not None
    card = window.hosting_card
    assert card is not None and card.code_label is not None and card.invite_button is not None
    assert comparison_code(hosted.fingerprint) in card.code_label.text()

    qtbot.mouseClick(card.invite_button, Qt.MouseButton.LeftButton)
    invite = window.host_control.invite
    assert invite is not None and invite.isVisible()
    assert invite.url_edit.text().endswith(f"/#fp={hosted.fingerprint}")
    assert invite.code_label.text() == comparison_code(hosted.fingerprint)
    with qtbot.waitSignal(invite.copied):
        qtbot.mouseClick(invite.copy_link, Qt.MouseButton.LeftButton)
    link = QGuiApplication.clipboard().text()
    parsed = parse_invite(link)
    assert (parsed.port, parsed.fingerprint) == (hosted.port, hosted.fingerprint)
    assert not invite.qr_label.pixmap().isNull()

    # Another app pastes the invitation in its Join box (here pointed at loopback).
    guest = AppController(controller.settings, timing=host_ctl.timing)
    try:
        dialog = guest.show_start()
        qtbot.addWidget(dialog)
        dialog.set_mode("join")
        dialog.name_edit.setText("Gus")
        dialog.address_combo.setEditText(invite_link("127.0.0.1", hosted.port, hosted.fingerprint))
        dialog.submit()
        prompter = guest.prompter
        assert prompter is not None
        with qtbot.assertNotEmitted(prompter.asked):
            qtbot.waitUntil(lambda: guest.window is not None, timeout=TIMEOUT_MS)
        assert controller.settings.pinned_fingerprint("127.0.0.1", hosted.port) == (
            hosted.fingerprint
        )
        # A damaged invitation is explained under the address.
        dialog2 = guest.show_start()
        dialog2.set_mode("join")
        dialog2.address_combo.setEditText("desktop-chat://127.0.0.1:5151/?fp=123")
        dialog2.submit()
        assert "damaged" in dialog2.error_text("address")
    finally:
        guest.shutdown()
        if guest.dialog is not None:
            guest.dialog.deleteLater()


def test_join_flag_takes_an_invitation_and_explains_a_damaged_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from desktop_chat.app import main

    assert main(["--join", "desktop-chat://127.0.0.1:5151/?fp=1234"]) == 2
    assert "the fingerprint in this invitation is damaged" in capsys.readouterr().err
    other = "ab" * 32
    assert main(["--join", invite_link("127.0.0.1", 5151, FP), "--fingerprint", other]) == 2
    assert "not the invitation's" in capsys.readouterr().err
