"""Loads that must hurt no one else: a non-reader among busy chatters, a history-hungry
non-reader, a flood from one client, a connection storm from one address. Memory and file
descriptors are read from the real server process."""

from __future__ import annotations

import socket
import statistics
import time
from typing import Any

from tests.faults.conftest import ServerProc
from tests.helpers import LineClient, T

LIMIT = 256 * 1024


def _non_reader(address: tuple[str, int], name: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address)
    sock.sendall(b'{"type":"hello","protocol":1,"name":"%s"}\n' % name.encode())
    return sock


def _round(chatters: list[LineClient], text: str, tag: int) -> tuple[float, list[dict[str, Any]]]:
    """Everyone says one line; the time until everyone has seen every line; `left`s seen."""
    started = time.monotonic()
    for i, c in enumerate(chatters):
        c.send_json(type="say", room="general", text=text, ref=f"{tag}-{i}")
    left = []
    for c in chatters:
        seen = 0
        while seen < len(chatters):
            got = c.read_json()
            if got["type"] == "message":
                seen += 1
            elif got["type"] == "left":
                left.append(got)
    return time.monotonic() - started, left


def _pong_or_left(client: LineClient) -> dict[str, Any] | None:
    """A ping round trip; the `left` seen meanwhile, if any."""
    left = None
    client.send_json(type="ping", n=0)
    while (got := client.read_json())["type"] != "pong":
        if got["type"] == "left":
            left = got
    return left


def test_non_reader_among_busy_chatters(server_proc: Any) -> None:
    srv: ServerProc = server_proc("--rate-per-sec", "0", "--outbox-limit", str(LIMIT))
    chatters = [LineClient(srv.address) for _ in range(10)]
    try:
        for i, c in enumerate(chatters):
            c.login(f"chatter{i}")
        for c in chatters:  # everyone's joins, so rounds start clean
            c.send_json(type="ping", n=0)
            while c.read_json()["type"] != "pong":
                pass
        text = "c" * 2000
        before = [_round(chatters, text, r)[0] for r in range(30)]
        rss_before = srv.rss_kib()
        stuck = _non_reader(srv.address, "stuck")
        try:
            during: list[float] = []
            lefts: list[dict[str, Any]] = []
            for r in range(400):
                took, left = _round(chatters, text, 1000 + r)
                during.append(took)
                lefts += left
                if lefts and len(during) >= 60:
                    break
            rss_after = srv.rss_kib()
        finally:
            stuck.close()
        assert {(m["name"], m["reason"]) for m in lefts} == {("stuck", "slow")}
        # Others' latency unchanged (generous bounds: two shared cores).
        assert statistics.median(during) <= 2 * statistics.median(before) + 0.005
        # Its backlog stayed within its limit: no growth beyond that and the kernel's buffers.
        assert rss_after - rss_before < 24 * 1024, (rss_before, rss_after)
    finally:
        for c in chatters:
            c.close()


def test_history_hungry_non_reader_is_cut_off_and_memory_stays_flat(server_proc: Any) -> None:
    # The case: RSS went from 59 MB to 240 MB in 16 s and the client was never cut off.
    srv: ServerProc = server_proc("--rate-per-sec", "0", "--outbox-limit", str(LIMIT))
    with LineClient(srv.address) as alice:
        alice.login("alice")
        for i in range(100):
            alice.send_json(type="say", room="general", text=f"{i} " + "h" * 1500, ref=i)
        for _ in range(100):
            alice.expect("message")
        rss_before = srv.rss_kib()
        greedy = _non_reader(srv.address, "greedy")
        greedy.settimeout(T(5))
        left = None
        peak = rss_before
        try:
            for n in range(3000):
                try:
                    greedy.sendall(b'{"type":"history","room":"general","limit":500}\n' * 5)
                except OSError:
                    break  # cut off
                if n % 20 == 0:
                    peak = max(peak, srv.rss_kib())
                    left = left or _pong_or_left(alice)
                    if left is not None:
                        break
            # Everything it sent may be in the server's receive buffer by now: the server
            # answers until the answers pass its limit (the peer stays open meanwhile).
            deadline = time.monotonic() + T(20)
            while left is None:
                assert time.monotonic() < deadline, "never cut off"
                peak = max(peak, srv.rss_kib())
                left = _pong_or_left(alice)
        finally:
            greedy.close()
        assert (left["name"], left["reason"]) == ("greedy", "slow")
        assert peak - rss_before < 24 * 1024, (rss_before, peak)


def test_flood_from_one_client_loses_nothing_it_accepted(server_proc: Any) -> None:
    srv: ServerProc = server_proc()  # default flood control
    with LineClient(srv.address) as flood, LineClient(srv.address) as bob:
        flood.login("flood")
        bob.login("bob")
        lines = b"".join(
            b'{"type":"say","room":"general","text":"f%d","ref":%d}\n' % (i, i) for i in range(1000)
        )
        started = time.monotonic()
        flood.send(lines)  # 1,000 messages at once
        acked, limited = [], 0
        for _ in range(1000):
            got = flood.read_json()
            while got["type"] not in ("message", "error"):
                got = flood.read_json()
            if got["type"] == "message":
                acked.append(got["id"])
            else:
                assert got["code"] == "rate_limited"
                limited += 1
        assert len(acked) + limited == 1000 and acked  # one answer per line
        bob.send_json(type="ping", n=1)
        got_ids = []
        while (m := bob.read_json())["type"] != "pong":
            if m["type"] == "message":
                got_ids.append(m["id"])
        assert got_ids == acked  # bob got exactly what was accepted, in order
        assert time.monotonic() - started < T(10)


def test_connection_storm_from_one_address(server_proc: Any) -> None:
    srv: ServerProc = server_proc("--max-per-address", "40")
    with LineClient(srv.address) as alice, LineClient(srv.address) as bob:
        alice.login("alice")
        bob.login("bob")
        fds_before = srv.fds()
        started = time.monotonic()
        for i in range(1000):
            try:
                s = socket.create_connection(srv.address, timeout=T(5))
            except OSError:
                continue  # refused under the storm is fine; nothing of ours may leak
            try:
                if i % 3 == 0:
                    s.sendall(b'{"type":"hello","protocol":1,"name":"storm%d"}\n' % i)
                elif i % 3 == 1:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError:
                pass  # refused: closed by the server already
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        storm = time.monotonic() - started
        # Existing sessions untouched: they still talk, nobody left.
        alice.send_json(type="say", room="general", text="still here", ref="s")
        msg = alice.expect("message", where=lambda m: m.get("ref") == "s")
        got = bob.expect("message", skip=("joined", "left", "users", "typing", "ping"))
        assert got["id"] == msg["id"]
        # Every storm connection's descriptor is given back.
        deadline = time.monotonic() + T(10)
        while srv.fds() > fds_before and time.monotonic() < deadline:
            alice.send_json(type="ping", n=1)
            alice.expect("pong")
        assert srv.fds() <= fds_before, (fds_before, srv.fds())
        assert storm < T(20)
