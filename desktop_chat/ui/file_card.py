"""A received file drawn as a card inside its chat row: icon or picture, name, size, sender,
and Save / Open buttons, all painted by the chat delegate (no widget per row: a conversation
of thousands of files scrolls as fast as one of text).

One function, :func:`card_geometry`, places every part of a card; painting, the row's height
and "which button is under the mouse" all use it, so they can never disagree.

A file's name is the sender's choice: :func:`display_name` makes it harmless to show (no
control characters, no bidi overrides that turn ``photo<RLO>gnp.exe`` into ``photoexe.png``,
no line breaks), and the painter elides it in the middle (the extension stays visible) and
clips it to its box (a tower of combining marks stays inside the card).

A program or script (:func:`is_program`: ``.exe``, ``.sh``, ``.desktop``, ``.jar``…) gets no
Open button: one click must never run something a stranger sent. Its card offers Save only and
says why; the bytes of what is saved are checked again before any Open (:func:`looks_runnable`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen

from desktop_chat.net.protocol.events import FileInfo
from desktop_chat.ui.chat_model import Entry
from desktop_chat.ui.programs import PROGRAM_EXTENSIONS, PROGRAM_NOTE, is_program
from desktop_chat.ui.theme import Theme

PAD = 10  # inside the card
ICON_W, ICON_H = 34, 42
GAP = 10
BUTTON_H = 28
BUTTON_GAP = 6
CARD_MAX_W = 440
WIDE_ENOUGH = 380  # below this the buttons go on a row of their own
SAVE, OPEN, VIEW = "save", "open", "view"
# Only these are shown in the app (the server serves only these inline, too).
VIEWABLE = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
PREVIEW_BOX = QSize(240, 180)  # a picture's preview fits in this
# Why a picture has no preview (the card says it after the picture's size).
TOO_LARGE = "too large to preview"
DAMAGED = "no preview: the picture is damaged"

# Characters that reorder or hide text (bidi embeddings, overrides, isolates and marks).
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Zero-width non-joiner and joiner: invisible too, but Persian and Indic names and emoji
# sequences need them between their characters; next to ASCII they only hide things.
_JOINERS = set("\u200c\u200d")
_KINDS = {
    "image": ("png", "jpg", "jpeg", "gif", "webp", "bmp", "svg", "heic", "tif", "tiff"),
    "video": ("mp4", "mkv", "mov", "avi", "webm", "m4v"),
    "audio": ("mp3", "wav", "flac", "ogg", "m4a", "opus"),
    "archive": ("zip", "tar", "gz", "tgz", "bz2", "xz", "7z", "rar", "zst", "deb", "iso"),
    "document": ("pdf", "doc", "docx", "odt", "txt", "md", "rtf", "xls", "xlsx", "ods", "csv"),
    "program": tuple(PROGRAM_EXTENSIONS),
}
_KIND_COLOURS = {
    "image": "#2f9e6e",
    "video": "#8a4fd9",
    "audio": "#d9812f",
    "archive": "#8d6e4a",
    "document": "#3f74d6",
    "program": "#c4314b",
    "other": "#6b7280",
}


def display_name(name: str) -> str:
    """The name as it may be shown: control, line-breaking, bidi-control and invisible format
    characters (U+200B zero-width space, U+2060, U+FEFF…) become U+FFFD (visible, so a
    disguised name looks odd rather than innocent). A zero-width joiner or non-joiner stays
    only between two non-ASCII characters, where scripts and emoji use it."""
    out = []
    last = len(name) - 1
    for i, ch in enumerate(name):
        category = unicodedata.category(ch)
        if ch in _JOINERS:
            inside = 0 < i < last and not name[i - 1].isascii() and not name[i + 1].isascii()
            out.append(ch if inside else "\ufffd")
        elif ch in _BIDI or category in ("Cc", "Cf", "Zl", "Zp", "Cs"):
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out) or "\ufffd"


def extension(name: str) -> str:
    """The name's extension in capitals, at most four letters or digits ('' when none)."""
    _stem, dot, ext = display_name(name).rpartition(".")
    if not dot or not ext.isascii() or not ext.isalnum() or len(ext) > 4:
        return ""
    return ext.upper()


def file_kind(info: FileInfo) -> str:
    if info.mime and info.mime.startswith("image/"):
        return "image"
    if is_program(info.name):
        return "program"
    ext = extension(info.name).lower()
    for kind, extensions in _KINDS.items():
        if ext in extensions:
            return kind
    return "other"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            break
        size /= 1024
    return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"


def shown_name(info: FileInfo, fm: QFontMetrics, width: int) -> str:
    """The name as painted in ``width`` pixels: harmless, elided in the middle."""
    return fm.elidedText(display_name(info.name), Qt.TextElideMode.ElideMiddle, width)


