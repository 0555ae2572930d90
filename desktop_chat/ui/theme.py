"""Light and dark themes: the colours every widget and the chat delegate paint with.

The app uses the Fusion style with its own palette so it looks the same on every platform, and
follows the system colour scheme (``QStyleHints.colorScheme()``, Qt >= 6.5) unless the user
picked one in Settings. Sender colours come from a stable hash of the casefolded name, so a
person has the same colour on every machine and in every run (Python's ``hash`` is randomised).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from desktop_chat.net.protocol.names import name_key
from desktop_chat.ui.style import STYLED, ChatStyle

ThemeChoice = Literal["system", "light", "dark"]
THEME_CHOICES: tuple[ThemeChoice, ...] = ("system", "light", "dark")


@dataclass(frozen=True, slots=True)
class Theme:
    """A resolved colour set (all ``#rrggbb`` or ``#aarrggbb`` strings)."""

    dark: bool
    window: str
    surface: str  # the conversation background
    sidebar: str
    sidebar_text: str
    sidebar_muted: str
    sidebar_selected: str
    sidebar_hover: str
    text: str
    muted: str
    border: str
    accent: str
    accent_text: str
    link: str
    hover_row: str
    selected_row: str
    mention_row: str
    mention_bar: str
    mention_span: str
    private_banner: str
    private_text: str
    error: str
    online: str
    badge: str
    badge_mention: str
    input_bg: str
    name_saturation: float  # sender colours: any hue, at this saturation and lightness
    name_lightness: float

    def name_color(self, name: str) -> QColor:
        """The sender's colour: the hue comes from the name, the rest from the theme."""
        hue = NAME_HUES[name_hash(name) % len(NAME_HUES)] / 360.0
        # Yellows and greens look lighter than blues at one HSL lightness: darken them a
        # little on light backgrounds so every name stays readable.
        lightness = self.name_lightness
        if not self.dark and 0.07 < hue < 0.5:
            lightness -= 0.07
        return QColor.fromHslF(hue, self.name_saturation, lightness)


# Ten clearly different hues, neighbours on the wheel kept apart in the list.
NAME_HUES = (0, 215, 95, 280, 25, 170, 320, 45, 245, 195)


def name_hash(name: str) -> int:
    """A stable hash of the casefolded name (CRC-32: the same in every process)."""
    return zlib.crc32(name_key(name).encode("utf-8"))


LIGHT = Theme(
    dark=False,
    window="#ffffff",
    surface="#ffffff",
    sidebar="#f4f4f7",
    sidebar_text="#1f2330",
    sidebar_muted="#6b7080",
    sidebar_selected="#e3e5fb",
    sidebar_hover="#eaebf0",
    text="#1d2129",
    muted="#6b7280",
    border="#e3e5ea",
    accent="#4f55d9",
    accent_text="#ffffff",
    link="#2f63d6",
    hover_row="#f6f7f9",
    selected_row="#e8ebfb",
    mention_row="#fff6db",
    mention_bar="#e5a00d",
    mention_span="#fde7a6",
    private_banner="#eef0fd",
    private_text="#3a3f9e",
    error="#c4314b",
    online="#2e9f5b",
    badge="#4f55d9",
    badge_mention="#d93a48",
    input_bg="#ffffff",
    name_saturation=0.62,
    name_lightness=0.42,
)

DARK = Theme(
    dark=True,
    window="#1e1f24",
    surface="#25262c",
    sidebar="#1b1c21",
    sidebar_text="#e4e5ea",
    sidebar_muted="#9396a3",
    sidebar_selected="#34365a",
    sidebar_hover="#2a2b33",
    text="#e3e4e8",
    muted="#9a9daa",
    border="#34353d",
    accent="#8b8ff5",
    accent_text="#15161a",
    link="#7fb0ff",
    hover_row="#2b2c33",
    selected_row="#33365a",
    mention_row="#3a3424",
    mention_bar="#f0b429",
    mention_span="#5c4a1c",
    private_banner="#2c2e4a",
    private_text="#c6c9ff",
    error="#ff7b8b",
    online="#4cc27f",
    badge="#8b8ff5",
    badge_mention="#f0596a",
    input_bg="#2d2e35",
    name_saturation=0.75,
    name_lightness=0.70,
)


def system_prefers_dark() -> bool:
    """True when the platform reports a dark colour scheme (unknown counts as light)."""
    hints = QGuiApplication.styleHints()
    return bool(hints.colorScheme() == Qt.ColorScheme.Dark)


def resolve_theme(choice: str) -> Theme:
    """The theme for a Settings choice: ``"light"``, ``"dark"`` or ``"system"``."""
    if choice == "dark":
        return DARK
    if choice == "light":
        return LIGHT
    return DARK if system_prefers_dark() else LIGHT


def _palette(theme: Theme) -> QPalette:
    pal = QPalette()
    c = QColor
    roles = {
        QPalette.ColorRole.Window: theme.window,
        QPalette.ColorRole.WindowText: theme.text,
        QPalette.ColorRole.Base: theme.surface,
        QPalette.ColorRole.AlternateBase: theme.hover_row,
        QPalette.ColorRole.Text: theme.text,
        QPalette.ColorRole.Button: theme.sidebar,
        QPalette.ColorRole.ButtonText: theme.text,
        QPalette.ColorRole.Highlight: theme.accent,
        QPalette.ColorRole.HighlightedText: theme.accent_text,
        QPalette.ColorRole.ToolTipBase: theme.surface,
        QPalette.ColorRole.ToolTipText: theme.text,
        QPalette.ColorRole.PlaceholderText: theme.muted,
        QPalette.ColorRole.Link: theme.link,
        QPalette.ColorRole.BrightText: theme.error,
        QPalette.ColorRole.Mid: theme.border,
        QPalette.ColorRole.Midlight: theme.border,
        QPalette.ColorRole.Dark: theme.muted,
        QPalette.ColorRole.Light: theme.surface,
    }
    for role, colour in roles.items():
        pal.setColor(role, c(colour))
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
    ):
        pal.setColor(QPalette.ColorGroup.Disabled, role, c(theme.muted))
    return pal


