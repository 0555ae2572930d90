"""Sending exactly once: `ref` is an idempotency key per session, kept with the stored message,
across a resume and a server restart; and the numbered schema migrations that made room for it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from desktop_chat.net.server.refs import RecentRefs, ref_key
from desktop_chat.net.server.storage import Identity, Storage, token_hash
from desktop_chat.net.server.storage_api import StorageError
from desktop_chat.net.server.storage_schema import SCHEMA_VERSION
from tests.helpers import LineClient, T

pytestmark = pytest.mark.backends  # the contract: on SQLite and on PostgreSQL

# The CREATE statements of schema version 1 (0.2), as such databases exist on users' disks.
_OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, sender TEXT NOT NULL,
    room_key TEXT, room TEXT, dm_from TEXT, dm_to TEXT, to_name TEXT, text TEXT NOT NULL,
    file TEXT, me INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_room ON messages (room_key, id) WHERE room_key IS NOT NULL;
CREATE TABLE rooms (key TEXT PRIMARY KEY, name TEXT NOT NULL, topic TEXT);
CREATE TABLE accounts (
    name_key TEXT PRIMARY KEY, name TEXT NOT NULL, pw_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'user', created INTEGER NOT NULL
);
CREATE TABLE bans (
    kind TEXT NOT NULL, value TEXT NOT NULL, by_name TEXT, created INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE TABLE sessions (
    token TEXT PRIMARY KEY, name_key TEXT NOT NULL, name TEXT NOT NULL, rooms TEXT NOT NULL,
    created INTEGER NOT NULL, last_seen INTEGER NOT NULL
);
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO rooms (key, name) VALUES ('general', 'general');
INSERT INTO messages (ts, sender, room_key, room, text)
    VALUES (1, 'ann', 'general', 'general', 'old');
INSERT INTO sessions VALUES ('tok', 'ann', 'ann', '["general"]', 1, 1);
"""


def test_old_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(_OLD_SCHEMA)
    old.close()
    storage = Storage(path)
    try:
        assert storage.room_settings("general") == (None, 0)  # the v1 step's room columns
        ann = Identity("ann", token_hash("tok"))
        [msg] = storage.messages_since(0, ["general"], ann)
        assert (msg.text, msg.from_, msg.ref) == ("old", "ann", None)
        new = storage.add_message(
            sender="ann", text="new", room="general", room_key="general", by=ann, ref=7
        )
        storage.commit()
        again = storage.message_for_ref(ann.session, 7)
        assert again is not None and (again.id, again.ref) == (new.id, 7)
        assert storage.message_for_ref(ann.session, "7") is None  # 7 and "7" differ
        assert storage.load_session("tok") is not None
    finally:
        storage.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[1] for r in db.execute("PRAGMA index_list(messages)")}
        assert "messages_session_ref" in indexes
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    Storage(path).close()  # opening an up-to-date database changes nothing


def test_a_database_with_repeated_refs_keeps_the_earliest_and_then_refuses_repeats(
    tmp_path: Path,
) -> None:
    """Schema step 5 makes (session, ref) unique. A database of step 4 where a ref was stored
    twice (two processes racing) still upgrades: the earliest keeps the ref."""
    path = tmp_path / "chat.sqlite3"
    Storage(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP INDEX messages_session_ref")
    db.execute(
        "CREATE INDEX messages_session_ref ON messages (from_session, ref) WHERE ref IS NOT NULL"
    )
    for text in ("first", "second"):
        db.execute(
            "INSERT INTO messages (ts, sender, room_key, room, text, from_session, ref) "
            "VALUES (1, 'ann', 'general', 'general', ?, 's-ann', '\"r\"')",
            (text,),
        )
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()
    storage = Storage(path)
    try:
        original = storage.message_for_ref("s-ann", "r")
        assert original is not None and original.text == "first"
        again = storage.add_message(
            sender="ann", text="third", room="general", room_key="general",
            by=Identity("ann", "s-ann"), ref="r",
        )  # fmt: skip
        assert again == original
        texts = [m.text for m in storage.room_history("general", before=None, limit=9)[0]]
        assert texts == ["first", "second"]  # the messages stay; only the ref is kept once
    finally:
        storage.close()


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StorageError, match="schema version"):
        Storage(path).close()


