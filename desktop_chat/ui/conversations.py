"""Conversations (rooms and direct messages) and the list model the sidebar shows.

A conversation is identified by a key: ``"#"`` + the casefolded room name, or ``"@"`` + the
casefolded name of the other person. Keys are what the ``notified`` signal carries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QFont

from desktop_chat.net.protocol.names import name_key
from desktop_chat.ui.chat_model import ChatModel

GENERAL = "general"
TYPING_EXPIRY_S = 5.0

Kind = Literal["room", "dm"]


def room_key(room: str) -> str:
    return "#" + name_key(room)


def dm_key(name: str) -> str:
    return "@" + name_key(name)


@dataclass(eq=False)
class Conversation:
    """One room or DM: its messages, members, unread state and typing notices."""

    kind: Kind
    name: str  # the room, or the other person, as the server spells it
    model: ChatModel
    members: list[str] = field(default_factory=list)
    joined: bool = True  # rooms: I am in it (False after /part or while rejoining)
    unread: int = 0
    mentions: int = 0
    history_pending: bool = False
    history_done: bool = False  # the server has nothing older
    history_started: bool = False
    typing: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> (name, until)
    # Members whose connection dropped, still listed (greyed) for a grace period in case they
    # come straight back: key -> (name, reason, monotonic deadline).
    away: dict[str, tuple[str, str, float]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return room_key(self.name) if self.kind == "room" else dm_key(self.name)

    @property
    def is_private(self) -> bool:
        return self.kind == "dm"

    @property
    def title(self) -> str:
        return f"# {self.name}" if self.kind == "room" else self.name

    def note_typing(self, name: str, now: float | None = None) -> None:
        until = (time.monotonic() if now is None else now) + TYPING_EXPIRY_S
        self.typing[name_key(name)] = (name, until)

    def stop_typing(self, name: str) -> None:
        self.typing.pop(name_key(name), None)

    def typing_names(self, now: float | None = None) -> list[str]:
        """Names typing now (expired notices are dropped)."""
        now = time.monotonic() if now is None else now
        for key in [k for k, (_, until) in self.typing.items() if until <= now]:
            del self.typing[key]
        return [name for name, _ in self.typing.values()]


def typing_text(names: list[str]) -> str:
    if not names:
        return ""
    if len(names) == 1:
        return f"{names[0]} is typing…"
    if len(names) == 2:
        return f"{names[0]} and {names[1]} are typing…"
    return "Several people are typing…"


class ListRole(IntEnum):
    CONVERSATION = Qt.ItemDataRole.UserRole + 1
    HEADER = Qt.ItemDataRole.UserRole + 2
    UNREAD = Qt.ItemDataRole.UserRole + 3
    MENTIONS = Qt.ItemDataRole.UserRole + 4
    KEY = Qt.ItemDataRole.UserRole + 5
    PRIVATE = Qt.ItemDataRole.UserRole + 6


@dataclass(frozen=True)
class _Header:
    text: str


class ConversationListModel(QAbstractListModel):
    """Rooms (general first, then in the order joined), then a header, then DMs.

    Signals: the standard model signals only.
    """

    DM_HEADER = "Direct messages"

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rooms: list[Conversation] = []
        self._dms: list[Conversation] = []
        self._rows: list[Conversation | _Header] = []

    # -- reading -------------------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def conversations(self) -> list[Conversation]:
        """In display order (what Alt+1..9 and Ctrl+Tab walk through)."""
        return [*self._rooms, *self._dms]

    def find(self, key: str) -> Conversation | None:
        for conv in self.conversations():
            if conv.key == key:
                return conv
        return None

    def row_of(self, key: str) -> int:
        for row, item in enumerate(self._rows):
            if isinstance(item, Conversation) and item.key == key:
                return row
        return -1

    def conversation_at(self, row: int) -> Conversation | None:
        item = self._rows[row] if 0 <= row < len(self._rows) else None
        return item if isinstance(item, Conversation) else None

    def data(
        self,
        index: QModelIndex | QPersistentModelIndex,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        item = self._rows[index.row()]
        if isinstance(item, _Header):
            if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
                return item.text
            if role == ListRole.HEADER:
                return True
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return item.name
        if role == Qt.ItemDataRole.AccessibleTextRole:
            kind = "private conversation with" if item.is_private else "room"
            unread = f", {item.unread} unread" if item.unread else ""
            return f"{kind} {item.name}{unread}"
        if role == Qt.ItemDataRole.FontRole:
            font = QFont()
            font.setBold(item.unread > 0)
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            if item.is_private:
                return f"Private conversation with {item.name}: only the two of you see it"
            return f"Room {item.name}: {len(item.members)} people"
        if role == ListRole.CONVERSATION:
            return item
        if role == ListRole.HEADER:
            return False
        if role == ListRole.UNREAD:
            return item.unread
        if role == ListRole.MENTIONS:
            return item.mentions
        if role == ListRole.KEY:
            return item.key
        if role == ListRole.PRIVATE:
            return item.is_private
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        if isinstance(self._rows[index.row()], _Header):
            return Qt.ItemFlag.ItemIsEnabled
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    # -- changing ------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        self.beginResetModel()
        rows: list[Conversation | _Header] = list(self._rooms)
        if self._dms:
            rows.append(_Header(self.DM_HEADER))
            rows.extend(self._dms)
        self._rows = rows
        self.endResetModel()

    def add(self, conv: Conversation) -> None:
        if self.find(conv.key) is not None:
            return
        if conv.kind == "room":
            if name_key(conv.name) == GENERAL:
                self._rooms.insert(0, conv)
            else:
                self._rooms.append(conv)
        else:
            self._dms.append(conv)
        self._rebuild()

    def remove(self, key: str) -> None:
        self._rooms = [c for c in self._rooms if c.key != key]
        self._dms = [c for c in self._dms if c.key != key]
        self._rebuild()

    def changed(self, key: str) -> None:
        """A conversation's unread count, name or members changed: repaint its row."""
        row = self.row_of(key)
        if row >= 0:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx)
