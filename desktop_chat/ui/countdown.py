"""The reconnect countdown in the connection banner: "… Reconnecting in 7 s…", each second."""

from __future__ import annotations

import math
import time

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QLabel


class Countdown(QObject):
    """Counts down to the client's next attempt in ``label``; :meth:`stop` on any new state.

    Signals: none.
    """

    def __init__(self, label: QLabel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.label = label
        self.why = ""
        self.deadline = 0.0
        self.timer = QTimer(self)
        self.timer.setInterval(250)  # a whole second never shows for long past its turn
        self.timer.timeout.connect(self._tick)

    def start(self, why: str, seconds: float) -> None:
        self.why = why
        self.deadline = time.monotonic() + seconds
        self._tick()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def seconds_left(self) -> int:
        return max(1, math.ceil(self.deadline - time.monotonic()))

    def _tick(self) -> None:
        if time.monotonic() >= self.deadline:
            self.timer.stop()
            return
        # A no-break space: "8 s…" never wraps apart.
        self.label.setText(f"{self.why}. Reconnecting in {self.seconds_left()}\u00a0s…")
