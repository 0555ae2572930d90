"""Where Desktop Chat keeps its files: the platform's user data folder, unless overridden."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "desktop-chat"
ENV_DATA_DIR = "DESKTOP_CHAT_DATA_DIR"


def data_dir() -> Path:
    """The data folder: ``$DESKTOP_CHAT_DATA_DIR`` if set, else the platform's user data dir
    (``~/.local/share/desktop-chat`` on Linux, ``%LOCALAPPDATA%\\desktop-chat`` on Windows,
    ``~/Library/Application Support/desktop-chat`` on macOS)."""
    override = os.environ.get(ENV_DATA_DIR)
    if override:
        return Path(override)
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
