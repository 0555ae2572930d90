"""Files shipped in ``desktop_chat/resources``: the icons (SVG sources, rendered by Qt)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from PySide6.QtGui import QIcon


def resource_path(*parts: str) -> Path:
    """A file under the package's ``resources`` folder."""
    return Path(str(resources.files("desktop_chat").joinpath("resources", *parts)))


def icon_path(name: str) -> Path:
    return resource_path("icons", name)


def app_icon() -> QIcon:
    """The application icon (an empty icon when the file is missing from a broken install)."""
    path = icon_path("desktop-chat.svg")
    return QIcon(str(path)) if path.is_file() else QIcon()
