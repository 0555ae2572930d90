"""The "Why can't I see anyone?" view: the network check, run off the GUI thread, in plain words.

:func:`~desktop_chat.net.netcheck.run_check` blocks for its whole timeout (about two seconds),
so it runs on a plain ``threading.Thread``: it needs no Qt event loop, which a QThread worker
would only add. The thread never touches a widget; it emits one signal of a relay object,
delivered queued in the GUI thread, and ends.

Closing the dialog while a check runs does not wait for it (the GUI never blocks on the
network): the check ends by itself within its deadline, and its thread is joined in the GUI
thread when the result arrives, the dialog keeping it until then. :meth:`NetCheckDialog.wait`
joins at once, for shutdown and tests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication, QShowEvent
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_chat.net.discovery.broadcast import BROADCAST_PORT
from desktop_chat.net.discovery.netcheck import format_report, run_check

log = logging.getLogger(__name__)

_FAILED = "The check stopped on an unexpected error; the program's log says more."


class _Relay(QObject):
    """The worker thread's only way back: (check number, report text)."""

    done = Signal(int, str)


def _work(
    relay: _Relay,
    generation: int,
    port: int,
    interfaces: Sequence[str] | None,
    broadcast_port: int,
    timeout: float,
) -> None:
    """The worker thread: run the check, hand the text to the GUI thread, end."""
    text = ""
    try:
        report = run_check(
            port, interfaces=interfaces, timeout=timeout, broadcast_port=broadcast_port
        )
        text = format_report(report)
    except (OSError, ValueError) as exc:
        text = f"The network check could not run: {exc}"
    finally:
        # Also after an unexpected error (which then reaches threading's excepthook), so the
        # dialog never stays busy.
        try:
            relay.done.emit(generation, text)
        except RuntimeError:
            # The dialog (and its relay) were deleted while checking: nobody is left to tell.
            log.debug("network check finished after its dialog was deleted")


class NetCheckDialog(QDialog):
    """Checks this computer's network when shown and says in plain words what blocks
    discovery and what to try.

    Signals:
        checkFinished(str): a check ended; its report (also shown in the dialog).
    """

    checkFinished = Signal(str)

    def __init__(
        self,
        port: int,
        *,
        interfaces: Sequence[str] | None = None,
        broadcast_port: int = BROADCAST_PORT,
        timeout: float = 2.0,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("netcheckDialog")
        self.setWindowTitle("Why can't I see anyone?")
        self._port = port
        self._interfaces = tuple(interfaces) if interfaces is not None else None
        self._broadcast_port = broadcast_port
        self._timeout = timeout
        self._thread: threading.Thread | None = None
        self._generation = 0
        self._report = ""
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done, Qt.ConnectionType.QueuedConnection)
        self._build()
        self._set_busy(False)

    def _build(self) -> None:
        self.setStyleSheet(
            """
            QLabel#netcheckTitle { font-size: 14pt; font-weight: 700; }
            QLabel[role="hint"] { color: palette(placeholder-text); }
            """
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 18, 20, 16)
        layout.setSpacing(10)
        title = QLabel("Why can't I see anyone?")
        title.setObjectName("netcheckTitle")
        intro = QLabel(
            "This checks what this computer can check by itself: its network addresses, the "
            "chat port, and whether automatic discovery can send and hear its packets here."
        )
        intro.setProperty("role", "hint")
        intro.setWordWrap(True)
        layout.addWidget(title)
        layout.addWidget(intro)

        busy = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setObjectName("netcheckProgress")
        self.progress.setRange(0, 0)  # "busy", no percentage: the check has no steps to count
        self.progress.setTextVisible(False)
        self.progress.setMaximumWidth(140)
        self.busy_label = QLabel()
        self.busy_label.setObjectName("netcheckBusy")
        busy.addWidget(self.progress)
        busy.addWidget(self.busy_label, 1)
        layout.addLayout(busy)

        self.report_view = QPlainTextEdit()
        self.report_view.setObjectName("netcheckReport")
        self.report_view.setAccessibleName("Network check report")
        self.report_view.setReadOnly(True)
        self.report_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.report_view.setMinimumSize(520, 300)
        layout.addWidget(self.report_view, 1)

        buttons = QHBoxLayout()
        self.copy_button = QPushButton("&Copy report")
        self.copy_button.setObjectName("netcheckCopy")
        self.copy_button.setAutoDefault(False)
        self.copy_button.setToolTip("Copy the report, to send it to whoever helps you")
        self.copy_button.clicked.connect(self._copy)
        self.again_button = QPushButton("Check &again")
        self.again_button.setObjectName("netcheckAgain")
        self.again_button.setAutoDefault(False)
        self.again_button.clicked.connect(self.start_check)
        self.close_button = QPushButton("Close")
        self.close_button.setObjectName("netcheckClose")
        self.close_button.setDefault(True)
        self.close_button.clicked.connect(self.reject)
        buttons.addWidget(self.copy_button)
        buttons.addStretch(1)
        buttons.addWidget(self.again_button)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)
        self.resize(640, 520)

    # -- the check ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    def set_port(self, port: int) -> None:
        """The TCP port to check (used from the next check on)."""
        self._port = port

    @Slot()
    def start_check(self) -> bool:
        """Start a check in the background; False (nothing done) while one is running."""
        if self._thread is not None:
            return False
        self._generation += 1
        thread = threading.Thread(
            target=_work,
            args=(
                self._relay,
                self._generation,
                self._port,
                self._interfaces,
                self._broadcast_port,
                self._timeout,
            ),
            name="netcheck-dialog",
            # A check is bounded by its deadline, but quitting the app must not wait for it.
            daemon=True,
        )
        self._thread = thread
        self._set_busy(True)
        thread.start()
        return True

    def is_running(self) -> bool:
        """True from start_check() until the result is shown (or wait() joined the thread)."""
        return self._thread is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Join the worker thread; True when none is left. Blocks: for shutdown and tests."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            return False
        self._thread = None  # its result, still queued, is shown when the event loop runs
        return True

    def report_text(self) -> str:
        """The last report shown ("" before the first check ends)."""
        return self._report

    @Slot(int, str)
    def _on_done(self, generation: int, text: str) -> None:
        if generation != self._generation:
            return
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()  # it has just emitted its last word: this returns at once
        self._report = text or _FAILED
        self.report_view.setPlainText(self._report)
        self._set_busy(False)
        self.checkFinished.emit(self._report)

    def _set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.again_button.setEnabled(not busy)
        self.copy_button.setEnabled(not busy and bool(self._report))
        if busy:
            seconds = max(1, round(self._timeout + 0.5))
            self.busy_label.setText(f"Checking the network… (about {seconds} s)")
            self.busy_label.show()
            self.report_view.setPlainText("")
            self.report_view.setPlaceholderText("The report appears here when the check ends.")
        else:
            self.busy_label.hide()

    @Slot()
    def _copy(self) -> None:
        clipboard = QGuiApplication.clipboard()
        if clipboard is not None and self._report:
            clipboard.setText(self._report)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        # Each opening checks again: the person may have changed the network meanwhile.
        if not event.spontaneous():
            self.start_check()
