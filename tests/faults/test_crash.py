"""SIGKILL under heavy traffic, then a restart: every acknowledged message is in history, the
database is intact, resumed readers get each missed message exactly once, and senders that
resend what they had no echo for (same `ref`) get each message stored exactly once."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from tests.faults.conftest import ServerProc
from tests.helpers import LineClient, T


class _Sender(threading.Thread):
    """Says numbered messages with a window of 10 in flight until the server dies."""

    def __init__(self, address: tuple[str, int], name: str) -> None:
        super().__init__(name=f"test-{name}")
        self.name_ = name
        self.client = LineClient(address)
        self.client.login(name)
        self.token = self.client.welcome_session
        self.acked: dict[str, int] = {}  # ref -> id
        self.sent: list[str] = []
        self.last_seen = 0

    def run(self) -> None:
        n = 0
        try:
            while True:
                refs = [f"{self.name_}-{n + i}" for i in range(10)]
                n += 10
                for ref in refs:
                    self.sent.append(ref)
                    self.client.send_json(type="say", room="general", text=ref, ref=ref)
                while not all(r in self.acked for r in refs):
                    msg = self.client.expect("message", timeout=T(10))
                    self.last_seen = msg["id"]
                    if msg.get("ref") in refs:
                        self.acked[msg["ref"]] = msg["id"]
        except (OSError, EOFError, ValueError):
            pass  # the server was killed
        finally:
            self.client.close()


def _all_history(client: LineClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    before = None
    while True:
        req: dict[str, Any] = {"type": "history", "room": "general", "limit": 500}
        if before is not None:
            req["before"] = before
        client.send_json(**req)
        page = client.expect("history", skip=("message", "joined", "left", "users", "ping"))
        out = page["messages"] + out
        if not page.get("more"):
            return out
        before = page["messages"][0]["id"]


def _until_pong(client: LineClient) -> list[dict[str, Any]]:
    """Messages that arrive before the answer to a ping (a resume's replay comes first)."""
    client.send_json(type="ping", n=77)
    got = []
    while (m := client.read_json(timeout=10))["type"] != "pong":
        if m["type"] == "message":
            got.append(m)
    return got


def test_sigkill_under_traffic_then_restart(server_proc: Any) -> None:
    srv: ServerProc = server_proc("--rate-per-sec", "0")
    reader = LineClient(srv.address)
    reader.login("reader")
    token = reader.welcome_session
    senders = [_Sender(srv.address, f"s{i}") for i in range(4)]
    seen: list[int] = []
    try:
        for s in senders:
            s.start()
        while len(seen) < 600:
            seen.append(reader.expect("message", timeout=T(10))["id"])
        srv.kill()  # mid-flight: windows of unacknowledged messages everywhere
        try:
            while True:
                seen.append(reader.expect("message", timeout=T(5))["id"])
        except (OSError, EOFError):
            pass  # the connection died with the server
    finally:
        for s in senders:
            s.join(timeout=T(15))
        reader.close()
    assert not any(s.is_alive() for s in senders)
    acked = {ref: msg_id for s in senders for ref, msg_id in s.acked.items()}
    assert len(acked) >= 500

    again: ServerProc = server_proc("--rate-per-sec", "0")
    db = sqlite3.connect(again.data_dir / "chat.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    with LineClient(again.address) as back:
        back.login("reader", resume={"session": token, "since": seen[-1]})
        missed = _until_pong(back)
        history = _all_history(back)
    stored = [m["id"] for m in history]
    # Every acknowledged message survived the crash.
    assert set(acked.values()) <= set(stored)
    # The reader got every stored message once, in order: live before the crash, then resumed.
    first = seen[0]
    assert seen + [m["id"] for m in missed] == [i for i in stored if i >= first]

    # Senders resume and resend what they had no echo for, with the same refs.
    for s in senders:
        with LineClient(again.address) as c:
            c.login(s.name_, resume={"session": s.token, "since": s.last_seen})
            replayed = {m.get("ref") for m in _until_pong(c)}
            for ref in s.sent:
                if ref not in s.acked and ref not in replayed:
                    c.send_json(type="say", room="general", text=ref, ref=ref)
                    assert c.expect("message", where=lambda m, r=ref: m.get("ref") == r)
            # Resending one that did arrive is answered with the original.
            some = next(iter(s.acked))
            c.send_json(type="say", room="general", text=some, ref=some)
            assert (
                c.expect("message", where=lambda m, r=some: m.get("ref") == r)["id"]
                == (s.acked[some])
            )
    with LineClient(again.address) as check:
        check.login("checker")
        texts = [m["text"] for m in _all_history(check)]
    sent = [ref for s in senders for ref in s.sent]
    assert sorted(texts) == sorted(sent)  # each sent message stored exactly once
