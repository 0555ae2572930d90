"""What the main window reads from and writes to the app's settings.

``desktop_chat.settings.Settings`` (over QSettings) satisfies :class:`UiSettings`; a window
made without settings (tests, screenshots) uses :class:`MemorySettings`, which writes nothing
to disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from PySide6.QtCore import QByteArray

from desktop_chat.ui.notifications import NotifyPrefs

KEY_BADGE = "ui/notifyBadge"
KEY_ALERT = "ui/notifyAlert"
KEY_EVERY_MESSAGE = "ui/notifyEveryMessage"


class UiSettings(Protocol):
    theme: str
    notifications: bool  # tray notifications
    sound: bool
    show_joins: bool
    font_size: int
    last_name: str
    window_geometry: QByteArray

    def bool_value(self, key: str, default: bool) -> bool: ...

    def set_value(self, key: str, value: object) -> None: ...


@dataclass
class MemorySettings:
    """Settings that live only as long as the window (nothing is saved)."""

    theme: str = "system"
    notifications: bool = True
    sound: bool = False
    show_joins: bool = True
    font_size: int = 0
    last_name: str = ""
    window_geometry: QByteArray = field(default_factory=QByteArray)
    values: dict[str, object] = field(default_factory=dict)

    def bool_value(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        return value if isinstance(value, bool) else default

    def set_value(self, key: str, value: object) -> None:
        self.values[key] = value


def notify_prefs(settings: UiSettings) -> NotifyPrefs:
    return NotifyPrefs(
        badge=settings.bool_value(KEY_BADGE, True),
        alert=settings.bool_value(KEY_ALERT, True),
        tray=settings.notifications,
        sound=settings.sound,
        every_message=settings.bool_value(KEY_EVERY_MESSAGE, True),
    )


def store_notify_prefs(settings: UiSettings, prefs: NotifyPrefs) -> None:
    settings.set_value(KEY_BADGE, prefs.badge)
    settings.set_value(KEY_ALERT, prefs.alert)
    settings.set_value(KEY_EVERY_MESSAGE, prefs.every_message)
    settings.notifications = prefs.tray
    settings.sound = prefs.sound
