"""The About dialog: what this is, its version, and the Qt it runs on."""

from __future__ import annotations

import platform

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, qVersion
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from desktop_chat import __version__
from desktop_chat.ui.icons import app_icon


class AboutDialog(QDialog):
    """Signals: the standard QDialog signals."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("aboutDialog")
        self.setWindowTitle("About Desktop Chat")
        layout = QVBoxLayout(self)
        layout.setSpacing(8)
        layout.setContentsMargins(28, 24, 28, 16)
        logo = QLabel()
        logo.setPixmap(app_icon().pixmap(72, 72))
        logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(logo)
        title = QLabel("Desktop Chat")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        title.setFont(font)
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(title)
        self.version_label = QLabel(f"Version {__version__}")
        self.version_label.setObjectName("versionLabel")
        self.version_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.version_label)
        blurb = QLabel(
            "Group chat for your local network: host a chat with one click, or join one "
            "that someone nearby is hosting. Also reachable with netcat and a web browser."
        )
        blurb.setWordWrap(True)
        blurb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        blurb.setMinimumWidth(320)
        layout.addWidget(blurb)
        details = QLabel(
            f"Qt {qVersion()} · PySide6 {pyside_version} · Python {platform.python_version()}"
        )
        details.setProperty("role", "muted")
        details.setAlignment(Qt.AlignmentFlag.AlignCenter)
        details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(details)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)
