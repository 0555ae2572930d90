"""Look-alike room names: the TR39 rule for user names applies to rooms too.

``vip`` and ``vіp`` (with a Cyrillic і) have the same skeleton, so they are one room: a join,
``say`` or ``history`` naming a new look-alike of an existing room goes to that room (as
``VIP`` does, by case-folding). Rooms made before this rule that already look alike keep
working under their own names.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from desktop_chat.net.protocol.names import name_key, skeleton


class RoomLooks:
    """Every room ever created, by key and by skeleton. Thread-safe; filled on first use."""

    def __init__(self, load: Callable[[], list[tuple[str, str]]]) -> None:
        """``load`` lists (key, name) of the stored rooms (asked once, when first needed)."""
        self._load = load
        self._lock = threading.Lock()
        self._keys: set[str] = set()
        self._looks: dict[str, str] | None = None  # skeleton -> key of the first such room

    def key_for(self, requested: str) -> str:
        """The key of the room ``requested`` names: its own if such a room exists or none
        looks like it, else the key of the existing look-alike."""
        key = name_key(requested)
        with self._lock:
            looks = self._loaded()
            if key in self._keys:
                return key
            return looks.get(skeleton(key), key)

    def add(self, key: str) -> None:
        """A room was created."""
        with self._lock:
            looks = self._loaded()
            self._keys.add(key)
            looks.setdefault(skeleton(key), key)

    def _loaded(self) -> dict[str, str]:
        if self._looks is None:
            self._looks = {}
            for known, _name in self._load():
                self._keys.add(known)
                self._looks.setdefault(skeleton(known), known)
        return self._looks
