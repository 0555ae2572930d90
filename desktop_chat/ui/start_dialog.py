"""The first screen: host a chat on this computer, or join one on the network.

The dialog only collects and checks what the person typed. Whoever shows it (``app.py``)
listens to ``submitted``, tries to start the server or connect, and then either closes the
dialog or puts the reason under the field it concerns (:meth:`StartDialog.show_error`), so the
person can fix it and try again without losing what they typed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..net.names import InvalidName, normalize_name
from ..net.server import DEFAULT_PORT
from ..settings import Settings

Mode = Literal["host", "join"]
Field = Literal["name", "port", "address", "general"]

# Letters, digits, "-" and "_" in dot-separated labels of at most 63 (253 in all).
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_][A-Za-z0-9_-]{0,62}(?:\.[A-Za-z0-9_-]{1,63})*\.?$"
)


@dataclass(frozen=True, slots=True)
class StartChoice:
    """What the person chose: host (with ``port`` and ``title``) or join ``host:port``."""

    mode: Mode
    name: str
    host: str
    port: int
    title: str = ""

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address; ValueError says why."""
    text = text.strip()
    if not text:
        raise ValueError("Type the address of the computer that hosts the chat.")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("An IPv6 address in brackets needs its closing ].")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("Write the port after the address, like [fe80::1]:5151.")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    port = default_port
    if port_text or text.endswith(":"):
        if not port_text.isascii() or not port_text.isdigit():
            raise ValueError(f"“{port_text}” is not a port number (1–65535).")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError("A port number is between 1 and 65535.")
    if not host:
        raise ValueError("The address is missing before the port.")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if ":" in host or not _HOSTNAME.match(host):
            raise ValueError(
                f"“{host}” is not an address. Use one like 192.168.1.5:5151 or mypc.local."
            ) from None
    return host, port


