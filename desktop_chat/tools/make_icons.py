"""Build the package's icons from the source assets in the top-level ``resources/`` folder.

    python -m desktop_chat.tools.make_icons            # rewrite desktop_chat/resources/icons/
    python -m desktop_chat.tools.make_icons OUT_DIR    #   (and desktop_chat/web/icon.svg)

From ``resources/icons/desktop-chat.svg`` (the one source; copied as is for the app to load) it
writes ``desktop-chat-<N>.png`` for the usual
sizes (Linux icon themes, the ``.desktop`` entry), ``desktop-chat.ico`` (Windows: the
executable's icon) and ``desktop-chat.icns`` (macOS: the ``.app`` icon). Qt's SVG renderer
draws each size from the vector source, so small sizes are not blurry downscales. The ICO and
ICNS containers simply hold PNG images (supported since Windows Vista and OS X 10.7), written
here with ``struct``, so no image library beyond Qt is needed. The generated files are
committed; run this again after changing the SVG.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
ICON_DIR = PACKAGE / "resources" / "icons"
SOURCE = "desktop-chat.svg"
# The source assets (a source checkout has them; an installed package has only the copies).
SOURCES = PACKAGE.parent / "resources"
# Files copied unchanged from the sources into the package: source -> package copy.
COPIED = {
    SOURCES / "icons" / SOURCE: ICON_DIR / SOURCE,
    SOURCES / "web" / "icon.svg": PACKAGE / "web" / "icon.svg",
}
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS element types that hold a PNG, by pixel size (the @2x types reuse the bigger renders).
ICNS_TYPES = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"ic11", 32),
    (b"icp6", 64),
    (b"ic12", 64),
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic13", 256),
    (b"ic09", 512),
    (b"ic14", 512),
    (b"ic10", 1024),
)


def render_png(svg: Path, size: int) -> bytes:
    """The SVG drawn at ``size`` x ``size`` pixels, as PNG bytes (needs a QGuiApplication)."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QImage, QImageWriter, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg} is not a valid SVG file")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QImageWriter(buffer, QByteArray(b"png"))
    if not writer.write(image):
        raise OSError(f"Qt could not encode a PNG: {writer.errorString()}")
    buffer.close()
    return bytes(data.data())


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """An ICO file holding each PNG (size -> bytes): header, directory, then the images."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))  # reserved, type 1 = icon, image count
    offset = len(header) + 16 * len(sizes)
    directory = b""
    for size in sizes:
        data = pngs[size]
        side = 0 if size >= 256 else size  # 0 means 256 in an ICO directory entry
        directory += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
    return header + directory + b"".join(pngs[size] for size in sizes)


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    """An ICNS file: ``icns`` + total length, then one typed, length-prefixed PNG each."""
    elements = b"".join(
        kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size] for kind, size in ICNS_TYPES
    )
    return b"icns" + struct.pack(">I", 8 + len(elements)) + elements


def make_icons(out_dir: Path, svg: Path = SOURCES / "icons" / SOURCE) -> list[Path]:
    """Write every icon file into ``out_dir``; the paths written."""
    from PySide6.QtGui import QGuiApplication

    if QGuiApplication.instance() is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        _app = QGuiApplication([sys.argv[0]])  # Qt needs one alive while it draws
    pngs = {size: render_png(svg, size) for size in PNG_SIZES}
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for size, data in pngs.items():
        path = out_dir / f"desktop-chat-{size}.png"
        path.write_bytes(data)
        written.append(path)
    for name, data in (
        ("desktop-chat.ico", ico_bytes({s: pngs[s] for s in ICO_SIZES})),
        ("desktop-chat.icns", icns_bytes(pngs)),
    ):
        (out_dir / name).write_bytes(data)
        written.append(out_dir / name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the app icon files from its SVG.")
    parser.add_argument("out_dir", nargs="?", type=Path, default=None)
    args = parser.parse_args(argv)
    written = make_icons(args.out_dir or ICON_DIR)
    if args.out_dir is None:  # the package itself: bring its copies up to date too
        for source, copy in COPIED.items():
            copy.write_bytes(source.read_bytes())
            written.append(copy)
    for path in written:
        print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
