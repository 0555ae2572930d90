"""File cards that protect their reader, against a real TLS server: a program gets no Open
button (Save only, and the card says why), a file whose bytes are a program is saved but never
opened whatever its name, and invisible format characters in a name show as U+FFFD."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop_chat.net.protocol.events import ChatMessage, FileInfo
from desktop_chat.net.server.server import Server
from desktop_chat.net.server.sniff_media import safe_label
from desktop_chat.ui import file_card
from desktop_chat.ui.chat_model import ChatModel
from desktop_chat.ui.chat_view import ChatView
from desktop_chat.ui.main_window import MainWindow
from tests.gui.conftest import TIMEOUT_MS
from tests.gui.file_card_helpers import card_of, click, share
from tests.gui.test_file_cards import _Opened, _saved, _wait_card, bob, opened

__all__ = ["bob", "opened"]  # fixtures, shared with test_file_cards


def test_a_program_has_no_open_button_and_says_to_check_it(
    qtbot: QtBot, server: Server, connect: Any, bob: MainWindow, tmp_path: Path, opened: _Opened
) -> None:
    carol = connect("carol")
    names = ["setup.exe", "install.sh", "launcher.desktop", "game.JAR", "update.ps1", "x.lnk"]
    source = tmp_path / "x"
    source.write_bytes(b"MZ" + os.urandom(5000))
    for name in [*names, "notes.pdf"]:
        share(server, carol.welcome_session, source, name, room="general")
    fm = bob.chat_view.delegate.fonts(bob.chat_view.font()).small_fm
    for name in names:
        entry = _wait_card(qtbot, bob, name)
        index, card = card_of(bob, entry)
        assert not card.save.isEmpty() and card.open.isEmpty(), name
        assert file_card.actions(entry.file, False) == (file_card.SAVE,)
        meta = file_card.meta_text(entry.file, "carol")
        assert meta.startswith("program — save it and check before running"), meta
        assert fm.horizontalAdvance(meta) > 0
        text = index.data(Qt.ItemDataRole.AccessibleTextRole)
        assert "check before running" in text and "Open" not in text
    # Where Open would be on another card, the program's card has nothing; its name is there.
    pdf = _wait_card(qtbot, bob, "notes.pdf")
    _index, other = card_of(bob, pdf)
    assert not other.open.isEmpty()
    exe = _wait_card(qtbot, bob, "setup.exe")
    index, card = card_of(bob, exe)
    assert card.save.right() == other.open.right()  # Save takes the right-hand place
    # The keyboard: Right stays on Save, Enter saves; nothing is ever opened.
    view = bob.chat_view
    view.setFocus()
    view.setCurrentIndex(index)
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert view.delegate.focused_action == file_card.SAVE
    qtbot.keyClick(view, Qt.Key.Key_Return)
    (saved,) = _saved(qtbot, bob, 1)
    assert saved.name == "setup.exe" and saved.read_bytes() == source.read_bytes()
    qtbot.waitUntil(lambda: exe.file_note == "saved as setup.exe", timeout=TIMEOUT_MS)
    meta = file_card.meta_text(exe.file, "carol", exe.file_note)
    assert meta == "program — check before running · saved as setup.exe · 4.9 KB · from carol"
    view.fileAction.emit(exe, file_card.OPEN)  # even if asked to (a stale key, a bug)
    assert len(bob.files.manager.transfers) == 1 and not opened.urls
    _grab(bob, tmp_path)


def test_a_file_whose_bytes_are_a_program_is_saved_but_not_opened(
    qtbot: QtBot, server: Server, connect: Any, bob: MainWindow, tmp_path: Path, opened: _Opened
) -> None:
    carol = connect("carol")
    bodies = {
        "holiday.pdf": b"\x7fELF\x02\x01\x01" + os.urandom(3000),  # Linux
        "invoice.doc": b"MZ\x90\x00" + os.urandom(3000),  # Windows
        "readme.txt": b"#!/bin/sh\nrm -rf ~\n",  # a script
        "plan.odt": b"\xcf\xfa\xed\xfe" + os.urandom(3000),  # macOS
        "letter.txt": b"Dear Bob,\n#! is how a script starts.\n",  # a real letter
    }
    for name, body in bodies.items():
        (tmp_path / name).write_bytes(body)
        share(server, carol.welcome_session, tmp_path / name, room="general")
    for name in bodies:
        entry = _wait_card(qtbot, bob, name)
        _index, card = card_of(bob, entry)
        assert not card.open.isEmpty(), name  # the name looks harmless: Open is offered
        click(qtbot, bob, card.open.center())
        if name == "letter.txt":
            qtbot.waitUntil(lambda: len(opened.urls) == 1, timeout=TIMEOUT_MS)
            continue
        qtbot.waitUntil(lambda e=entry: "not opened" in e.file_note, timeout=TIMEOUT_MS)
        assert entry.file_note == f"saved as {name} · a program: not opened"
    saved = _saved(qtbot, bob, len(bodies))
    assert {p.name for p in saved} == set(bodies)
    assert [Path(u.toLocalFile()).name for u in opened.urls] == ["letter.txt"]
    # Open again (saved already this session): still not opened.
    entry = _wait_card(qtbot, bob, "readme.txt")
    _index, card = card_of(bob, entry)
    click(qtbot, bob, card.open.center())
    assert len(opened.urls) == 1 and "not opened" in entry.file_note


def test_invisible_format_characters_in_names_show_visibly(qtbot: QtBot) -> None:
    """Our server drops them from names (safe_label); a card shows them as U+FFFD anyway: a
    name from an older store or another server must not hide characters either."""
    hidden = {
        "in\u200bvoice.pdf": "in\ufffdvoice.pdf",  # zero-width space
        "pay\u2060slip.pdf": "pay\ufffdslip.pdf",  # word joiner
        "\ufeffreport.pdf": "\ufffdreport.pdf",  # byte order mark
        "soft\u00adhyphen.txt": "soft\ufffdhyphen.txt",
        "tag\U000e0041.txt": "tag\ufffd.txt",  # a tag character
        "ex\u200de.txt": "ex\ufffde.txt",  # a joiner between ASCII letters hides a split
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.txt": None,  # Persian: kept
        "family \U0001f468\u200d\U0001f469\u200d\U0001f467.png": None,  # an emoji sequence
    }
    for name, shown in hidden.items():
        assert file_card.display_name(name) == (shown or name), name
        assert safe_label(name).count("\ufffd") == 0
    view = ChatView()
    qtbot.addWidget(view)
    view.resize(600, 500)
    model = ChatModel("bob")
    view.set_chat_model(model)
    for i, name in enumerate(hidden, 1):
        info = FileInfo(id=f"f{i}", name=name, size=100, sha256="0" * 64)
        model.add_message(ChatMessage(id=i, from_="carol", ts=1_700_000_000_000 + i,
                                      room="general", text="", file=info))  # fmt: skip
    view.show()
    qtbot.waitExposed(view)
    fonts = view.delegate.fonts(view.font())
    entry = model.entry(0)
    g = view.delegate.card_geometry(entry, view.visualRect(model.index(0)), fonts)
    assert file_card.shown_name(entry.file, fonts.name_fm, g.name.width()) == "in\ufffdvoice.pdf"
    assert not view.grab().isNull()


def _grab(window: MainWindow, tmp_path: Path) -> None:
    folder = Path(os.environ.get("DESKTOP_CHAT_CARD_SCREENSHOTS") or tmp_path)
    assert window.grab().save(str(folder / "files-card-program.png"))
