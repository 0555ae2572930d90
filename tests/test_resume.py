"""Reconnect and resume: nothing lost, nothing twice, across a server restart too."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import LineClient

pytestmark = pytest.mark.backends  # the contract: on SQLite and on PostgreSQL


def _say(client: LineClient, text: str, room: str = "general") -> dict[str, Any]:
    client.send_json(type="say", room=room, text=text, ref=text)
    return client.expect("message", where=lambda m: m.get("ref") == text)


def test_resume_delivers_missed_messages_once_in_order(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    bob.send_json(type="join", room="games")
    bob.expect("users", where=lambda m: m["room"] == "games")
    alice.send_json(type="join", room="games")
    alice.expect("users", where=lambda m: m["room"] == "games")
    seen = _say(bob, "m1")
    alice.expect("message", where=lambda m: m["id"] == seen["id"])
    token = alice.welcome_session
    alice.close()
    bob.expect("left", where=lambda m: m["name"] == "alice" and m["room"] == "games")
    m2, m3 = _say(bob, "m2"), _say(bob, "m3", room="games")
    bob.send_json(type="dm", to="carol", text="not for alice")
    bob.expect("error")
    back = connect()
    back.send_json(
        type="hello", protocol=1, name="ALICE", resume={"session": token, "since": seen["id"]}
    )
    welcome = back.read_json()
    assert welcome["type"] == "welcome" and welcome["session"] == token
    assert welcome["name"] == "alice" and welcome["resumed"] is True
    assert sorted(welcome["rooms"]) == ["games", "general"]
    assert {back.read_json()["room"] for _ in range(2)} == {"general", "games"}
    missed = [back.read_json() for _ in range(2)]
    assert [(m["type"], m["id"], m["text"]) for m in missed] == [
        ("message", m2["id"], "m2"),
        ("message", m3["id"], "m3"),
    ]
    assert bob.expect("joined")["name"] == "alice"
    # Live traffic only after the backlog, and nothing twice.
    live = _say(bob, "m4")
    got = back.expect("message")
    assert got["id"] == live["id"]


def test_resume_includes_missed_dms(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    token = alice.welcome_session
    alice.send_json(type="ping", n=0)
    since = 0
    alice.close()
    bob.expect("left")
    # alice is offline: a DM to her is refused, not queued...
    bob.send_json(type="dm", to="alice", text="where are you")
    assert bob.expect("error")["code"] == "no_such_user"
    # ...but DMs she sent or got before dropping come back on resume.
    back = connect("alice", resume={"session": token, "since": since})
    back.send_json(type="dm", to="bob", text="back")
    back.expect("message")
    back.close()
    again = connect("alice", resume={"session": token, "since": since})
    dm = again.expect("message")
    assert dm["text"] == "back" and dm["to"] == "bob"


def test_resume_replaces_a_live_connection(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    second = connect("alice", resume={"session": alice.welcome_session, "since": 0})
    assert second.welcome_session == alice.welcome_session
    alice.assert_closed()
    _say(bob, "still one alice")
    assert second.expect("message")["text"] == "still one alice"
    bob.send_json(type="ping", n=1)
    # bob saw no left/joined for the replacement: the next thing he gets is his pong.
    assert bob.read_json() == {"type": "pong", "n": 1}


def test_unknown_or_foreign_session_logs_in_fresh(connect: Any) -> None:
    alice = connect("alice")
    stranger = connect("mallory", resume={"session": alice.welcome_session, "since": 0})
    assert stranger.welcome_session != alice.welcome_session
    assert stranger.users[0]["names"] == ["alice", "mallory"]
    nobody = connect("zoe", resume={"session": "no-such-session", "since": 0})
    assert "resumed" not in nobody.welcome


def test_quit_ends_the_session(connect: Any) -> None:
    alice = connect("alice")
    token = alice.welcome_session
    alice.send_json(type="quit")
    alice.assert_closed()
    again = connect("alice", resume={"session": token, "since": 0})
    assert again.welcome_session != token


def test_restart_with_same_data_dir_and_resume(make_server: Any) -> None:
    first = make_server()
    with LineClient(first.address) as alice, LineClient(first.address) as bob:
        alice.login("alice")
        bob.login("bob")
        bob.send_json(type="join", room="Games")
        bob.expect("users", where=lambda m: m["room"] == "Games")
        alice.send_json(type="join", room="games")
        alice.expect("users", where=lambda m: m["room"] == "Games")
        seen = _say(bob, "before restart", room="games")
        alice.expect("message", where=lambda m: m["id"] == seen["id"])
        alice_token, bob_token = alice.welcome_session, bob.welcome_session
    first.close()

    second = make_server()
    with LineClient(second.address) as bob:
        bob.login("bob", resume={"session": bob_token, "since": seen["id"]})
        assert sorted(bob.welcome["rooms"]) == ["Games", "general"]
        after = [_say(bob, f"after {i}", room="GAMES") for i in range(3)]
        assert all(m["room"] == "Games" for m in after)
        assert after[0]["id"] > seen["id"]  # ids survive the restart
        with LineClient(second.address) as alice:
            alice.login("alice", resume={"session": alice_token, "since": seen["id"]})
            got = [alice.expect("message") for _ in range(3)]
            assert [m["id"] for m in got] == [m["id"] for m in after]
            alice.send_json(type="history", room="games", limit=10)
            texts = [m["text"] for m in alice.expect("history")["messages"]]
            assert texts == ["before restart", "after 0", "after 1", "after 2"]
