"""The hosting window's "Invite…" dialog: a QR code for phones, the plain address beside it,
and the invitation link for the desktop app, each copied with one click.

The QR code holds the web page's address with the certificate fingerprint in its fragment
(``http://HOST:PORT/#fp=…``), so a phone that scans it knows which certificate is the host's.
The invitation link (``desktop-chat://HOST:PORT/?fp=…``) does the same for the desktop app:
pasted in the Join box or given to ``--join``, it joins without the trust question. The
comparison code is there for people who found the chat in the list instead.
"""

from __future__ import annotations

import segno
from PySide6.QtCore import QRect, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPainter, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_chat.net.protocol.invite import comparison_code, invite_link, web_url

QR_PIXELS = 220


def qr_pixmap(text: str, size: int = QR_PIXELS, ratio: float = 1.0) -> QPixmap:
    """``text`` as a QR code: dark modules on white (scanners want a light quiet zone,
    whatever the theme), at least ``size`` logical pixels, whole pixels per module."""
    qr = segno.make(text, error="m")
    border = 4
    rows = [list(row) for row in qr.matrix]
    count = len(rows) + 2 * border
    module = max(1, round(size * ratio) // count)
    side = module * count
    pix = QPixmap(side, side)
    pix.fill(QColor("#ffffff"))
    painter = QPainter(pix)
    dark = QColor("#000000")
    for y, row in enumerate(rows):
        for x, on in enumerate(row):
            if on:
                painter.fillRect(
                    QRect((x + border) * module, (y + border) * module, module, module), dark
                )
    painter.end()
    pix.setDevicePixelRatio(ratio)
    return pix


class InviteDialog(QDialog):
    """Everything needed to invite someone to the chat this window hosts.

    Signals:
        copied(str text): something was put on the clipboard.
    """

    copied = Signal(str)

    def __init__(
        self, title: str, addresses: list[str], port: int, fingerprint: str, parent: QWidget | None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("inviteDialog")
        self.setWindowTitle("Invite people")
        self.port = port
        self.fingerprint = fingerprint
        self.hosts = [a.rsplit(":", 1)[0].strip("[]") for a in addresses] or ["127.0.0.1"]
        layout = QVBoxLayout(self)
        layout.setContentsMargins(22, 18, 22, 16)
        layout.setSpacing(10)
        heading = QLabel(f"Invite people to “{title}”")
        heading.setTextFormat(Qt.TextFormat.PlainText)
        font = heading.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        heading.setFont(font)
        layout.addWidget(heading)

        grid = QGridLayout()
        grid.setHorizontalSpacing(18)
        grid.setVerticalSpacing(6)
        self.qr_label = QLabel()
        self.qr_label.setObjectName("inviteQr")
        self.qr_label.setAccessibleName("QR code of the chat's web address")
        grid.addWidget(self.qr_label, 0, 0, 7, 1, Qt.AlignmentFlag.AlignTop)

        phones = QLabel(
            "Phones: scan the code with the camera. The page it opens knows this chat's "
            "certificate, so it can tell it is really this chat."
        )
        phones.setWordWrap(True)
        grid.addWidget(phones, 0, 1, 1, 2)
        self.host_combo = QComboBox()
        self.host_combo.setObjectName("inviteAddress")
        self.host_combo.addItems(self.hosts)
        self.host_combo.setVisible(len(self.hosts) > 1)
        self.host_combo.setAccessibleName("Network address to invite on")
        self.host_combo.currentIndexChanged.connect(self._refresh)
        grid.addWidget(self.host_combo, 1, 1, 1, 2)
        self.url_edit = self._field("inviteUrl", "Web address")
        self.copy_url = self._copy_button("Copy", self.url_edit)
        grid.addWidget(self.url_edit, 2, 1)
        grid.addWidget(self.copy_url, 2, 2)

        computers = QLabel(
            "Computers with Desktop Chat: send them this invitation; pasted in “Join”, it "
            "joins without asking them to compare anything."
        )
        computers.setWordWrap(True)
        grid.addWidget(computers, 3, 1, 1, 2)
        self.link_edit = self._field("inviteLink", "Invitation link")
        self.copy_link = self._copy_button("Copy", self.link_edit)
        grid.addWidget(self.link_edit, 4, 1)
        grid.addWidget(self.copy_link, 4, 2)

        code = QLabel(
            "People who pick the chat from their list are shown this code: it must be the "
            "same as here."
        )
        code.setWordWrap(True)
        grid.addWidget(code, 5, 1, 1, 2)
        self.code_label = QLabel(comparison_code(fingerprint))
        self.code_label.setObjectName("inviteCode")
        self.code_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        big = self.code_label.font()
        big.setPointSizeF(big.pointSizeF() * 1.4)
        big.setBold(True)
        self.code_label.setFont(big)
        grid.addWidget(self.code_label, 6, 1, 1, 2)
        grid.setColumnStretch(1, 1)
        layout.addLayout(grid)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.setMinimumWidth(640)
        self._refresh()

    def _field(self, name: str, accessible: str) -> QLineEdit:
        edit = QLineEdit()
        edit.setObjectName(name)
        edit.setReadOnly(True)
        edit.setAccessibleName(accessible)
        edit.setMinimumWidth(300)
        return edit

    def _copy_button(self, text: str, edit: QLineEdit) -> QPushButton:
        button = QPushButton(text)
        button.setAccessibleName(f"Copy the {edit.accessibleName().lower()}")
        button.setAutoDefault(False)
        button.clicked.connect(lambda: self._copy(edit, button))
        return button

    def _copy(self, edit: QLineEdit, button: QPushButton) -> None:
        QGuiApplication.clipboard().setText(edit.text())
        button.setText("✓ Copied")
        self.copied.emit(edit.text())

    @property
    def host(self) -> str:
        return self.host_combo.currentText() or self.hosts[0]

    def url(self) -> str:
        return web_url(self.host, self.port, self.fingerprint)

    def link(self) -> str:
        return invite_link(self.host, self.port, self.fingerprint)

    def _refresh(self) -> None:
        self.url_edit.setText(self.url())
        self.url_edit.setCursorPosition(0)
        self.link_edit.setText(self.link())
        self.link_edit.setCursorPosition(0)
        self.qr_label.setPixmap(qr_pixmap(self.url(), ratio=self.devicePixelRatioF()))
        self.qr_label.setToolTip(self.url())
        for button in (self.copy_url, self.copy_link):
            button.setText("Copy")
