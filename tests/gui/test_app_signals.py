"""The desktop app as a process: SIGTERM (a logout, a shutdown) or Ctrl+C quits a hosting
app cleanly, without asking anyone (the people in the chat are told it is closing)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import LineClient, T, wait_until

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=T(1)).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_quits_the_hosting_app_without_asking(sig: int, tmp_path: Path) -> None:
    port = _free_port()
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        DESKTOP_CHAT_DATA_DIR=str(tmp_path / "data"),
    )
    argv = [sys.executable, "-m", "desktop_chat.app", "--host-chat", "--name", "Hal"]
    argv += ["--port", str(port), "--data-dir", str(tmp_path / "hosted"), "--no-announce"]
    app = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: _accepts(port) or app.poll() is not None, 20)
        assert app.poll() is None, app.stdout.read() if app.stdout else ""
        with LineClient(("127.0.0.1", port)) as bob:
            bob.login("Bob")
            # Bob is in: quitting by the window's own Quit would ask the host first.
            app.send_signal(sig)
            assert bob.expect("closing")["reason"] == "shutdown"
            bob.assert_closed()
        status = app.wait(T(10))
        assert status == 0, app.stdout.read() if app.stdout else ""
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        if app.stdout is not None:
            app.stdout.close()
