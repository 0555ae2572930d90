"""Ending a chat, explained: the host is asked before it stops the chat for others, can stop
hosting and keep its window, and people who join hear "The host stopped the chat".

:class:`HostControl` belongs to one :class:`~desktop_chat.ui.main_window.MainWindow`. For the
host, it adds "Stop hosting" to the Chat menu and answers the window's "may I close?" (asking
first when others are in the chat). For everyone, it turns the server's ``closing`` into a
line in the conversation, so a shutdown never looks like a network fault.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMessageBox

from desktop_chat.ui.invite_dialog import InviteDialog

if TYPE_CHECKING:
    from desktop_chat.ui.main_window import MainWindow

HOST_STOPPED_LINE = "The host stopped the chat. Desktop Chat will reconnect when it is back."
YOU_STOPPED = "You stopped hosting. The conversation stays here to read; nobody can join it."


class HostControl(QObject):
    """Stop hosting, quitting while others are here, and the server's ``closing``.

    Signals:
        askOpened(object box): a question is on screen (the QMessageBox), for tests.
        stopped(): this window stopped hosting (the server is closed, the window stays).
    """

    askOpened = Signal(object)
    stopped = Signal()

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.box: QMessageBox | None = None
        self.is_stopped = False
        self.stop_action: QAction | None = None
        window.client.hostClosing.connect(self._on_closing)
        self.invite: InviteDialog | None = None
        if window.server is not None:
            if window.hosting_card is not None:
                window.hosting_card.inviteRequested.connect(self.open_invite)
            invite = QAction("&Invite people…", window)
            invite.setObjectName("invitePeople")
            invite.triggered.connect(self.open_invite)
            window.chat_menu.insertAction(window.quit_action, invite)
            action = QAction("S&top hosting…", window)
            action.setObjectName("stopHosting")
            action.triggered.connect(self.ask_stop)
            window.chat_menu.insertAction(window.quit_action, action)
            self.stop_action = action

    def others(self) -> int:
        """People in the chat besides the host (0 when not hosting)."""
        server = self.window.server
        if server is None or self.is_stopped:
            return 0
        return max(0, int(server.people_count()) - 1)

    def may_close(self) -> bool:
        """True: close now. False: a question is open; the window closes if the host agrees."""
        n = self.others()
        if n == 0:
            return True
        self._ask(
            n,
            "Quit and stop the chat?",
            "Stop the chat and quit",
            self.window.close_now,
        )
        return False

    def ask_stop(self) -> None:
        """The "Stop hosting" menu item: ask when others are here, then stop."""
        n = self.others()
        if n == 0:
            self.stop()
            return
        self._ask(n, "Stop hosting this chat?", "Stop hosting", self.stop)

    def _ask(self, n: int, title: str, yes: str, then: Callable[[], None]) -> None:
        people = "1 other person is" if n == 1 else f"{n} other people are"
        box = QMessageBox(self.window)
        box.setObjectName("stopChatQuestion")
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle(title)
        box.setText(f"{people} in this chat.")
        box.setInformativeText(
            "The chat runs on this computer: stopping it disconnects everyone "
            "(they are told that the host stopped it)."
        )
        stop = box.addButton(yes, QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        stop.clicked.connect(then)
        box.finished.connect(self._forget_box)
        self.box = box
        box.open()
        self.askOpened.emit(box)

    def _forget_box(self) -> None:
        if self.box is not None:
            self.box.deleteLater()
        self.box = None

    def stop(self) -> None:
        """Stop the server and the connection to it; the window stays, to read."""
        w = self.window
        if self.is_stopped or w.server is None:
            return
        self.is_stopped = True
        w.client.close()
        w.server.close()
        if self.stop_action is not None:
            self.stop_action.setEnabled(False)
        if w.hosting_card is not None:
            w.hosting_card.hide()
        if self.invite is not None:
            self.invite.close()
        w.input.setEnabled(False)
        w.show_stopped(YOU_STOPPED)
        self.stopped.emit()

    def open_invite(self) -> InviteDialog | None:
        """The QR code and invitation link of the chat this window hosts."""
        server = self.window.server
        if server is None or server.fingerprint is None or self.is_stopped:
            return None
        if self.invite is None:
            self.invite = InviteDialog(
                self.window.session.server_title or server.title,
                server.join_addresses(),
                server.port,
                server.fingerprint,
                self.window,
            )
        self.invite.show()
        self.invite.raise_()
        return self.invite

    def _on_closing(self, _reason: str) -> None:
        w = self.window
        if w.current_key:
            w.session.add_notice(w.current_key, HOST_STOPPED_LINE)
