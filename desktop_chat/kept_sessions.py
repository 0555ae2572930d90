"""The sessions the desktop app keeps on the chats it joined, so that the next start resumes
them: the same rooms, the same DMs, every message missed meanwhile.

One JSON file, ``sessions.json`` in the data folder (next to ``transfers.json``), readable by
its owner only: a session token lets whoever holds it speak as that person until the session
ends. Each entry is keyed by the server's address and certificate fingerprint, so a token is
never offered to another server that took the same address. Leaving the chat (``/quit``, the
"Leave the chat" menu item) ends the session on the server and forgets it here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from desktop_chat.paths import data_dir
from desktop_chat.settings import HostedSession

FILE_NAME = "sessions.json"


def server_key(host: str, port: int, fingerprint: str) -> str:
    return f"{host}:{port} {fingerprint}"


class KeptSessions:
    """Read and write the kept sessions file (``path``; the data folder's by default)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else data_dir() / FILE_NAME

    def get(self, key: str) -> HostedSession | None:
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            dms = entry.get("dms", [])
            return HostedSession(
                name=str(entry["name"]),
                session=str(entry["session"]),
                since=int(entry.get("since", 0)),
                dms=tuple(str(d) for d in dms) if isinstance(dms, list) else (),
            )
        except (KeyError, TypeError, ValueError):
            return None  # damaged: a fresh login rather than none

    def put(self, key: str, kept: HostedSession) -> None:
        data = self._read()
        data[key] = {
            "name": kept.name,
            "session": kept.session,
            "since": kept.since,
            "dms": list(kept.dms),
        }
        self._write(data)

    def forget(self, key: str) -> None:
        data = self._read()
        if data.pop(key, None) is not None:
            self._write(data)

    def _read(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # unreadable or damaged: start afresh
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, object]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        # Created readable by the owner only, before any token is written into it.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.chmod(tmp, 0o600)  # an older file of ours kept its mode through O_TRUNC
        tmp.replace(self.path)
