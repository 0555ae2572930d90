"""``python -m desktop_chat``: the same program as the ``desktop-chat`` command (the app, or
``--server``, ``--self-test``, ``--version``; see :mod:`desktop_chat.launcher`)."""

import sys

from desktop_chat.launcher import main

sys.exit(main())
