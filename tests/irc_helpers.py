"""A raw IRC client for tests: lines in, parsed messages out, with deadlines."""

from __future__ import annotations

import socket
import ssl
import time

from desktop_chat.net.protocol.irc import IrcMessage, parse
from tests.helpers import T


class RawIrc:
    def __init__(self, address: tuple[str, int], *, tls: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(address, timeout=T(5))
        self.sock = tls.wrap_socket(sock) if tls is not None else sock
        self.buf = b""
        self.seen: list[IrcMessage] = []

    def close(self) -> None:
        self.sock.close()

    def send(self, *lines: str | bytes) -> None:
        for line in lines:
            data = line.encode() if isinstance(line, str) else line
            self.sock.sendall(data if data.endswith(b"\n") else data + b"\r\n")

    def register(self, nick: str, *caps: str, password: str | None = None) -> list[IrcMessage]:
        if caps:
            self.send("CAP LS 302", f"CAP REQ :{' '.join(caps)}", "CAP END")
        if password is not None:
            self.send(f"PASS {password}")
        self.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        return self.until("366")  # the burst, then our JOIN of #general and its names

    def read(self, timeout: float | None = None) -> IrcMessage | None:
        """The next message, or None when the server closed the connection."""
        deadline = time.monotonic() + (T(5) if timeout is None else timeout)
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line; buffer {self.buf[-300:]!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        msg = parse(line.decode("utf-8"))
        self.seen.append(msg)
        return msg

    def until(self, command: str, timeout: float | None = None) -> list[IrcMessage]:
        """Messages up to and including the first ``command`` (e.g. "PRIVMSG", "433")."""
        got: list[IrcMessage] = []
        while True:
            msg = self.read(timeout)
            if msg is None:
                raise EOFError(f"closed before {command}; got {got}")
            got.append(msg)
            if msg.command == command:
                return got

    def expect(self, command: str, timeout: float | None = None) -> IrcMessage:
        return self.until(command, timeout)[-1]

    def assert_closed(self) -> None:
        while self.read() is not None:
            pass
