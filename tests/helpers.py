"""Test helpers: the timeout unit, and a raw line client as a netcat user or a script would use.

``T(seconds)`` scales every timeout by ``DESKTOP_CHAT_TEST_TIMEOUT_SCALE`` (default 1) for slow
machines. :class:`LineClient` speaks to a server over a real socket and waits for what it
expects with a deadline: tests never sleep.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

SCALE = float(os.environ.get("DESKTOP_CHAT_TEST_TIMEOUT_SCALE", "1"))


def T(seconds: float) -> float:
    return seconds * SCALE


class LineClient:
    """A raw TCP client reading ``\\n``-terminated lines."""

    def __init__(self, address: tuple[str, int], timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(address, timeout=T(timeout))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = T(timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def send_json(self, **obj: Any) -> None:
        self.send(json.dumps(obj) + "\n")

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"nothing more within the deadline; buffer: {self.buf[-300:]!r}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError(f"timed out; buffer: {self.buf[-300:]!r}") from None
        except ConnectionResetError:
            return False
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_line(self, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (T(timeout) if timeout else self.timeout)
        while b"\n" not in self.buf:
            if not self._fill(deadline):
                raise EOFError(f"connection closed; buffer: {self.buf!r}")
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def read_until_text(self, needle: str | bytes, timeout: float | None = None) -> bytes:
        """Everything up to and including ``needle`` (which need not end a line)."""
        want = needle.encode() if isinstance(needle, str) else needle
        deadline = time.monotonic() + (T(timeout) if timeout else self.timeout)
        while want not in self.buf:
            if not self._fill(deadline):
                raise EOFError(f"connection closed before {want!r}; buffer: {self.buf!r}")
        idx = self.buf.index(want) + len(want)
        out, self.buf = self.buf[:idx], self.buf[idx:]
        return out

    def read_json(self, timeout: float | None = None) -> dict[str, Any]:
        obj = json.loads(self.read_line(timeout))
        assert isinstance(obj, dict)
        return obj

    def expect(
        self,
        type_: str,
        timeout: float | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        skip: tuple[str, ...] = ("typing", "ping", "joined", "left", "users"),
    ) -> dict[str, Any]:
        """The next message of ``type_``; messages of the ``skip`` types are passed over."""
        deadline = time.monotonic() + (T(timeout) if timeout else self.timeout)
        while True:
            obj = self.read_json(max(0.01, deadline - time.monotonic()) / SCALE)
            if obj["type"] == type_ and (where is None or where(obj)):
                return obj
            if obj["type"] not in skip and obj["type"] != type_:
                raise AssertionError(f"expected {type_}, got {obj}")

    def assert_closed(self, timeout: float | None = None) -> bytes:
        """Read until the server closes; return what was left."""
        deadline = time.monotonic() + (T(timeout) if timeout else self.timeout)
        while self._fill(deadline):
            pass
        return self.buf

    def login(self, name: str, **extra: Any) -> dict[str, Any]:
        self.send_json(type="hello", protocol=1, name=name, **extra)
        welcome = self.read_json()
        assert welcome["type"] == "welcome", welcome
        # The users list of each room comes next, before anything else.
        self.welcome = welcome
        self.welcome_session = welcome["session"]
        self.users = [self.read_json() for _ in welcome["rooms"]]
        assert all(u["type"] == "users" for u in self.users), self.users
        return welcome


def wait_until(condition: Callable[[], object], timeout: float = 5.0, what: str = "") -> object:
    """Return ``condition()``'s first truthy value, checking it every 20 ms for up to
    ``T(timeout)`` seconds; for state outside our reach (another program's log file), where
    there is no event to wait on. Fails with ``what`` when the time is up."""
    deadline = time.monotonic() + T(timeout)
    pause = threading.Event()
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {T(timeout):.1f} s: {what or condition}")
        pause.wait(0.02)
