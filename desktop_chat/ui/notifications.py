"""Telling the user about messages they are not looking at.

A message in a conversation that is not on screen (another conversation is shown, or the
window is not active) raises the conversation's unread badge and notifies: a window alert
(``QApplication.alert``), a tray notification where the platform has a tray, and optionally a
sound. Each channel can be turned off in Settings; mentions of me and direct messages always
notify, even with "every message" turned off. Tests observe :attr:`Notifier.notified`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QSystemTrayIcon, QWidget

# A busy room notifies at most this often (mentions and DMs are never held back).
ROOM_QUIET_S = 10.0
PREVIEW_CHARS = 140


class Sound(Protocol):
    """Plays the notification sound; the app may plug in a real player."""

    def play(self) -> None: ...


class BeepSound:
    """The platform's beep: needs no audio library (Qt Multimedia is not a dependency)."""

    def play(self) -> None:
        QApplication.beep()


class SilentSound:
    """Counts what would have been played (for tests and machines without audio)."""

    def __init__(self) -> None:
        self.played = 0

    def play(self) -> None:
        self.played += 1


@dataclass
class NotifyPrefs:
    """Which channels are on (mirrors the Settings dialog)."""

    badge: bool = True
    alert: bool = True
    tray: bool = True
    sound: bool = False
    every_message: bool = True  # off: only mentions and direct messages


def preview(text: str) -> str:
    one_line = " ".join(text.split())
    if len(one_line) > PREVIEW_CHARS:
        return one_line[: PREVIEW_CHARS - 1] + "…"
    return one_line


class Notifier(QObject):
    """Decides whether and how to notify.

    Signals:
        notified(str conversation, str title, str text): a notification was given (whatever
            channels are on); conversation is the key (``#room`` or ``@name``).
    """

    notified = Signal(str, str, str)

    def __init__(
        self,
        window: QWidget,
        prefs: NotifyPrefs | None = None,
        sound: Sound | None = None,
        icon: QIcon | None = None,
    ) -> None:
        super().__init__(window)
        self.window = window
        self.prefs = prefs or NotifyPrefs()
        self.sound: Sound = sound or BeepSound()
        self._icon = icon or QIcon()
        self._tray: QSystemTrayIcon | None = None
        self._last_room_notice: dict[str, float] = {}

    @property
    def tray(self) -> QSystemTrayIcon | None:
        return self._tray

    def _ensure_tray(self) -> QSystemTrayIcon | None:
        if self._tray is None and QSystemTrayIcon.isSystemTrayAvailable():
            self._tray = QSystemTrayIcon(self._icon, self)
            self._tray.setToolTip("Desktop Chat")
            self._tray.messageClicked.connect(self._raise_window)
            self._tray.show()
        return self._tray

    def _raise_window(self) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()

    def should_notify(self, key: str, *, important: bool, now: float | None = None) -> bool:
        """Mentions/DMs always; other messages if "every message" is on, at most every few s."""
        if important:
            return True
        if not self.prefs.every_message:
            return False
        now = time.monotonic() if now is None else now
        last = self._last_room_notice.get(key)
        if last is not None and now - last < ROOM_QUIET_S:
            return False
        self._last_room_notice[key] = now
        return True

    def notify(self, key: str, title: str, text: str, *, important: bool) -> bool:
        """Notify about a message nobody is looking at; return whether it notified."""
        if not self.should_notify(key, important=important):
            return False
        body = preview(text)
        if self.prefs.alert:
            QApplication.alert(self.window)
        if self.prefs.tray:
            tray = self._ensure_tray()
            if tray is not None:
                tray.showMessage(title, body, self._icon, 5000)
        if self.prefs.sound:
            self.sound.play()
        self.notified.emit(key, title, body)
        return True

    def close(self) -> None:
        if self._tray is not None:
            self._tray.hide()
            self._tray.deleteLater()
            self._tray = None
