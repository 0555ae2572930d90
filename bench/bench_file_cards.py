"""What file cards cost the conversation view, next to plain messages: a room of N messages
(all file cards, or all text) is added to a ChatModel shown in a ChatView at 800×600; reported
are the time to add them, one layout of the shown rows (what every width change or new batch
costs) and one full repaint of the viewport. Prints figures; asserts nothing.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_file_cards.py [--messages 5000]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from desktop_chat.net.protocol.events import ChatMessage, FileInfo
from desktop_chat.ui.chat_model import ChatModel
from desktop_chat.ui.chat_view import ChatView


def _messages(count: int, files: bool) -> list[ChatMessage]:
    out = []
    for i in range(1, count + 1):
        info = None
        if files:
            info = FileInfo(id=f"f{i}", name=f"report {i}.pdf", size=1000 * i, sha256="0" * 64)
        text = "" if files else f"message number {i} with a few words in it"
        sender = ("carol", "dave")[i % 2]
        ts = 1_700_000_000_000 + i * 60_000
        out.append(ChatMessage(id=i, from_=sender, ts=ts, room="general", text=text, file=info))
    return out


def measure(
    app: QApplication, count: int, files: bool, rounds: int
) -> tuple[int, float, float, float]:
    view = ChatView()
    view.resize(800, 600)
    model = ChatModel("bob")
    view.set_chat_model(model)
    view.show()
    batch = _messages(count, files)
    start = time.perf_counter()
    model.add_messages(batch)
    app.processEvents()
    added = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(rounds):
        model.invalidate_sizes()
        view.doItemsLayout()
    layout = (time.perf_counter() - start) / rounds
    image = QImage(view.viewport().size(), QImage.Format.Format_ARGB32)
    start = time.perf_counter()
    for _ in range(rounds):
        view.viewport().render(image)
    paint = (time.perf_counter() - start) / rounds
    shown = model.rowCount()
    view.close()
    return shown, added, layout, paint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    print(f"{'rows':>6} {'kind':>6} {'add ms':>8} {'layout ms':>10} {'repaint ms':>11}")
    for files in (False, True):
        shown, added, layout, paint = measure(app, args.messages, files, args.rounds)
        kind = "cards" if files else "text"
        figures = f"{added * 1000:>8.0f} {layout * 1000:>10.1f} {paint * 1000:>11.1f}"
        print(f"{shown:>6} {kind:>6} {figures}")
    print(f"({args.messages} messages held, the view shows the newest rows)")


if __name__ == "__main__":
    main()
