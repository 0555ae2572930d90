"""Clients that misbehave harm no one else: non-readers, floods, abrupt disconnects."""

from __future__ import annotations

import socket
import time
from typing import Any

from tests.helpers import LineClient, T


def test_client_that_never_reads_is_cut_off_and_others_are_not_delayed(make_server: Any) -> None:
    srv = make_server(rate_per_sec=0, outbox_limit=64 * 1024)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(srv.address)
    try:
        stuck.sendall(b'{"type":"hello","protocol":1,"name":"stuck"}\n')
        with LineClient(srv.address) as alice, LineClient(srv.address) as bob:
            alice.login("alice")
            bob.login("bob")
            # Enough to fill the kernel's buffers (up to 4 MiB here) and then our 64 KiB.
            text = "x" * 16_000
            worst = 0.0
            left: list[dict[str, Any]] = []
            for i in range(1000):
                if left and i > 600:
                    break
                sent = time.monotonic()
                alice.send_json(type="say", room="general", text=text, ref=i)
                while (got := bob.read_json())["type"] != "message":
                    if got["type"] == "left":
                        left.append(got)
                worst = max(worst, time.monotonic() - sent)
                assert got["text"] == text
                alice.expect("message")
            assert [(m["name"], m["reason"]) for m in left] == [("stuck", "slow")]
            # Each round trip stayed prompt although "stuck" read nothing.
            assert worst < T(2.0)
            assert srv.connection_count() == 2
    finally:
        stuck.close()


def test_abrupt_disconnect_mid_line_relays_nothing(connect: Any) -> None:
    alice = connect("alice")
    rude = socket.create_connection(alice.sock.getpeername())
    rude.sendall(b'{"type":"hello","name":"rude"}\n{"type":"say","room":"general","text":"par')
    assert alice.expect("joined")["name"] == "rude"
    rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    rude.close()  # RST, not FIN
    assert alice.expect("left")["name"] == "rude"
    alice.send_json(type="history", room="general")
    assert alice.expect("history")["messages"] == []


def test_many_clients_chat(make_server: Any) -> None:
    srv = make_server(rate_per_sec=0, max_per_address=100)
    clients = [LineClient(srv.address) for _ in range(30)]
    try:
        for i, c in enumerate(clients):
            c.login(f"user{i}")
        for i, c in enumerate(clients[:5]):
            c.send_json(type="say", room="general", text=f"from {i}")
        for c in clients:
            texts = sorted(c.expect("message")["text"] for _ in range(5))
            assert texts == [f"from {i}" for i in range(5)]
    finally:
        for c in clients:
            c.close()


def test_http_request_gets_a_page(connect: Any) -> None:
    c = connect()
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = c.read_until_text("\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Test chat" in c.assert_closed()
