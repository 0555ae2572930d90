"""The native JSON Lines protocol against a real server on 127.0.0.1 (port 0)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import LineClient

pytestmark = pytest.mark.backends  # the contract: on SQLite and on PostgreSQL


def test_hello_welcome_users_and_joined(connect: Any) -> None:
    alice = connect()
    alice.send_json(type="hello", protocol=1, name="Alice", client="test/1")
    welcome = alice.read_json()
    assert welcome["type"] == "welcome"
    assert welcome["protocol"] == 1 and welcome["name"] == "Alice"
    assert welcome["server"] == "Test chat" and welcome["rooms"] == ["general"]
    assert isinstance(welcome["session"], str) and len(welcome["session"]) >= 16
    assert alice.read_json() == {"type": "users", "room": "general", "names": ["Alice"]}
    bob = connect("bob")
    assert bob.users == [{"type": "users", "room": "general", "names": ["Alice", "bob"]}]
    assert alice.read_json() == {"type": "joined", "room": "general", "name": "bob"}


def test_say_reaches_everyone_and_ref_only_the_sender(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    alice.send_json(
        type="say",
        room="GENERAL",
        text="hi <b>all</b>",
        ref="r1",
        from_="mallory",
        **{"from": "mallory"},
    )
    mine = alice.expect("message")
    theirs = bob.expect("message")
    assert mine["ref"] == "r1" and "ref" not in theirs
    for m in (mine, theirs):
        assert m["from"] == "alice"  # never what the client claims
        assert m["room"] == "general" and m["text"] == "hi <b>all</b>"
        assert isinstance(m["id"], int) and isinstance(m["ts"], int)
    assert mine["id"] == theirs["id"]


def test_ids_strictly_increase(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    for i in range(20):
        (alice if i % 2 else bob).send_json(type="say", room="general", text=f"m{i}")
    ids = [alice.expect("message")["id"] for _ in range(20)]
    assert ids == sorted(ids) and len(set(ids)) == 20
    assert [bob.expect("message")["id"] for _ in range(20)] == ids


def test_dm_goes_to_recipient_and_sender_only(connect: Any) -> None:
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    alice.send_json(type="dm", to="BOB", text="psst", ref=7)
    got = bob.expect("message")
    assert got["to"] == "bob" and got["from"] == "alice" and "room" not in got
    assert "ref" not in got
    echo = alice.expect("message")
    assert echo["ref"] == 7 and echo["id"] == got["id"]
    carol.send_json(type="ping", n="probe")
    assert carol.expect("pong")["n"] == "probe"  # carol got no message before her pong


def test_dm_to_unknown_user(connect: Any) -> None:
    alice = connect("alice")
    alice.send_json(type="dm", to="nobody", text="hi", ref="x")
    err = alice.expect("error")
    assert err["code"] == "no_such_user" and err["ref"] == "x"


def test_join_part_rooms_and_case_insensitive_names(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    alice.send_json(type="join", room="Games")
    assert alice.expect("users", where=lambda m: m["room"] == "Games") == {
        "type": "users",
        "room": "Games",
        "names": ["alice"],
    }
    bob.send_json(type="join", room="GAMES")
    users = bob.expect("users", where=lambda m: m["room"] == "Games")
    assert users["names"] == ["alice", "bob"]
    assert alice.expect("joined", where=lambda m: m["room"] == "Games")["name"] == "bob"
    alice.send_json(type="rooms")
    rooms = alice.expect("rooms")["rooms"]
    assert {"name": "general", "users": 2} in rooms and {"name": "Games", "users": 2} in rooms
    alice.send_json(type="part", room="games")
    left = {"type": "left", "room": "Games", "name": "alice", "reason": "part"}
    assert alice.expect("left") == left  # the parting user gets it too
    assert bob.expect("left") == left
    alice.send_json(type="say", room="Games", text="still here?", ref=1)
    assert alice.expect("error")["code"] == "not_in_room"


def test_join_with_invalid_room_name(connect: Any) -> None:
    alice = connect("alice")
    for bad in ["", " x", "a\u202eb", "x" * 33]:
        alice.send_json(type="join", room=bad, ref=bad[:3])
        err = alice.expect("error")
        assert err["code"] == "name_invalid" and err["ref"] == bad[:3]


def test_users_sorted_by_casefolded_name(connect: Any) -> None:
    for name in ["bob", "Alice", "carol", "Bea"]:
        connect(name)
    last = connect("zed")
    assert last.users[0]["names"] == ["Alice", "Bea", "bob", "carol", "zed"]


def test_history_of_room_and_dm(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    for i in range(5):
        alice.send_json(type="say", room="general", text=f"m{i}")
    alice.send_json(type="dm", to="bob", text="secret")
    for _ in range(6):
        bob.expect("message")
    bob.send_json(type="history", room="general", limit=3, ref="h")
    hist = bob.expect("history")
    assert hist["room"] == "general" and hist["ref"] == "h"
    assert [m["text"] for m in hist["messages"]] == ["m2", "m3", "m4"]
    bob.send_json(type="history", room="general", before=hist["messages"][0]["id"])
    assert [m["text"] for m in bob.expect("history")["messages"]] == ["m0", "m1"]
    bob.send_json(type="history", **{"with": "ALICE"})
    dm = bob.expect("history")
    assert dm["with"] == "ALICE" and [m["text"] for m in dm["messages"]] == ["secret"]
    bob.send_json(type="history", room="elsewhere")
    assert bob.expect("error")["code"] == "not_in_room"


def test_typing_reaches_others_not_stored(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    alice.send_json(type="typing", room="general")
    assert bob.expect("typing", skip=("joined",)) == {
        "type": "typing",
        "name": "alice",
        "room": "general",
    }
    bob.send_json(type="typing", to="alice")
    assert alice.expect("typing", skip=("joined",)) == {
        "type": "typing",
        "name": "bob",
        "to": "alice",
    }
    alice.send_json(type="history", room="general")
    assert alice.expect("history")["messages"] == []


def test_ping_pong_both_ways_and_idle_timeout(make_server: Any) -> None:
    srv = make_server(ping_interval=0.2, ping_timeout=0.3)
    with LineClient(srv.address) as watcher, LineClient(srv.address) as sleepy:
        watcher.login("watcher")
        sleepy.login("sleepy")
        sleepy.send_json(type="ping", n=42)
        assert sleepy.expect("pong")["n"] == 42
        ping = watcher.expect("ping", skip=("joined", "users"))
        watcher.send_json(type="pong", n=ping["n"])
        # sleepy never answers its pings: it is closed and the others learn why.
        left = watcher.expect(
            "left", where=lambda m: m["name"] == "sleepy", skip=("ping", "joined", "users")
        )
        assert left["reason"] == "timeout"
        sleepy.assert_closed()


def test_quit_announces_and_closes(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    bob.send_json(type="quit", reason="bye")
    assert alice.expect("left") == {
        "type": "left",
        "room": "general",
        "name": "bob",
        "reason": "quit",
    }
    bob.assert_closed()


def test_disconnect_is_announced(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    bob.close()
    assert alice.expect("left")["reason"] == "disconnected"


def test_name_taken_and_invalid_close_the_connection(connect: Any) -> None:
    connect("alice")
    for name, code in [("ALICE", "name_taken"), ("", "name_invalid"), ("a\u200bb", "name_invalid")]:
        c = connect()
        c.send_json(type="hello", protocol=1, name=name, ref="h")
        err = c.read_json()
        assert err["type"] == "error" and err["code"] == code and err["ref"] == "h"
        c.assert_closed()


def test_wrong_protocol_version(connect: Any) -> None:
    c = connect()
    c.send_json(type="hello", protocol=99, name="x")
    assert c.read_json()["code"] == "protocol_version"
    c.assert_closed()


def test_before_welcome_other_messages_are_bad_message(connect: Any) -> None:
    c = connect()
    c.send_json(type="say", room="general", text="hi", ref=1)
    assert c.read_json() == {
        "type": "error",
        "code": "bad_message",
        "message": "say hello first",
        "ref": 1,
    }
    c.send_json(type="hello", protocol=1)  # missing name
    assert c.read_json()["code"] == "bad_message"
    c.send_json(type="hello", protocol=1, name=["x"])
    assert c.read_json()["code"] == "bad_message"
    assert c.login("late")["name"] == "late"  # the connection stayed usable


def test_each_bad_line_gets_exactly_one_error_in_order(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    alice.send(
        b'\xff\xfe\n[1]\n{"type":"warp"}\n{"type":"say","room":"general"}\n'
        b'{"type":"say","room":"general","text":"ok","ref":"last"}\n'
    )
    codes = [alice.expect("error")["code"] for _ in range(4)]
    assert codes == ["bad_json", "bad_message", "unknown_type", "bad_message"]
    assert alice.expect("message")["ref"] == "last"
    assert bob.expect("message")["text"] == "ok"


def test_huge_line_gets_one_too_long_and_connection_survives(make_server: Any) -> None:
    srv = make_server(max_line=1024)
    with LineClient(srv.address) as alice, LineClient(srv.address) as bob:
        alice.login("alice")
        bob.login("bob")
        alice.send(b'{"type":"say","room":"general","text":"' + b"x" * 5000 + b'"}\n')
        alice.send_json(type="say", room="general", text="after", ref=1)
        assert alice.expect("error")["code"] == "too_long"
        assert alice.expect("message")["text"] == "after"
        assert bob.expect("message")["text"] == "after"  # the long one was never relayed


def test_half_line_at_disconnect_is_never_relayed(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    bob.send(b'{"type":"say","room":"general","text":"half')
    bob.close()
    assert alice.expect("left")["name"] == "bob"
    alice.send_json(type="history", room="general")
    assert alice.expect("history")["messages"] == []


def test_rate_limit(make_server: Any) -> None:
    srv = make_server(rate_burst=3, rate_per_sec=0.001)
    with LineClient(srv.address) as alice:
        alice.login("alice")
        for i in range(5):
            alice.send_json(type="say", room="general", text=f"m{i}", ref=i)
        got = [alice.expect("message", skip=("users",)) for _ in range(3)]
        assert [m["ref"] for m in got] == [0, 1, 2]
        errors = [alice.expect("error") for _ in range(2)]
        assert [(e["code"], e["ref"]) for e in errors] == [("rate_limited", 3), ("rate_limited", 4)]
        alice.send_json(type="history", room="general", limit=10)
        assert alice.expect("error")["code"] == "rate_limited"  # requests count too
        alice.send_json(type="ping", n=1)
        assert alice.expect("pong")["n"] == 1  # keepalive is never limited


def test_connection_caps(make_server: Any) -> None:
    srv = make_server(max_per_address=2)
    with LineClient(srv.address) as a, LineClient(srv.address) as b:
        a.login("a")
        b.login("b")
        with LineClient(srv.address) as c:
            c.send_json(type="hello", protocol=1, name="c")  # a native client speaks first
            err = c.read_json()
            assert err["type"] == "error" and err["code"] == "server_full"
            c.assert_closed()


def test_registration_deadline(make_server: Any) -> None:
    srv = make_server(registration_timeout=0.5)
    with LineClient(srv.address) as idle:
        idle.send(b"{")  # native mode, but never a hello
        assert idle.assert_closed().endswith(
            b'"code":"timeout","message":"no name given in time; goodbye"}\n'
        )


def test_rooms_lists_general_even_when_empty(connect: Any) -> None:
    alice = connect("alice")
    alice.send_json(type="part", room="general")
    alice.expect("left")
    alice.send_json(type="rooms", ref="r")
    rooms = alice.expect("rooms")
    assert rooms["rooms"][0]["name"] == "general" and rooms["ref"] == "r"


def test_server_close_tells_clients_and_joins_threads(make_server: Any) -> None:
    srv = make_server()
    with LineClient(srv.address) as alice:
        alice.login("alice")
        srv.close()
        assert alice.read_json() == {"type": "closing", "reason": "shutdown"}
        alice.assert_closed()
    srv.close()  # idempotent


def test_the_hub_is_made_with_the_open_storage_when_the_server_starts(data_dir: Any) -> None:
    from desktop_chat.net.server.server import Server, ServerConfig

    config = ServerConfig(host="127.0.0.1", port=0, data_dir=data_dir)
    idle = Server(config)
    assert idle.people_count() == 0 and not hasattr(idle, "hub")
    idle.close()  # never started: nothing to tell, nothing to join
    with Server(config) as srv:
        assert srv.hub.storage is srv.storage and srv.hub.flusher is srv.flusher
        assert srv.people_count() == 0
