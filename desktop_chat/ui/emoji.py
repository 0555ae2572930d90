"""Emoji that never show as empty boxes: the system's emoji font, else the one we ship.

Qt draws a character the chosen font lacks with a fallback font when the platform offers one;
a Linux desktop without an emoji font (common on minimal installs) offers none, and every 😀
becomes a box. :func:`install_emoji_fallback` finds the system's emoji font, or loads Noto Emoji
(monochrome, OFL, in ``resources/fonts``), and makes it the substitute for the fonts the app
uses, so Qt falls back to it for the characters they lack.
"""

from __future__ import annotations

from PySide6.QtGui import QFont, QFontDatabase, QFontInfo, QGuiApplication

from desktop_chat.ui.icons import resource_path

# Colour fonts first (what people expect), then monochrome ones; the names the platforms use.
SYSTEM_EMOJI_FAMILIES = (
    "Noto Color Emoji",
    "Apple Color Emoji",
    "Segoe UI Emoji",
    "Twemoji",
    "Twitter Color Emoji",
    "JoyPixels",
    "EmojiOne Color",
    "Noto Emoji",
    "Symbola",
)
BUNDLED = "NotoEmoji-Regular.woff2"
INSTALLED = "desktopChatEmoji"  # an application property: the family in use


def emoji_family() -> str | None:
    """The system's emoji font, else the bundled one (loaded now); None if neither works."""
    families = set(QFontDatabase.families())
    for family in SYSTEM_EMOJI_FAMILIES:
        if family in families:
            return family
    path = resource_path("fonts", BUNDLED)
    if not path.is_file():
        return None
    loaded = QFontDatabase.applicationFontFamilies(QFontDatabase.addApplicationFont(str(path)))
    return loaded[0] if loaded else None


def install_emoji_fallback(app: QGuiApplication) -> str | None:
    """Make the emoji font the fallback of the app's fonts; idempotent; the family used."""
    done = app.property(INSTALLED)
    if isinstance(done, str):
        return done or None
    family = emoji_family()
    app.setProperty(INSTALLED, family or "")
    if family is None:
        return None
    fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    # Only real families, the ones the names resolve to: a substitute for an alias such as
    # "Sans Serif" or "monospace" would replace the font, not back it.
    for font in (app.font(), QFont(), fixed, QFont("monospace")):
        base = QFontInfo(font).family()
        if base != family and family not in QFont.substitutes(base):
            QFont.insertSubstitution(base, family)
    return family
