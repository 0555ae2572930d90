"""The "you are hosting" card: the addresses others can use to join, copied with one click,
the short code people who found the chat in their list compare, the certificate fingerprint
(to compare or paste), and "Invite people…" (a QR code and an invitation link)."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QFrame, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from desktop_chat.net.protocol.invite import comparison_code
from desktop_chat.net.protocol.tls import group_for_reading
from desktop_chat.ui.certificates import fingerprint_font, fingerprint_lines

COPIED_FEEDBACK_MS = 1500
FINGERPRINT_HINT = "Fingerprint (people joining compare it; click to copy):"


def copy_icon(colour: QColor, size: int = 14) -> QIcon:
    """Two overlapping sheets: the usual "copy" mark, drawn so no icon font is needed."""
    ratio = 2.0
    pix = QPixmap(int(size * ratio), int(size * ratio))
    pix.setDevicePixelRatio(ratio)
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.setPen(QPen(colour, 1.3))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    s = float(size)
    painter.drawRoundedRect(QRectF(s * 0.08, s * 0.08, s * 0.58, s * 0.58), 2, 2)
    painter.setBrush(colour)
    painter.drawRoundedRect(QRectF(s * 0.34, s * 0.34, s * 0.58, s * 0.58), 2, 2)
    painter.end()
    return QIcon(pix)


class HostingCard(QFrame):
    """Shown in the sidebar while this app hosts the chat.

    Signals:
        copied(str text): an address or the fingerprint was put on the clipboard.
        inviteRequested(): "Invite people…" was pressed.
    """

    copied = Signal(str)
    inviteRequested = Signal()

    def __init__(
        self,
        title: str,
        addresses: list[str],
        parent: QWidget | None = None,
        icon_colour: str = "#6b7280",
        fingerprint: str | None = None,
    ) -> None:
        super().__init__(parent)
        self._icon = copy_icon(QColor(icon_colour))
        self.setObjectName("hostingCard")
        self.setAccessibleName("Hosting")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 12)
        layout.setSpacing(6)
        self.title_label = QLabel()
        self.title_label.setObjectName("hostingTitle")
        self.title_label.setWordWrap(True)
        bold = self.title_label.font()
        bold.setBold(True)
        self.title_label.setFont(bold)
        layout.addWidget(self.title_label)
        hint = QLabel("Others on your network can join at:")
        hint.setProperty("role", "muted")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.addresses_hint = hint
        self.compact = False
        self._full_height = 0
        self.buttons: list[QToolButton] = []
        for address in addresses:
            button = QToolButton()
            button.setProperty("role", "address")
            button.setText(address)
            button.setIcon(self._icon)
            button.setIconSize(QSize(14, 14))
            button.setLayoutDirection(Qt.LayoutDirection.RightToLeft)  # icon after the text
            button.setToolTip(f"Copy {address}")
            button.setAccessibleName(f"Copy the address {address}")
            button.setCursor(Qt.CursorShape.PointingHandCursor)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            button.clicked.connect(lambda _=False, a=address, b=button: self._copy(a, b))
            layout.addWidget(button, 0, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignAbsolute)
            self.buttons.append(button)
        self.fingerprint = fingerprint
        self.fingerprint_hint: QLabel | None = None
        self.fingerprint_button: QToolButton | None = None
        self.code_label: QLabel | None = None
        self.invite_button: QPushButton | None = None
        if fingerprint is not None:
            self._add_code(layout, fingerprint)
            self._add_fingerprint(layout, fingerprint)
            self.invite_button = QPushButton("&Invite people…")
            self.invite_button.setObjectName("inviteButton")
            self.invite_button.setToolTip("A QR code for phones and an invitation link")
            self.invite_button.clicked.connect(self.inviteRequested)
            layout.addSpacing(4)
            layout.addWidget(self.invite_button)
        self.set_title(title)

    def _add_code(self, layout: QVBoxLayout, fingerprint: str) -> None:
        code = comparison_code(fingerprint)
        label = QLabel(f"Code to compare:\n{code}")
        label.setTextFormat(Qt.TextFormat.PlainText)
        label.setObjectName("hostCode")
        label.setToolTip(
            "People who choose this chat from their list are shown this code: "
            f"it must be the same on their screen.\nFingerprint: {group_for_reading(fingerprint)}"
        )
        label.setAccessibleName(f"Code to compare {code}")
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        label.setWordWrap(True)
        layout.addSpacing(4)
        layout.addWidget(label)
        self.code_label = label

    def _add_fingerprint(self, layout: QVBoxLayout, fingerprint: str) -> None:
        hint = QLabel(FINGERPRINT_HINT)
        hint.setObjectName("fingerprintHint")
        hint.setProperty("role", "muted")
        hint.setWordWrap(True)
        layout.addSpacing(4)
        layout.addWidget(hint)
        readable = group_for_reading(fingerprint)
        button = QToolButton()
        button.setObjectName("hostFingerprint")
        button.setProperty("role", "address")
        button.setText(fingerprint_lines(fingerprint))
        button.setFont(fingerprint_font(0.95))
        button.setToolTip("Copy the fingerprint")
        button.setAccessibleName("Copy the certificate fingerprint")
        button.setAccessibleDescription(readable)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        button.clicked.connect(lambda: self._copy_fingerprint(readable))
        layout.addWidget(button, 0, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignAbsolute)
        self.fingerprint_hint, self.fingerprint_button = hint, button

    def _copy_fingerprint(self, readable: str) -> None:
        QGuiApplication.clipboard().setText(readable)
        hint = self.fingerprint_hint
        if hint is not None:
            # The hint line changes, not the button: four lines would jump to one and back.
            hint.setText("✓ Fingerprint copied")
            QTimer.singleShot(COPIED_FEEDBACK_MS, hint, lambda: hint.setText(FINGERPRINT_HINT))
        self.copied.emit(readable)

    def full_height(self, width: int) -> int:
        """The card's height with everything shown, at ``width`` (remembered from when it
        was last shown whole, while folded)."""
        if self.compact:
            return self._full_height
        layout = self.layout()
        self._full_height = layout.totalHeightForWidth(width) if layout is not None else 0
        return self._full_height

    def set_compact(self, compact: bool) -> None:
        """Fold the card to its title and "Invite people…" (short or narrow windows): the
        invite dialog has the addresses, the code and the fingerprint."""
        if compact == self.compact or self.invite_button is None:
            return
        self.compact = compact
        for widget in (
            self.addresses_hint,
            *self.buttons,
            self.code_label,
            self.fingerprint_hint,
            self.fingerprint_button,
        ):
            if widget is not None:
                widget.setVisible(not compact)
        self.updateGeometry()

    def full_width(self) -> int:
        """The narrowest the card shows the fingerprint uncut."""
        button = self.fingerprint_button
        if button is None:
            return 0
        margins = self.contentsMargins()
        layout = self.layout()
        inner = layout.contentsMargins() if layout is not None else margins
        return button.sizeHint().width() + inner.left() + inner.right() + 4

    def set_icon_colour(self, colour: str) -> None:
        self._icon = copy_icon(QColor(colour))
        for button in self.buttons:
            button.setIcon(self._icon)

    def set_title(self, title: str) -> None:
        self.title_label.setText(f"You are hosting “{title}”")

    def _copy(self, address: str, button: QToolButton) -> None:
        QGuiApplication.clipboard().setText(address)
        button.setText(f"{address}  ✓ Copied")
        QTimer.singleShot(COPIED_FEEDBACK_MS, button, lambda: button.setText(address))
        self.copied.emit(address)
