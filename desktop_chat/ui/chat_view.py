"""The conversation view: a ``QListView`` over a :class:`ChatModel` that behaves like a chat.

It sticks to the newest message while the user is at the bottom, keeps the view still when
older messages are prepended (it keeps the distance from the bottom), reveals held older rows
and then asks for server history when the user scrolls to the top, trims rows far above the
screen while the user reads the newest ones, opens links, copies text, and turns clicks and
keys on a file card's buttons into ``fileAction``.
"""

from __future__ import annotations

from functools import partial

from PySide6.QtCore import (
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    Qt,
    QTimer,
    QTimerEvent,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QDesktopServices,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QResizeEvent,
)
from PySide6.QtWidgets import QAbstractItemView, QListView, QMenu, QPushButton, QWidget

from desktop_chat.ui import file_card
from desktop_chat.ui.chat_delegate import ChatDelegate
from desktop_chat.ui.chat_model import ChatModel, Entry, Kind
from desktop_chat.ui.theme import LIGHT, Theme

# Rows shown at most while the user is at the bottom: every batch of new rows makes the view
# ask the delegate for the size of every row shown (~10-30 µs each from Python), so this
# bounds the cost of a batch. 120 rows are several screens; scrolling up reveals more.
WINDOW_ROWS = 120
# Rows revealed from the held ones per step when the user scrolls to the top.
REVEAL_STEP = 200
# Pixels from the top at which older messages are fetched.
TOP_MARGIN = 48
BOTTOM_SLACK = 6


def entry_as_text(entry: Entry) -> str:
    when = entry.local_time.strftime("%H:%M")
    if entry.kind in (Kind.SYSTEM, Kind.ERROR):
        return f"[{when}] {entry.text}"
    return f"[{when}] {entry.sender}: {entry.text}"