def test_the_command_refuses_a_database_from_a_newer_version_in_one_line(
    data_dir: Path, database: str | None
) -> None:
    if database is None:
        db = sqlite3.connect(data_dir / "chat.sqlite3")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.close()
    else:
        import psycopg

        from desktop_chat.net.server.storage_pg_schema import SCHEMA_VERSION as PG_VERSION

        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (PG_VERSION + 1,))
    flags = [] if database is None else ["--database", database]
    result = subprocess.run(
        [sys.executable, "-m", "desktop_chat.server_cli", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(data_dir), "--no-announce", "--tls", "off", *flags],
        capture_output=True, text=True, timeout=T(30),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("desktop-chat-server: database: the database has schema version")
    assert "newer" in line


def test_repeated_ref_answers_the_original_and_stores_nothing(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    alice.send_json(type="say", room="general", text="hi", ref="r1")
    first = alice.expect("message")
    assert bob.expect("message")["id"] == first["id"]
    alice.send_json(type="say", room="general", text="hi", ref="r1")
    again = alice.expect("message")
    assert again == first  # same id, ts and ref
    alice.send_json(type="dm", to="bob", text="psst", ref="r2")
    dm = alice.expect("message")
    assert bob.expect("message")["id"] == dm["id"]
    alice.send_json(type="dm", to="bob", text="psst", ref="r2")
    assert alice.expect("message") == dm
    # bob got each message once: the next thing he hears is his own pong.
    bob.send_json(type="ping", n=5)
    assert bob.read_json() == {"type": "pong", "n": 5}
    alice.send_json(type="history", room="general")
    assert [m["text"] for m in alice.expect("history")["messages"]] == ["hi"]


def test_resend_after_resume_and_restart_is_answered_not_stored(make_server: Any) -> None:
    first = make_server()
    with LineClient(first.address) as alice, LineClient(first.address) as bob:
        alice.login("alice")
        bob.login("bob")
        alice.send_json(type="say", room="general", text="once", ref=41)
        sent = alice.expect("message")
        bob.expect("message")
        token = alice.welcome_session
    first.close()
    second = make_server()
    with LineClient(second.address) as alice, LineClient(second.address) as bob:
        alice.login("alice", resume={"session": token, "since": sent["id"]})
        bob.login("bob")
        alice.send_json(type="say", room="general", text="once", ref=41)
        assert alice.expect("message") == sent
        alice.send_json(type="say", room="general", text="twice", ref=42)
        new = alice.expect("message")
        assert new["id"] > sent["id"] and new["ref"] == 42
        assert bob.expect("message")["id"] == new["id"]  # not the resend
        # A resumed session's replay marks its own messages with their ref.
    with LineClient(second.address) as back:
        back.login("alice", resume={"session": token, "since": 0})
        replay = [back.expect("message") for _ in range(2)]
        assert [(m["text"], m.get("ref")) for m in replay] == [("once", 41), ("twice", 42)]


def test_refs_are_per_session(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    alice.send_json(type="say", room="general", text="from alice", ref="same")
    a = alice.expect("message")
    bob.expect("message")
    bob.send_json(type="say", room="general", text="from bob", ref="same")
    b = bob.expect("message", where=lambda m: m.get("ref") == "same")
    assert b["id"] != a["id"] and b["text"] == "from bob"


def test_recent_refs_know_when_a_query_is_needed() -> None:
    refs = RecentRefs(keep=3)
    refs.start("new")
    assert not refs.may_be_used("new", "a")  # a new session: certainly unused, no query
    for i in range(3):
        refs.add("new", i)
    assert refs.may_be_used("new", 0) and not refs.may_be_used("new", "0")
    refs.add("new", 3)  # past the cap: the oldest lives only in the database now
    assert refs.may_be_used("new", "anything")
    refs.start("few", [ref_key("x"), ref_key("y")])  # resumed, all loaded
    assert refs.may_be_used("few", "x") and not refs.may_be_used("few", "z")
    refs.start("many", [ref_key(i) for i in range(4)])  # resumed with more than kept
    assert refs.may_be_used("many", "z")
    refs.forget("few")
    assert refs.may_be_used("few", "z")  # not live: the database answers
