"""Which received files are programs: the desktop would run them (or install them, or hand
them to an interpreter) when "opened", so a card never offers that in one click.

Judged twice: by the name's extension before anything is fetched (:func:`is_program`, as the
desktop itself would judge it), and by the first bytes of what was saved before it is opened
(:func:`looks_runnable`: executables' magic bytes, a script's ``#!`` line), whatever its name.
"""

from __future__ import annotations

import unicodedata

# Names the desktop would run, or hand to an installer or interpreter, when "opened": Windows
# executables and scripts, Unix scripts and launchers, macOS apps, packages, shortcuts.
# fmt: off
PROGRAM_EXTENSIONS = frozenset({
    # Windows: executables, installers, scripts, shortcuts, settings that run things.
    "exe", "com", "bat", "cmd", "msi", "msp", "mst", "scr", "pif", "cpl", "hta", "ps1", "psm1",
    "psd1", "psc1", "vb", "vbs", "vbe", "js", "jse", "mjs", "wsf", "wsh", "wsc", "lnk", "url",
    "website", "inf", "reg", "scf", "msc", "gadget", "application", "appref-ms", "xbap",
    "settingcontent-ms", "ins", "isp", "cab",
    # Unix and macOS: scripts, launchers, apps, packages; and interpreters' files.
    "sh", "bash", "zsh", "csh", "ksh", "fish", "run", "desktop", "appimage", "snap",
    "flatpakref", "deb", "rpm", "apk", "app", "command", "tool", "workflow", "action",
    "scpt", "dmg", "pkg", "mpkg", "jar", "class", "py", "pyw", "pyc", "pl", "rb", "php", "lua",
})
# fmt: on
PROGRAM_NOTE = "program — save it and check before running"


def is_program(name: str) -> bool:
    """Whether the desktop would run ``name`` (or install it, or hand it to an interpreter)
    when opened, judged by its extension as the desktop would: case-insensitive, ignoring the
    trailing dots and spaces Windows drops and invisible characters."""
    visible = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf"))
    _stem, dot, ext = visible.rstrip(". \t").rpartition(".")
    return bool(dot) and ext.lower() in PROGRAM_EXTENSIONS


# The first bytes of programs: ELF, PE (MZ), Mach-O (32/64-bit, both byte orders, universal).
_PROGRAM_MAGIC = (
    b"\x7fELF",
    b"MZ",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
)


def looks_runnable(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a program whatever its name: an executable's
    magic bytes, or a script's ``#!`` line (after a UTF-8 byte order mark, if any)."""
    return head.startswith(_PROGRAM_MAGIC) or head.removeprefix(b"\xef\xbb\xbf").startswith(b"#!")
