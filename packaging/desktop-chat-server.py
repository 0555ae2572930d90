"""The bundle's console program for the headless server (``desktop-chat-server``).

build.spec makes it a second executable beside ``desktop-chat`` in the onedir bundle, built
with a console, so on Windows a host who runs it from a terminal sees the addresses and the log
(the app itself has no console there). It imports no Qt.
"""

import sys

from desktop_chat.server_cli import main

if __name__ == "__main__":
    sys.exit(main())
