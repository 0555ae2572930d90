"""A real ``redis-server`` for the tests (and the benchmark), on a free loopback port.

:class:`RedisServer` starts one in a temporary folder of its own (no persistence: ``--save ''
--appendonly no``; its unix socket and log in that folder), waits until it answers ``PING``,
and stops it by its pid. :meth:`RedisServer.restart` stops it and starts it again on the same
port, for the tests of a Redis outage. It needs no pytest: ``bench/bench_server.py`` uses it too.

The fixtures: ``redis_service`` (one server for the whole session) and ``redis_url`` (a URL
for one test; every key of the tests before is gone: ``FLUSHALL``). Without Debian's
``redis-server`` package they skip, saying which package to install.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MISSING = "install Debian's redis-server package to run the Redis tests"
_START_TIMEOUT = 10.0  # seconds for redis-server to answer its first PING
_STOP_TIMEOUT = 10.0  # seconds for it to end once told to, before it is killed


def redis_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(address: tuple[str, int], *words: str, timeout: float = 5.0) -> bytes:
    """Send one command in RESP and return the first reply line (no redis-py needed)."""
    request = f"*{len(words)}\r\n".encode() + b"".join(
        f"${len(w.encode())}\r\n{w}\r\n".encode() for w in words
    )
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.strip()


class RedisServer:
    """One ``redis-server`` process of ours: started, restarted and stopped by its pid."""

    def __init__(self, binary: str, folder: Path | None = None) -> None:
        self.binary = binary
        self._own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="dc-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> RedisServer:
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.folder),
            "--unixsocket", str(self.folder / "redis.sock"),
            "--unixsocketperm", "700",
            "--logfile", str(self.folder / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, cwd=self.folder)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        pause = threading.Event()
        while True:
            if self.process.poll() is not None:
                log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(
                    f"redis-server ended at start ({self.process.returncode}):\n{log}"
                )
            try:
                if command(self.address, "PING", timeout=1.0) == b"+PONG":
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer within {_START_TIMEOUT} s")
            pause.wait(0.02)

    def stop(self) -> None:
        """End it (SIGTERM, then SIGKILL if it lingers) and reap it."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self) -> None:
        """End it at once, as a crash would (SIGKILL)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self, *, down_for: threading.Event | None = None) -> None:
        """Stop it and start it again on the same port (every key is gone: no persistence).

        ``down_for``: when given, the server stays down until that event is set, so a test can
        act while Redis is away (set it from another thread)."""
        self.stop()
        if down_for is not None:
            down_for.wait()
        self.start()

    def flushall(self) -> None:
        reply = command(self.address, "FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    def close(self) -> None:
        self.stop()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="session")
def redis_service() -> Iterator[RedisServer]:
    """One redis-server for the whole test session (skips without the package)."""
    binary = redis_binary()
    if binary is None:
        pytest.skip(MISSING)
    with RedisServer(binary) as server:
        yield server


@pytest.fixture
def redis_url(redis_service: RedisServer) -> str:
    """``redis://127.0.0.1:PORT/0`` of a Redis with no keys left by earlier tests."""
    if redis_service.process is None or redis_service.process.poll() is not None:
        redis_service.start()  # a test that stopped it did not start it again
    redis_service.flushall()
    return redis_service.url
