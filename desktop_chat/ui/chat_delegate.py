"""Paints conversation rows: avatar, coloured name, time, grouped follow-ups, system lines.

Message text is laid out with ``QTextLayout`` as plain text (never HTML: ``<b>x</b>`` shows
as typed) with formats only for link ranges and mentions of me. The same layout code answers
``sizeHint`` (cached in the entry per width), ``paint`` and "which link is under the mouse".
A shared file's row is a card instead of text (:mod:`desktop_chat.ui.file_card`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import date

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRect,
    QRectF,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QFontMetricsF,
    QPainter,
    QPen,
    QTextCharFormat,
    QTextLayout,
    QTextLine,
    QTextOption,
)
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from desktop_chat.ui import file_card
from desktop_chat.ui.chat_model import ChatModel, Entry, Kind
from desktop_chat.ui.message_text import Span, action_text
from desktop_chat.ui.theme import LIGHT, Theme

PAD_X = 16
AVATAR = 34
GAP = 12
TEXT_X = PAD_X + AVATAR + GAP
PAD_RIGHT = 18
GROUP_TOP = 12  # space above the first message of a group
FOLLOW_TOP = 2  # space above a grouped follow-up
BOTTOM = 3
DAY_HEIGHT = 40
SYSTEM_PAD = 5
PAINT_CACHE = 256  # laid-out rows kept for repainting (a few screens' worth)
LINE_GAP = 2  # extra pixels between wrapped lines of one message

# QTextLayout does not break lines at "\n"; U+2028 is a line separator it honours, and it
# keeps every index the same so link and mention ranges still apply.
_LINE_BREAKS = str.maketrans({"\n": "\u2028", "\r": " "})


def day_label(day: date, today: date | None = None) -> str:
    today = today or date.today()
    delta = (today - day).days
    if delta == 0:
        return "Today"
    if delta == 1:
        return "Yesterday"
    if 0 < delta < 7:
        return day.strftime("%A")
    if day.year == today.year:
        return day.strftime("%A, %d %B").replace(" 0", " ")
    return day.strftime("%d %B %Y").lstrip("0")


def initial_of(name: str) -> str:
    for ch in name:
        if ch.isalnum():
            return ch.upper()
    return name[:1] or "?"


def _one_line_height(font: QFont) -> float:
    layout = QTextLayout("Xg", font)
    layout.beginLayout()
    line = layout.createLine()
    line.setLineWidth(1000)
    height = float(line.height())
    layout.endLayout()
    return height


def _ascii_advances(fm: QFontMetricsF) -> list[float]:
    return [fm.horizontalAdvance(chr(c)) if 32 <= c < 127 else 0.0 for c in range(128)]


# Summed advances of single characters differ from a shaped line's width by rounding (under
# 1 px in 150 characters with the usual fonts) and kerning (which narrows): this margin makes
# "the sum fits" imply "the line fits".
_SUM_SLACK = 1.02
_SUM_PAD = 4.0


@dataclass(slots=True)
class _Fonts:
    body: QFont
    italic: QFont  # the body of a /me line
    name: QFont
    small: QFont
    system: QFont
    avatar: QFont
    body_fm: QFontMetrics
    name_fm: QFontMetrics
    small_fm: QFontMetrics
    system_fm: QFontMetrics
    body_fmf: QFontMetricsF
    system_fmf: QFontMetricsF
    body_line: float  # the height QTextLayout gives one line of each font
    system_line: float
    body_ascii: list[float]  # advance of each printable ASCII character (index: its code)
    system_ascii: list[float]

    @classmethod
    def from_font(cls, font: QFont) -> _Fonts:
        base = QFont(font)  # a copy: the option's font dies with the option
        name = QFont(base)
        name.setWeight(QFont.Weight.Bold)
        small = QFont(base)
        small.setPointSizeF(max(base.pointSizeF() * 0.82, 7.0))
        system = QFont(small)
        system.setPointSizeF(max(base.pointSizeF() * 0.9, 7.0))
        avatar = QFont(base)
        avatar.setWeight(QFont.Weight.Bold)
        avatar.setPointSizeF(base.pointSizeF() * 1.05)
        italic = QFont(base)
        italic.setItalic(True)
        return cls(
            base,
            italic,
            name,
            small,
            system,
            avatar,
            QFontMetrics(base),
            QFontMetrics(name),
            QFontMetrics(small),
            QFontMetrics(system),
            QFontMetricsF(base),
            QFontMetricsF(system),
            _one_line_height(base),
            _one_line_height(system),
            _ascii_advances(QFontMetricsF(base)),
            _ascii_advances(QFontMetricsF(system)),
        )


class _Colours:
    """The theme's colours as QColor, made once: a batch of new rows paints dozens of rows,
    and parsing colour names for each of them showed up in profiles."""

    def __init__(self, t: Theme) -> None:
        self.theme = t
        self.text = QColor(t.text)
        self.muted = QColor(t.muted)
        self.error = QColor(t.error)
        self.border = QColor(t.border)
        self.surface = QColor(t.surface)
        self.mention_row = QColor(t.mention_row)
        self.mention_bar = QColor(t.mention_bar)
        self.selected_row = QColor(t.selected_row)
        self.hover_row = QColor(t.hover_row)
        self.initial = QColor("#17181c") if t.dark else QColor("#ffffff")
        self._names: dict[str, QColor] = {}

    def name(self, sender: str) -> QColor:
        colour = self._names.get(sender)
        if colour is None:
            if len(self._names) > 2000:  # a long-running chat with many passers-by
                self._names.clear()
            colour = self._names[sender] = self.theme.name_color(sender)
        return colour


_SELECTED = QStyle.StateFlag.State_Selected.value
_MOUSE_OVER = QStyle.StateFlag.State_MouseOver.value
_HAS_FOCUS = QStyle.StateFlag.State_HasFocus.value
_HINTS = QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing


def clock_text(entry: Entry) -> str:
    """The entry's local time as HH:MM (computed once per entry)."""
    if not entry.clock:
        entry.clock = entry.local_time.strftime("%H:%M")
    return entry.clock


