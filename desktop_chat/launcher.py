"""The packaged executable's entry point: one program for the app, the server and the self-test.

    desktop-chat [app options]          the desktop app (see ``app.py``)
    desktop-chat --server [options]     the headless server (see ``server_cli.py``)
    desktop-chat --self-test            check that this build works (see ``selftest.py``)
    desktop-chat --version

PyInstaller runs this file as a script (``build.spec``), so it imports by absolute names; from
source it is ``python -m desktop_chat.launcher``. The headless server path never imports Qt.

``DESKTOP_CHAT_QUIT_WHEN_SHOWN=1`` makes the app print ``window-shown`` and quit as soon as its
first window is exposed: ``bench/bench_package.py`` times a start with it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from desktop_chat import __version__

QUIT_WHEN_SHOWN = "DESKTOP_CHAT_QUIT_WHEN_SHOWN"


def _give_windowed_build_streams() -> None:
    # A Windows build without a console (PyInstaller console=False) starts with no stdout or
    # stderr at all; writing to None would crash the first print or log line.
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115


def _quit_when_first_window_is_shown(argv: Sequence[str]) -> None:
    """Create the QApplication ``app.main`` will reuse, watching for the first exposed window."""
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtGui import QWindow
    from PySide6.QtWidgets import QApplication

    app = QApplication([sys.argv[0], *argv])

    class Watcher(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if (
                event.type() == QEvent.Type.Expose
                and isinstance(watched, QWindow)
                and watched.isExposed()
            ):
                app.removeEventFilter(self)
                sys.stdout.write("window-shown\n")
                sys.stdout.flush()
                # The window appears before app.exec() starts: quit once the loop runs.
                QTimer.singleShot(0, app.quit)
            return False

    watcher = Watcher(app)
    app.installEventFilter(watcher)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    _give_windowed_build_streams()
    if args[:1] == ["--server"]:
        from desktop_chat.server_cli import main as server_main

        return server_main(args[1:])
    if args[:1] == ["--self-test"]:
        from desktop_chat.selftest import main as selftest_main

        return selftest_main(args[1:])
    if args == ["--version"]:
        # Answered here, without loading Qt and the window code that app.py imports: scripts
        # and installers ask for it and should not wait for a GUI toolkit to load.
        sys.stdout.write(f"desktop-chat {__version__}\n")
        return 0
    if os.environ.get(QUIT_WHEN_SHOWN) == "1" and "--version" not in args:
        _quit_when_first_window_is_shown(args)
    from desktop_chat.app import main as app_main

    return app_main(args)


if __name__ == "__main__":
    sys.exit(main())
