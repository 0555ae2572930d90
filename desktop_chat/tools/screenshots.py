"""Render the main window in realistic states to PNG files, for people to look at.

    python -m desktop_chat.tools.screenshots docs/screenshots/

A real in-process server on 127.0.0.1 and real clients on loopback play a short conversation
(several people, a second room, a link, a mention, a /me action, a private message); the host's
window is then captured offscreen in the light theme, with the DM open, in the dark theme, at
800×600 and at 1440×900, with its "Invite people…" dialog; then Bob's window during an outage
(the server stopped: people greyed, a message pending, "Reconnect now").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEventLoop, QPoint
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import QApplication

from desktop_chat.net.client.worker import ChatClient, ClientTiming
from desktop_chat.net.server.server import Server, ServerConfig
from desktop_chat.ui.main_window import MainWindow
from desktop_chat.ui.preferences import MemorySettings
from desktop_chat.ui.theme import DARK, LIGHT, apply_theme

TIMING = ClientTiming(ping_interval=0.3, reconnect_base=0.2)


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the scripted conversation did not happen in time")
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)


def settle(seconds: float = 0.15) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)


class Person:
    """A headless participant: a real ChatClient on loopback."""

    def __init__(self, name: str, port: int, fingerprint: str | None) -> None:
        self.name = name
        self.client = ChatClient(timing=TIMING)
        self.welcomed = False
        self.rooms_seen: set[str] = set()
        self.client.welcomed.connect(lambda _w: setattr(self, "welcomed", True))
        self.client.usersChanged.connect(lambda u: self.rooms_seen.add(u.room))
        self.client.connect_to("127.0.0.1", port, name, fingerprint=fingerprint)


def play(server: Server, window: MainWindow) -> list[Person]:
    port = server.port
    wait_until(lambda: window.session.me is not None)
    people = [Person(n, port, server.fingerprint) for n in ("Bob", "Carol", "Dave", "Erin")]
    wait_until(lambda: all(p.welcomed for p in people))
    bob, carol, dave, erin = people
    general = window.session.find("#general")
    assert general is not None
    wait_until(lambda: len(general.members) == 5)

    def say(person: Person, text: str, room: str = "general") -> None:
        person.client.say(room, text)
        settle(0.05)

    window.client.say("general", "Morning all! Coffee's on in the kitchen.")
    say(bob, "Morning Alice")
    say(bob, "Did anyone pick up the projector from room 4?")
    say(carol, "I did, it's on my desk. The remote is missing though")
    say(dave, "* Dave checks the drawer")
    say(dave, "Found it! Spare batteries too.")
    say(
        carol,
        "@Alice could you look over the agenda before 11? "
        "It's at https://wiki.example.lan/team/agenda-2024 (second section is new)",
    )
    say(erin, "Tip: <b>bold</b> isn't a thing here, text is shown exactly as typed")
    window.client.say("general", "On it, will send notes after lunch.")
    wait_until(lambda: general.model.total >= 9)

    for person in (bob, carol):
        person.client.join("lunch")
    wait_until(lambda: "lunch" in bob.rooms_seen and "lunch" in carol.rooms_seen)
    window.session.join("lunch")
    wait_until(lambda: window.session.find("#lunch") is not None)
    window.show_conversation("#general")
    say(bob, "Thai place or the canteen today?", "lunch")
    say(carol, "Thai, definitely", "lunch")
    say(bob, "12:30 at the front door then", "lunch")
    bob.client.dm("Alice", "Hey, quick one: can you review my slides before the demo?")
    bob.client.dm("Alice", "No rush, anytime this afternoon is fine.")
    lunch = window.session.find("#lunch")
    wait_until(lambda: lunch is not None and lunch.unread >= 3)
    wait_until(lambda: window.session.find("@bob") is not None)
    dm = window.session.find("@bob")
    assert dm is not None
    wait_until(lambda: dm.model.total >= 2)
    carol.client.send_typing(room="general")
    wait_until(lambda: "typing" in window.typing_label.text())
    wait_until(lambda: bool(window.status.latency_label.text()), timeout=3)
    return people


def capture(window: MainWindow, path: Path) -> None:
    window.chat_view.scroll_to_newest()
    settle()
    window.grab().save(str(path))
    print(f"wrote {path}")


def capture_outage(server: Server, app: QApplication, path: Path) -> None:
    """Bob's window while the chat is down: a message typed meanwhile waits, marked."""
    client = ChatClient(timing=ClientTiming(reconnect_base=8.0, reconnect_max=10.0))
    window = MainWindow(client, None, MemorySettings(theme="light"))
    try:
        window.resize(900, 600)
        window.show()
        client.connect_to("127.0.0.1", server.port, "Frank", fingerprint=server.fingerprint)
        wait_until(lambda: window.current_key == "#general")
        general = window.session.find("#general")
        assert general is not None
        wait_until(lambda: general.model.total >= 9 and not general.history_pending)
        server.close()
        wait_until(lambda: "Reconnecting in" in window.banner.text())
        window.session.send("#general", "Back in 5, grabbing a coffee")
        capture(window, path)
    finally:
        window.shutdown()
        window.close()
        window.deleteLater()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the PNG files")
    parser.add_argument("--width", type=int, default=1180)
    parser.add_argument("--height", type=int, default=760)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # read when the app starts

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Desktop Chat")
    with tempfile.TemporaryDirectory() as data:
        config = ServerConfig(host="127.0.0.1", port=0, data_dir=Path(data), title="Design team")
        server = Server(config).start()
        client = ChatClient(timing=TIMING)
        window = MainWindow(client, server, MemorySettings(theme="light"))
        people: list[Person] = []
        try:
            window.resize(args.width, args.height)
            window.show()
            QCursor.setPos(QPoint(-50, -50))  # no hover highlight in the pictures
            client.connect_to(
                "127.0.0.1",
                server.port,
                "Alice",
                owner=server.owner_token,
                fingerprint=server.fingerprint,
            )
            people = play(server, window)
            window.activateWindow()
            capture(window, args.out / "main-light.png")
            window.show_conversation("@bob")
            window.input._set_text("Sure, send them over")
            capture(window, args.out / "direct-message.png")
            window.input._set_text("")
            window.show_conversation("#general")
            window.settings.theme = "dark"
            window.theme = DARK
            window._apply_theme()
            capture(window, args.out / "main-dark.png")
            window.theme = LIGHT
            window._apply_theme()
            for width, height in ((800, 600), (1440, 900)):
                window.resize(width, height)
                capture(window, args.out / f"main-{width}x{height}.png")
            window.resize(args.width, args.height)
            invite = window.host_control.open_invite()
            assert invite is not None
            settle()
            invite.grab().save(str(args.out / "invite.png"))
            print(f"wrote {args.out / 'invite.png'}")
            invite.close()
            capture_outage(server, app, args.out / "outage.png")
            apply_theme(app, LIGHT)
        finally:
            for person in people:
                person.client.close()
            window.shutdown()
            window.close()
            window.deleteLater()
            server.close()
            settle(0.05)
            app.processEvents()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
