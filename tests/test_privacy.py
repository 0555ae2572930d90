"""Who may read what: DMs belong to the identities that took part, a used name cannot be
registered by someone else, sessions expire, and the data on disk is the owner's alone."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from desktop_chat.net.server.storage import Identity, Storage, token_hash
from desktop_chat.net.server.storage_api import open_store
from desktop_chat.net.server.storage_schema import SCHEMA_VERSION
from tests.helpers import LineClient, T
from tests.pg_server import run_sql

pytestmark = pytest.mark.backends  # the contract: on SQLite and on PostgreSQL


def _dm(client: LineClient, to: str, text: str) -> dict[str, Any]:
    client.send_json(type="dm", to=to, text=text, ref=text)
    return client.expect("message", where=lambda m: m.get("ref") == text)


def _history_with(client: LineClient, other: str) -> list[str]:
    client.send_json(type="history", **{"with": other}, ref="h")
    reply = client.expect("history")
    return [m["text"] for m in reply["messages"]]


def test_a_later_session_with_the_same_free_name_gets_no_dms(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    _dm(alice, "bob", "the door code is 4711")
    bob.expect("message")
    _dm(bob, "alice", "thanks")
    alice.expect("message")
    bob.send_json(type="quit")
    bob.assert_closed()
    stranger = connect("bob")  # the name is free again: anyone may take it...
    assert _history_with(stranger, "alice") == []  # ...but not bob's DMs
    # Nor through resume: a fresh session has nothing to resume, and since=0 gives nothing.
    stranger.send_json(type="quit")
    stranger.assert_closed()
    sneaky = connect()
    sneaky.send_json(
        type="hello", protocol=1, name="bob", resume={"session": "guessed", "since": 0}
    )
    welcome = sneaky.read_json()
    assert welcome["type"] == "welcome" and "resumed" not in welcome
    sneaky.read_json()  # users
    sneaky.send_json(type="ping", n=1)
    assert sneaky.read_json() == {"type": "pong", "n": 1}  # no DM was replayed before it
    # alice, who took part, still has the whole conversation.
    assert _history_with(alice, "bob") == ["the door code is 4711", "thanks"]


def test_the_same_session_resumed_keeps_its_dms(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    _dm(alice, "bob", "private")
    token = bob.welcome_session
    bob.close()  # dropped, not quit: the session lives on
    alice.expect("left")
    back = connect("bob", resume={"session": token, "since": 0})
    assert back.expect("message")["text"] == "private"  # replayed on resume
    assert _history_with(back, "alice") == ["private"]


def test_a_registered_account_gets_its_dms_in_every_session(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    _dm(alice, "bob", "before registering")
    bob.expect("message")
    bob.send_json(type="register", password="bob's password", ref="r")
    assert bob.expect("ok")["what"] == "register"
    _dm(alice, "bob", "after registering")
    bob.send_json(type="quit")
    bob.assert_closed()
    again = connect("bob", password="bob's password")  # a new session of the account
    assert _history_with(again, "alice") == ["before registering", "after registering"]


def test_registering_a_name_someone_else_used_is_refused(connect: Any) -> None:
    alice, carol = connect("alice"), connect("carol")
    _dm(carol, "alice", "see you at 8")
    token = alice.welcome_session
    alice.close()  # alice's laptop sleeps; her session is kept
    carol.expect("left")
    stranger = connect("alice")  # the name is free while she is away
    stranger.send_json(type="register", password="taken over", ref="r")
    err = stranger.expect("error")
    assert (err["code"], err["ref"]) == ("name_taken", "r")
    stranger.send_json(type="quit")
    stranger.assert_closed()
    # alice comes back with her own session and can still register her name.
    back = connect("alice", resume={"session": token, "since": 0})
    assert back.expect("message")["text"] == "see you at 8"
    back.send_json(type="register", password="alice's password", ref="mine")
    assert back.expect("ok")["ref"] == "mine"


def test_a_name_never_used_can_be_registered(connect: Any) -> None:
    newcomer = connect("newcomer")
    newcomer.send_json(type="register", password="a fine password", ref=1)
    assert newcomer.expect("ok")["ref"] == 1


def _old_database(path: Path) -> None:
    """A database as version 0.3 wrote it: no DM owners, tokens in the clear."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL,
            sender TEXT NOT NULL, room_key TEXT, room TEXT, dm_from TEXT, dm_to TEXT,
            to_name TEXT, text TEXT NOT NULL, file TEXT, me INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE rooms (key TEXT PRIMARY KEY, name TEXT NOT NULL, topic TEXT,
            pw_hash TEXT, slow INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE accounts (name_key TEXT PRIMARY KEY, name TEXT NOT NULL,
            pw_hash TEXT NOT NULL, role TEXT NOT NULL DEFAULT 'user', created INTEGER NOT NULL);
        CREATE TABLE bans (kind TEXT NOT NULL, value TEXT NOT NULL, by_name TEXT,
            created INTEGER NOT NULL, PRIMARY KEY (kind, value));
        CREATE TABLE sessions (token TEXT PRIMARY KEY, name_key TEXT NOT NULL,
            name TEXT NOT NULL, rooms TEXT NOT NULL, created INTEGER NOT NULL,
            last_seen INTEGER NOT NULL);
        INSERT INTO accounts VALUES ('bob', 'Bob', 'x', 'user', 1000);
        INSERT INTO messages (ts, sender, dm_from, dm_to, to_name, text)
            VALUES (500000, 'alice', 'alice', 'bob', 'Bob', 'before bob registered');
        INSERT INTO messages (ts, sender, dm_from, dm_to, to_name, text)
            VALUES (2000000, 'alice', 'alice', 'bob', 'Bob', 'after bob registered');
        INSERT INTO messages (ts, sender, room_key, room, text)
            VALUES (2000001, 'Carol', 'general', 'general', 'hello all');
        """
    )
    now = 2_000_000_000
    db.execute(
        "INSERT INTO sessions VALUES ('old-token', 'carol', 'Carol', ?, ?, ?)",
        (json.dumps(["general"]), now, now),
    )
    db.commit()
    db.close()


def test_an_old_database_keeps_working_and_old_dms_go_only_to_accounts(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite3"
    _old_database(path)
    storage = Storage(path)
    try:
        bob_account = Identity("bob", token_hash("any new session"), "bob")
        texts = [m.text for m in storage.dm_history(bob_account, "alice", before=None, limit=50)[0]]
        assert texts == ["after bob registered"]  # his account existed when it was written
        alice = Identity("alice", token_hash("alice's new session"), None)
        assert storage.dm_history(alice, "bob", before=None, limit=50)[0] == []
        stored = storage.load_session("old-token")  # resumable with the same token...
        assert stored is not None and stored.name == "Carol" and stored.tls is False
        # ...which the file no longer holds.
        raw = sqlite3.connect(path).execute("SELECT token FROM sessions").fetchall()
        assert raw == [(token_hash("old-token"),)]
        # carol's old room messages are someone else's history for a later carol
        assert storage.name_used_by_others("carol", token_hash("new"))
        assert not storage.name_used_by_others("dave", token_hash("new"))
    finally:
        storage.close()
    again = Storage(path)  # migrations run once
    try:
        assert again.load_session("old-token") is not None
        version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
        assert version == SCHEMA_VERSION
    finally:
        again.close()


def test_an_expired_session_is_not_resumed(make_server: Any, data_dir: Path) -> None:
    srv = make_server(session_ttl_days=1)
    with LineClient(srv.address) as alice, LineClient(srv.address) as bob:
        alice.login("alice")
        token = alice.welcome_session
        bob.login("bob")
        alice.close()
        bob.expect("left")  # the server has saved alice's session
    # The session was last seen two days ago (as if the server had run all that time).
    run_sql(srv.storage, "UPDATE sessions SET last_seen = last_seen - 2 * 86400")
    with LineClient(srv.address) as back:
        welcome = back.login("alice", resume={"session": token, "since": 0})
        assert "resumed" not in welcome
        assert welcome["session"] != token


def test_expired_sessions_are_swept_while_running(tmp_path: Path, database: str | None) -> None:
    storage = open_store(database, tmp_path)
    try:
        storage.save_session("t1", "Ann", "ann", ["general"])
        run_sql(storage, "UPDATE sessions SET last_seen = last_seen - 100")
        storage.expire_every = 0.05
        storage.session_ttl = 50
        assert storage.expired_round.wait(T(5))
        assert run_sql(storage, "SELECT COUNT(*) FROM sessions") == [(0,)]
    finally:
        storage.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_folder_and_database_are_the_owners_alone(make_server: Any, data_dir: Path) -> None:
    os.chmod(data_dir, 0o755)
    srv = make_server()
    with LineClient(srv.address) as alice:
        alice.login("alice")
        token = alice.welcome_session
        alice.send_json(type="say", room="general", text="on disk")
        alice.expect("message")
    assert _mode(data_dir) == 0o700
    if srv.config.database is not None:  # PostgreSQL: no file of ours; what it keeps
        assert run_sql(srv.storage, "SELECT token FROM sessions") == [(token_hash(token),)]
        return
    db_files = [data_dir / f"chat.sqlite3{suffix}" for suffix in ("", "-wal", "-shm")]
    assert all(_mode(p) == 0o600 for p in db_files if p.exists())
    assert (data_dir / "chat.sqlite3-wal").exists()
    raw = (data_dir / "chat.sqlite3").read_bytes() + (data_dir / "chat.sqlite3-wal").read_bytes()
    assert token.encode() not in raw
    assert token_hash(token).encode() in raw


@pytest.mark.sqlite_only("the TLS key's file: nothing of the database")
def test_tls_key_is_not_written_through_a_planted_symlink(make_server: Any, data_dir: Path) -> None:
    victim = data_dir.parent / "victim.txt"
    victim.write_text("keep me")
    (data_dir / "tls-key.tmp").symlink_to(victim)
    srv = make_server()
    assert srv.fingerprint
    assert victim.read_text() == "keep me"
    assert _mode(data_dir / "tls-key.pem") == 0o600
    assert not (data_dir / "tls-key.pem").is_symlink()
