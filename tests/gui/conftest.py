"""Fixtures for the desktop app's tests: a real server on loopback, clients that are always
closed, QSettings in a temporary folder, and a check that no test leaves a thread running."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from desktop_chat.net.client import ChatClient, ClientTiming
from desktop_chat.net.server import Server, ServerConfig
from desktop_chat.settings import Settings

# One timeout unit for waiting on events, scaled for slow machines.
SCALE = float(os.environ.get("DESKTOP_CHAT_TEST_TIMEOUT_SCALE", "1"))
TIMEOUT_MS = int(5000 * SCALE)

# Quick reconnects and pings, so tests see them without waiting long.
FAST = ClientTiming(
    connect_timeout=2.0 * SCALE,
    handshake_timeout=3.0 * SCALE,
    reconnect_base=0.05,
    reconnect_max=0.2,
    ping_interval=5.0,
    silence_timeout=20.0,
)


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """Fail a test that leaves a (non-dummy) thread running, naming the thread."""
    before = set(threading.enumerate())
    yield
    left = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not isinstance(t, threading._DummyThread)
    ]
    for thread in left:  # a thread that is just returning gets a moment to finish
        thread.join(timeout=2.0 * SCALE)
    still = [t.name for t in left if t.is_alive()]
    assert not still, f"threads left running: {still}"


@pytest.fixture(autouse=True)
def temporary_qsettings(tmp_path: Path) -> Iterator[Path]:
    """QSettings() without arguments writes under tmp_path, never in the real profile."""
    folder = tmp_path / "qsettings"
    folder.mkdir()
    previous = QSettings.defaultFormat()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(folder))
    yield folder
    QSettings.setDefaultFormat(previous)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


ServerFactory = Callable[..., Server]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers on 127.0.0.1 (port 0 unless given); all are closed after the test."""
    servers: list[Server] = []

    def make(port: int = 0, data_dir: Path | None = None, **options: object) -> Server:
        config = ServerConfig(
            host="127.0.0.1",
            port=port,
            data_dir=data_dir or tmp_path / "server",
            title="Test chat",
            **options,  # type: ignore[arg-type]
        )
        server = Server(config)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.close()


ClientFactory = Callable[..., ChatClient]


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """ChatClients with FAST timing (or the given one); all are closed after the test."""
    clients: list[ChatClient] = []

    def make(timing: ClientTiming = FAST) -> ChatClient:
        client = ChatClient(timing=timing)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            client.close()
