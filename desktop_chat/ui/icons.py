"""Icons shipped in ``desktop_chat/resources/icons`` (SVG sources, rendered by Qt)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from PySide6.QtGui import QIcon


def icon_path(name: str) -> Path:
    return Path(str(resources.files("desktop_chat") / "resources" / "icons" / name))


def app_icon() -> QIcon:
    """The application icon (an empty icon when the file is missing from a broken install)."""
    path = icon_path("desktop-chat.svg")
    return QIcon(str(path)) if path.is_file() else QIcon()
