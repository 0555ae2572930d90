"""The fault suite's own server: the real headless server as a subprocess, so a test can
SIGKILL it, freeze nothing of ours, and read its memory and file descriptors from /proc.

Only the processes started here are ever signalled, by their pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import T

CMD = [sys.executable, "-m", "desktop_chat.server_cli"]


class ServerProc:
    """One ``desktop_chat.server_cli`` process on 127.0.0.1 and a free port."""

    def __init__(self, data_dir: Path, log: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self._log = log.open("a")
        self.proc = subprocess.Popen(
            [
                *CMD,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--data-dir",
                str(data_dir),
                "--no-announce",
                "--tls",
                "off",
                "--log-level",
                "warning",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.address = self._read_address()

    def _read_address(self) -> tuple[str, int]:
        assert self.proc.stdout is not None
        lines: list[str] = []
        while not (lines and "Ctrl+C" in lines[-1]):
            line = self.proc.stdout.readline()
            assert line, f"the server stopped: {lines}"
            lines.append(line)
        port = next(int(x.strip().rsplit(":", 1)[1]) for x in lines if x.startswith("  127.0.0.1:"))
        return ("127.0.0.1", port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed or closed by the server itself."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=T(10))
        self._close_pipes()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=T(15))
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=T(10))
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


@pytest.fixture
def server_proc(data_dir: Path, tmp_path: Path) -> Iterator[object]:
    """``server_proc(*flags)``: start a server subprocess; all are stopped after the test."""
    started: list[ServerProc] = []

    def start(*extra: str) -> ServerProc:
        proc = ServerProc(data_dir, tmp_path / "server.log", *extra)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()
