"""Registering one's name on the current chat with a password, or changing that password.

The dialog sends the request and stays open until the server answers it (matched by ``ref``):
``ok`` closes it, an error is shown in it, in plain words. After either success the client
uses the new password when it reconnects, since a registered name needs it at every login.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p

AccountMode = Literal["register", "change"]
PASSWORD_MIN, PASSWORD_MAX = 8, 1024  # the server's rule
_refs = itertools.count(1)

ERROR_WORDS = {
    p.NAME_TAKEN: "This name is registered already. If it is yours, use “Change password”.",
    p.AUTH_FAILED: "The current password is not right.",
    pa.FORBIDDEN: "The chat does not allow that.",
}


class AccountDialog(QDialog):
    """Register the name in use (``"register"``) or change its password (``"change"``).

    ``client`` is a ChatClient (``send_request``, ``use_password``, ``requestDone``,
    ``errorReceived``).

    Signals:
        succeeded(str message): the server agreed; the message says what happened, for people.
    """

    succeeded = Signal(str)

    def __init__(
        self,
        client: Any,
        mode: AccountMode,
        name: str,
        server: str,
        parent: QWidget | None = None,
        *,
        not_registered: bool = False,
    ) -> None:
        """``not_registered``: "change" was asked for a name that has no account here, so
        this is the register dialog, saying so."""
        super().__init__(parent)
        self.client = client
        self.mode = mode
        self.name = name
        self.ref = f"account-{next(_refs)}"
        self._new_password = ""
        self.setObjectName("accountDialog")
        where = f"“{server}”" if server else "this chat"
        self.setWindowTitle("Register your name" if mode == "register" else "Change password")
        self.setMinimumWidth(420)
        layout = QVBoxLayout(self)
        if not_registered:
            intro = (
                f"“{name}” is not registered on {where} yet, so it has no password to "
                "change. Register it with a password: nobody else can use this name there "
                "any more. Each time you join, type the password in the Password field."
            )
        elif mode == "register":
            intro = (
                f"Register “{name}” on {where} with a password: nobody else can use this name "
                "there any more. Each time you join, type the password in the Password field."
            )
        else:
            intro = f"Change the password of “{name}” on {where}."
        text = QLabel(intro)
        text.setWordWrap(True)
        text.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(text)
        form = QFormLayout()
        self.old_edit: QLineEdit | None = None
        if mode == "change":
            self.old_edit = self._password_edit("oldPasswordEdit", "Current password")
            form.addRow("&Current password:", self.old_edit)
        self.new_edit = self._password_edit("newPasswordEdit", "New password")
        self.new_edit.setPlaceholderText(f"At least {PASSWORD_MIN} characters")
        self.repeat_edit = self._password_edit("repeatPasswordEdit", "The password again")
        form.addRow("&Password:" if mode == "register" else "&New password:", self.new_edit)
        form.addRow("&Again:", self.repeat_edit)
        layout.addLayout(form)
        self.error = QLabel()
        self.error.setObjectName("accountError")
        self.error.setWordWrap(True)
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.error.setProperty("role", "error")
        self.error.hide()
        layout.addWidget(self.error)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.submit_button = self.buttons.addButton(
            "&Register" if mode == "register" else "&Change password",
            QDialogButtonBox.ButtonRole.AcceptRole,
        )
        self.submit_button.setObjectName("accountSubmit")
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        client.requestDone.connect(self._on_ok)
        client.errorReceived.connect(self._on_error)
        self._listening = True

    def _password_edit(self, object_name: str, accessible: str) -> QLineEdit:
        edit = QLineEdit()
        edit.setObjectName(object_name)
        edit.setAccessibleName(accessible)
        edit.setEchoMode(QLineEdit.EchoMode.Password)
        edit.setMaxLength(PASSWORD_MAX)
        return edit

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.show()
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        self.submit_button.setEnabled(not busy)
        for edit in (self.old_edit, self.new_edit, self.repeat_edit):
            if edit is not None:
                edit.setEnabled(not busy)

    @Slot()
    def submit(self) -> None:
        new = self.new_edit.text()
        if len(new) < PASSWORD_MIN:
            self.show_error(f"Choose a password of at least {PASSWORD_MIN} characters.")
            self.new_edit.setFocus()
            return
        if new != self.repeat_edit.text():
            self.show_error("The two passwords are not the same.")
            self.repeat_edit.setFocus()
            return
        request: p.ClientEvent
        if self.mode == "register":
            request = pa.Register(password=new, ref=self.ref)
        else:
            old = self.old_edit.text() if self.old_edit is not None else ""
            request = pa.SetPassword(old=old, new=new, ref=self.ref)
        self._new_password = new
        self.error.hide()
        self._set_busy(True)
        self.client.send_request(request)

    @Slot(object)
    def _on_ok(self, ok: pa.Ok) -> None:
        if ok.ref != self.ref:
            return
        self.client.use_password(self._new_password)
        self._disconnect()
        if self.mode == "register":
            self.succeeded.emit(
                f"“{self.name}” is registered: joining as {self.name} needs its password."
            )
        else:
            self.succeeded.emit("Your password is changed.")
        self.accept()

    @Slot(object)
    def _on_error(self, error: p.ErrorReply) -> None:
        if error.ref != self.ref:
            return
        words = ERROR_WORDS.get(error.code)
        self.show_error(words or error.message[:1].upper() + error.message[1:] + ".")

    def _disconnect(self) -> None:
        if self._listening:
            self._listening = False
            self.client.requestDone.disconnect(self._on_ok)
            self.client.errorReceived.disconnect(self._on_error)

    def reject(self) -> None:
        self._disconnect()
        super().reject()