class ChatDelegate(QStyledItemDelegate):
    """Draws :class:`ChatModel` rows.

    Signals:
        thumbWanted(Entry): a picture's card is painted without a preview (once per entry).
        sizeHintChanged (inherited).
    """

    thumbWanted = Signal(object)

    def __init__(self, parent: QWidget | None = None, theme: Theme = LIGHT) -> None:
        super().__init__(parent)
        self.theme = theme
        self._colours = _Colours(theme)
        self._cards = file_card.CardPainter(theme)
        # The card button the keyboard is on, drawn on the current row (set by the view).
        self.focused_action: str | None = None
        self._fonts: _Fonts | None = None
        self._font_base = QFont()
        self._option = QTextOption()
        self._option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        # sizeHint is called for every shown row on every layout: read the width from the
        # viewport directly rather than through the option.
        viewport = getattr(parent, "viewport", None)
        self._viewport: QWidget | None = viewport() if callable(viewport) else None
        # Repaints (hover, new rows, scrolling) reuse the text layout of rows on screen.
        self._paint_cache: OrderedDict[Entry, tuple[int, object, QTextLayout]] = OrderedDict()

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        self._colours = _Colours(theme)
        self._cards = file_card.CardPainter(theme)
        self._paint_cache.clear()

    # -- geometry ----------------------------------------------------------------------------

    def fonts(self, base: QFont) -> _Fonts:
        # Asked for every row painted or measured: comparing fonts is ~10x cheaper than
        # comparing their key() strings.
        if self._fonts is None or base != self._font_base:
            self._fonts = _Fonts.from_font(base)
            self._font_base = QFont(base)
            self._paint_cache.clear()
        return self._fonts

    def _painted_layout(self, entry: Entry, width: int, fonts: _Fonts) -> QTextLayout:
        cached = self._paint_cache.get(entry)
        if cached is not None and cached[0] == width and cached[1] is entry.mention_spans:
            self._paint_cache.move_to_end(entry)
            return cached[2]
        layout, _ = self.text_layout(entry, width, fonts)
        self._paint_cache[entry] = (width, entry.mention_spans, layout)
        if len(self._paint_cache) > PAINT_CACHE:
            self._paint_cache.popitem(last=False)
        return layout

    def _body(self, entry: Entry) -> tuple[str, list[tuple[Span, str]]]:
        """The text to lay out and the decorated ranges (kind: link, mention, actor)."""
        if entry.kind == Kind.ACTION:
            action = action_text(entry.sender, entry.text)
            if action is None:
                action = entry.text
            shown = f"{entry.sender} {action}"
            offset = len(entry.sender) + 1 - (len(entry.text) - len(action))
            decor: list[tuple[Span, str]] = [(Span(0, len(entry.sender)), "actor")]
            for span in entry.links:
                start = span.start + offset
                if start >= len(entry.sender) + 1:
                    decor.append((Span(start, span.end + offset, span.url), "link"))
            return shown, decor
        decor = [(span, "link") for span in entry.links]
        decor += [(span, "mention") for span in entry.mention_spans]
        return entry.text, decor

    def text_layout(self, entry: Entry, width: int, fonts: _Fonts) -> tuple[QTextLayout, float]:
        """Lay out the entry's body in ``width`` pixels; return the layout and its height."""
        text, decor = self._body(entry)
        kind = entry.kind
        if kind == Kind.MESSAGE:
            font = fonts.body
        elif kind == Kind.ACTION:
            font = fonts.italic
        else:
            font = fonts.system
        layout = QTextLayout(text.translate(_LINE_BREAKS), font)  # it keeps a copy of font
        layout.setTextOption(self._option)
        if decor:
            layout.setFormats([self._format_range(span, what, entry) for span, what in decor])
        layout.beginLayout()
        y = 0.0
        while True:
            line = layout.createLine()
            if not line.isValid():
                break
            line.setLineWidth(max(width, 40))
            line.setPosition(QPointF(0, y))
            y += line.height() + LINE_GAP
        layout.endLayout()
        return layout, max(y - LINE_GAP, 0.0)

    def _format_range(self, span: Span, what: str, entry: Entry) -> QTextLayout.FormatRange:
        fmt = QTextCharFormat()
        t = self.theme
        if what == "link":
            fmt.setForeground(QColor(t.link))
            fmt.setFontUnderline(True)
        elif what == "mention":
            fmt.setBackground(QColor(t.mention_span))
            fmt.setFontWeight(QFont.Weight.Bold)
        else:  # the actor of a /me line
            fmt.setForeground(t.name_color(entry.sender))
            fmt.setFontWeight(QFont.Weight.Bold)
        rng = QTextLayout.FormatRange()
        rng.start = span.start
        rng.length = span.end - span.start
        rng.format = fmt
        return rng

    def _top_parts(self, entry: Entry, fonts: _Fonts) -> tuple[int, int]:
        """(height of the day divider, height of what sits above the body in this row)."""
        day = DAY_HEIGHT if entry.day_break else 0
        if entry.kind in (Kind.SYSTEM, Kind.ERROR):
            return day, SYSTEM_PAD
        if entry.kind == Kind.ACTION:
            return day, 8
        if entry.grouped:
            return day, FOLLOW_TOP
        return day, GROUP_TOP + fonts.name_fm.height() + 2

    def row_height(self, entry: Entry, width: int, fonts: _Fonts) -> int:
        if entry.cache_width == width:
            return entry.cache_height
        body_w = self.body_width(width)
        day, above = self._top_parts(entry, fonts)
        body_h: float | None
        if entry.file is not None:
            body_h = self.card_geometry(entry, QRect(0, 0, width, 0), fonts).card.height()
        else:
            body_h = self._one_line(entry, body_w, fonts)
        if body_h is None:
            _, body_h = self.text_layout(entry, body_w, fonts)
        below = SYSTEM_PAD if entry.kind in (Kind.SYSTEM, Kind.ERROR) else BOTTOM
        if entry.kind == Kind.ACTION:
            below = 8
        height = day + above + int(body_h + 0.999) + below
        if not entry.grouped and entry.kind == Kind.MESSAGE:
            # The avatar must fit next to a one-line message.
            height = max(height, day + GROUP_TOP + AVATAR + BOTTOM)
        entry.cache_width = width
        entry.cache_height = height
        return height

    @staticmethod
    def _one_line(entry: Entry, body_w: int, fonts: _Fonts) -> float | None:
        """The body's height when it surely fits on one line, without laying it out (most
        messages: measuring is several times cheaper than shaping a QTextLayout)."""
        text = entry.text
        if len(text) > 200 or "\n" in text or "\r" in text or entry.mention_spans:
            return None
        if entry.kind == Kind.MESSAGE:
            fm, line, ascii_ = fonts.body_fmf, fonts.body_line, fonts.body_ascii
        elif entry.kind in (Kind.SYSTEM, Kind.ERROR):
            fm, line, ascii_ = fonts.system_fmf, fonts.system_line, fonts.system_ascii
        else:
            return None  # actions mix bold and italic
        if text.isascii() and text.isprintable():
            # Most messages: summing a table is ~6x cheaper than shaping the text to measure
            # it, and a batch of new rows is measured row by row.
            total = sum(map(ascii_.__getitem__, text.encode()))
            if total * _SUM_SLACK + _SUM_PAD <= body_w - 2:
                return line
        if fm.horizontalAdvance(text) <= body_w - 2:
            return line
        return None

    @staticmethod
    def body_width(row_width: int) -> int:
        return max(row_width - TEXT_X - PAD_RIGHT, 40)

    def _view_width(self, option: QStyleOptionViewItem) -> int:
        if self._viewport is not None:
            return int(self._viewport.width())
        return int(option.rect.width())

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        model = index.model()
        if not isinstance(model, ChatModel) or not index.isValid():
            return QSize(0, 0)
        entry = model.entry(index.row())
        width = self._view_width(option)
        if entry.cache_width != width:  # font changes clear the cache (ChatView.relayout)
            self.row_height(entry, width, self.fonts(option.font))
        return QSize(width, entry.cache_height)

    @staticmethod
    def _entry(index: QModelIndex | QPersistentModelIndex) -> Entry | None:
        model = index.model()
        if isinstance(model, ChatModel) and index.isValid():
            return model.entry(index.row())
        return None

    def card_geometry(self, entry: Entry, rect: QRect, fonts: _Fonts) -> file_card.CardGeometry:
        """Where the parts of a file's card are, for the row at ``rect``."""
        assert entry.file is not None
        day, above = self._top_parts(entry, fonts)
        thumb = entry.thumb
        if thumb is not None:
            tw, th = thumb.width(), thumb.height()
        else:  # the preview's room is kept while it comes (rows do not jump)
            tw, th = (0, 0) if entry.thumb_failed else file_card.preview_size(entry.file)
        return file_card.card_geometry(
            entry.file,
            tw,
            th,
            rect.left() + TEXT_X,
            rect.top() + day + above,
            self.body_width(rect.width()),
            fonts.name_fm,
            fonts.small_fm,
        )

    def file_action_at(self, entry: Entry, rect: QRect, pos: QPoint, font: QFont) -> str | None:
        """The card button (save, open, view) under ``pos`` in the row at ``rect``, if any."""
        if entry.file is None:
            return None
        geometry = self.card_geometry(entry, rect, self.fonts(font))
        return geometry.hit(
            pos.x(), pos.y(), file_card.actions(entry.file, entry.thumb is not None)
        )

    def body_origin(self, entry: Entry, rect: QRect, fonts: _Fonts) -> QPointF:
        day, above = self._top_parts(entry, fonts)
        return QPointF(rect.left() + TEXT_X, rect.top() + day + above)

    def link_at(self, entry: Entry, rect: QRect, pos: QPointF, font: QFont) -> str | None:
        """The URL under ``pos`` (view coordinates) in the row at ``rect``, if any."""
        if not entry.links or entry.file is not None:
            return None
        fonts = self.fonts(font)
        layout, height = self.text_layout(entry, self.body_width(rect.width()), fonts)
        origin = self.body_origin(entry, rect, fonts)
        local = pos - origin
        if local.y() < 0 or local.y() > height:
            return None
        _, decor = self._body(entry)
        for i in range(layout.lineCount()):
            line = layout.lineAt(i)
            if line.y() <= local.y() < line.y() + line.height():
                if local.x() < 0 or local.x() > line.naturalTextWidth():
                    return None
                cursor = line.xToCursor(local.x(), QTextLine.CursorPosition.CursorOnCharacter)
                for span, what in decor:
                    if what == "link" and span.start <= cursor < span.end:
                        return span.url
        return None

    # -- painting ----------------------------------------------------------------------------

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        entry = self._entry(index)
        if entry is None:
            return
        c = self._colours
        fonts = self.fonts(option.font)
        rect = QRect(option.rect)
        painter.save()
        painter.setRenderHints(_HINTS, True)
        day_h, above = self._top_parts(entry, fonts)
        if entry.day_break:
            self._paint_day(painter, QRect(rect.left(), rect.top(), rect.width(), day_h), entry)
        row = QRect(rect.left(), rect.top() + day_h, rect.width(), rect.height() - day_h)
        state = option.state.value  # a plain int: Python enum flag arithmetic is slow
        if entry.mention_spans:
            painter.fillRect(row, c.mention_row)
            painter.fillRect(QRect(row.left(), row.top(), 3, row.height()), c.mention_bar)
        elif state & _SELECTED:
            painter.fillRect(row, c.selected_row)
        elif state & _MOUSE_OVER:
            painter.fillRect(row, c.hover_row)

        kind = entry.kind
        if kind == Kind.SYSTEM or kind == Kind.ERROR:
            colour = c.error if kind == Kind.ERROR else c.muted
            if state & _MOUSE_OVER:
                self._paint_gutter_time(painter, row, entry, fonts, SYSTEM_PAD)
            else:
                self._paint_system_mark(painter, row, entry, colour, fonts)
        else:
            colour = c.muted if entry.pending else c.text
            if kind == Kind.MESSAGE and not entry.grouped:
                self._paint_header(painter, row, entry, fonts)
            elif kind == Kind.ACTION:
                self._paint_action_mark(painter, row, entry, fonts)
            elif state & _MOUSE_OVER:
                self._paint_gutter_time(painter, row, entry, fonts, FOLLOW_TOP)
        if entry.file is not None:
            if file_card.wants_preview(entry):
                entry.thumb_asked = True
                self.thumbWanted.emit(entry)
            focused = self.focused_action if state & _HAS_FOCUS else None
            fonts_ = (fonts.name, fonts.small, fonts.name_fm, fonts.small_fm)
            self._cards.paint(
                painter, self.card_geometry(entry, rect, fonts), entry, fonts_, focused
            )
        else:
            layout = self._painted_layout(entry, self.body_width(rect.width()), fonts)
            painter.setPen(colour)
            layout.draw(painter, QPointF(rect.left() + TEXT_X, rect.top() + day_h + above))
        painter.restore()

    def _paint_day(self, painter: QPainter, band: QRect, entry: Entry) -> None:
        c = self._colours
        fonts = self._fonts
        assert fonts is not None
        label = day_label(entry.local_time.date())
        painter.setFont(fonts.small)
        text_w = fonts.small_fm.horizontalAdvance(label) + 24
        mid_y = band.top() + band.height() // 2 + 2
        painter.setPen(QPen(c.border, 1))
        left = band.left() + PAD_X
        right = band.right() - PAD_RIGHT
        centre = band.left() + band.width() // 2
        painter.drawLine(left, mid_y, centre - text_w // 2, mid_y)
        painter.drawLine(centre + text_w // 2, mid_y, right, mid_y)
        pill = QRectF(centre - text_w / 2, mid_y - 10, text_w, 20)
        painter.setPen(QPen(c.border, 1))
        painter.setBrush(c.surface)
        painter.drawRoundedRect(pill, 10, 10)
        painter.setPen(c.muted)
        painter.drawText(pill, Qt.AlignmentFlag.AlignCenter, label)

    def _paint_header(self, painter: QPainter, row: QRect, entry: Entry, fonts: _Fonts) -> None:
        c = self._colours
        colour = c.name(entry.sender)
        # Avatar: a disc in the sender's colour with the initial.
        top = row.top() + GROUP_TOP
        disc = QRectF(row.left() + PAD_X, top, AVATAR, AVATAR)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawEllipse(disc)
        painter.setFont(fonts.avatar)
        painter.setPen(c.initial)
        painter.drawText(disc, Qt.AlignmentFlag.AlignCenter, initial_of(entry.sender))
        # Name, then the time in a quieter font on the same baseline.
        x = row.left() + TEXT_X
        name_w = min(
            fonts.name_fm.horizontalAdvance(entry.sender),
            self.body_width(row.width()) - 60,
        )
        name = fonts.name_fm.elidedText(entry.sender, Qt.TextElideMode.ElideRight, name_w + 1)
        baseline = top + fonts.name_fm.ascent() - 1
        painter.setFont(fonts.name)
        painter.setPen(colour)
        painter.drawText(QPointF(x, baseline), name)
        painter.setFont(fonts.small)
        painter.setPen(c.muted)
        painter.drawText(QPointF(x + name_w + 8, baseline), clock_text(entry))

    def _paint_gutter_time(
        self, painter: QPainter, row: QRect, entry: Entry, fonts: _Fonts, top: int
    ) -> None:
        painter.setFont(fonts.small)
        painter.setPen(self._colours.muted)
        when = clock_text(entry)
        box = QRect(row.left() + 4, row.top() + top, TEXT_X - 10, fonts.body_fm.height())
        painter.drawText(box, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, when)

    def _paint_action_mark(
        self, painter: QPainter, row: QRect, entry: Entry, fonts: _Fonts
    ) -> None:
        colour = self._colours.name(entry.sender)
        y = row.top() + 8 + fonts.body_fm.height() / 2
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawEllipse(QPointF(row.left() + PAD_X + AVATAR / 2, y), 4, 4)

    def _paint_system_mark(
        self, painter: QPainter, row: QRect, entry: Entry, colour: QColor, fonts: _Fonts
    ) -> None:
        painter.setFont(fonts.system)
        painter.setPen(colour)
        mark = "!" if entry.kind == Kind.ERROR else "•"
        box = QRect(row.left() + PAD_X, row.top() + SYSTEM_PAD, AVATAR, fonts.system_fm.height())
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, mark)
