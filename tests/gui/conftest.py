"""Fixtures for the desktop app's tests: clients that are always closed, quick client timing,
QSettings in a temporary folder, and the QThread/QTimer leak check (``qt_leaks.py``). Servers
(``make_server``), the Python thread-leak check and the timeout unit ``T`` come from
``tests/conftest.py`` and ``tests/helpers.py``."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_chat.net.client.worker import ChatClient, ClientTiming
from desktop_chat.net.server.server import Server
from desktop_chat.settings import Settings
from desktop_chat.ui.main_window import MainWindow
from desktop_chat.ui.notifications import SilentSound
from desktop_chat.ui.preferences import MemorySettings
from desktop_chat.ui.theme import LIGHT, apply_theme

if TYPE_CHECKING:
    from desktop_chat.app import AppController
from tests.gui.qt_leaks import QtLeakWatch
from tests.helpers import T

TIMEOUT_MS = int(T(5.0) * 1000)

# Quick reconnects, so tests see them without waiting long.
FAST = ClientTiming(
    connect_timeout=T(2.0),
    handshake_timeout=T(3.0),
    reconnect_base=0.05,
    reconnect_max=0.2,
)

ServerFactory = Callable[..., Server]
ClientFactory = Callable[..., ChatClient]


@pytest.fixture(autouse=True)
def _no_dangling_qt(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test that leaves a QThread running or a QTimer active, saying where it started.

    Autouse and set up before the test's own fixtures, so it checks after they are torn down
    (clients closed, controllers shut down) and after pytest-qt closed the test's widgets.
    """
    watch = QtLeakWatch()
    watch.install(monkeypatch)
    yield
    reports = watch.dangling(wait_ms=int(T(2.0) * 1000))
    if reports:
        pytest.fail("test left Qt work running:\n\n" + "\n".join(reports), pytrace=False)


@pytest.fixture(autouse=True)
def temporary_qsettings(tmp_path: Path) -> Iterator[Path]:
    """QSettings() without arguments writes under tmp_path, never in the real profile."""
    folder = tmp_path / "qsettings"
    folder.mkdir()
    previous = QSettings.defaultFormat()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for fmt in (QSettings.Format.IniFormat, QSettings.Format.NativeFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(folder))
    yield folder
    QSettings.setDefaultFormat(previous)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


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


@pytest.fixture
def controller(settings: Settings, tmp_path: Path) -> Iterator[AppController]:
    """The app's flow controller, hosting on 127.0.0.1 only and announcing nothing."""
    from desktop_chat.app import AppController

    ctl = AppController(
        settings, data_dir=tmp_path / "hosted", announce=False, bind_host="127.0.0.1", timing=FAST
    )
    try:
        yield ctl
    finally:
        ctl.shutdown()
        if ctl.dialog is not None:
            ctl.dialog.close()
            ctl.dialog.deleteLater()


WindowAt = Callable[..., MainWindow]


@pytest.fixture
def window_at(qtbot: QtBot) -> Iterator[WindowAt]:
    """``window_at(server, name, *, host=False, hosted=None, timing=FAST, settings=None)``: a
    real MainWindow connected to ``server`` and welcomed into #general; closed after the test
    (and the light theme put back). ``host`` connects as the hosting app does, with the
    owner token, and shows the server in the window; ``hosted`` shows another server."""
    windows: list[MainWindow] = []

    def make(
        server: Server,
        name: str,
        *,
        host: bool = False,
        hosted: Server | None = None,
        timing: ClientTiming = FAST,
        settings: MemorySettings | None = None,
    ) -> MainWindow:
        client = ChatClient(timing=timing)
        shown = hosted if hosted is not None else (server if host else None)
        window = MainWindow(client, shown, settings or MemorySettings(), sound=SilentSound())
        window.chat_view.open_links = False  # a test never opens a browser
        windows.append(window)
        qtbot.addWidget(window)
        window.resize(900, 600)
        window.show()
        client.connect_to(
            "127.0.0.1",
            server.port,
            name,
            owner=server.owner_token if host else None,
            fingerprint=server.fingerprint,
        )
        qtbot.waitUntil(lambda: window.session.me is not None, timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: window.current_key == "#general", timeout=TIMEOUT_MS)
        return window

    try:
        yield make
    finally:
        for window in windows:
            window.close()
        apply_theme(QApplication.instance(), LIGHT)  # type: ignore[arg-type]
