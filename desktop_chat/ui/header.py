"""Small pieces of the main window's frame: the conversation header and the status bar."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QStatusBar, QToolButton, QVBoxLayout, QWidget

from desktop_chat.ui.conversations import Conversation
from desktop_chat.ui.room_list import draw_lock
from desktop_chat.ui.theme import LIGHT, Theme

STATE_TEXT = {
    "connecting": "Connecting…",
    "connected": "Connected",
    "reconnecting": "Reconnecting…",
    "disconnected": "Disconnected",
}


def lock_pixmap(size: int, colour: QColor, ratio: float = 1.0) -> QPixmap:
    pix = QPixmap(int(size * ratio), int(size * ratio))
    pix.setDevicePixelRatio(ratio)
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    draw_lock(painter, QRectF(size * 0.1, 0, size * 0.8, size), colour)
    painter.end()
    return pix


class ConversationHeader(QWidget):
    """Title, topic and subtitle of the shown conversation; tinted, with a lock, when private;
    a "Room settings" button for admins.

    Signals:
        settingsRequested(): an admin pressed the room settings button.
    """

    settingsRequested = Signal()

    def __init__(self, parent: QWidget | None = None, theme: Theme = LIGHT) -> None:
        super().__init__(parent)
        self.setObjectName("conversationHeader")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.theme = theme
        layout = QHBoxLayout(self)
        layout.setContentsMargins(18, 10, 18, 10)
        layout.setSpacing(10)
        self.lock = QLabel()
        self.lock.setObjectName("privateLock")
        self.lock.setAccessibleName("Private")
        self.lock.hide()
        layout.addWidget(self.lock, 0, Qt.AlignmentFlag.AlignVCenter)
        texts = QVBoxLayout()
        texts.setSpacing(1)
        self.title = QLabel()
        self.title.setObjectName("conversationTitle")
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        self.title.setFont(font)
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.topic = QLabel()
        self.topic.setObjectName("conversationTopic")
        self.topic.setTextFormat(Qt.TextFormat.PlainText)  # anyone's words: never markup
        self.topic.setWordWrap(True)
        self.topic.setAccessibleName("Topic")
        self.topic.hide()
        self.subtitle = QLabel()
        self.subtitle.setObjectName("conversationSubtitle")
        self.subtitle.setProperty("role", "muted")
        self.subtitle.setTextFormat(Qt.TextFormat.PlainText)
        texts.addWidget(self.title)
        texts.addWidget(self.topic)
        texts.addWidget(self.subtitle)
        layout.addLayout(texts, 1)
        self.settings_button = QToolButton()
        self.settings_button.setObjectName("roomSettingsButton")
        self.settings_button.setText("Room settings…")
        self.settings_button.setToolTip("Topic, password and slow mode of this room")
        self.settings_button.setAccessibleName("Room settings")
        self.settings_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.settings_button.clicked.connect(self.settingsRequested)
        self.settings_button.hide()
        layout.addWidget(self.settings_button, 0, Qt.AlignmentFlag.AlignVCenter)
        self._private = False
        self._admin = False
        self._room_shown = False

    def set_admin(self, admin: bool) -> None:
        self._admin = admin
        self.settings_button.setVisible(admin and self._room_shown)

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        self._paint_lock()

    def _paint_lock(self) -> None:
        ratio = self.devicePixelRatioF() or 1.0
        self.lock.setPixmap(lock_pixmap(22, QColor(self.theme.private_text), ratio))

    def show_conversation(self, conv: Conversation | None, me: str | None, topic: str = "") -> None:
        self._room_shown = conv is not None and not conv.is_private
        self.settings_button.setVisible(self._admin and self._room_shown)
        self.topic.setText(topic if self._room_shown else "")
        self.topic.setVisible(bool(topic) and self._room_shown)
        if conv is None:
            self.title.setText("")
            self.subtitle.setText("")
            self.lock.hide()
            return
        private = conv.is_private
        if private:
            self.title.setText(conv.name)
            self.subtitle.setText(
                f"Private conversation · only you and {conv.name} can see these messages"
            )
            self._paint_lock()
            self.lock.show()
        else:
            self.title.setText(conv.title)
            n = len(conv.members)
            people = f"{n} {'person' if n == 1 else 'people'} here"
            self.subtitle.setText(people if conv.joined else "You left this room")
            self.lock.hide()
        self.setAccessibleName(
            f"Private conversation with {conv.name}" if private else f"Room {conv.name}"
        )
        if private != self._private:
            self._private = private
            self.setProperty("private", "true" if private else "false")
            self.style().unpolish(self)
            self.style().polish(self)
            for child in (self.title, self.subtitle):
                self.style().unpolish(child)
                self.style().polish(child)


class ChatStatusBar(QStatusBar):
    """Connection state (with a coloured dot), server name, latency.

    Signals: the standard QStatusBar signals.
    """

    def __init__(self, parent: QWidget | None = None, theme: Theme = LIGHT) -> None:
        super().__init__(parent)
        self.setObjectName("statusBar")
        self.setSizeGripEnabled(False)
        self.theme = theme
        self.dot = QLabel("●")
        self.state_label = QLabel(STATE_TEXT["connecting"])
        self.state_label.setObjectName("connectionState")
        self.state_label.setTextFormat(Qt.TextFormat.PlainText)  # may quote the server
        self.state_label.setAccessibleName("Connection state")
        self.server_label = QLabel()
        self.server_label.setObjectName("serverName")
        self.server_label.setTextFormat(Qt.TextFormat.PlainText)
        self.latency_label = QLabel()
        self.latency_label.setObjectName("latency")
        self.latency_label.setAccessibleName("Latency")
        self.addWidget(self.dot)
        self.addWidget(self.state_label)
        self.addWidget(self.server_label, 1)
        self.addPermanentWidget(self.latency_label)
        self.state = "connecting"
        self.set_state("connecting", "")

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.set_state(self.state, self.state_label.text())

    def set_state(self, state: str, detail: str) -> None:
        self.state = state
        text = detail or STATE_TEXT.get(state, state)
        self.state_label.setText(text)
        colour = {
            "connected": self.theme.online,
            "reconnecting": self.theme.mention_bar,
            "connecting": self.theme.mention_bar,
        }.get(state, self.theme.error)
        self.dot.setStyleSheet(f"color: {colour}; padding-left: 8px;")
        if state != "connected":
            self.latency_label.setText("")

    def set_server(self, text: str) -> None:
        self.server_label.setText(text)

    def set_latency(self, ms: float) -> None:
        self.latency_label.setText(f"{ms:.0f} ms")
        self.latency_label.setToolTip("Round trip to the server")
