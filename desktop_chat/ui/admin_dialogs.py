"""Dialogs for the host and admins: removing someone (kick or ban) and a room's settings.

They only collect a decision and turn it into protocol requests (``net.protocol.admin``); the
server checks every one of them, and its answers come back as chat lines.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p

TOPIC_MAX = 300  # the server's limit
PASSWORD_KEEP, PASSWORD_SET, PASSWORD_REMOVE = range(3)
SLOW_KEEP, SLOW_OFF, SLOW_ON = range(3)


def _text(text: str, *, muted: bool = False) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)  # names are never markup
    if muted:
        label.setProperty("role", "muted")
    return label


class RemoveDialog(QDialog):
    """Kick (with an optional reason) or ban someone; :meth:`request` after accept.

    Signals: the standard QDialog signals.
    """

    def __init__(self, name: str, *, ban: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.ban = ban
        self.setObjectName("banDialog" if ban else "kickDialog")
        self.setWindowTitle(f"Ban {name}" if ban else f"Kick {name}")
        self.setMinimumWidth(380)
        layout = QVBoxLayout(self)
        if ban:
            layout.addWidget(
                _text(
                    f"{name} will be removed now and cannot come back with this name until "
                    "you unban it."
                )
            )
        else:
            layout.addWidget(
                _text(f"{name} will be removed from the chat now. They can join again later.")
            )
        self.reason_edit = QLineEdit()
        self.reason_edit.setObjectName("reasonEdit")
        self.reason_edit.setAccessibleName("Reason (optional)")
        self.reason_edit.setPlaceholderText("Reason (optional, they will see it)")
        self.reason_edit.setMaxLength(200)
        self.reason_edit.setVisible(not ban)  # the server says "banned" itself
        layout.addWidget(self.reason_edit)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.confirm_button = self.buttons.addButton(
            "&Ban" if ban else "&Kick", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.confirm_button.setObjectName("confirmButton")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

    def request(self, ref: p.Ref | None = None) -> p.ClientEvent:
        if self.ban:
            return pa.Ban(name=self.name, ref=ref)
        reason = self.reason_edit.text().strip() or None
        return pa.Kick(name=self.name, reason=reason, ref=ref)


class RoomSettingsDialog(QDialog):
    """A room's topic, password and slow mode. The server does not say whether a room has a
    password or slow mode, so those start at "leave as it is".

    Signals: the standard QDialog signals.
    """

    def __init__(self, room: str, topic: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.room = room
        self.old_topic = topic
        self.setObjectName("roomSettingsDialog")
        self.setWindowTitle(f"Room settings: # {room}")
        self.setMinimumWidth(440)
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.topic_edit = QLineEdit(topic)
        self.topic_edit.setObjectName("topicEdit")
        self.topic_edit.setAccessibleName("Topic")
        self.topic_edit.setPlaceholderText("What this room is about (empty: no topic)")
        self.topic_edit.setMaxLength(TOPIC_MAX)
        form.addRow("&Topic:", self.topic_edit)

        self.password_combo = QComboBox()
        self.password_combo.setObjectName("passwordChoice")
        self.password_combo.setAccessibleName("Room password")
        self.password_combo.addItems(
            ["Leave as it is", "Set a new password", "Remove it (open to all)"]
        )
        self.password_edit = QLineEdit()
        self.password_edit.setObjectName("roomPasswordEdit")
        self.password_edit.setAccessibleName("New room password")
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_edit.setPlaceholderText("New password")
        self.password_edit.setEnabled(False)
        form.addRow("&Password:", self.password_combo)
        form.addRow("", self.password_edit)

        self.slow_combo = QComboBox()
        self.slow_combo.setObjectName("slowChoice")
        self.slow_combo.setAccessibleName("Slow mode")
        self.slow_combo.addItems(["Leave as it is", "Off", "On"])
        self.slow_spin = QSpinBox()
        self.slow_spin.setObjectName("slowSeconds")
        self.slow_spin.setAccessibleName("Seconds between messages")
        self.slow_spin.setRange(1, 3600)
        self.slow_spin.setValue(30)
        self.slow_spin.setSuffix(" s between messages")
        self.slow_spin.setEnabled(False)
        slow_row = QHBoxLayout()
        slow_row.addWidget(self.slow_combo)
        slow_row.addWidget(self.slow_spin, 1)
        slow_label = QLabel("&Slow mode:")  # a row of two widgets: the label needs its buddy
        slow_label.setBuddy(self.slow_combo)
        form.addRow(slow_label, slow_row)
        layout.addLayout(form)
        layout.addWidget(
            _text(
                "Admins and people already in the room are not asked for the password; "
                "admins are never slowed down.",
                muted=True,
            )
        )
        self.error = _text("")
        self.error.setObjectName("roomSettingsError")
        self.error.hide()
        layout.addWidget(self.error)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.password_combo.currentIndexChanged.connect(
            lambda i: self.password_edit.setEnabled(i == PASSWORD_SET)
        )
        self.slow_combo.currentIndexChanged.connect(
            lambda i: self.slow_spin.setEnabled(i == SLOW_ON)
        )

    def accept(self) -> None:
        if self.password_combo.currentIndex() == PASSWORD_SET and not self.password_edit.text():
            self.error.setText("Type the new password, or leave the password as it is.")
            self.error.show()
            self.password_edit.setFocus()
            return
        super().accept()

    def requests(self, ref: p.Ref | None = None) -> list[p.ClientEvent]:
        """What to send for the choices made (nothing when nothing changed)."""
        out: list[p.ClientEvent] = []
        topic = self.topic_edit.text().strip()
        if topic != self.old_topic:
            out.append(pa.SetTopic(room=self.room, topic=topic, ref=ref))
        password: str | None = None
        if self.password_combo.currentIndex() == PASSWORD_SET:
            password = self.password_edit.text() or None  # "" would remove it: never by mistake
        elif self.password_combo.currentIndex() == PASSWORD_REMOVE:
            password = ""
        slow: int | None = None
        if self.slow_combo.currentIndex() == SLOW_OFF:
            slow = 0
        elif self.slow_combo.currentIndex() == SLOW_ON:
            slow = self.slow_spin.value()
        if password is not None or slow is not None:
            out.append(pa.RoomSettings(room=self.room, password=password, slow=slow, ref=ref))
        return out
