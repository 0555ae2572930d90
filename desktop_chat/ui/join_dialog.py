""" "Join or create a room": type a name, or pick one of the rooms the server lists."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.names import InvalidName, name_key, normalize_name


class JoinRoomDialog(QDialog):
    """Call :meth:`set_rooms` when the server's room list arrives; :meth:`room` after accept.

    Signals: the standard QDialog signals.
    """

    def __init__(self, joined: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("joinRoomDialog")
        self.setWindowTitle("Join or create a room")
        self.setMinimumWidth(360)
        self._joined = {name_key(r) for r in joined}
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Room name:"))
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("roomNameEdit")
        self.name_edit.setAccessibleName("Room name")
        self.name_edit.setPlaceholderText("for example: lunch")
        self.name_edit.setMaxLength(32)
        layout.addWidget(self.name_edit)
        self.error = QLabel()
        self.error.setProperty("role", "muted")
        self.error.hide()
        layout.addWidget(self.error)
        hint = QLabel("Rooms on this server:")
        hint.setProperty("role", "muted")
        layout.addWidget(hint)
        self.rooms = QListWidget()
        self.rooms.setObjectName("serverRooms")
        self.rooms.setAccessibleName("Rooms on this server")
        self.rooms.addItem("Loading…")
        self.rooms.itemClicked.connect(self._picked)
        self.rooms.itemDoubleClicked.connect(self._picked_and_join)
        layout.addWidget(self.rooms, 1)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Join")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.name_edit.textChanged.connect(self._validate)
        self._validate()

    def set_rooms(self, listing: p.RoomList) -> None:
        self.rooms.clear()
        for info in sorted(listing.rooms, key=lambda r: (-r.users, name_key(r.name))):
            people = f"{info.users} {'person' if info.users == 1 else 'people'}"
            mark = "  ✓ joined" if name_key(info.name) in self._joined else ""
            topic = f" — {info.topic}" if info.topic else ""
            item = QListWidgetItem(f"# {info.name}   ·  {people}{topic}{mark}")
            item.setData(Qt.ItemDataRole.UserRole, info.name)
            self.rooms.addItem(item)
        if not listing.rooms:
            self.rooms.addItem("No rooms yet: type a name to create one")

    def _picked(self, item: QListWidgetItem) -> None:
        name = item.data(Qt.ItemDataRole.UserRole)
        if isinstance(name, str):
            self.name_edit.setText(name)

    def _picked_and_join(self, item: QListWidgetItem) -> None:
        self._picked(item)
        self.accept()

    def _validate(self) -> bool:
        ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        text = self.name_edit.text()
        if not text:
            self.error.hide()
            ok_button.setEnabled(False)
            return False
        try:
            normalize_name(text)
        except InvalidName as exc:
            self.error.setText(str(exc).capitalize())
            self.error.show()
            ok_button.setEnabled(False)
            return False
        self.error.hide()
        ok_button.setEnabled(True)
        return True

    def accept(self) -> None:
        if self._validate():
            super().accept()

    def room(self) -> str:
        return self.name_edit.text()