def stylesheet(theme: Theme) -> str:
    """The app-wide style sheet: only what the palette cannot express (sidebars, pills)."""
    t = theme
    return f"""
    QWidget#sidebar, QWidget#peoplePanel {{ background: {t.sidebar}; }}
    QWidget#sidebar QLabel, QWidget#peoplePanel QLabel {{ color: {t.sidebar_text}; }}
    QWidget#sidebar QLabel[role="muted"] {{ color: {t.sidebar_muted}; }}
    QLabel[role="section"] {{
        color: {t.sidebar_muted}; font-weight: 600; letter-spacing: 0.5px;
    }}
    QLabel[role="muted"] {{ color: {t.muted}; }}
    QLabel#typingLabel {{ color: {t.muted}; font-style: italic; }}
    QListView#roomList, QListView#userList {{
        background: {t.sidebar}; border: none; outline: 0;
    }}
    QListView#chatView {{ background: {t.surface}; border: none; outline: 0; }}
    QWidget#conversationHeader {{
        background: {t.surface}; border-bottom: 1px solid {t.border};
    }}
    QWidget#conversationHeader[private="true"] {{
        background: {t.private_banner}; border-bottom: 1px solid {t.border};
    }}
    QLabel#conversationTitle {{ font-weight: 700; }}
    QWidget#conversationHeader[private="true"] QLabel {{ color: {t.private_text}; }}
    QWidget#composer {{ background: {t.surface}; }}
    QFrame#inputFrame {{
        background: {t.input_bg}; border: 1px solid {t.border}; border-radius: 8px;
    }}
    QFrame#inputFrame[focused="true"] {{ border: 1px solid {t.accent}; }}
    QPlainTextEdit#messageInput {{ background: transparent; border: none; }}
    QToolButton#sendButton {{
        background: {t.accent}; color: {t.accent_text}; border: none; border-radius: 6px;
        padding: 4px 12px; font-weight: 600;
    }}
    QToolButton#sendButton:disabled {{ background: {t.border}; color: {t.muted}; }}
    QToolButton#addRoomButton {{
        border: none; border-radius: 4px; color: {t.sidebar_muted}; font-weight: 700;
        padding: 0px 6px;
    }}
    QToolButton#addRoomButton:hover {{ background: {t.sidebar_hover}; color: {t.sidebar_text}; }}
    QFrame#hostingCard {{
        background: {t.surface}; border: 1px solid {t.border}; border-radius: 8px;
    }}
    QFrame#hostingCard QLabel {{ color: {t.text}; }}
    QToolButton[role="address"] {{
        border: 1px solid {t.border}; border-radius: 5px; padding: 3px 6px;
        color: {t.text}; background: {t.hover_row}; font-family: monospace;
    }}
    QToolButton[role="address"]:hover {{ border-color: {t.accent}; }}
    QPushButton#jumpToLatest {{
        background: {t.accent}; color: {t.accent_text}; border: none; border-radius: 13px;
        padding: 4px 14px; font-weight: 600;
    }}
    QStatusBar {{ background: {t.sidebar}; color: {t.sidebar_muted}; }}
    QStatusBar QLabel {{ color: {t.sidebar_muted}; padding: 0px 6px; }}
    QSplitter::handle {{ background: {t.border}; }}
    QDialogButtonBox {{ dialogbuttonbox-buttons-have-icons: 0; }}
    QScrollBar:vertical {{ background: transparent; width: 10px; margin: 0px; }}
    QScrollBar:horizontal {{ background: transparent; height: 10px; margin: 0px; }}
    QScrollBar::handle {{ background: {t.border}; border-radius: 4px; margin: 2px; }}
    QScrollBar::handle:vertical {{ min-height: 28px; }}
    QScrollBar::handle:horizontal {{ min-width: 28px; }}
    QScrollBar::handle:hover {{ background: {t.muted}; }}
    QScrollBar::add-line, QScrollBar::sub-line {{ width: 0px; height: 0px; border: none; }}
    QScrollBar::add-page, QScrollBar::sub-page {{ background: transparent; }}
    """


def apply_theme(app: QApplication, theme: Theme) -> None:
    """Use ``theme`` for the whole application (Fusion style, palette, style sheet)."""
    if not app.property(STYLED):
        app.setStyle(ChatStyle())  # Fusion, with check boxes visible on dark windows
        app.setProperty(STYLED, True)
    # Re-styling repolishes every widget of every window: skip it when nothing changed.
    palette = _palette(theme)
    if app.palette() != palette:
        app.setPalette(palette)
    sheet = stylesheet(theme)
    if app.styleSheet() != sheet:
        app.setStyleSheet(sheet)