class ChatView(QListView):
    """Shows one conversation at a time.

    Signals:
        olderWanted(): the user reached the top and every held message is shown.
        linkActivated(str url): a link in a message was clicked.
        fileAction(Entry entry, str action): a file card's button ("save", "open" or "view",
            the picture) was clicked, or pressed from the keyboard (Left/Right pick, Enter or
            Space press).
    """

    olderWanted = Signal()
    linkActivated = Signal(str)
    fileAction = Signal(object, str)

    def __init__(self, parent: QWidget | None = None, theme: Theme = LIGHT) -> None:
        super().__init__(parent)
        self.setObjectName("chatView")
        self.setAccessibleName("Conversation")
        self.delegate = ChatDelegate(self, theme)
        self._background = QColor(theme.surface)
        self.setItemDelegate(self.delegate)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.verticalScrollBar().setSingleStep(24)
        # The style sheet's background for this view is drawn by the view's frame, under a
        # transparent viewport, so every repaint of new rows also repainted the frame and every
        # ancestor up to the window (about half the cost of a batch). The viewport paints its
        # own background instead (paintEvent) and says so, and only it repaints.
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.open_links = True  # tests turn this off and watch linkActivated
        self._model: ChatModel | None = None
        self._at_bottom = True
        self._anchor: int | None = None  # distance from the bottom to keep after a prepend
        self._press_link: str | None = None
        self._press_action: tuple[Entry, str] | None = None
        self._focus_entry: Entry | None = None  # the card whose button the keyboard is on
        self._unseen = 0
        # Trimming waits for the event loop: a burst of messages trims once, and rows are never
        # removed while other receivers are still handling the insertion.
        self._trim_timer = QTimer(self)
        self._trim_timer.setSingleShot(True)
        self._trim_timer.setInterval(0)
        self._trim_timer.timeout.connect(self._trim)
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range)
        self.jump_button = QPushButton("↓  Newest messages", self.viewport())
        self.jump_button.setObjectName("jumpToLatest")
        self.jump_button.setAccessibleName("Jump to the newest messages")
        self.jump_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.jump_button.clicked.connect(self.scroll_to_newest)
        self.jump_button.hide()

    # -- model -------------------------------------------------------------------------------

    def set_chat_model(self, model: ChatModel | None) -> None:
        """Show ``model`` (one conversation), scrolled to its newest message."""
        old = self._model
        if old is model:
            return
        if old is not None:
            old.rowsAboutToBeInserted.disconnect(self._before_insert)
            old.rowsInserted.disconnect(self._after_insert)
            # Shown again later, it starts at the newest rows: keep only those meanwhile.
            old.keep_rows = WINDOW_ROWS
        self._model = model
        self._anchor = None
        self._unseen = 0
        self.jump_button.hide()
        self.setModel(model)
        if model is not None:
            model.rowsAboutToBeInserted.connect(self._before_insert)
            model.rowsInserted.connect(self._after_insert)
            model.trim_older(WINDOW_ROWS)
        self._set_at_bottom(True)
        self.scroll_to_newest()

    def chat_model(self) -> ChatModel | None:
        return self._model

    def set_theme(self, theme: Theme) -> None:
        self.delegate.set_theme(theme)
        self._background = QColor(theme.surface)
        self.viewport().update()

    # Layout and painting call the delegate from C++ once per row. Entered from the event
    # loop, which runs without Python's GIL, each of those calls takes the GIL anew, and while
    # another thread runs Python (the network worker parsing a flood, the server's threads
    # when hosting) each take can wait a whole switch interval (5 ms): a layout of 120 rows
    # then stalled for up to a second in a test. Entered through these Python overrides, the
    # GIL stays with this thread for the whole layout or paint (bar the usual hand-over every
    # switch interval), so the per-row calls do not wait. The delayed layout runs in
    # timerEvent.

    def timerEvent(self, e: QTimerEvent) -> None:
        super().timerEvent(e)

    def paintEvent(self, e: QPaintEvent) -> None:
        painter = QPainter(self.viewport())
        painter.fillRect(e.rect(), self._background)
        painter.end()
        super().paintEvent(e)

    def relayout(self) -> None:
        """Recompute every row's size (after a font or theme change)."""
        if self._model is not None:
            self._model.invalidate_sizes()
        self.scheduleDelayedItemsLayout()

    # -- sticking to the bottom, keeping the view still on prepends ----------------------------

    def is_at_bottom(self) -> bool:
        return self._at_bottom

    def _set_at_bottom(self, at_bottom: bool) -> None:
        self._at_bottom = at_bottom
        if self._model is not None:
            # At the bottom, appended rows push the oldest shown ones out in the same step
            # (one layout per batch); scrolled up, nothing moves under the reader.
            self._model.keep_rows = WINDOW_ROWS if at_bottom else None

    def scroll_to_newest(self) -> None:
        self._set_at_bottom(True)
        self._unseen = 0
        self.jump_button.hide()
        if self._model is not None:
            self._model.trim_older(WINDOW_ROWS)
        self.doItemsLayout()
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _before_insert(
        self, parent: QModelIndex | QPersistentModelIndex, first: int, last: int
    ) -> None:
        model = self._model
        if model is None or first != 0 or model.rowCount() == 0:
            return
        bar = self.verticalScrollBar()
        if self._anchor is None:
            self._anchor = bar.maximum() - bar.value()

    def _after_insert(
        self, parent: QModelIndex | QPersistentModelIndex, first: int, last: int
    ) -> None:
        model = self._model
        if model is None or first == 0:
            return
        if self._at_bottom:
            if model.rowCount() > WINDOW_ROWS:
                self._trim_timer.start()
        else:
            self._unseen += last - first + 1
            self._show_jump_button()

    def _trim(self) -> None:
        if self._model is not None and self._at_bottom:
            self._model.trim_older(WINDOW_ROWS)

    def _on_range(self, minimum: int, maximum: int) -> None:
        bar = self.verticalScrollBar()
        if self._anchor is not None:
            bar.setValue(maximum - self._anchor)
            self._anchor = None
        elif self._at_bottom:
            bar.setValue(maximum)
        if maximum == 0:
            self._near_top()

    def _on_scrolled(self, value: int) -> None:
        bar = self.verticalScrollBar()
        if self._anchor is None:
            self._set_at_bottom(value >= bar.maximum() - BOTTOM_SLACK)
        if self._at_bottom:
            self._unseen = 0
            self.jump_button.hide()
        if value <= TOP_MARGIN and bar.maximum() > 0:
            self._near_top()

    def _near_top(self) -> None:
        model = self._model
        if model is None:
            return
        if model.hidden_older:
            model.reveal_older(REVEAL_STEP)
        else:
            self.olderWanted.emit()

    def _show_jump_button(self) -> None:
        text = f"↓  {self._unseen} new message{'s' if self._unseen != 1 else ''}"
        self.jump_button.setText(text)
        self.jump_button.adjustSize()
        self._place_jump_button()
        self.jump_button.show()
        self.jump_button.raise_()

    def _place_jump_button(self) -> None:
        vp = self.viewport()
        b = self.jump_button
        b.move((vp.width() - b.width()) // 2, vp.height() - b.height() - 12)

    def resizeEvent(self, e: QResizeEvent) -> None:
        super().resizeEvent(e)
        if e.size().width() != e.oldSize().width():
            # Rows are as tall as their width makes them (wrapped text, a file card's buttons
            # beside or under its name), and QListView lays rows out again by itself only when
            # the height changes (its flow is top to bottom): rows overlapped after narrowing.
            self.scheduleDelayedItemsLayout()
        self._place_jump_button()

    # -- links and copying ---------------------------------------------------------------------

    def link_at(self, pos: QPoint) -> str | None:
        """The URL under viewport position ``pos``, if any."""
        index = self.indexAt(pos)
        if not index.isValid() or self._model is None:
            return None
        entry = self._model.entry(index.row())
        return self.delegate.link_at(entry, self.visualRect(index), QPointF(pos), self.font())

    def file_action_at(self, pos: QPoint) -> tuple[Entry, str] | None:
        """The file card and its button under viewport position ``pos``, if any."""
        index = self.indexAt(pos)
        if not index.isValid() or self._model is None:
            return None
        entry = self._model.entry(index.row())
        action = self.delegate.file_action_at(entry, self.visualRect(index), pos, self.font())
        return (entry, action) if action else None

    def mouseMoveEvent(self, e: QMouseEvent) -> None:
        super().mouseMoveEvent(e)
        pos = e.position().toPoint()
        over = self.link_at(pos) or self.file_action_at(pos)
        shape = Qt.CursorShape.PointingHandCursor if over else Qt.CursorShape.ArrowCursor
        self.viewport().setCursor(shape)

    def mousePressEvent(self, e: QMouseEvent) -> None:
        self._press_link = None
        self._press_action = None
        if e.button() == Qt.MouseButton.LeftButton:
            pos = e.position().toPoint()
            self._press_link = self.link_at(pos)
            self._press_action = self.file_action_at(pos)
        if self._press_action is not None:
            # A button press, not a row selection: the card becomes the keyboard's current
            # row (its button ringed), without the selection band.
            self.setFocus(Qt.FocusReason.MouseFocusReason)
            self.selectionModel().setCurrentIndex(
                self.indexAt(e.position().toPoint()), QItemSelectionModel.SelectionFlag.NoUpdate
            )
            self._set_card_focus(*self._press_action)
            return
        super().mousePressEvent(e)

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:
        super().mouseReleaseEvent(e)
        if e.button() != Qt.MouseButton.LeftButton:
            return
        pressed, self._press_action = self._press_action, None
        if pressed is not None and self.file_action_at(e.position().toPoint()) == pressed:
            self.fileAction.emit(*pressed)
            return
        if not self._press_link:
            return
        link = self.link_at(e.position().toPoint())
        if link == self._press_link:
            self.linkActivated.emit(link)
            if self.open_links:
                QDesktopServices.openUrl(QUrl(link))
        self._press_link = None

    # -- file cards from the keyboard ----------------------------------------------------------

    def _current_card(self) -> tuple[Entry, tuple[str, ...]] | None:
        index = self.currentIndex()
        if not index.isValid() or self._model is None:
            return None
        entry = self._model.entry(index.row())
        available = file_card.actions(entry.file, entry.thumb is not None)
        return (entry, available) if available else None

    def _set_card_focus(self, entry: Entry, action: str) -> None:
        self._focus_entry = entry
        self.delegate.focused_action = action
        self.viewport().update()

    def currentChanged(
        self,
        current: QModelIndex | QPersistentModelIndex,
        previous: QModelIndex | QPersistentModelIndex,
    ) -> None:
        super().currentChanged(current, previous)
        card = self._current_card()
        if card is not None and card[0] is not self._focus_entry:
            self._set_card_focus(card[0], file_card.SAVE)  # a new card starts on Save

    def _card_key(self, e: QKeyEvent) -> bool:
        """Left/Right move between the current card's buttons; Enter or Space press one."""
        card = self._current_card()
        if card is None or e.modifiers() not in (
            Qt.KeyboardModifier.NoModifier,
            Qt.KeyboardModifier.KeypadModifier,
        ):
            return False
        entry, available = card
        focused = self.delegate.focused_action
        if self._focus_entry is not entry or focused not in available:
            focused = file_card.SAVE
        key = e.key()
        if key in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            step = 1 if key == Qt.Key.Key_Right else -1
            at = (available.index(focused) + step) % len(available)
            self._set_card_focus(entry, available[at])
            return True
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            self._set_card_focus(entry, focused)
            self.fileAction.emit(entry, focused)
            return True
        return False

    def selected_text(self) -> str:
        model = self._model
        if model is None:
            return ""
        rows = sorted(i.row() for i in self.selectionModel().selectedIndexes())
        return "\n".join(entry_as_text(model.entry(r)) for r in rows)

    def copy_selection(self) -> None:
        text = self.selected_text()
        if text:
            QGuiApplication.clipboard().setText(text)

    def keyPressEvent(self, e: QKeyEvent) -> None:
        if e.matches(QKeySequence.StandardKey.Copy):
            self.copy_selection()
            return
        if self._card_key(e):
            return
        super().keyPressEvent(e)

    def contextMenuEvent(self, e: QContextMenuEvent) -> None:
        index = self.indexAt(e.pos())
        if not index.isValid() or self._model is None:
            return
        entry = self._model.entry(index.row())
        menu = QMenu(self)
        clipboard = QGuiApplication.clipboard()
        link = self.link_at(e.pos())
        if link:
            menu.addAction("Open link", lambda: QDesktopServices.openUrl(QUrl(link)))
            menu.addAction("Copy link", lambda: clipboard.setText(link))
        for action in file_card.actions(entry.file, entry.thumb is not None):
            label = {"save": "Save to Downloads", "open": "Open", "view": "View picture"}[action]
            menu.addAction(label, partial(self.fileAction.emit, entry, action))
        menu.addAction("Copy text", lambda: clipboard.setText(entry.text))
        if len(self.selectionModel().selectedIndexes()) > 1:
            menu.addAction("Copy selected messages", self.copy_selection)
        menu.exec(e.globalPos())
