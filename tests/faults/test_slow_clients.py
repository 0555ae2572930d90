"""Clients that stall: silent, trickling (also mid-TLS-handshake), frozen with SIGSTOP. Each is
closed at its deadline, and everyone else is served meanwhile."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from typing import Any

from tests.helpers import LineClient, T

REGISTRATION = 1.5  # seconds a new connection has to log in, in these tests


def _closed_after(sock: socket.socket, trickle: bytes = b"", every: float = 0.2) -> float:
    """Send ``trickle`` a byte every ``every`` seconds until the server closes; how long that
    took. The wait between bytes is a read with a deadline: it ends early on the close."""
    started = time.monotonic()
    deadline = started + T(REGISTRATION + 5)
    pos = 0
    while time.monotonic() < deadline:
        if pos < len(trickle):
            try:
                sock.sendall(trickle[pos : pos + 1])
            except OSError:
                return time.monotonic() - started
            pos += 1
        sock.settimeout(every)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
        if not data:
            return time.monotonic() - started
    raise AssertionError("the server never closed the connection")


def _still_served(client: LineClient, n: int) -> None:
    client.send_json(type="ping", n=n)
    assert client.expect("pong", skip=("ping", "joined", "left", "users"))["n"] == n


def test_silent_and_trickling_clients_are_closed_at_the_deadline(make_server: Any) -> None:
    srv = make_server(registration_timeout=REGISTRATION, tls="off")
    with LineClient(srv.address) as alice:
        alice.login("alice")
        silent = socket.create_connection(srv.address)
        trickler = socket.create_connection(srv.address)
        try:
            took = _closed_after(
                trickler, b'{"type":"hello","protocol":1,"name":"slowpoke"}\n'[:40]
            )
            assert REGISTRATION - 0.3 <= took <= REGISTRATION + T(2)
            # The silent one became a plain-text user (prompt) and got no more time either.
            took_silent = _closed_after(silent)
            assert took_silent <= T(2)
            _still_served(alice, 1)
        finally:
            silent.close()
            trickler.close()


def _client_hello() -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="chat.local")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def test_trickle_mid_tls_handshake_is_closed_at_the_deadline(make_server: Any) -> None:
    srv = make_server(registration_timeout=REGISTRATION, tls="offered")
    with LineClient(srv.address) as alice:
        alice.login("alice")
        with socket.create_connection(srv.address) as sock:
            took = _closed_after(sock, _client_hello())
        assert took <= REGISTRATION + T(2)
        _still_served(alice, 2)


_FROZEN = """
import json, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b'{"type":"hello","protocol":1,"name":"frozen"}\\n')
f = s.makefile("rb")
json.loads(f.readline())
print("ready", flush=True)
for line in f:
    msg = json.loads(line)
    if msg["type"] == "ping":
        s.sendall(json.dumps({"type": "pong", "n": msg["n"]}).encode() + b"\\n")
"""


def test_client_frozen_with_sigstop_is_closed_timeout(make_server: Any) -> None:
    srv = make_server(ping_interval=0.5, ping_timeout=0.7, tls="off")
    with LineClient(srv.address) as alice:
        alice.login("alice")
        host, port = srv.address
        frozen = subprocess.Popen(
            [sys.executable, "-c", _FROZEN, host, str(port)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert frozen.stdout is not None and frozen.stdout.readline() == "ready\n"
            left = None
            deadline = time.monotonic() + T(1.5)
            n = 0
            # While awake it answers pings: still there after a few ping rounds.
            while time.monotonic() < deadline:
                n += 1
                _still_served(alice, n)
            os.kill(frozen.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            while left is None:
                alice.send_json(type="ping", n=0)  # alice stays alive by talking
                while (got := alice.read_json(timeout=5))["type"] != "pong":
                    if got["type"] == "left":
                        left = got
            assert (left["name"], left["reason"]) == ("frozen", "timeout")
            assert time.monotonic() - stopped <= T(0.5 + 0.7 + 1.5)
        finally:
            os.kill(frozen.pid, signal.SIGKILL)  # ours, by pid; it works on a stopped one
            frozen.wait(timeout=T(10))
            assert frozen.stdout is not None
            frozen.stdout.close()
        _still_served(alice, 99)
        deadline = time.monotonic() + T(5)
        while srv.connection_count() != 1:  # its thread ends just after the `left`
            assert time.monotonic() < deadline, srv.connection_count()
            _still_served(alice, 100)
