"""The people in the shown room, with their count; double-click someone to message them.
Admins also find Kick, Ban and Make admin in a person's context menu."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QRectF,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QListView,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from desktop_chat.net.protocol.names import name_key
from desktop_chat.ui.chat_delegate import initial_of
from desktop_chat.ui.theme import LIGHT, Theme

ROW_HEIGHT = 34
NAME_ROLE = Qt.ItemDataRole.UserRole + 1
IS_ME_ROLE = Qt.ItemDataRole.UserRole + 2
# True when this person's presence is not known: their connection dropped a moment ago (they
# may be back at once), or ours is down, so what the list shows may be out of date.
AWAY_ROLE = Qt.ItemDataRole.UserRole + 3


class PeopleModel(QAbstractListModel):
    """Names, sorted by casefolded name, me marked. Signals: the standard model signals."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._names: list[str] = []
        self._me = ""
        self._away: frozenset[str] = frozenset()  # name keys
        self.unknown = False  # our connection is down: nobody's presence is known

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._names)

    def names(self) -> list[str]:
        return list(self._names)

    def set_names(
        self, names: list[str], me: str | None, away: frozenset[str] = frozenset()
    ) -> None:
        ordered = sorted(names, key=name_key)
        me_key = name_key(me) if me else ""
        if ordered == self._names and me_key == self._me and away == self._away:
            return
        if ordered == self._names and me_key == self._me:
            self._away = away  # same rows: repaint them, keep the selection and scroll
            self._repaint_all()
            return
        self.beginResetModel()
        self._names = ordered
        self._me = me_key
        self._away = away
        self.endResetModel()

    def set_unknown(self, unknown: bool) -> None:
        if unknown != self.unknown:
            self.unknown = unknown
            self._repaint_all()

    def _repaint_all(self) -> None:
        if self._names:
            self.dataChanged.emit(self.index(0), self.index(len(self._names) - 1))

    def is_away(self, name: str) -> bool:
        """Shown greyed: not known to be online."""
        return self.unknown or name_key(name) in self._away

    def data(
        self,
        index: QModelIndex | QPersistentModelIndex,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._names):
            return None
        name = self._names[index.row()]
        is_me = name_key(name) == self._me
        if role in (Qt.ItemDataRole.DisplayRole, NAME_ROLE):
            return name
        if role == IS_ME_ROLE:
            return is_me
        if role == AWAY_ROLE:
            return self.unknown or name_key(name) in self._away
        if role == Qt.ItemDataRole.AccessibleTextRole:
            if self.unknown:
                return f"{name}, presence unknown (not connected)"
            if name_key(name) in self._away:
                return f"{name}, connection lost"
            return f"{name} (you)" if is_me else name
        if role == Qt.ItemDataRole.ToolTipRole:
            if self.unknown:
                return "Not connected: who is online is not known until the chat is back"
            if name_key(name) in self._away:
                return f"{name} lost the connection a moment ago"
            return "You" if is_me else f"Double-click to message {name} privately"
        return None


class PeopleDelegate(QStyledItemDelegate):
    """An avatar disc in the person's colour, then the name."""

    def __init__(self, parent: QWidget | None = None, theme: Theme = LIGHT) -> None:
        super().__init__(parent)
        self.theme = theme

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        return QSize(option.rect.width(), ROW_HEIGHT)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        t = self.theme
        name = str(index.data(NAME_ROLE))
        is_me = bool(index.data(IS_ME_ROLE))
        away = bool(index.data(AWAY_ROLE))
        rect = QRect(option.rect)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        marked = (
            QStyle.StateFlag.State_Selected
            | QStyle.StateFlag.State_MouseOver
            | QStyle.StateFlag.State_HasFocus
        )
        if option.state & marked:
            painter.setPen(Qt.PenStyle.NoPen)
            selected = option.state & QStyle.StateFlag.State_HasFocus
            painter.setBrush(QColor(t.sidebar_selected if selected else t.sidebar_hover))
            painter.drawRoundedRect(QRectF(rect.adjusted(8, 1, -8, -1)), 6, 6)
        disc = QRectF(rect.left() + 16, rect.top() + (rect.height() - 24) / 2, 24, 24)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setOpacity(0.45 if away else 1.0)
        painter.setBrush(t.name_color(name))
        painter.drawEllipse(disc)
        # Presence: green when in the room; grey when not known (a drop, or we are offline).
        dot = QRectF(disc.right() - 7, disc.bottom() - 7, 9, 9)
        painter.setBrush(QColor(t.sidebar))
        painter.drawEllipse(dot.adjusted(-1.5, -1.5, 1.5, 1.5))
        painter.setBrush(QColor(t.sidebar_muted if away else t.online))
        painter.drawEllipse(dot)
        small = QFont(option.font)
        small.setPointSizeF(small.pointSizeF() * 0.8)
        small.setBold(True)
        painter.setFont(small)
        painter.setPen(QColor("#17181c") if t.dark else QColor("#ffffff"))
        painter.drawText(disc, Qt.AlignmentFlag.AlignCenter, initial_of(name))
        font = QFont(option.font)
        painter.setFont(font)
        fm = QFontMetrics(font)
        x = int(disc.right()) + 10
        suffix = "  (you)" if is_me else ""
        sfm_w = fm.horizontalAdvance(suffix)
        avail = max(rect.right() - 12 - x - sfm_w, 10)
        shown = fm.elidedText(name, Qt.TextElideMode.ElideRight, avail)
        painter.setPen(QColor(t.sidebar_muted if away else t.sidebar_text))
        box = QRect(x, rect.top(), avail, rect.height())
        painter.drawText(box, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, shown)
        if suffix:
            painter.setPen(QColor(t.sidebar_muted))
            painter.drawText(
                QRect(x + fm.horizontalAdvance(shown), rect.top(), sfm_w + 4, rect.height()),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                suffix,
            )
        painter.restore()