class StartDialog(QDialog):
    """Host a chat or join one.

    Signals:
        submitted(object): a checked :class:`StartChoice`; the dialog then shows itself busy
            until the receiver calls :meth:`show_error` (or closes the dialog).
    """

    submitted = Signal(object)

    def __init__(
        self,
        settings: Settings,
        parent: QWidget | None = None,
        *,
        default_port: int = DEFAULT_PORT,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.setObjectName("startDialog")
        self.setWindowTitle("Desktop Chat")
        self._choice: StartChoice | None = None
        self._busy = False
        self._errors: dict[Field, QLabel] = {}
        self._build(default_port)
        self._load()
        self._set_mode(settings.last_mode)

    # -- building ----------------------------------------------------------------------

    def _build(self, default_port: int) -> None:
        self.setStyleSheet(
            """
            QLabel#startTitle { font-size: 20pt; font-weight: 700; }
            QLabel[role="hint"] { color: palette(placeholder-text); }
            QLabel[role="error"] { color: palette(bright-text); }
            QPushButton[role="mode"] {
                text-align: left; padding: 10px 14px; border-radius: 8px;
                border: 1px solid palette(mid); background: palette(base);
            }
            QPushButton[role="mode"]:checked {
                border: 2px solid palette(highlight); padding: 9px 13px;
            }
            QPushButton#startButton { padding: 6px 18px; font-weight: 600; }
            """
        )
        outer = QVBoxLayout(self)
        outer.setContentsMargins(28, 24, 28, 20)
        outer.setSpacing(14)

        title = QLabel("Desktop Chat")
        title.setObjectName("startTitle")
        hint = self._hint("Chat with the people on your network.")
        outer.addWidget(title)
        outer.addWidget(hint)

        modes = QHBoxLayout()
        modes.setSpacing(12)
        self.host_button = self._mode_button(
            "hostButton", "Host a chat", "Start a chat on this computer", "H"
        )
        self.join_button = self._mode_button(
            "joinButton", "Join a chat", "Connect to a chat on the network", "J"
        )
        group = QButtonGroup(self)
        group.setExclusive(True)
        for button in (self.host_button, self.join_button):
            group.addButton(button)
            modes.addWidget(button)
        self.host_button.clicked.connect(lambda: self._set_mode("host"))
        self.join_button.clicked.connect(lambda: self._set_mode("join"))
        outer.addLayout(modes)

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("nameEdit")
        self.name_edit.setAccessibleName("Your name")
        self.name_edit.setPlaceholderText("How others will see you")
        self.name_edit.setMaxLength(64)  # longer than allowed, so the rule can be explained
        form.addRow(self._label("Your &name:", self.name_edit), self.name_edit)
        form.addRow("", self._error_label("name"))
        outer.addLayout(form)

        self.pages = QStackedWidget()
        self.pages.setObjectName("modePages")
        self.pages.addWidget(self._host_page(default_port))
        self.pages.addWidget(self._join_page())
        outer.addWidget(self.pages)

        outer.addWidget(self._error_label("general"))
        self.status_label = self._hint("")
        self.status_label.setObjectName("statusLabel")
        self.status_label.hide()
        outer.addWidget(self.status_label)
        outer.addStretch(1)

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.quit_button = QPushButton("&Quit")
        self.quit_button.setObjectName("quitButton")
        self.quit_button.setAccessibleName("Quit Desktop Chat")
        self.quit_button.setAutoDefault(False)
        self.quit_button.clicked.connect(self.reject)
        self.start_button = QPushButton()
        self.start_button.setObjectName("startButton")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.submit)
        buttons.addWidget(self.quit_button)
        buttons.addWidget(self.start_button)
        outer.addLayout(buttons)
        quit_shortcut = QShortcut(QKeySequence("Ctrl+Q"), self)
        quit_shortcut.activated.connect(self.reject)

        self.name_edit.textEdited.connect(lambda: self._clear_error("name"))
        self.port_spin.valueChanged.connect(lambda: self._clear_error("port"))
        self.address_combo.editTextChanged.connect(lambda: self._clear_error("address"))
        self.setMinimumWidth(480)

    def _host_page(self, default_port: int) -> QWidget:
        page = QWidget()
        page.setObjectName("hostPage")
        form = QFormLayout(page)
        form.setContentsMargins(0, 0, 0, 0)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.port_spin = QSpinBox()
        self.port_spin.setObjectName("portSpin")
        self.port_spin.setAccessibleName("Port")
        self.port_spin.setRange(1, 65535)
        self.port_spin.setValue(default_port)
        self.port_spin.setGroupSeparatorShown(False)
        self.port_spin.setMinimumWidth(100)
        self.port_spin.setToolTip("The TCP port others connect to. 5151 unless it is taken.")
        form.addRow(self._label("&Port:", self.port_spin), self.port_spin)
        form.addRow("", self._error_label("port"))
        self.title_edit = QLineEdit()
        self.title_edit.setObjectName("titleEdit")
        self.title_edit.setAccessibleName("Chat title (optional)")
        self.title_edit.setPlaceholderText("Optional, e.g. Office chat")
        self.title_edit.setMaxLength(80)
        form.addRow(self._label("Chat &title:", self.title_edit), self.title_edit)
        return page

    def _join_page(self) -> QWidget:
        page = QWidget()
        page.setObjectName("joinPage")
        form = QFormLayout(page)
        form.setContentsMargins(0, 0, 0, 0)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.address_combo = QComboBox()
        self.address_combo.setObjectName("addressCombo")
        self.address_combo.setAccessibleName("Server address")
        self.address_combo.setEditable(True)
        self.address_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        edit = self.address_combo.lineEdit()
        assert edit is not None  # an editable combo box always has one
        edit.setObjectName("addressEdit")
        edit.setAccessibleName("Server address")
        edit.setPlaceholderText(f"e.g. 192.168.1.5:{DEFAULT_PORT} or mypc.local")
        form.addRow(self._label("&Address:", self.address_combo), self.address_combo)
        form.addRow("", self._error_label("address"))
        return page

    def _mode_button(self, object_name: str, title: str, detail: str, key: str) -> QPushButton:
        button = QPushButton(f"{title}\n{detail}")
        button.setObjectName(object_name)
        button.setProperty("role", "mode")
        button.setAccessibleName(title)
        button.setAccessibleDescription(detail)
        button.setCheckable(True)
        button.setAutoDefault(False)
        button.setMinimumHeight(60)
        button.setShortcut(QKeySequence(f"Alt+{key}"))
        button.setToolTip(f"{detail} (Alt+{key})")
        return button

    def _label(self, text: str, buddy: QWidget) -> QLabel:
        label = QLabel(text)
        label.setBuddy(buddy)
        return label

    def _hint(self, text: str) -> QLabel:
        label = QLabel(text)
        label.setProperty("role", "hint")
        label.setWordWrap(True)
        return label

    def _error_label(self, field: Field) -> QLabel:
        label = QLabel()
        label.setObjectName(f"{field}Error")
        label.setProperty("role", "error")
        label.setWordWrap(True)
        label.setAccessibleName(f"{field} error")
        label.hide()
        self._errors[field] = label
        return label

    def _load(self) -> None:
        s = self.settings
        self.name_edit.setText(s.last_name)
        if s.host_port is not None:
            self.port_spin.setValue(s.host_port)
        self.title_edit.setText(s.host_title)
        self.address_combo.addItems(s.recent_servers)
        self.address_combo.setCurrentIndex(0 if s.recent_servers else -1)

    # -- state -------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return "host" if self.host_button.isChecked() else "join"

    def set_mode(self, mode: Mode) -> None:
        self._set_mode(mode)

    def _set_mode(self, mode: str) -> None:
        host = mode == "host"
        self.host_button.setChecked(host)
        self.join_button.setChecked(not host)
        self.pages.setCurrentIndex(0 if host else 1)
        self.start_button.setText("&Start hosting" if host else "&Join chat")
        self.start_button.setAccessibleName("Start hosting the chat" if host else "Join the chat")
        self._clear_error("general")
        if not self.name_edit.text():
            self.name_edit.setFocus()
        elif host:
            self.port_spin.setFocus()
        else:
            self.address_combo.setFocus()

    def set_address(self, text: str) -> None:
        self.address_combo.setEditText(text)

    def set_name(self, text: str) -> None:
        self.name_edit.setText(text)

    def choice(self) -> StartChoice | None:
        """The last choice submitted, or None."""
        return self._choice

    def error_text(self, field: Field) -> str:
        """The message shown under ``field`` ("" when none)."""
        label = self._errors[field]
        return label.text() if not label.isHidden() else ""

    def show_error(self, field: Field, message: str) -> None:
        """Put ``message`` under ``field`` and let the person try again."""
        self.set_busy(False)
        label = self._errors[field]
        label.setText(message)
        label.show()
        if field == "port":
            self._set_mode("host")
        elif field == "address":
            self._set_mode("join")
        target = {
            "name": self.name_edit,
            "port": self.port_spin,
            "address": self.address_combo,
            "general": self.start_button,
        }[field]
        target.setFocus()
        if isinstance(target, QLineEdit | QSpinBox):
            target.selectAll()

    def _clear_error(self, field: Field) -> None:
        label = self._errors[field]
        label.clear()
        label.hide()

    def set_busy(self, busy: bool, status: str = "") -> None:
        """While busy, the fields are locked and ``status`` says what is happening."""
        self._busy = busy
        for widget in (
            self.name_edit,
            self.host_button,
            self.join_button,
            self.pages,
            self.start_button,
        ):
            widget.setEnabled(not busy)
        self.status_label.setText(status)
        self.status_label.setVisible(busy and bool(status))

    def is_busy(self) -> bool:
        return self._busy

    # -- submitting --------------------------------------------------------------------

    @Slot()
    def submit(self) -> None:
        """Check every field; on success remember the choice and emit ``submitted``."""
        if self._busy:
            return
        for field in self._errors:
            self._clear_error(field)
        choice = self._validated()
        if choice is None:
            return
        self._remember(choice)
        self._choice = choice
        what = (
            f"Starting the chat on port {choice.port}…"
            if choice.mode == "host"
            else f"Connecting to {choice.address}…"
        )
        self.set_busy(True, what)
        self.submitted.emit(choice)

    def _validated(self) -> StartChoice | None:
        ok = True
        name = ""
        try:
            name = normalize_name(self.name_edit.text())
        except InvalidName as exc:
            text = self.name_edit.text()
            if not text:
                self.show_error("name", "Type the name others will see you by.")
            elif text != text.strip():
                self.show_error("name", "A name cannot start or end with a space.")
            else:
                self.show_error("name", str(exc)[0].upper() + str(exc)[1:] + ".")
            ok = False
        if self.mode == "host":
            if not ok:
                return None
            return StartChoice(
                "host", name, "127.0.0.1", self.port_spin.value(), self.title_edit.text().strip()
            )
        try:
            host, port = parse_address(self.address_combo.currentText())
        except ValueError as exc:
            self._errors["address"].setText(str(exc))
            self._errors["address"].show()
            if ok:
                self.address_combo.setFocus()
            return None
        if not ok:
            return None
        return StartChoice("join", name, host, port)

    def _remember(self, choice: StartChoice) -> None:
        s = self.settings
        s.last_name = choice.name
        s.last_mode = choice.mode
        if choice.mode == "host":
            s.host_port = choice.port
            s.host_title = choice.title

    def remember_server(self, choice: StartChoice) -> None:
        """Call once joining worked: the address goes first in the recent list."""
        self.settings.add_recent_server(choice.address)
