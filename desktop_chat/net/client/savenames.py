"""Local file names for received files: the server's name is only a label.

:func:`safe_name` turns any label (``../../x``, ``CON``, a right-to-left override, 300 bytes of
emoji) into one plain file name that is safe on Windows, macOS and Linux alike, and
:func:`claim_unique` reserves ``name (2).ext`` when ``name.ext`` exists, atomically (``O_EXCL``),
so nothing is ever overwritten silently, even by two saves at once.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

_MAX_BYTES = 200  # below every file system's 255, leaving room for " (123)" and ".part"
_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(10)),
    *(f"LPT{i}" for i in range(10)),
}
_FORBIDDEN = set('<>:"/\\|?*')


def safe_name(label: str) -> str:
    """A file name with no folder part, control or format characters, Windows-reserved name or
    character, leading dot, or trailing dot/space; at most 200 UTF-8 bytes, extension kept."""
    text = unicodedata.normalize("NFC", label)
    text = text.replace("\\", "/").rsplit("/", 1)[-1]  # a folder part is never a folder here
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if category[0] == "C" or category in ("Zl", "Zp"):
            continue  # controls, bidi overrides and other format characters, surrogates
        kept.append("_" if ch in _FORBIDDEN else ch)
    name = "".join(kept).strip().lstrip(".").rstrip(". ")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if stem.split(".")[0].upper().strip() in _RESERVED:
        stem = "_" + stem
    if len(ext.encode()) > 20:  # not an extension worth keeping whole
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    room = _MAX_BYTES - len(suffix.encode())
    stem = stem.encode()[:room].decode(errors="ignore").rstrip(". ")
    if not stem:
        stem = "file"
    return stem + suffix


def claim_unique(folder: Path, name: str) -> Path:
    """Create an empty ``folder/name``, or ``name (2).ext``, ``name (3).ext``... whichever
    does not exist yet, and return it: the caller then replaces it with the real content."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    for n in range(1, 10_000):
        candidate = folder / (name if n == 1 else f"{stem} ({n}){suffix}")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise OSError(f"too many files called {name} in {folder}")
