"""The sidebar's list of conversations: rooms, then direct messages, with unread badges."""

from __future__ import annotations

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QRectF,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListView,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_chat.ui.chat_delegate import initial_of
from desktop_chat.ui.conversations import Conversation, ConversationListModel, ListRole
from desktop_chat.ui.theme import LIGHT, Theme

ROW_HEIGHT = 32
HEADER_HEIGHT = 34


def draw_lock(painter: QPainter, box: QRectF, colour: QColor) -> None:
    """A small padlock (the mark of a private conversation), drawn to fit ``box``."""
    painter.save()
    w, h = box.width(), box.height()
    body = QRectF(box.left() + w * 0.18, box.top() + h * 0.45, w * 0.64, h * 0.5)
    painter.setPen(QPen(colour, max(1.2, w * 0.11)))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    shackle = QPainterPath()
    sx, sw = box.left() + w * 0.3, w * 0.4
    shackle.moveTo(sx, body.top())
    shackle.lineTo(sx, box.top() + h * 0.3)
    shackle.arcTo(QRectF(sx, box.top() + h * 0.08, sw, h * 0.44), 180, -180)
    shackle.lineTo(sx + sw, body.top())
    painter.drawPath(shackle)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(colour)
    painter.drawRoundedRect(body, w * 0.1, w * 0.1)
    painter.restore()


class RoomListDelegate(QStyledItemDelegate):
    """Paints conversation rows: ``#`` or an avatar, the name (bold when unread), a badge."""

    def __init__(self, parent: QWidget | None = None, theme: Theme = LIGHT) -> None:
        super().__init__(parent)
        self.theme = theme

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        header = bool(index.data(ListRole.HEADER))
        return QSize(option.rect.width(), HEADER_HEIGHT if header else ROW_HEIGHT)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        t = self.theme
        rect = QRect(option.rect)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if index.data(ListRole.HEADER):
            font = QFont(option.font)
            font.setPointSizeF(font.pointSizeF() * 0.85)
            font.setWeight(QFont.Weight.DemiBold)
            painter.setFont(font)
            painter.setPen(QColor(t.sidebar_muted))
            painter.drawText(
                rect.adjusted(16, 10, -8, 0),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                str(index.data()).upper(),
            )
            painter.restore()
            return
        conv = index.data(ListRole.CONVERSATION)
        assert isinstance(conv, Conversation)
        pill = QRectF(rect.adjusted(8, 1, -8, -1))
        if option.state & QStyle.StateFlag.State_Selected:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(t.sidebar_selected))
            painter.drawRoundedRect(pill, 6, 6)
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(t.sidebar_hover))
            painter.drawRoundedRect(pill, 6, 6)

        unread = conv.unread > 0
        text_colour = QColor(t.sidebar_text if unread or conv.joined else t.sidebar_muted)
        if option.state & QStyle.StateFlag.State_Selected:
            text_colour = QColor(t.sidebar_text)
        icon = QRectF(rect.left() + 18, rect.top() + (rect.height() - 18) / 2, 18, 18)
        if conv.is_private:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(t.name_color(conv.name))
            painter.drawEllipse(icon)
            small = QFont(option.font)
            small.setPointSizeF(small.pointSizeF() * 0.75)
            small.setBold(True)
            painter.setFont(small)
            painter.setPen(QColor("#17181c") if t.dark else QColor("#ffffff"))
            painter.drawText(icon, Qt.AlignmentFlag.AlignCenter, initial_of(conv.name))
        else:
            hash_font = QFont(option.font)
            hash_font.setPointSizeF(hash_font.pointSizeF() * 1.1)
            painter.setFont(hash_font)
            painter.setPen(QColor(t.sidebar_muted))
            painter.drawText(icon, Qt.AlignmentFlag.AlignCenter, "#")

        font = QFont(option.font)
        font.setBold(unread)
        painter.setFont(font)
        fm = QFontMetrics(font)
        right = rect.right() - 16
        badge_text = ""
        if conv.unread:
            badge_text = "99+" if conv.unread > 99 else str(conv.unread)
        if badge_text:
            small = QFont(option.font)
            small.setPointSizeF(small.pointSizeF() * 0.8)
            small.setBold(True)
            sfm = QFontMetrics(small)
            bw = max(sfm.horizontalAdvance(badge_text) + 12, 20)
            badge = QRectF(right - bw, rect.top() + (rect.height() - 18) / 2, bw, 18)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(t.badge_mention if conv.mentions else t.badge))
            painter.drawRoundedRect(badge, 9, 9)
            painter.setFont(small)
            painter.setPen(QColor("#ffffff") if not t.dark else QColor("#15161a"))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, badge_text)
            painter.setFont(font)
            right = int(badge.left()) - 6
        x = int(icon.right()) + 8
        lock_w = 0
        if conv.is_private:
            lock_w = 14
        avail = max(right - x - lock_w, 10)
        name = fm.elidedText(conv.name, Qt.TextElideMode.ElideRight, avail)
        painter.setPen(text_colour)
        painter.drawText(
            QRect(x, rect.top(), avail, rect.height()),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            name,
        )
        if conv.is_private:
            lx = x + fm.horizontalAdvance(name) + 5
            draw_lock(
                painter,
                QRectF(lx, rect.top() + (rect.height() - 11) / 2, 9, 11),
                QColor(t.sidebar_muted),
            )
        painter.restore()