def meta_text(info: FileInfo, sender: str, note: str = "") -> str:
    """The line under the name: size, picture size, sender, and what became of saving it or
    its preview. What matters most comes first where the card is narrow: a program's warning,
    why a picture has no preview."""
    if info.expired:
        return "expired: the server no longer has it"
    size = human_size(info.size)
    if is_program(info.name):
        if not note:
            return f"{PROGRAM_NOTE} · {size} · from {sender}"
        return f"program — check before running · {note} · {size} · from {sender}"
    dims = f" · {info.width}×{info.height}" if info.width and info.height else ""
    if note in (TOO_LARGE, DAMAGED):
        return f"{size}{dims} · {note} · from {sender}"
    if note:
        return f"{size} · from {sender} · {note}"
    return f"{size}{dims} · from {sender}"


def preview_size(info: FileInfo) -> tuple[int, int]:
    """The room a picture's preview takes (its size from the message, scaled down to fit
    PREVIEW_BOX as the preview will be), or (0, 0) when there is no preview to expect."""
    if info.mime not in VIEWABLE or info.expired or not info.width or not info.height:
        return (0, 0)
    size = QSize(info.width, info.height)
    if size.width() > PREVIEW_BOX.width() or size.height() > PREVIEW_BOX.height():
        size = size.scaled(PREVIEW_BOX, Qt.AspectRatioMode.KeepAspectRatio).expandedTo(QSize(1, 1))
    return (size.width(), size.height())


def wants_preview(entry: Entry) -> bool:
    """A picture's card painted without its preview, never asked for: time to fetch it."""
    info = entry.file
    if info is None or info.mime not in VIEWABLE or info.expired or entry.thumb is not None:
        return False
    return not entry.thumb_asked and not entry.thumb_failed


def actions(info: FileInfo | None, has_picture: bool) -> tuple[str, ...]:
    """The card's buttons in keyboard order (the picture counts as one: it opens the viewer).
    A program has no Open: it is saved, and the person decides what to do with it."""
    if info is None or info.expired:
        return ()
    buttons = (SAVE,) if is_program(info.name) else (SAVE, OPEN)
    if has_picture or info.mime in VIEWABLE:
        return (VIEW, *buttons)
    return buttons


@dataclass(slots=True)
class CardGeometry:
    """Where each part of a card is, in view coordinates (empty rects: absent)."""

    card: QRect
    picture: QRect  # the thumbnail, or the icon when there is none
    name: QRect
    meta: QRect
    save: QRect
    open: QRect

    def hit(self, x: int, y: int, available: tuple[str, ...]) -> str | None:
        for action, rect in ((SAVE, self.save), (OPEN, self.open), (VIEW, self.picture)):
            if action in available and rect.contains(x, y):
                return action
        return None


def button_width(fm: QFontMetrics, text: str) -> int:
    return fm.horizontalAdvance(text) + 28


def card_geometry(
    info: FileInfo,
    thumb_w: int,
    thumb_h: int,
    left: int,
    top: int,
    body_w: int,
    name_fm: QFontMetrics,
    small_fm: QFontMetrics,
) -> CardGeometry:
    """Place a card whose top-left corner is (left, top) in ``body_w`` pixels of width; a
    thumbnail of thumb_w×thumb_h (0×0: none) sits above the name."""
    width = min(body_w, CARD_MAX_W)
    if thumb_w:
        width = min(body_w, max(width, thumb_w + 2 * PAD))
    y = top + PAD
    if thumb_w:
        picture = QRect(left + PAD, y, thumb_w, thumb_h)
        y += thumb_h + GAP
        text_x = left + PAD
    else:
        picture = QRect(left + PAD, y, ICON_W, ICON_H)
        text_x = left + PAD + ICON_W + GAP
    text_h = name_fm.height() + 4 + small_fm.height()
    info_h = text_h if thumb_w else max(ICON_H, text_h)
    right = left + width - PAD
    save = open_ = QRect()
    buttons_w = 0
    if not info.expired:
        save_w = button_width(small_fm, "Save")
        open_w = 0 if is_program(info.name) else button_width(small_fm, "Open")
        buttons_w = save_w + (BUTTON_GAP + open_w if open_w else 0)
    wide = width >= WIDE_ENOUGH
    text_right = right - (buttons_w + GAP if buttons_w and wide else 0)
    text_top = y + (info_h - text_h) // 2
    name = QRect(text_x, text_top, max(text_right - text_x, 20), name_fm.height())
    meta = QRect(text_x, text_top + name_fm.height() + 4, name.width(), small_fm.height())
    bottom = y + info_h
    if buttons_w:
        if wide:
            by = y + (info_h - BUTTON_H) // 2
        else:
            by = bottom + GAP
            bottom = by + BUTTON_H
        if open_w:
            open_ = QRect(right - open_w, by, open_w, BUTTON_H)
            save = QRect(open_.left() - BUTTON_GAP - save_w, by, save_w, BUTTON_H)
        else:
            save = QRect(right - save_w, by, save_w, BUTTON_H)
    card = QRect(left, top, width, bottom + PAD - top)
    return CardGeometry(card, picture, name, meta, save, open_)


