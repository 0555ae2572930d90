"""Look-alike room names (TR39 skeletons equal) are one room, like different cases are."""

from __future__ import annotations

from typing import Any

from tests.helpers import LineClient

CYRILLIC_VIP = "v\u0456p"  # "vіp" with a Cyrillic і


def test_lookalike_room_is_the_same_room(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    alice.send_json(type="join", room="vip")
    assert alice.expect("users", where=lambda m: m["room"] == "vip")["room"] == "vip"
    bob.send_json(type="join", room=CYRILLIC_VIP)
    users = bob.expect("users", where=lambda m: m["room"] != "general")
    assert users["room"] == "vip" and users["names"] == ["alice", "bob"]
    bob.send_json(type="say", room=CYRILLIC_VIP, text="same room", ref=1)
    msg = bob.expect("message")
    assert msg["room"] == "vip"
    assert alice.expect("message")["id"] == msg["id"]
    bob.send_json(type="rooms")
    names = [r["name"] for r in bob.expect("rooms")["rooms"]]
    assert names == ["general", "vip"]


def test_lookalike_of_a_stored_room_after_restart(make_server: Any) -> None:
    first = make_server()
    with LineClient(first.address) as alice:
        alice.login("alice")
        alice.send_json(type="join", room="vip")
        alice.expect("users", where=lambda m: m["room"] == "vip")
    first.close()
    second = make_server()
    with LineClient(second.address) as bob:
        bob.login("bob")
        bob.send_json(type="join", room=CYRILLIC_VIP.upper())
        assert bob.expect("users", where=lambda m: m["room"] != "general")["room"] == "vip"
        bob.send_json(type="join", room="vip2")  # a different name is a different room
        assert bob.expect("users", where=lambda m: m["room"] != "general")["room"] == "vip2"
