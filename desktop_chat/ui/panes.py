"""The main window's two built-up columns: the sidebar and the conversation pane."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop_chat.ui.chat_view import ChatView
from desktop_chat.ui.conversations import ConversationListModel
from desktop_chat.ui.header import ConversationHeader
from desktop_chat.ui.hosting import HostingCard
from desktop_chat.ui.message_input import Composer
from desktop_chat.ui.room_list import RoomList
from desktop_chat.ui.theme import Theme


def _label(text: str, name: str, margins: tuple[int, int, int, int]) -> QLabel:
    label = QLabel(text)
    label.setObjectName(name)
    label.setTextFormat(Qt.TextFormat.PlainText)  # names and titles are never markup
    label.setContentsMargins(*margins)
    return label


# Below this height for the conversation list, the hosting card folds its fingerprint away
# (the invite dialog and the code still have it): the list of rooms and DMs comes first.
ROOMS_MIN_HEIGHT = 150


class Sidebar(QWidget):
    """Server title, who I am, the conversations, and (when hosting) the hosting card.

    Signals: none (see ``room_list`` and ``hosting_card``).
    """

    def __init__(
        self,
        conversations: ConversationListModel,
        theme: Theme,
        hosting: tuple[str, list[str], str | None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("sidebar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        side = QVBoxLayout(self)
        side.setContentsMargins(0, 0, 0, 10)
        side.setSpacing(4)
        self.server_title = _label("Desktop Chat", "serverTitle", (16, 14, 12, 0))
        font = self.server_title.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        font.setBold(True)
        self.server_title.setFont(font)
        self.me_label = _label("Connecting…", "meLabel", (16, 0, 12, 6))
        self.me_label.setProperty("role", "muted")
        side.addWidget(self.server_title)
        side.addWidget(self.me_label)
        self.room_list = RoomList(conversations, theme=theme)
        side.addWidget(self.room_list, 1)
        self.hosting_card: HostingCard | None = None
        if hosting is not None:
            title, addresses, fingerprint = hosting
            self.hosting_card = HostingCard(
                title, addresses, icon_colour=theme.muted, fingerprint=fingerprint
            )
            wrap = QVBoxLayout()
            wrap.setContentsMargins(10, 0, 10, 0)
            wrap.addWidget(self.hosting_card)
            side.addLayout(wrap)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        card = self.hosting_card
        if card is None:
            return
        top = self.server_title.sizeHint().height() + self.me_label.sizeHint().height() + 30
        width = self.width() - 20  # the card's side margins
        room = self.height() - top - card.full_height(width)
        card.set_compact(room < ROOMS_MIN_HEIGHT or width < card.full_width())


class _WrappingLabel(QLabel):
    """A word-wrapped label that asks for the height its text needs at its width: the
    splitter above the pane lays out without height-for-width, so a second line would be
    drawn over the conversation instead of pushing it down."""

    def _fit(self) -> None:
        needed = self.heightForWidth(self.width())
        if needed > 0 and needed != self.minimumHeight():
            self.setMinimumHeight(needed)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def setText(self, text: str) -> None:
        super().setText(text)
        self._fit()


class ConversationPane(QWidget):
    """Header, connection banner, the conversation, the composer and the typing line.

    Signals: none (see ``chat_view`` and ``input``).
    """

    def __init__(self, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("centre")
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        self.header = ConversationHeader(theme=theme)
        col.addWidget(self.header)
        # The connection banner: what is wrong, and (while waiting to reconnect) a button to
        # try at once instead of waiting for the countdown.
        self.banner_bar = QWidget()
        self.banner_bar.setObjectName("connectionBar")
        self.banner_bar.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        bar = QHBoxLayout(self.banner_bar)
        bar.setContentsMargins(8, 2, 8, 2)
        self.banner = _WrappingLabel("")
        self.banner.setObjectName("connectionBanner")
        self.banner.setTextFormat(Qt.TextFormat.PlainText)
        self.banner.setContentsMargins(8, 3, 8, 3)
        self.banner.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.banner.setWordWrap(True)
        self.reconnect_button = QPushButton("Reconnect now")
        self.reconnect_button.setObjectName("reconnectNow")
        self.reconnect_button.hide()
        bar.addWidget(self.banner, 1)
        bar.addWidget(self.reconnect_button)
        self.banner.hide()
        self.banner_bar.hide()
        col.addWidget(self.banner_bar)
        self.chat_view = ChatView(theme=theme)
        col.addWidget(self.chat_view, 1)
        composer_area = QWidget()
        composer_area.setObjectName("composer")
        composer_area.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        comp = QVBoxLayout(composer_area)
        comp.setContentsMargins(16, 2, 16, 4)
        comp.setSpacing(2)
        self.composer = Composer()
        self.input = self.composer.input
        comp.addWidget(self.composer)
        self.typing_label = _label(" ", "typingLabel", (4, 0, 0, 0))
        comp.addWidget(self.typing_label)
        col.addWidget(composer_area)