class CardPainter:
    """Paints cards with one theme's colours (made once per theme)."""

    def __init__(self, theme: Theme) -> None:
        self.theme = theme
        self.fill = QColor(theme.sidebar if not theme.dark else theme.input_bg)
        self.border = QColor(theme.border)
        self.text = QColor(theme.text)
        self.muted = QColor(theme.muted)
        self.accent = QColor(theme.accent)
        self.accent_text = QColor(theme.accent_text)
        self.surface = QColor(theme.surface)

    def paint(
        self,
        painter: QPainter,
        g: CardGeometry,
        entry: Entry,
        fonts: tuple[QFont, QFont, QFontMetrics, QFontMetrics],
        focused: str | None,
    ) -> None:
        """Paint ``entry``'s card (its ``file`` is set) with the keyboard on ``focused``."""
        name_font, small_font, name_fm, small_fm = fonts
        info, thumb, note = entry.file, entry.thumb, entry.file_note or entry.thumb_note
        assert info is not None
        sender = "you" if entry.own else entry.sender
        painter.setPen(QPen(self.border, 1))
        painter.setBrush(self.fill)
        painter.drawRoundedRect(QRectF(g.card).adjusted(0.5, 0.5, -0.5, -0.5), 8, 8)
        if thumb is not None:
            painter.drawImage(g.picture.topLeft(), thumb)
        elif g.picture.width() > ICON_W:  # the preview's room, while it is on its way
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(self.border)
            painter.drawRoundedRect(QRectF(g.picture), 4, 4)
        else:
            self._paint_icon(painter, g.picture, info, small_font)
        if focused == VIEW:
            self._focus_ring(painter, g.picture)
        shown = shown_name(info, name_fm, g.name.width())
        flags = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        painter.save()
        painter.setClipRect(g.name)  # combining-mark towers stay in their box
        painter.setFont(name_font)
        painter.setPen(self.muted if info.expired else self.text)
        painter.drawText(g.name, int(flags) | int(Qt.TextFlag.TextForceLeftToRight), shown)
        painter.restore()
        painter.setFont(small_font)
        painter.setPen(QColor(self.theme.error) if info.expired else self.muted)
        meta = small_fm.elidedText(
            meta_text(info, sender, note), Qt.TextElideMode.ElideRight, g.meta.width()
        )
        painter.drawText(g.meta, flags, meta)
        if not g.save.isEmpty():
            self._button(painter, g.save, "Save", primary=True, focused=focused == SAVE)
        if not g.open.isEmpty():
            self._button(painter, g.open, "Open", primary=False, focused=focused == OPEN)

    def _button(
        self, painter: QPainter, rect: QRect, text: str, *, primary: bool, focused: bool
    ) -> None:
        box = QRectF(rect).adjusted(0.5, 0.5, -0.5, -0.5)
        if primary:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(self.accent)
        else:
            painter.setPen(QPen(self.border.darker(115) if not self.theme.dark else self.muted, 1))
            painter.setBrush(self.surface)
        painter.drawRoundedRect(box, 6, 6)
        painter.setPen(self.accent_text if primary else self.text)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
        if focused:
            self._focus_ring(painter, rect)

    def _focus_ring(self, painter: QPainter, rect: QRect) -> None:
        painter.setPen(QPen(self.text if self.theme.dark else self.accent.darker(130), 2))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(QRectF(rect).adjusted(-3, -3, 3, 3), 8, 8)

    def _paint_icon(self, painter: QPainter, rect: QRect, info: FileInfo, font: QFont) -> None:
        """A sheet of paper with a folded corner, coloured by the kind of file, with its
        extension on it."""
        colour = QColor(_KIND_COLOURS[file_kind(info)])
        if info.expired:
            colour = QColor(self.muted)
        fold = 10
        r = QRectF(rect)
        path = QPainterPath()
        path.moveTo(r.left() + 3, r.top())
        path.lineTo(r.right() - fold, r.top())
        path.lineTo(r.right(), r.top() + fold)
        path.lineTo(r.right(), r.bottom() - 3)
        path.quadTo(r.right(), r.bottom(), r.right() - 3, r.bottom())
        path.lineTo(r.left() + 3, r.bottom())
        path.quadTo(r.left(), r.bottom(), r.left(), r.bottom() - 3)
        path.lineTo(r.left(), r.top() + 3)
        path.quadTo(r.left(), r.top(), r.left() + 3, r.top())
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawPath(path)
        corner = QPainterPath()
        corner.moveTo(r.right() - fold, r.top())
        corner.lineTo(r.right() - fold, r.top() + fold)
        corner.lineTo(r.right(), r.top() + fold)
        corner.closeSubpath()
        painter.setBrush(colour.lighter(150))
        painter.drawPath(corner)
        label = extension(info.name)
        if label:
            small = QFont(font)
            small.setBold(True)
            small.setPointSizeF(max(font.pointSizeF() * 0.8, 6.0))
            painter.setFont(small)
            painter.setPen(QColor("#ffffff"))
            band = QRectF(r.left(), r.bottom() - 18, r.width(), 14)
            painter.drawText(band, Qt.AlignmentFlag.AlignCenter, label)
            painter.setFont(font)
        else:
            painter.setPen(QPen(QColor("#ffffff"), 2))
            for i in range(3):
                y = r.top() + 18 + 6 * i
                painter.drawLine(QPointF(r.left() + 8, y), QPointF(r.right() - 8, y))
