"""``desktop-chat --self-test``: prove in a few seconds that this copy of the app works.

Made for the packaged executable (a missing library, Qt plugin or data file shows up here, not
on a user's desk) and just as useful from source (``python -m desktop_chat.launcher
--self-test``). Everything happens in this process, on loopback, in a temporary folder:

1. host a chat: an in-process :class:`~desktop_chat.net.server.Server` on a free port of
   127.0.0.1 (nothing announced on the network);
2. fetch the web page for phones from it over HTTP (the web files are package data);
3. check the app icon can be drawn (Qt's SVG icon engine is there), and that the libraries
   with compiled parts work: a password is hashed (argon2) and the network discovery module
   loads (zeroconf; nothing is announced);
4. open the real :class:`~desktop_chat.ui.main_window.MainWindow` with a real
   :class:`~desktop_chat.net.client.ChatClient` and connect as the hosting app does (over
   TLS, with the server's certificate made on the spot: cryptography), wait for the welcome;
5. type a message into the window's message box and press Enter (key events, so the window's
   own send path runs), and wait until the server's echo of it is in the conversation;
6. close the window, the client and the server.

It prints one line, ``self-test passed: …`` (exit 0) or ``self-test failed: <reason>``
(exit 1; an unexpected exception, a bug, is followed by its traceback). A watchdog turns a
hang anywhere, even one that blocks the event loop, into a failure after ``--timeout``
seconds (20). With no display (Linux without ``DISPLAY`` or ``WAYLAND_DISPLAY``) Qt starts
offscreen.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from desktop_chat import __version__

log = logging.getLogger("desktop_chat.selftest")

DEFAULT_TIMEOUT = 20.0
STEP_TIMEOUT = 10.0


class SelfTestFailed(Exception):
    """One step did not do what it should; the message says which and why."""


def use_offscreen_without_display() -> None:
    """Qt's offscreen platform when Linux has no display to open (must run before QApplication)."""
    no_display = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if sys.platform.startswith("linux") and no_display:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class _Watchdog:
    """Ends the process with a one-line reason if the self-test has not finished in time.

    A thread, not a Qt timer: it must fire even when the GUI thread is stuck.
    """

    def __init__(self, timeout: float) -> None:
        self.step = "starting"
        self._timer = threading.Timer(timeout, self._expire, args=(timeout,))
        self._timer.daemon = True
        self._timer.name = "self-test-watchdog"

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def _expire(self, timeout: float) -> None:
        sys.stderr.write(f"self-test failed: not finished within {timeout:g} s ({self.step})\n")
        sys.stderr.flush()
        os._exit(1)


def _wait(check: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT) -> None:
    """Run Qt's event loop until ``check()`` is true; SelfTestFailed after ``timeout``."""
    from PySide6.QtCore import QEventLoop, QTimer

    if check():
        return
    deadline = time.monotonic() + timeout
    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(5)

    def look() -> None:
        if check() or time.monotonic() > deadline:
            loop.quit()

    poll.timeout.connect(look)
    poll.start()
    try:
        loop.exec()
    finally:
        poll.stop()
    if not check():
        raise SelfTestFailed(f"timed out after {timeout:g} s waiting for {what}")


