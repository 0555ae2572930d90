"""Fixtures for the server core's unit tests, in the style of h11's ``ConnectionPair``.

The hub, moderation, storage and outbox are driven directly: a real SQLite store in a tmp
folder (or PostgreSQL, for tests marked ``backends``), a real :class:`Flusher` (not started
unless a test needs it), fake members that record what they are handed (``doubles.py``), and a
fake clock. No server, no network.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_chat.net.server.hub import Hub
from desktop_chat.net.server.outbox import Flusher
from desktop_chat.net.server.storage_api import ChatStore, open_store
from tests.unit.doubles import FakeClock


@pytest.fixture
def storage(tmp_path: Path, database: str | None) -> Iterator[ChatStore]:
    """The test's back end (see ``backend`` in tests/conftest.py): SQLite in a tmp folder, or
    an empty PostgreSQL database."""
    store = open_store(database, tmp_path)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def flusher() -> Iterator[Flusher]:
    f = Flusher()
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hub(storage: ChatStore, flusher: Flusher, clock: FakeClock) -> Hub:
    h = Hub("Test chat", storage, flusher, clock=clock)
    h.load_registered()
    return h
