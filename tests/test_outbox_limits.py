"""Every byte queued for a connection counts against its limit: replies too (history pages,
errors, pongs), and a resume's backlog is replayed in chunks that fit."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any

from tests.helpers import LineClient, T

LIMIT = 64 * 1024


def _fill_history(client: LineClient, count: int, size: int) -> list[int]:
    ids = []
    for i in range(count):
        client.send_json(type="say", room="general", text=f"{i:04d}" + "h" * size, ref=i)
        ids.append(client.expect("message", where=lambda m, i=i: m.get("ref") == i)["id"])
    return ids


def test_history_asker_that_never_reads_is_cut_off_slow(make_server: Any) -> None:
    srv = make_server(rate_per_sec=0, outbox_limit=LIMIT)
    with LineClient(srv.address) as alice:
        alice.login("alice")
        _fill_history(alice, 60, 1000)
        greedy = socket.socket()
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.connect(srv.address)
        greedy.settimeout(T(5))
        try:
            greedy.sendall(b'{"type":"hello","protocol":1,"name":"greedy"}\n')
            ask = b'{"type":"history","room":"general","limit":500}\n'
            # Each answer is ~30 KiB: a few hundred fill the kernel's buffers, then the
            # outbox; the old server buffered every one of them without bound.
            with contextlib.suppress(OSError):  # cut off while sending: fine
                greedy.sendall(ask * 1000)
            left = None
            deadline = time.monotonic() + T(20)
            while left is None:  # the server works through what it got, then cuts it off
                assert time.monotonic() < deadline, "never cut off"
                alice.send_json(type="ping", n=1)
                while (got := alice.read_json())["type"] != "pong":
                    if got["type"] == "left":
                        left = got
            assert (left["name"], left["reason"]) == ("greedy", "slow")
        finally:
            greedy.close()
        deadline = time.monotonic() + T(5)
        while srv.connection_count() != 1:  # its thread ends just after the `left`
            assert time.monotonic() < deadline, srv.connection_count()
            alice.send_json(type="ping", n=2)
            alice.expect("pong")


def test_history_page_fits_the_outbox_and_pages_the_rest(make_server: Any) -> None:
    srv = make_server(rate_per_sec=0, outbox_limit=LIMIT)
    with LineClient(srv.address) as alice:
        alice.login("alice")
        ids = _fill_history(alice, 80, 2000)  # ~160 KB of history, over twice the limit
        got: list[int] = []
        before = None
        pages = 0
        while True:
            req: dict[str, Any] = {"type": "history", "room": "general", "limit": 500}
            if before is not None:
                req["before"] = before
            alice.send_json(**req)
            line = alice.read_line()
            reply = json.loads(line)
            assert reply["type"] == "history"
            assert len(line) <= LIMIT // 2 + 1024  # one page never passes half the limit
            pages += 1
            got = [m["id"] for m in reply["messages"]] + got
            if not reply.get("more"):
                break
            before = reply["messages"][0]["id"]
        assert got == ids and pages >= 3


def test_resume_with_a_backlog_larger_than_the_outbox(make_server: Any) -> None:
    srv = make_server(rate_per_sec=0, outbox_limit=LIMIT)
    with LineClient(srv.address) as alice, LineClient(srv.address) as bob:
        alice.login("alice")
        bob.login("bob")
        token = alice.welcome_session
        alice.close()
        bob.expect("left")
        ids = _fill_history(bob, 150, 1500)  # ~230 KB missed: several chunks
        with LineClient(srv.address, timeout=T(10)) as back:
            back.login("alice", resume={"session": token, "since": 0})
            missed = [back.read_json() for _ in ids]
            assert [m["id"] for m in missed] == ids
            assert bob.expect("joined")["name"] == "alice"  # live only after the backlog
            bob.send_json(type="say", room="general", text="live", ref="live")
            live = bob.expect("message", where=lambda m: m.get("ref") == "live")
            assert back.expect("message", skip=("users",))["id"] == live["id"]
