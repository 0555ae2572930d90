"""What a shared file is, decided by its first bytes: never by its name or the uploader's claim.

PNG, JPEG, GIF and WebP are recognised by their magic bytes, and their pixel size is read from
the header (never by decoding the image). Those four are the only types ever served inline;
everything else is a download (see ``tus.py``), whatever it is. A few other common types get
their proper name so a client can show an icon; the rest are ``application/octet-stream``.
"""

from __future__ import annotations

import struct
import unicodedata
from dataclasses import dataclass

INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
HEAD_BYTES = 64 * 1024  # enough for every header read here (JPEG may need to skip EXIF)


@dataclass(frozen=True, slots=True)
class Media:
    mime: str
    width: int | None = None
    height: int | None = None


def detect(head: bytes) -> Media:
    """The type (and, for images, the size) of a file that starts with ``head``."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(head)
    if head.startswith(b"\xff\xd8\xff"):
        return _jpeg(head)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _gif(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp(head)
    if head.startswith(b"%PDF-"):
        return Media("application/pdf")
    if head.startswith(b"PK\x03\x04"):
        return Media("application/zip")
    lowered = head[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in lowered:
        return Media("image/svg+xml")
    if lowered.startswith((b"<!doctype html", b"<html", b"<script")):
        return Media("text/html")
    if _is_text(head):
        return Media("text/plain")
    return Media("application/octet-stream")


def _is_text(head: bytes) -> bool:
    sample = head[:4096]
    if not sample or b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(sample) - 3  # a character cut by the end of the sample
    return True


def _image(mime: str, width: int, height: int) -> Media:
    if width <= 0 or height <= 0:
        return Media(mime)
    return Media(mime, width, height)


def _png(head: bytes) -> Media:
    # The IHDR chunk comes first: length, "IHDR", width, height (big-endian).
    if len(head) < 24 or head[12:16] != b"IHDR":
        return Media("application/octet-stream")
    width, height = struct.unpack(">II", head[16:24])
    return _image("image/png", width, height)


def _gif(head: bytes) -> Media:
    if len(head) < 10:
        return Media("application/octet-stream")
    width, height = struct.unpack("<HH", head[6:10])
    return _image("image/gif", width, height)


def _webp(head: bytes) -> Media:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return _image("image/webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return _image("image/webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return _image("image/webp", width, height)
    return Media("image/webp")


_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg(head: bytes) -> Media:
    """Walk the JPEG segments to the first start-of-frame, which holds the size."""
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            return Media("image/jpeg")  # broken stream: still a JPEG, size unknown
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", head[i + 2 : i + 4])[0]
        if marker in _SOF and i + 9 <= len(head):
            height, width = struct.unpack(">HH", head[i + 5 : i + 9])
            return _image("image/jpeg", width, height)
        if length < 2:
            break
        i += 2 + length
    return Media("image/jpeg")


# -- names ----------------------------------------------------------------------------------

MAX_NAME_BYTES = 255
_WINDOWS_UNSAFE = '<>:"|?*'


def safe_label(name: str) -> str:
    """A file name as a harmless label: what a person sees and a client may offer to save as.

    The name never becomes a path on the server (blobs are named by their hash). Here it loses
    what could mislead or harm a reader or a client that saves it: control and format
    characters (NUL, bidi overrides such as U+202E), any folder part (``../../x`` → ``x``,
    ``C:\\x`` → ``x``), leading dots and spaces; it is cut to 255 UTF-8 bytes, keeping the
    extension. Nothing is left → ``file``.
    """
    text = unicodedata.normalize("NFC", name)
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp"))
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join("_" if c in _WINDOWS_UNSAFE else c for c in text)
    text = text.strip().lstrip(".").strip()
    if not text:
        return "file"
    if len(text.encode()) > MAX_NAME_BYTES:
        stem, dot, ext = text.rpartition(".")
        if not dot or len(ext.encode()) > 16:
            stem, ext = text, ""
        budget = MAX_NAME_BYTES - (len(ext.encode()) + 1 if ext else 0)
        stem = stem.encode()[:budget].decode("utf-8", "ignore")
        text = f"{stem}.{ext}" if ext else stem
    return text
