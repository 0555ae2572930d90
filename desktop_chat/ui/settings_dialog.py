"""The Settings dialog: name, theme, text size, each notification channel, and (connected)
registering the name on this chat."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from desktop_chat.net.protocol.names import InvalidName, normalize_name
from desktop_chat.ui.notifications import NotifyPrefs
from desktop_chat.ui.theme import THEME_CHOICES


@dataclass
class SettingsValues:
    name: str
    theme: str
    font_size: int
    show_joins: bool
    notify: NotifyPrefs


class SettingsDialog(QDialog):
    """Edits a :class:`SettingsValues`; :meth:`values` reads the result after ``accept``.
    ``account_on`` (the connected chat's title) adds the "register this name" buttons.

    Signals:
        accountRequested(str mode): "register" or "change" (the password) was pressed.
        themePreviewed(str choice): another theme was picked: show it now (Cancel goes back
            to the saved one).
        And the standard QDialog signals (accepted, rejected, finished).
    """

    accountRequested = Signal(str)
    themePreviewed = Signal(str)

    def __init__(
        self,
        values: SettingsValues,
        parent: QWidget | None = None,
        *,
        account_on: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Settings")
        self.setMinimumWidth(420)
        layout = QVBoxLayout(self)

        you = QGroupBox("You")
        form = QFormLayout(you)
        self.name_edit = QLineEdit(values.name)
        self.name_edit.setObjectName("nameEdit")
        self.name_edit.setAccessibleName("Your name")
        self.name_edit.setMaxLength(32)
        form.addRow("Name:", self.name_edit)
        note = QLabel("Used the next time you connect.")
        note.setProperty("role", "muted")
        form.addRow("", note)
        self.name_error = QLabel()
        self.name_error.setProperty("role", "muted")
        self.name_error.hide()
        form.addRow("", self.name_error)
        self.register_button: QPushButton | None = None
        self.change_password_button: QPushButton | None = None
        if account_on is not None:
            where = f"“{account_on}”" if account_on else "this chat"
            note = QLabel(f"On {where}, nobody else can use a registered name.")
            note.setTextFormat(Qt.TextFormat.PlainText)  # the server's title: never markup
            note.setProperty("role", "muted")
            note.setWordWrap(True)
            form.addRow("", note)
            row = QHBoxLayout()
            self.register_button = QPushButton("&Register this name…")
            self.register_button.setObjectName("registerButton")
            self.register_button.clicked.connect(lambda: self.accountRequested.emit("register"))
            self.change_password_button = QPushButton("Change &password…")
            self.change_password_button.setObjectName("changePasswordButton")
            self.change_password_button.clicked.connect(
                lambda: self.accountRequested.emit("change")
            )
            row.addWidget(self.register_button)
            row.addWidget(self.change_password_button)
            row.addStretch(1)
            form.addRow("Account:", row)
        layout.addWidget(you)

        look = QGroupBox("Appearance")
        form = QFormLayout(look)
        self.theme_combo = QComboBox()
        self.theme_combo.setObjectName("themeCombo")
        self.theme_combo.setAccessibleName("Theme")
        labels = {"system": "Follow the system", "light": "Light", "dark": "Dark"}
        for choice in THEME_CHOICES:
            self.theme_combo.addItem(labels[choice], choice)
        self.theme_combo.setCurrentIndex(max(0, self.theme_combo.findData(values.theme)))
        form.addRow("Theme:", self.theme_combo)
        self.theme_combo.currentIndexChanged.connect(
            lambda: self.themePreviewed.emit(str(self.theme_combo.currentData()))
        )
        self.font_spin = QSpinBox()
        self.font_spin.setAccessibleName("Text size")
        self.font_spin.setRange(0, 24)
        self.font_spin.setSpecialValueText("System default")
        self.font_spin.setSuffix(" pt")
        self.font_spin.setValue(values.font_size)
        form.addRow("Text size:", self.font_spin)
        self.joins_check = QCheckBox("Show when people join and leave")
        self.joins_check.setChecked(values.show_joins)
        form.addRow("", self.joins_check)
        layout.addWidget(look)

        alerts = QGroupBox("Notifications")
        box = QVBoxLayout(alerts)
        n = values.notify
        self.badge_check = QCheckBox("Count unread messages in the room list")
        self.badge_check.setObjectName("notifyBadge")
        self.badge_check.setChecked(n.badge)
        self.alert_check = QCheckBox("Flash the window in the taskbar")
        self.alert_check.setObjectName("notifyAlert")
        self.alert_check.setChecked(n.alert)
        self.tray_check = QCheckBox("Show desktop notifications")
        self.tray_check.setObjectName("notifyTray")
        self.tray_check.setChecked(n.tray)
        if not QSystemTrayIcon.isSystemTrayAvailable():
            self.tray_check.setToolTip("This desktop has no notification area")
        self.sound_check = QCheckBox("Play a sound")
        self.sound_check.setObjectName("notifySound")
        self.sound_check.setChecked(n.sound)
        self.every_check = QCheckBox("For every message (off: only mentions and direct messages)")
        self.every_check.setObjectName("notifyEvery")
        self.every_check.setChecked(n.every_message)
        for check in (
            self.badge_check,
            self.alert_check,
            self.tray_check,
            self.sound_check,
            self.every_check,
        ):
            check.setAccessibleName(check.text())
            box.addWidget(check)
        layout.addWidget(alerts)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.name_edit.textChanged.connect(self._check_name)

    def _check_name(self) -> bool:
        text = self.name_edit.text()
        ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        try:
            normalize_name(text)
        except InvalidName as exc:
            self.name_error.setText(str(exc).capitalize())
            self.name_error.show()
            ok_button.setEnabled(False)
            return False
        self.name_error.hide()
        ok_button.setEnabled(True)
        return True

    def accept(self) -> None:
        if self._check_name():
            super().accept()

    def values(self) -> SettingsValues:
        return SettingsValues(
            name=self.name_edit.text(),
            theme=str(self.theme_combo.currentData()),
            font_size=self.font_spin.value(),
            show_joins=self.joins_check.isChecked(),
            notify=NotifyPrefs(
                badge=self.badge_check.isChecked(),
                alert=self.alert_check.isChecked(),
                tray=self.tray_check.isChecked(),
                sound=self.sound_check.isChecked(),
                every_message=self.every_check.isChecked(),
            ),
        )
