"""Types and image sizes from the first bytes, on real images made by ImageMagick."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from desktop_chat.net.server.sniff_media import HEAD_BYTES, Media, detect, safe_label


@pytest.mark.parametrize(
    ("name", "options", "mime"),
    [
        ("a.png", [], "image/png"),
        ("a.gif", [], "image/gif"),
        ("a.jpg", ["-quality", "85"], "image/jpeg"),
        ("p.jpg", ["-interlace", "Plane"], "image/jpeg"),  # progressive: SOF2
        ("a.webp", ["-quality", "80"], "image/webp"),  # lossy: VP8
        ("l.webp", ["-define", "webp:lossless=true"], "image/webp"),  # VP8L
        ("x.webp", ["-alpha", "set", "-channel", "A", "-evaluate", "set", "50%"], "image/webp"),
    ],
)
def test_real_images(tmp_path: Path, name: str, options: list[str], mime: str) -> None:
    path = tmp_path / name
    subprocess.run(["convert", "-size", "37x23", "xc:red", *options, str(path)], check=True)
    assert detect(path.read_bytes()[:HEAD_BYTES]) == Media(mime, 37, 23)


def test_jpeg_with_exif_before_the_frame(tmp_path: Path) -> None:
    path = tmp_path / "exif.jpg"
    comment = "x" * 20_000  # a big segment to skip before the start of frame
    subprocess.run(
        ["convert", "-size", "640x480", "xc:blue", "-set", "comment", comment, str(path)],
        check=True,
    )
    assert detect(path.read_bytes()[:HEAD_BYTES]) == Media("image/jpeg", 640, 480)


def test_other_types_never_claim_to_be_images() -> None:
    assert detect(b'<?xml version="1.0"?>\n<svg xmlns="...">').mime == "image/svg+xml"
    assert detect(b"  <!doctype html><p>hi").mime == "text/html"
    assert detect(b"%PDF-1.7\n").mime == "application/pdf"
    assert detect("héllo\n".encode()).mime == "text/plain"
    assert detect(b"\x00\x01\x02binary").mime == "application/octet-stream"
    assert detect(b"").mime == "application/octet-stream"
    assert detect(b"\x89PNG\r\n\x1a\n").mime == "application/octet-stream"  # truncated
    assert detect(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + b"\x00" * 8) == Media("image/png")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\x.exe", "x.exe"),
        ("/abs", "abs"),
        ("gnp\u202e.exe", "gnp.exe"),
        ("a\x00b", "ab"),
        ("..", "file"),
        ("   ", "file"),
        (".hidden", "hidden"),
        ('a"b<c>.txt', "a_b_c_.txt"),
        ("e\u0301.txt", "\u00e9.txt"),  # NFC
    ],
)
def test_safe_label(raw: str, shown: str) -> None:
    assert safe_label(raw) == shown


def test_long_names_keep_their_extension() -> None:
    label = safe_label("é" * 300 + ".jpeg")
    assert label.endswith(".jpeg") and len(label.encode()) <= 255
    label.encode().decode()  # never a cut character