class RoomList(QWidget):
    """ "ROOMS" with a "+" button above the conversation list.

    Signals:
        conversationSelected(str key): the user picked a conversation.
        addRoomRequested(): the "+" button.
        roomSettingsRequested(str key): an admin chose "Room settings…" in a room's menu.
    """

    conversationSelected = Signal(str)
    addRoomRequested = Signal()
    roomSettingsRequested = Signal(str)

    def __init__(
        self, model: ConversationListModel, parent: QWidget | None = None, theme: Theme = LIGHT
    ) -> None:
        super().__init__(parent)
        self.model = model
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        head = QHBoxLayout()
        head.setContentsMargins(16, 8, 10, 2)
        title = QLabel("ROOMS")
        title.setProperty("role", "section")
        small = title.font()
        small.setPointSizeF(small.pointSizeF() * 0.85)
        title.setFont(small)
        head.addWidget(title)
        head.addStretch(1)
        self.add_button = QToolButton()
        self.add_button.setObjectName("addRoomButton")
        self.add_button.setText("+")
        self.add_button.setToolTip("Join or create a room (Ctrl+J)")
        self.add_button.setAccessibleName("Join or create a room")
        self.add_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.add_button.clicked.connect(self.addRoomRequested)
        head.addWidget(self.add_button)
        layout.addLayout(head)

        self.view = QListView()
        self.view.setObjectName("roomList")
        self.view.setAccessibleName("Rooms and direct messages")
        self.delegate = RoomListDelegate(self.view, theme)
        self.view.setItemDelegate(self.delegate)
        self.view.setModel(model)
        self.view.setMouseTracking(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setUniformItemSizes(False)
        self.view.selectionModel().currentChanged.connect(self._on_current)
        model.modelReset.connect(self._restore_selection)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._menu)
        layout.addWidget(self.view, 1)
        self._current_key = ""
        self.admin = False

    def set_admin(self, admin: bool) -> None:
        """Offer "Room settings…" on rooms (the server checks it anyway)."""
        self.admin = admin

    def menu_for(self, key: str) -> QMenu | None:
        """A room's context menu, or None when there is nothing to offer."""
        conv = self.model.find(key)
        if conv is None or conv.is_private or not self.admin:
            return None
        menu = QMenu(self)
        menu.setObjectName("roomMenu")
        menu.addAction("Room &settings…", lambda: self.roomSettingsRequested.emit(key))
        return menu

    def _menu(self, pos: QPoint) -> None:
        conv = self.model.conversation_at(self.view.indexAt(pos).row())
        menu = self.menu_for(conv.key) if conv is not None else None
        if menu is not None:
            menu.exec(self.view.viewport().mapToGlobal(pos))
            menu.deleteLater()

    def set_theme(self, theme: Theme) -> None:
        self.delegate.theme = theme
        self.view.viewport().update()

    def select(self, key: str) -> None:
        """Mark ``key`` as the shown conversation (without emitting conversationSelected)."""
        self._current_key = key
        self._restore_selection()

    def _restore_selection(self) -> None:
        row = self.model.row_of(self._current_key)
        if row < 0:
            return
        sel = self.view.selectionModel()
        idx = self.model.index(row)
        sel.blockSignals(True)
        sel.setCurrentIndex(idx, sel.SelectionFlag.ClearAndSelect)
        sel.blockSignals(False)
        self.view.viewport().update()

    def _on_current(
        self, current: QModelIndex | QPersistentModelIndex, _previous: object = None
    ) -> None:
        conv = self.model.conversation_at(current.row())
        if conv is None:
            self._restore_selection()  # a header row: keep the conversation selected
            return
        if conv.key != self._current_key:
            self._current_key = conv.key
            self.conversationSelected.emit(conv.key)
