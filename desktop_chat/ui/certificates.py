"""Asking the person whether to trust a chat's certificate, like SSH's "authenticity of host".

:class:`CertificateDialog` shows a fingerprint grouped for reading aloud: the first time a chat
is joined (compare it with the host's screen, then trust it) and, as a warning whose default is
*not* to connect, when a chat's certificate is not the one trusted before.
:class:`CertificatePrompter` puts these dialogs between a ChatClient's questions and its
answers.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from desktop_chat.net.client.pins import pin_key
from desktop_chat.net.client.worker import ChatClient
from desktop_chat.net.protocol.invite import comparison_code
from desktop_chat.net.protocol.tls import group_for_reading

GROUPS_PER_LINE = 4


def fingerprint_lines(fingerprint: str) -> str:
    """``A2BD 2812 04D5 66F1`` on four lines: groups of four, four to a line."""
    groups = group_for_reading(fingerprint).split()
    lines = [groups[i : i + GROUPS_PER_LINE] for i in range(0, len(groups), GROUPS_PER_LINE)]
    return "\n".join(" ".join(line) for line in lines)


def fingerprint_font(scale: float = 1.0) -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    if scale != 1.0 and font.pointSizeF() > 0:
        font.setPointSizeF(font.pointSizeF() * scale)
    return font


def fingerprint_label(fingerprint: str, object_name: str, scale: float = 1.15) -> QLabel:
    """The fingerprint in a fixed-width font, selectable, in a framed box."""
    label = QLabel(fingerprint_lines(fingerprint))
    label.setObjectName(object_name)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setFont(fingerprint_font(scale))
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setAccessibleName("Fingerprint")
    label.setAccessibleDescription(group_for_reading(fingerprint))
    label.setFrameShape(QFrame.Shape.StyledPanel)
    label.setContentsMargins(14, 10, 14, 10)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    return label


class CertificateDialog(QDialog):
    """Trust ``presented`` for ``where``? ``pinned`` (the one trusted before) makes it the
    "certificate changed" warning.

    Signals: the standard QDialog signals; accepted means "trust it".
    """

    def __init__(
        self,
        where: str,
        presented: str,
        pinned: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.presented = presented
        self.changed = pinned is not None
        self.setObjectName("certificateChangedDialog" if self.changed else "certificateDialog")
        self.setWindowTitle(
            "Warning: the chat's identity has changed" if self.changed else "Check the chat"
        )
        self.setMinimumWidth(460)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(22, 18, 22, 16)
        layout.setSpacing(10)

        head = QHBoxLayout()
        head.setSpacing(12)
        icon = self.style().standardIcon(
            QStyle.StandardPixmap.SP_MessageBoxWarning
            if self.changed
            else QStyle.StandardPixmap.SP_MessageBoxQuestion
        )
        icon_label = QLabel()
        icon_label.setPixmap(icon.pixmap(40, 40))
        head.addWidget(icon_label, 0, Qt.AlignmentFlag.AlignTop)
        title = QLabel(
            "This chat's identity has changed"
            if self.changed
            else "Is this the chat you want to join?"
        )
        title.setObjectName("certificateTitle")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        font.setBold(True)
        title.setFont(font)
        title.setWordWrap(True)
        head.addWidget(title, 1, Qt.AlignmentFlag.AlignVCenter)
        layout.addLayout(head)

        if pinned is None:
            self._build_first_use(layout, where, presented)
        else:
            self._build_changed(layout, where, pinned, presented)

        self.buttons = QDialogButtonBox()
        if self.changed:
            # The safe answer is the default one: Enter never trusts a changed certificate.
            self.trust_button = QPushButton("&Trust the new certificate")
            self.refuse_button = QPushButton("&Don't connect")
            self.buttons.addButton(self.trust_button, QDialogButtonBox.ButtonRole.AcceptRole)
            self.buttons.addButton(self.refuse_button, QDialogButtonBox.ButtonRole.RejectRole)
            self.trust_button.setAutoDefault(False)
            self.refuse_button.setDefault(True)
            self.refuse_button.setFocus()
        else:
            self.trust_button = QPushButton("&Trust and join")
            self.refuse_button = QPushButton("&Cancel")
            self.buttons.addButton(self.trust_button, QDialogButtonBox.ButtonRole.AcceptRole)
            self.buttons.addButton(self.refuse_button, QDialogButtonBox.ButtonRole.RejectRole)
            self.trust_button.setDefault(True)
        self.trust_button.setObjectName("trustButton")
        self.refuse_button.setObjectName("refuseButton")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

    def _text(self, text: str, *, muted: bool = False) -> QLabel:
        label = QLabel(text)
        label.setWordWrap(True)
        label.setTextFormat(Qt.TextFormat.PlainText)  # host names are never markup
        if muted:
            label.setProperty("role", "muted")
        return label

    def _build_first_use(self, layout: QVBoxLayout, where: str, presented: str) -> None:
        layout.addWidget(
            self._text(
                f"This is the first time you join the chat at {where}. Anyone on the network "
                "could pretend to be it: check that the host's window shows this code "
                "(read it aloud to each other):"
            )
        )
        self.code_view = QLabel(comparison_code(presented))
        self.code_view.setObjectName("comparisonCode")
        self.code_view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.code_view.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        big = self.code_view.font()
        big.setPointSizeF(big.pointSizeF() * 1.6)
        big.setBold(True)
        self.code_view.setFont(big)
        self.code_view.setAccessibleName("Code to compare")
        layout.addWidget(self.code_view)
        layout.addWidget(self._text("or compare the whole fingerprint:", muted=True))
        self.fingerprint_view = fingerprint_label(presented, "presentedFingerprint", 1.0)
        layout.addWidget(self.fingerprint_view)
        layout.addWidget(
            self._text(
                "If they are the same, trust it: you will not be asked again for this chat.",
                muted=True,
            )
        )

    def _build_changed(self, layout: QVBoxLayout, where: str, pinned: str, presented: str) -> None:
        layout.addWidget(
            self._text(
                f"The chat at {where} shows a different certificate from the one you trusted "
                "before. That happens when the host reinstalled Desktop Chat or removed its "
                "data folder, but it is also exactly what someone pretending to be the chat "
                "would look like. Desktop Chat did not connect."
            )
        )
        layout.addWidget(self._text("Trusted before:", muted=True))
        self.pinned_view = fingerprint_label(pinned, "pinnedFingerprint", 1.0)
        self.pinned_view.setEnabled(False)  # greyed: the old one is history
        layout.addWidget(self.pinned_view)
        layout.addWidget(self._text("Shown now:", muted=True))
        self.fingerprint_view = fingerprint_label(presented, "presentedFingerprint")
        layout.addWidget(self.fingerprint_view)
        layout.addWidget(
            self._text(
                "Trust the new certificate only if the host confirms this fingerprint on "
                "their screen.",
            )
        )


class CertificatePrompter(QObject):
    """Answers a ChatClient's certificate questions with :class:`CertificateDialog`.

    ``parent_for`` gives the window the dialog belongs to (the start screen before the chat
    window is shown). The dialog is window-modal and non-blocking (``open()``).

    Signals:
        asked(object dialog): a dialog is on screen (tests drive it through this).
        answered(bool trusted): the person decided.
    """

    asked = Signal(object)
    answered = Signal(bool)

    def __init__(self, client: ChatClient, parent_for: Callable[[], QWidget | None]) -> None:
        super().__init__(client)
        self.client = client
        self.parent_for = parent_for
        self.dialog: CertificateDialog | None = None
        client.certificateUnknown.connect(self._unknown)
        client.certificateChanged.connect(self._changed)

    @Slot(str, int, str)
    def _unknown(self, host: str, port: int, presented: str) -> None:
        self._ask(CertificateDialog(pin_key(host, port), presented, None, self.parent_for()))

    @Slot(str, int, str, str)
    def _changed(self, host: str, port: int, pinned: str, presented: str) -> None:
        self._ask(CertificateDialog(pin_key(host, port), presented, pinned, self.parent_for()))

    def _ask(self, dialog: CertificateDialog) -> None:
        stale, self.dialog = self.dialog, dialog
        if stale is not None:
            stale.close()  # a question from an earlier attempt: its answer is not wanted
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.finished.connect(lambda result, d=dialog: self._decided(d, result))
        dialog.open()
        self.asked.emit(dialog)

    def dismiss(self) -> None:
        """Close the question on screen without answering (the connection is given up)."""
        dialog, self.dialog = self.dialog, None
        if dialog is not None:
            dialog.close()

    def _decided(self, dialog: CertificateDialog, result: int) -> None:
        if self.dialog is not dialog:
            return
        self.dialog = None
        trusted = result == QDialog.DialogCode.Accepted
        if self.client.is_closed():
            return
        if trusted:
            self.client.accept_certificate(dialog.presented)
        else:
            self.client.reject_certificate()
        self.answered.emit(trusted)
