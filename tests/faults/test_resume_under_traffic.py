"""Resuming while others chat: replay and the switch to live delivery are one step, so every
message arrives exactly once and in order, whatever was sent while the client resumed."""

from __future__ import annotations

import random
import socket
import threading
from typing import Any

from tests.helpers import LineClient, T


class _Flooder(threading.Thread):
    """Says numbered messages as fast as the server echoes them, until told to stop."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(name="test-flooder")
        self.client = LineClient(address)
        self.client.login("flood")
        self.stop = threading.Event()
        self.ids: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            n = 0
            while not self.stop.is_set():
                for _ in range(10):  # a window of 10 in flight
                    self.client.send_json(type="say", room="general", text=f"m{n}", ref=n)
                    n += 1
                for _ in range(10):
                    self.ids.append(self.client.expect("message")["id"])
        except (OSError, EOFError, AssertionError, ValueError) as exc:  # reported by the test
            self.error = exc
        finally:
            self.client.close()


def _drop(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # an abrupt drop (RST), with whatever the server sent still unread


def test_resume_under_a_flood_loses_and_repeats_nothing(make_server: Any) -> None:
    srv = make_server(rate_per_sec=0, outbox_limit=256 * 1024)
    rng = random.Random(8)
    first = LineClient(srv.address)
    first.login("reader")
    token = first.welcome_session
    flooder = _Flooder(srv.address)
    flooder.start()
    seen: list[int] = []
    client = first
    try:
        for _round in range(30):
            # Read some of the flood (only what was processed counts as seen), then drop.
            for _ in range(rng.randint(1, 60)):
                msg = client.expect("message", timeout=T(5))
                seen.append(msg["id"])
            _drop(client.sock)
            since = seen[-1]
            client = LineClient(srv.address)
            client.login("reader", resume={"session": token, "since": since})
            assert client.welcome.get("resumed") is True
        flooder.stop.set()
        flooder.join(timeout=T(10))
        assert flooder.error is None, flooder.error
        last = flooder.ids[-1]
        while seen[-1] != last:
            seen.append(client.expect("message", timeout=T(5))["id"])
    finally:
        flooder.stop.set()
        flooder.join(timeout=T(10))
        client.close()
    assert seen == sorted(set(seen))  # in order, none twice
    first_seen = seen[0]
    assert seen == [i for i in flooder.ids if i >= first_seen]  # none lost
