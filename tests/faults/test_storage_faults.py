"""The disk fills up, or another process locks the database: the sender gets `storage_failed`,
nothing is half-written, everyone else is still served, and sending works again afterwards."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from desktop_chat.net.server.storage import Identity, Storage, StorageError
from tests.helpers import LineClient, T

# A full disk on demand is SQLite's max_page_count (Storage.cap_pages); PostgreSQL's failures
# (an aborted transaction, a lost connection) are tested in tests/test_postgresql.py.
pytestmark = pytest.mark.sqlite_only("cap_pages: a full disk on demand is SQLite's")


def _integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def test_disk_full_refuses_the_message_and_recovers(make_server: Any, data_dir: Path) -> None:
    srv = make_server(rate_per_sec=0)
    with LineClient(srv.address) as alice, LineClient(srv.address) as bob:
        alice.login("alice")
        bob.login("bob")
        srv.storage.cap_pages(1)  # no room to grow: the disk is "full"
        acked: list[dict[str, Any]] = []
        failed = None
        for i in range(3000):
            alice.send_json(type="say", room="general", text=f"{i} " + "f" * 500, ref=i)
            while (reply := alice.read_json())["type"] == "joined":
                pass  # bob's arrival
            if reply["type"] == "error":
                failed = reply
                break
            assert reply["type"] == "message"
            acked.append(reply)
        assert failed is not None, "the capped database never filled up"
        assert failed["code"] == "storage_failed" and failed["ref"] == len(acked)
        got = [bob.expect("message")["id"] for _ in acked]
        assert got == [m["id"] for m in acked]
        bob.send_json(type="ping", n=1)  # everyone else is still served
        assert bob.read_json() == {"type": "pong", "n": 1}
        # Space is back: the same ref is sent again and stored once.
        srv.storage.cap_pages(0)
        alice.send_json(type="say", room="general", text="again", ref=len(acked))
        again = alice.expect("message")
        assert again["ref"] == len(acked) and again["id"] > acked[-1]["id"]
        assert bob.expect("message")["id"] == again["id"]
        alice.send_json(type="history", room="general", limit=500)
        history = alice.expect("history")["messages"]
        ids = [m["id"] for m in history]
        assert ids[-len(acked) - 1 :] == [m["id"] for m in acked] + [again["id"]]
    srv.close()
    assert _integrity(data_dir / "chat.sqlite3") == "ok"


def test_a_full_disk_keeps_the_messages_already_handed_out(tmp_path: Path) -> None:
    # SQLite rolls back the whole open transaction on SQLITE_FULL; the messages of the round
    # (already given ids, maybe on the wire) must be written again, not lost.
    path = tmp_path / "chat.sqlite3"
    storage = Storage(path)
    try:
        storage.cap_pages(1)
        kept = []
        try:
            for i in range(1000):
                kept.append(
                    storage.add_message(sender="a", text=f"{i}" * 300, room="r", room_key="r")
                )
        except StorageError:
            pass
        else:
            raise AssertionError("never full")
        assert len(kept) > 1
        storage.cap_pages(0)
        storage.commit()
        stored = storage.messages_since(0, ["r"], Identity("a", ""))
        assert [m.id for m in stored] == [m.id for m in kept]
        later = storage.add_message(sender="a", text="later", room="r", room_key="r")
        assert later.id > kept[-1].id
    finally:
        storage.close()
    assert _integrity(path) == "ok"


_LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


def test_database_locked_by_another_process(make_server: Any, data_dir: Path) -> None:
    srv = make_server(rate_per_sec=0)
    with LineClient(srv.address) as alice, LineClient(srv.address) as bob:
        alice.login("alice")
        bob.login("bob")
        locker = subprocess.Popen(
            [sys.executable, "-c", _LOCKER, str(data_dir / "chat.sqlite3")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert locker.stdout is not None and locker.stdout.readline() == "locked\n"
            alice.send_json(type="say", room="general", text="blocked", ref="b")
            err = alice.expect("error", timeout=T(5))
            assert (err["type"], err["code"], err["ref"]) == ("error", "storage_failed", "b")
            bob.send_json(type="ping", n=2)
            assert bob.read_json() == {"type": "pong", "n": 2}
        finally:
            assert locker.stdin is not None
            locker.stdin.write("\n")
            locker.stdin.close()
            locker.wait(timeout=T(10))
            assert locker.stdout is not None
            locker.stdout.close()
        alice.send_json(type="say", room="general", text="blocked", ref="b")
        ok = alice.expect("message")
        assert ok["ref"] == "b"
        assert bob.expect("message")["id"] == ok["id"]
        alice.send_json(type="history", room="general")
        assert [m["text"] for m in alice.expect("history")["messages"]] == ["blocked"]
