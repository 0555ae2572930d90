"""The message composer: Enter sends, Shift+Enter breaks the line, Up recalls what I sent."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QSize, Qt, Signal
from PySide6.QtGui import QFocusEvent, QKeyEvent, QResizeEvent, QTextCursor
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QPlainTextEdit,
    QSizePolicy,
    QToolButton,
    QWidget,
)

MAX_VISIBLE_LINES = 6
RECALL_DEPTH = 50


class MessageInput(QPlainTextEdit):
    """A growing plain-text editor.

    Signals:
        submitted(str text): Enter was pressed with some text (the editor is then cleared).
        typingActivity(): the user changed the text (not for commands starting with "/").
    """

    submitted = Signal(str)
    typingActivity = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageInput")
        self.setAccessibleName("Message")
        self.setTabChangesFocus(True)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().setDocumentMargin(6)
        self._sent: list[str] = []
        self._recall = -1  # index into _sent while walking back with Up
        self._draft = ""
        self._filling = False
        self.textChanged.connect(self._on_changed)
        self._fit()

    def sent_lines(self) -> list[str]:
        return list(self._sent)

    def remember(self, text: str) -> None:
        """Add ``text`` to what Up recalls (done for every submitted line)."""
        if self._sent and self._sent[-1] == text:
            return
        self._sent.append(text)
        del self._sent[:-RECALL_DEPTH]

    def _set_text(self, text: str) -> None:
        self._filling = True
        self.setPlainText(text)
        self.moveCursor(QTextCursor.MoveOperation.End)
        self._filling = False

    def keyPressEvent(self, e: QKeyEvent) -> None:
        key = e.key()
        mods = e.modifiers()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if mods & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
                return
            if not mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
                self._submit()
                return
        if key == Qt.Key.Key_Up and not mods and self._recall_allowed(up=True):
            self._walk(+1)
            return
        if (
            key == Qt.Key.Key_Down
            and not mods
            and self._recall >= 0
            and self._recall_allowed(up=False)
        ):
            self._walk(-1)
            return
        if key == Qt.Key.Key_Escape and self._recall >= 0:
            self._recall = -1
            self._set_text(self._draft)
            return
        super().keyPressEvent(e)

    def _recall_allowed(self, *, up: bool) -> bool:
        if not self._sent:
            return False
        cursor = self.textCursor()
        if up:
            return self.toPlainText() == "" or (self._recall >= 0 and cursor.blockNumber() == 0)
        return cursor.blockNumber() == self.document().blockCount() - 1

    def _walk(self, step: int) -> None:
        if self._recall < 0:
            self._draft = self.toPlainText()
        new = min(max(self._recall + step, -1), len(self._sent) - 1)
        self._recall = new
        self._set_text(self._draft if new < 0 else self._sent[-1 - new])

    def _submit(self) -> None:
        text = self.toPlainText()
        if not text.strip():
            return
        self.remember(text)
        self._recall = -1
        self._draft = ""
        self._set_text("")
        self.submitted.emit(text)

    def _on_changed(self) -> None:
        self._fit()
        if self._filling:
            return
        text = self.toPlainText()
        if text and not text.startswith("/"):
            self.typingActivity.emit()

    def _fit(self) -> None:
        """Grow with the text up to a few lines, then scroll."""
        lines = max(1, min(self.document().size().height(), MAX_VISIBLE_LINES))
        fm = self.fontMetrics()
        margin = int(self.document().documentMargin() * 2 + self.frameWidth() * 2)
        self.setFixedHeight(int(lines * fm.lineSpacing()) + margin + 2)

    def resizeEvent(self, e: QResizeEvent) -> None:
        super().resizeEvent(e)
        self._fit()

    def sizeHint(self) -> QSize:
        return QSize(400, self.height())


class Composer(QFrame):
    """A rounded frame holding the input and the Send button.

    Signals: none (use ``composer.input`` and ``composer.send_button``).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("inputFrame")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(6)
        self.input = MessageInput(self)
        self.send_button = QToolButton(self)
        self.send_button.setObjectName("sendButton")
        self.send_button.setText("Send")
        self.send_button.setAccessibleName("Send message")
        self.send_button.setToolTip("Send (Enter) · new line: Shift+Enter")
        self.send_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.send_button.clicked.connect(self.input._submit)
        layout.addWidget(self.input, 1)
        layout.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        self.input.installEventFilter(self)
        self.input.textChanged.connect(self._update_button)
        self._update_button()

    def _update_button(self) -> None:
        self.send_button.setEnabled(bool(self.input.toPlainText().strip()))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.input and event.type() in (QEvent.Type.FocusIn, QEvent.Type.FocusOut):
            focused = isinstance(event, QFocusEvent) and event.type() == QEvent.Type.FocusIn
            self.setProperty("focused", "true" if focused else "false")
            self.style().unpolish(self)
            self.style().polish(self)
        return super().eventFilter(watched, event)