class UserList(QWidget):
    """ "PEOPLE — n" over the list of names.

    Signals:
        dmRequested(str name): the user double-clicked (or chose "Message privately") a person.
        kickRequested(str name), banRequested(str name), promoteRequested(str name): an admin
            chose that action in the person's context menu (only admins see them).
    """

    dmRequested = Signal(str)
    kickRequested = Signal(str)
    banRequested = Signal(str)
    promoteRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None, theme: Theme = LIGHT) -> None:
        super().__init__(parent)
        self.setObjectName("peoplePanel")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.model = PeopleModel(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.header = QLabel()
        self.header.setObjectName("peopleHeader")
        self.header.setTextFormat(Qt.TextFormat.PlainText)  # a room's name: never markup
        self.header.setProperty("role", "section")
        small = self.header.font()
        small.setPointSizeF(small.pointSizeF() * 0.85)
        self.header.setFont(small)
        self.header.setContentsMargins(16, 14, 8, 6)
        layout.addWidget(self.header)
        self.view = QListView()
        self.view.setObjectName("userList")
        self.view.setAccessibleName("People in this conversation")
        self.view.setModel(self.model)
        self.delegate = PeopleDelegate(self.view, theme)
        self.view.setItemDelegate(self.delegate)
        self.view.setMouseTracking(True)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # Nothing stays selected (a highlighted name after a double-click looked chosen for
        # something); the keyboard's current row is shown while the list has the focus.
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.view.doubleClicked.connect(self._on_double_click)
        self.view.activated.connect(self._on_double_click)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._menu)
        layout.addWidget(self.view, 1)
        self._me: str | None = None
        self._label = "People"
        self.admin = False
        self.set_people([], None)

    def set_admin(self, admin: bool) -> None:
        """Show the moderation actions (the server checks them anyway)."""
        self.admin = admin

    def set_theme(self, theme: Theme) -> None:
        self.delegate.theme = theme
        self.view.viewport().update()

    def set_people(
        self,
        names: list[str],
        me: str | None,
        label: str = "People",
        away: frozenset[str] = frozenset(),
    ) -> None:
        """Show ``names``; those whose name key is in ``away`` are greyed."""
        self._me = me
        self._label = label
        self.model.set_names(names, me, away)
        self._update_header()

    def set_unknown(self, unknown: bool) -> None:
        """Our connection is down (True): grey everyone, presence is not known."""
        self.model.set_unknown(unknown)
        if unknown:
            self.view.clearSelection()
        self._update_header()

    def _update_header(self) -> None:
        n = self.model.rowCount()
        suffix = " · NOT CONNECTED" if self.model.unknown else ""
        self.header.setText(f"{self._label.upper()} — {n}{suffix}")
        self.header.setAccessibleName(f"{n} people" + (", not connected" if suffix else ""))

    def count(self) -> int:
        return self.model.rowCount()

    def _on_double_click(self, index: QModelIndex | QPersistentModelIndex) -> None:
        if index.isValid() and not index.data(IS_ME_ROLE):
            self.dmRequested.emit(str(index.data(NAME_ROLE)))

    def _menu(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid() or index.data(IS_ME_ROLE):
            return
        menu = self.menu_for(str(index.data(NAME_ROLE)))
        menu.exec(self.view.viewport().mapToGlobal(pos))
        menu.deleteLater()

    def menu_for(self, name: str) -> QMenu:
        """The context menu for ``name`` (someone other than me)."""
        menu = QMenu(self)
        menu.setObjectName("personMenu")
        menu.addAction(f"Message {name} privately", lambda: self.dmRequested.emit(name))
        if self.admin:
            menu.addSeparator()
            menu.addAction("&Kick…", lambda: self.kickRequested.emit(name))
            menu.addAction("&Ban…", lambda: self.banRequested.emit(name))
            menu.addAction("Make &admin", lambda: self.promoteRequested.emit(name))
        return menu