def fetch_web_page(port: int) -> None:
    """GET / from the server: the web page for phones is in this build and served."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=STEP_TIMEOUT)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise SelfTestFailed(f"the web page could not be fetched: {exc}") from exc
    finally:
        conn.close()
    if response.status != 200 or b"<html" not in body.lower():
        raise SelfTestFailed(f"the web page is missing (HTTP {response.status})")


def check_icon() -> None:
    from desktop_chat.ui.icons import app_icon

    if app_icon().pixmap(32, 32).isNull():
        raise SelfTestFailed("the app icon cannot be drawn (icon file or Qt SVG plugin missing)")


def check_libraries() -> None:
    import importlib

    from desktop_chat.net.server.accounts import hash_password, verify_password

    if not verify_password(hash_password("self-test"), "self-test"):
        raise SelfTestFailed("a password hash did not verify")
    importlib.import_module("desktop_chat.net.discovery.mdns")


def type_and_send(widget: object, text: str) -> None:
    """Key presses into ``widget`` as a keyboard would make them, then Enter."""
    from PySide6.QtCore import QEvent, Qt
    from PySide6.QtGui import QKeyEvent
    from PySide6.QtWidgets import QApplication, QWidget

    assert isinstance(widget, QWidget)
    widget.setFocus()
    none = Qt.KeyboardModifier.NoModifier
    for ch in text:  # ASCII letters, digits, space and "-": their Qt key codes are their codes
        for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            QApplication.sendEvent(widget, QKeyEvent(kind, ord(ch.upper()), none, ch))
    for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
        QApplication.sendEvent(widget, QKeyEvent(kind, Qt.Key.Key_Return, none, "\r"))


def run_chat_round_trip(data_dir: Path, watchdog: _Watchdog) -> float:
    """Steps 1-6 of the module docstring; the seconds from Enter to the echo shown."""
    from desktop_chat.net.client.worker import ChatClient
    from desktop_chat.net.server.server import Server, ServerConfig
    from desktop_chat.ui.main_window import MainWindow
    from desktop_chat.ui.notifications import SilentSound
    from desktop_chat.ui.preferences import MemorySettings

    config = ServerConfig(host="127.0.0.1", port=0, data_dir=data_dir, title="Self-test")
    watchdog.step = "starting the server"
    with Server(config) as server:
        watchdog.step = "fetching the web page"
        fetch_web_page(server.port)
        watchdog.step = "drawing the icon"
        check_icon()
        watchdog.step = "loading the libraries"
        check_libraries()
        watchdog.step = "opening the window"
        client = ChatClient()
        window = MainWindow(client, server=server, settings=MemorySettings(), sound=SilentSound())
        failures: list[str] = []
        client.connectionFailed.connect(lambda code, message: failures.append(f"{code}: {message}"))
        try:
            window.show()
            # As the hosting app connects to its own server: with its owner token, and its
            # certificate known, so nobody is asked to compare fingerprints.
            client.connect_to(
                "127.0.0.1",
                server.port,
                "self-test",
                owner=server.owner_token,
                fingerprint=server.fingerprint,
            )
            watchdog.step = "waiting for the welcome"
            _wait(
                lambda: bool(failures) or window.current_key == "#general",
                "the server's welcome and the #general room",
            )
            if failures:
                raise SelfTestFailed(f"could not connect to its own server ({failures[0]})")
            text = f"self-test {secrets.token_hex(4)}"
            watchdog.step = "sending a message through the window"
            started = time.perf_counter()
            type_and_send(window.input, text)
            conversation = window.session.find("#general")
            if conversation is None:
                raise SelfTestFailed("the window shows no #general conversation")
            _wait(
                lambda: any(
                    e.text == text and e.own and e.msg_id is not None
                    for e in conversation.model.entries()
                ),
                "the message typed in the window to come back from the server",
            )
            elapsed = time.perf_counter() - started
            if window.input.toPlainText():
                raise SelfTestFailed("the message box was not cleared after sending")
        finally:
            watchdog.step = "closing the window, the client and the server"
            window.close()  # closes the client and the hosted server too
            client.close()
            window.deleteLater()
    return elapsed


def run(timeout: float = DEFAULT_TIMEOUT) -> int:
    """The whole self-test; the exit status. Prints its one-line verdict."""
    started = time.perf_counter()
    with _Watchdog(timeout) as watchdog:
        use_offscreen_without_display()
        from PySide6.QtGui import QGuiApplication
        from PySide6.QtWidgets import QApplication

        existing = QApplication.instance()
        app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0]])
        try:
            with tempfile.TemporaryDirectory(prefix="desktop-chat-self-test-") as tmp:
                round_trip = run_chat_round_trip(Path(tmp), watchdog)
        except SelfTestFailed as exc:
            sys.stderr.write(f"self-test failed: {exc}\n")
            return 1
        except (OSError, ImportError) as exc:  # a missing file or library in this build
            sys.stderr.write(f"self-test failed while {watchdog.step}: {exc}\n")
            return 1
        except Exception as exc:
            # A bug: the one line first, then the traceback that says where.
            log.exception(
                "self-test failed while %s: %s: %s", watchdog.step, type(exc).__name__, exc
            )
            return 1
        app.processEvents()  # let the deleteLater()s run before Python tears Qt down
        platform = QGuiApplication.platformName()
    total = time.perf_counter() - started
    sys.stdout.write(
        f"self-test passed: desktop-chat {__version__} on Qt {platform}: a message typed in the "
        f"window came back in {round_trip * 1000:.0f} ms; {total:.2f} s in all\n"
    )
    sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="desktop-chat --self-test",
        description="Host a chat on loopback, send a message through the real window, exit 0.",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="give up after this many seconds (default %(default)g)",
    )
    args = parser.parse_args(argv)
    return run(args.timeout)
