"""The first screen: host a chat on this computer, or join one on the network.

The dialog only collects and checks what the person typed. Whoever shows it (``app.py``)
listens to ``submitted``, tries to start the server or connect, and then either closes the
dialog or puts the reason under the field it concerns (:meth:`StartDialog.show_error`), so the
person can fix it and try again without losing what they typed.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QHideEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_chat.net.discovery.advert import FoundServer
from desktop_chat.net.protocol.invite import looks_like_invite, parse_invite
from desktop_chat.net.protocol.names import InvalidName, normalize_name
from desktop_chat.net.protocol.tls import normalize_fingerprint
from desktop_chat.net.server.server import DEFAULT_PORT
from desktop_chat.settings import Settings
from desktop_chat.ui.found_servers import DiscoverySetup, FoundServersWidget
from desktop_chat.ui.start_choice import Field, Mode, StartChoice, format_address, parse_address

__all__ = ["Field", "Mode", "StartChoice", "StartDialog", "format_address", "parse_address"]


class StartDialog(QDialog):
    """Host a chat or join one.

    Signals:
        submitted(object): a checked :class:`StartChoice`; the dialog then shows itself busy
            until the receiver calls :meth:`show_error` or :meth:`set_busy` (or closes it).
        cancelled(): the person pressed Cancel while busy: stop trying; the fields are
            editable again.
    """

    submitted = Signal(object)
    cancelled = Signal()

    def __init__(
        self,
        settings: Settings,
        parent: QWidget | None = None,
        *,
        default_port: int = DEFAULT_PORT,
        discovery: DiscoverySetup | None = None,
    ) -> None:
        """``discovery``: how the Join page looks for chats on the network while this dialog
        is shown (None: it does not look, and lists nothing)."""
        super().__init__(parent)
        self.settings = settings
        self.discovery = discovery
        self.setObjectName("startDialog")
        self.setWindowTitle("Desktop Chat")
        self._choice: StartChoice | None = None
        self._busy = False
        self._errors: dict[Field, QLabel] = {}
        self._messages: dict[Field, str] = {}
        self._build(default_port)
        self._inputs: list[QWidget] = [
            self.name_edit,
            self.host_button,
            self.join_button,
            self.port_spin,
            self.title_edit,
            self.address_combo,
            self.password_edit,
            self.fingerprint_edit,
            self.start_button,
        ]
        if self.found_servers is not None:
            self._inputs.append(self.found_servers)
        self._load()
        self._set_mode(settings.last_mode)

    # -- building ----------------------------------------------------------------------

    def _build(self, default_port: int) -> None:
        self.setStyleSheet(
            """
            QLabel#startTitle { font-size: 20pt; font-weight: 700; }
            QLabel[role="hint"] { color: palette(placeholder-text); }
            QLabel[role="error"] { color: palette(bright-text); }
            QLabel[role="modeTitle"] { font-weight: 700; }
            QPushButton[role="mode"] {
                border-radius: 8px; border: 1px solid palette(mid); background: palette(base);
            }
            QPushButton[role="mode"]:hover { border: 1px solid palette(highlight); }
            QPushButton[role="mode"]:checked { border: 2px solid palette(highlight); }
            QPushButton#startButton, QPushButton#quitButton { padding: 5px 16px; }
            QPushButton#startButton { font-weight: 600; }
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

        # One grid for both modes, so the labels line up; the rows of the other mode are
        # hidden (QGridLayout gives hidden rows no height).
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(6)
        grid.setColumnStretch(1, 1)
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("nameEdit")
        self.name_edit.setAccessibleName("Your name")
        self.name_edit.setPlaceholderText("How others will see you")
        self.name_edit.setMaxLength(64)  # longer than allowed, so the rule can be explained

        self.port_spin = QSpinBox()
        self.port_spin.setObjectName("portSpin")
        self.port_spin.setAccessibleName("Port")
        self.port_spin.setRange(1, 65535)
        self.port_spin.setValue(default_port)
        self.port_spin.setGroupSeparatorShown(False)
        self.port_spin.setMinimumWidth(110)
        self.port_spin.setToolTip(
            f"The TCP port others connect to: {DEFAULT_PORT} unless it is taken."
        )
        port_row = QHBoxLayout()
        port_row.setContentsMargins(0, 0, 0, 0)
        port_row.addWidget(self.port_spin)
        port_row.addStretch(1)

        self.title_edit = QLineEdit()
        self.title_edit.setObjectName("titleEdit")
        self.title_edit.setAccessibleName("Chat title (optional)")
        self.title_edit.setPlaceholderText("Optional, e.g. Office chat")
        self.title_edit.setMaxLength(80)

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

        self.password_edit = QLineEdit()
        self.password_edit.setObjectName("passwordEdit")
        self.password_edit.setAccessibleName("Chat password (only if the chat has one)")
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_edit.setPlaceholderText("Only if the chat or your name has one")

        self.fingerprint_edit = QLineEdit()
        self.fingerprint_edit.setObjectName("fingerprintEdit")
        self.fingerprint_edit.setAccessibleName("The host's fingerprint (optional)")
        self.fingerprint_edit.setPlaceholderText("Optional: paste it from the host's window")
        self.fingerprint_edit.setToolTip(
            "The host's window shows a fingerprint. Given here, Desktop Chat checks it and "
            "does not ask you to compare it."
        )

        # The chats found on the network, above the address (typing one stays possible).
        self.found_servers: FoundServersWidget | None = None
        if self.discovery is not None:
            self.found_servers = FoundServersWidget(self.discovery)
            self.found_servers.serverChosen.connect(self._use_found)
            self.found_servers.joinRequested.connect(self._join_found)
            self.port_spin.valueChanged.connect(self.found_servers.set_check_port)

        self._host_widgets: list[QWidget] = []
        self._join_widgets: list[QWidget] = []
        rows: list[tuple[str, QWidget, QHBoxLayout | None, Field | None, list[QWidget] | None]] = [
            ("Your &name:", self.name_edit, None, "name", None),
            ("&Port:", self.port_spin, port_row, "port", self._host_widgets),
            ("Chat &title:", self.title_edit, None, None, self._host_widgets),
            *(
                [("", self.found_servers, None, None, self._join_widgets)]
                if self.found_servers is not None
                else []
            ),
            ("&Address:", self.address_combo, None, "address", self._join_widgets),
            ("Pass&word:", self.password_edit, None, "password", self._join_widgets),
            ("&Fingerprint:", self.fingerprint_edit, None, "fingerprint", self._join_widgets),
        ]
        row = 0
        for text, field_widget, layout, error_field, members in rows:
            if not text:  # a row of its own, label column included
                grid.addWidget(field_widget, row, 0, 1, 2)
                row += 1
                if members is not None:
                    members.append(field_widget)
                continue
            label = self._label(text, field_widget)
            grid.addWidget(
                label, row, 0, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
            )
            if layout is not None:
                grid.addLayout(layout, row, 1)
            else:
                grid.addWidget(field_widget, row, 1)
            row += 1
            if error_field is not None:
                grid.addWidget(self._error_label(error_field), row, 1)
                row += 1
            if members is not None:
                members.extend((label, field_widget))
        outer.addLayout(grid)

        outer.addWidget(self._error_label("general"))
        self.status_label = self._hint("")
        self.status_label.setObjectName("statusLabel")
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        self.status_label.hide()
        outer.addWidget(self.status_label)
        outer.addStretch(1)

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.quit_button = QPushButton("&Quit")
        self.quit_button.setObjectName("quitButton")
        self.quit_button.setAccessibleName("Quit Desktop Chat")
        self.quit_button.setAutoDefault(False)
        self.quit_button.clicked.connect(self._quit_or_cancel)
        self.start_button = QPushButton()
        self.start_button.setObjectName("startButton")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.submit)
        buttons.addWidget(self.quit_button)
        buttons.addWidget(self.start_button)
        outer.addLayout(buttons)

        self.name_edit.textEdited.connect(lambda: self._clear_error("name"))
        self.port_spin.valueChanged.connect(lambda: self._clear_error("port"))
        self.address_combo.editTextChanged.connect(lambda: self._clear_error("address"))
        self.password_edit.textEdited.connect(lambda: self._clear_error("password"))
        self.fingerprint_edit.textEdited.connect(lambda: self._clear_error("fingerprint"))
        self.setMinimumWidth(500)

    def _mode_button(self, object_name: str, title: str, detail: str, key: str) -> QPushButton:
        """A large toggle with a bold title over a muted line (QPushButton has no rich text,
        so two labels sit inside it, transparent to the mouse)."""
        button = QPushButton()
        button.setObjectName(object_name)
        button.setProperty("role", "mode")
        button.setAccessibleName(title)
        button.setAccessibleDescription(detail)
        button.setCheckable(True)
        button.setAutoDefault(False)
        button.setShortcut(QKeySequence(f"Alt+{key}"))
        button.setToolTip(f"{detail} (Alt+{key})")
        inner = QVBoxLayout(button)
        inner.setContentsMargins(14, 10, 14, 10)
        inner.setSpacing(2)
        for text, role in ((title, "modeTitle"), (detail, "hint")):
            label = QLabel(text)
            label.setProperty("role", role)
            label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            inner.addWidget(label)
        button.setMinimumSize(inner.sizeHint())
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
        label.setTextFormat(Qt.TextFormat.PlainText)  # may quote a server: never markup
        label.setProperty("role", "error")
        label.setWordWrap(True)
        label.setAccessibleName(f"{field} error")
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
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
        for widget in self._host_widgets:
            widget.setVisible(host)
        for widget in self._join_widgets:
            widget.setVisible(not host)
        self.start_button.setText("&Start hosting" if host else "&Join chat")
        self.start_button.setAccessibleName("Start hosting the chat" if host else "Join the chat")
        self._messages.pop("general", None)
        self._refresh_errors()
        self._fit_height(shrink=True)  # the Host page is much shorter than the Join page
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

    def set_fingerprint(self, text: str) -> None:
        self.fingerprint_edit.setText(text)

    @Slot(object)
    def _use_found(self, server: FoundServer) -> None:
        """A found chat was clicked: its address (and announced fingerprint) go in the fields."""
        if self._busy:
            return
        self.set_address(server.join_address)
        # The announced fingerprint is never taken as given: anyone on the network can announce
        # a look-alike chat with their own certificate. A first join from the list is asked
        # about (a short code the host's window shows); an invitation carries the real one.
        self.set_fingerprint("")
        self._clear_error("fingerprint")

    @Slot(object)
    def _join_found(self, server: FoundServer) -> None:
        """A found chat was double-clicked: join it, once its password is typed if it has one."""
        if self._busy:
            return
        self._use_found(server)
        if server.password and not self.password_edit.text():
            self._set_error("password", f"“{server.title}” needs a password: type it, then Join.")
            self.password_edit.setFocus()
            return
        self.submit()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self.found_servers is not None:
            self.found_servers.start()  # look for chats while this screen is open

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        # Not when minimised (spontaneous): only when the screen is done with.
        if self.found_servers is not None and not event.spontaneous():
            self.found_servers.stop()

    def choice(self) -> StartChoice | None:
        """The last choice submitted, or None."""
        return self._choice

    def error_text(self, field: Field) -> str:
        """The message shown under ``field`` ("" when none is shown)."""
        label = self._errors[field]
        return label.text() if not label.isHidden() else ""

    def show_error(self, field: Field, message: str) -> None:
        """Put ``message`` under ``field`` and let the person try again."""
        self.set_busy(False)
        if field == "port":
            self._set_mode("host")
        elif field in ("address", "password", "fingerprint"):
            self._set_mode("join")
        self._set_error(field, message)
        target = {
            "name": self.name_edit,
            "port": self.port_spin,
            "address": self.address_combo,
            "password": self.password_edit,
            "fingerprint": self.fingerprint_edit,
            "general": self.start_button,
        }[field]
        target.setFocus()
        if isinstance(target, QLineEdit | QSpinBox):
            target.selectAll()

    def _set_error(self, field: Field, message: str) -> None:
        self._messages[field] = message
        self._refresh_errors()

    def _clear_error(self, field: Field) -> None:
        if self._messages.pop(field, None) is not None:
            self._refresh_errors()

    def _refresh_errors(self) -> None:
        """An error shows while it has a message and its field is on screen."""
        hidden_fields = {"address", "password", "fingerprint"} if self.mode == "host" else {"port"}
        for key, label in self._errors.items():
            message = self._messages.get(key, "")
            label.setText(message)
            label.setVisible(bool(message) and key not in hidden_fields)
        self._fit_height()

    def _fit_height(self, *, shrink: bool = False) -> None:
        """Grow to fit wrapped messages: a top-level window does not follow its layout's
        height-for-width by itself, so a two-line error would be cut off. With ``shrink``
        (a change of page), also give back height the page no longer needs; an error that
        goes away leaves the height alone, so the window does not jump at each keystroke."""
        layout = self.layout()
        if layout is None:
            return
        layout.activate()
        needed = layout.totalHeightForWidth(self.width())
        if needed > self.height() or (shrink and needed < self.height()):
            self.setMinimumHeight(0)
            self.resize(self.width(), needed)

    def set_busy(self, busy: bool, status: str = "") -> None:
        """While busy the fields are locked, ``status`` says what is happening and the Quit
        button becomes Cancel."""
        self._busy = busy
        for widget in self._inputs:
            widget.setEnabled(not busy)
        self.status_label.setText(status)
        self.status_label.setVisible(busy and bool(status))
        self.quit_button.setText("&Cancel" if busy else "&Quit")
        self.quit_button.setAccessibleName("Cancel connecting" if busy else "Quit Desktop Chat")

    def is_busy(self) -> bool:
        return self._busy

    @Slot()
    def _quit_or_cancel(self) -> None:
        if self._busy:
            self.set_busy(False)
            self.cancelled.emit()
        else:
            self.reject()

    # -- submitting --------------------------------------------------------------------

    @Slot()
    def submit(self) -> None:
        """Check every field; on success remember the choice and emit ``submitted``."""
        if self._busy:
            return
        found = self._found_to_join()
        if found is not None:
            self._join_found(found)  # fills in its address, then comes back here
            return
        self._messages.clear()
        choice = self._validated()
        self._refresh_errors()
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

    def _found_to_join(self) -> FoundServer | None:
        """Join with no address typed: the chat selected in the list, or the only one."""
        if self.mode != "join" or self.found_servers is None:
            return None
        if self.address_combo.currentText().strip():
            return None
        servers = self.found_servers.servers()
        selected = self.found_servers.selected()
        if selected is not None:
            return selected
        return servers[0] if len(servers) == 1 else None

    def _validated(self) -> StartChoice | None:
        """The choice, or None with the reasons put in ``_messages`` (all fields checked)."""
        name: str | None = None
        text = self.name_edit.text()
        try:
            name = normalize_name(text)
        except InvalidName as exc:
            if not text:
                self._messages["name"] = "Type the name others will see you by."
            elif text != text.strip():
                self._messages["name"] = "A name cannot start or end with a space."
            else:
                reason = str(exc)
                self._messages["name"] = reason[:1].upper() + reason[1:] + "."
        if self.mode == "host":
            if name is None:
                self.name_edit.setFocus()
                return None
            title = self.title_edit.text().strip()
            return StartChoice("host", name, "127.0.0.1", self.port_spin.value(), title)
        address: tuple[str, int] | None = None
        invited: str | None = None  # the fingerprint an invitation carries
        typed = self.address_combo.currentText()
        try:
            if looks_like_invite(typed):
                invite = parse_invite(typed)
                address, invited = (invite.host, invite.port), invite.fingerprint
            else:
                address = parse_address(typed)
        except ValueError as exc:
            reason = str(exc)
            self._messages["address"] = reason[:1].upper() + reason[1:] + "."
        fingerprint: str | None = invited
        if self.fingerprint_edit.text().strip():
            try:
                fingerprint = normalize_fingerprint(self.fingerprint_edit.text())
            except ValueError:
                self._messages["fingerprint"] = (
                    "A fingerprint has 64 digits and letters A–F. Copy it from the host's "
                    "window, or leave this empty to compare it when you join."
                )
            if invited is not None and fingerprint not in (None, invited):
                self._messages["fingerprint"] = (
                    "This is not the fingerprint in the invitation. Leave this empty: the "
                    "invitation has the host's."
                )
        if name is None:
            self.name_edit.setFocus()
            return None
        if address is None:
            self.address_combo.setFocus()
            return None
        if "fingerprint" in self._messages:
            self.fingerprint_edit.setFocus()
            return None
        password = self.password_edit.text() or None
        return StartChoice("join", name, *address, password=password, fingerprint=fingerprint)

    def _remember(self, choice: StartChoice) -> None:
        s = self.settings
        s.last_name = choice.name
        s.last_mode = choice.mode
        if choice.mode == "host":
            s.host_port = choice.port
            s.host_title = choice.title
