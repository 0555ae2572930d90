"""The transfer panel above the composer: one row per upload or download, with its progress,
speed and time left, or why it waits.

The panel never squeezes the conversation: it is at most a third of the chat column's height
and scrolls inside beyond that. A finished transfer's row clears itself after a few seconds
(the file's card says it was saved); a failed one stays, with its reason, until dismissed.
A one-second tick, running only while some row needs it, turns a transfer whose bytes stopped
moving into "stalled" (or "reconnecting…") instead of a stale speed, and clears done rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_chat.ui import file_card
from desktop_chat.ui.transfers import Transfer, TransferManager, status_line

CLEAR_DONE_AFTER = 4.0  # seconds a finished transfer's row stays
_TICK_MS = 1000
_SHARE_OF_COLUMN = 3  # the panel takes at most 1/3 of the chat column's height


class TransferRow(QWidget):
    """One transfer: name, progress bar, Cancel (✕ to clear it from the list once it ended),
    and under them speed and time left, or why it waits (the whole reason in the tooltip).
    Nothing in it widens the window: a long name is elided and the line of details is cut
    rather than pushing the chat aside."""

    def __init__(self, t: Transfer, manager: TransferManager, panel: TransferPanel) -> None:
        super().__init__()
        self.tid = t.id
        self.done_at: float | None = None  # when it finished (it clears itself later)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 2, 4, 2)
        outer.setSpacing(0)
        top = QHBoxLayout()
        arrow = "↑" if t.kind == "upload" else "↓"
        shown = file_card.display_name(t.name)
        self.name = QLabel()
        self.name.setText(
            self.name.fontMetrics().elidedText(
                f"{arrow} {shown}", Qt.TextElideMode.ElideMiddle, 140
            )
        )
        self.name.setToolTip(shown)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setAccessibleName(f"Progress of {shown}")
        self.cancel = QPushButton("Cancel")
        self.cancel.setAccessibleName(f"Cancel {shown}")
        self.cancel.clicked.connect(lambda: manager.cancel(self.tid))
        self.dismiss = QToolButton()
        self.dismiss.setText("✕")
        self.dismiss.setAutoRaise(True)
        self.dismiss.setAccessibleName(f"Clear {shown} from the list")
        self.dismiss.setToolTip("Clear from the list")
        self.dismiss.clicked.connect(lambda: panel.dismiss(self.tid))
        for w, stretch in ((self.name, 0), (self.bar, 1), (self.cancel, 0), (self.dismiss, 0)):
            top.addWidget(w, stretch)
        self.detail = QLabel()
        self.detail.setProperty("role", "muted")
        self.detail.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        outer.addLayout(top)
        outer.addWidget(self.detail)

    def update_from(self, t: Transfer, now: float, connected: bool) -> None:
        self.bar.setValue(int(1000 * t.done / t.size) if t.size else 1000)
        text = status_line(t, now, connected)
        self.detail.setText(text)
        self.detail.setToolTip(t.why or text)
        active = t.state in ("running", "waiting")
        self.cancel.setVisible(active)
        self.dismiss.setVisible(not active)
        if t.state == "done" and self.done_at is None:
            self.done_at = now


class _OnEvent(QObject):
    """Calls back when the watched widget gets an event of ``kind`` (the scroll area's own
    eventFilter is busy with its scroll bars)."""

    def __init__(self, watched: QWidget, kind: QEvent.Type, callback: Callable[[], None]) -> None:
        super().__init__(watched)
        self._kind = kind
        self._callback = callback
        watched.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == self._kind:
            self._callback()
        return False


class TransferPanel(QScrollArea):
    """The transfers of this window, one row each; hidden when there are none.

    ``connected`` says whether the chat is connected (a stalled transfer then waits for the
    server, else for the chat to reconnect)."""

    def __init__(
        self, manager: TransferManager, connected: Callable[[], bool] = lambda: True
    ) -> None:
        super().__init__()
        self.setObjectName("transferPanel")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.manager = manager
        self._connected = connected
        self.rows: dict[str, TransferRow] = {}
        self._dismissed: set[str] = set()
        inner = QWidget()
        inner.setObjectName("transferRows")
        self._layout = QVBoxLayout(inner)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(0)
        self._layout.addStretch(0)
        self.setWidget(inner)
        # A row's text changed its height: the panel follows once the layout settled.
        _OnEvent(inner, QEvent.Type.LayoutRequest, self._fit)
        self._tick = QTimer(self)
        self._tick.setInterval(_TICK_MS)
        self._tick.timeout.connect(self._on_tick)
        self._column: QWidget | None = None
        manager.changed.connect(self._on_changed)
        self.setVisible(False)

    def follow_column(self, column: QWidget) -> None:
        """Keep the panel at most a third of ``column``'s height (the chat's column)."""
        self._column = column
        _OnEvent(column, QEvent.Type.Resize, self._fit)
        self._fit()

    def close_panel(self) -> None:
        """The window closes: the tick stops."""
        self._tick.stop()

    def _on_changed(self, tid: str) -> None:
        if tid in self._dismissed:
            return
        t = self.manager.transfers[tid]
        row = self.rows.get(tid)
        if row is None:
            row = self.rows[tid] = TransferRow(t, self.manager, self)
            self._layout.insertWidget(self._layout.count() - 1, row)
        row.update_from(t, time.monotonic(), self._connected())
        self._refresh()

    def _on_tick(self) -> None:
        now, connected = time.monotonic(), self._connected()
        for tid, row in list(self.rows.items()):
            t = self.manager.transfers.get(tid)
            if t is None:
                continue
            if row.done_at is not None and now - row.done_at >= CLEAR_DONE_AFTER:
                self.dismiss(tid)
            else:
                row.update_from(t, now, connected)
        self._refresh()

    def dismiss(self, tid: str) -> None:
        """Clear an ended transfer's row."""
        row = self.rows.pop(tid, None)
        if row is not None:
            self._dismissed.add(tid)
            self._layout.removeWidget(row)
            row.deleteLater()
        self._refresh()

    def _refresh(self) -> None:
        self.setVisible(bool(self.rows))
        ticking = any(
            r.done_at is not None or self.manager.transfers[tid].state == "running"
            for tid, r in self.rows.items()
            if tid in self.manager.transfers
        )
        if ticking and not self._tick.isActive():
            self._tick.start()
        elif not ticking:
            self._tick.stop()
        self._fit()

    def _fit(self) -> None:
        """As tall as its rows, but never more than a third of the chat column."""
        # The rows' own hints: the inner layout's is stale until the next event loop round.
        wanted = sum(r.sizeHint().height() for r in self.rows.values()) + 2 * self.frameWidth()
        cap = self._column.height() // _SHARE_OF_COLUMN if self._column is not None else wanted
        self.setFixedHeight(max(0, min(wanted, cap)))
