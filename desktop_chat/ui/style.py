"""The app's widget style: Fusion, with check boxes that stay visible in the dark theme.

Fusion draws a check box's frame in a shade of the window colour, which all but disappears on a
dark window. :class:`ChatStyle` draws the box itself from the palette the theme sets (frame in
the placeholder colour, checked boxes in the accent colour with a tick), so every dialog gets
the same visible boxes without a style sheet rule per widget.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QProxyStyle, QStyle, QStyleFactory, QStyleOption, QWidget

STYLED = "desktopChatStyled"  # an application property: ChatStyle is installed


class ChatStyle(QProxyStyle):
    """Fusion with its own check box indicator (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(QStyleFactory.create("Fusion"))

    def drawPrimitive(
        self,
        element: QStyle.PrimitiveElement,
        option: QStyleOption,
        painter: QPainter,
        widget: QWidget | None = None,
    ) -> None:
        if element != QStyle.PrimitiveElement.PE_IndicatorCheckBox:
            super().drawPrimitive(element, option, painter, widget)
            return
        pal = option.palette
        state = option.state
        enabled = bool(state & QStyle.StateFlag.State_Enabled)
        group = QPalette.ColorGroup.Active if enabled else QPalette.ColorGroup.Disabled
        on = bool(state & (QStyle.StateFlag.State_On | QStyle.StateFlag.State_NoChange))
        box = QRectF(option.rect).adjusted(1.5, 1.5, -1.5, -1.5)
        side = min(box.width(), box.height())
        box = QRectF(box.center().x() - side / 2, box.center().y() - side / 2, side, side)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if on:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(pal.color(group, QPalette.ColorRole.Highlight))
        else:
            frame = pal.color(group, QPalette.ColorRole.PlaceholderText)
            if state & QStyle.StateFlag.State_MouseOver and enabled:
                frame = pal.color(group, QPalette.ColorRole.Highlight)
            painter.setPen(QPen(frame, 1.3))
            painter.setBrush(pal.color(group, QPalette.ColorRole.Base))
        painter.drawRoundedRect(box, 3, 3)
        if on:
            pen = QPen(pal.color(group, QPalette.ColorRole.HighlightedText), max(1.6, side / 8))
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            if state & QStyle.StateFlag.State_NoChange:
                y = box.center().y()
                painter.drawLine(QPointF(box.left() + 3, y), QPointF(box.right() - 3, y))
            else:
                tick = QPainterPath(QPointF(box.left() + side * 0.22, box.top() + side * 0.52))
                tick.lineTo(box.left() + side * 0.42, box.top() + side * 0.72)
                tick.lineTo(box.left() + side * 0.78, box.top() + side * 0.30)
                painter.drawPath(tick)
        painter.restore()
