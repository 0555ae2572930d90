"""Accounts, passwords, look-alike names, and moderation by the host — checked on the server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import LineClient


def _refused(client: LineClient, name: str, code: str, **extra: Any) -> dict[str, Any]:
    client.send_json(type="hello", protocol=1, name=name, **extra)
    err = client.read_json()
    assert err["type"] == "error", err
    assert err["code"] == code, err
    client.assert_closed()
    return err


def test_registered_name_needs_its_password(connect: Any) -> None:
    evan = connect("evan")
    evan.send_json(type="register", password="short", ref=1)
    assert evan.expect("error")["code"] == "bad_message"
    evan.send_json(type="register", password="correct horse", ref=2)
    assert evan.expect("ok") == {"type": "ok", "what": "register", "ref": 2}
    evan.send_json(type="quit")
    evan.assert_closed()
    _refused(connect(), "EVAN", "auth_failed")
    _refused(connect(), "evan", "auth_failed", password="wrong horse")
    back = connect()
    assert back.login("Evan", password="correct horse")["name"] == "Evan"


def test_wrong_passwords_are_throttled(connect: Any) -> None:
    owner = connect("zoe")
    owner.send_json(type="register", password="zoe's password")
    owner.expect("ok")
    owner.send_json(type="quit")
    for _ in range(5):
        _refused(connect(), "zoe", "auth_failed", password="guess")
    # The sixth try fails even with the right password: the account is throttled for a minute.
    err = _refused(connect(), "zoe", "auth_failed", password="zoe's password")
    assert "wait" in err["message"]


def test_look_alike_names_are_refused(connect: Any) -> None:
    connect("evan")
    _refused(connect(), "\u0435van", "name_taken")  # Cyrillic е
    paypal = connect("paypal")
    paypal.send_json(type="register", password="paypal password")
    paypal.expect("ok")
    paypal.send_json(type="quit")
    paypal.assert_closed()
    _refused(connect(), "p\u0430yp\u0430l", "name_taken")  # registered, even while offline
    _refused(connect(), "evaN", "name_taken")  # plain case: same name
    assert connect().login("evans")["name"] == "evans"


def test_server_password(make_server: Any) -> None:
    srv = make_server(password="let me in")
    with LineClient(srv.address) as stranger:
        _refused(stranger, "stranger", "auth_failed")
    with LineClient(srv.address) as guest:
        assert guest.login("guest", password="let me in")["name"] == "guest"


def test_server_password_over_plain_text(make_server: Any) -> None:
    srv = make_server(password="let me in")
    with LineClient(srv.address) as nc:
        nc.read_until_text("username: ")
        nc.send("bob\n")
        nc.read_until_text("Password: ")
        nc.send("let me in\n")
        assert b"Welcome" in nc.read_line()


def _owner(connect: Any, server: Any, name: str = "host") -> LineClient:
    host = connect()
    welcome = host.login(name, owner=server.owner_token)
    assert welcome["admin"] is True
    return host


def test_kick_by_host_and_not_by_others(server: Any, connect: Any) -> None:
    host = _owner(connect, server)
    bob, carol = connect("bob"), connect("carol")
    assert "admin" not in bob.welcome
    bob.send_json(type="kick", name="carol", ref="k")
    err = bob.expect("error")
    assert (err["code"], err["ref"]) == ("forbidden", "k")
    host.send_json(type="kick", name="CAROL", reason="spam", ref=1)
    assert host.expect("ok")["ref"] == 1
    notice = carol.expect("error")
    assert notice["code"] == "kicked"
    assert "spam" in notice["message"]
    carol.assert_closed()
    assert bob.expect("left", where=lambda m: m["name"] == "carol")["reason"] == "kicked"


def test_ban_by_name_and_address(server: Any, connect: Any) -> None:
    host = _owner(connect, server)
    mallory = connect("mallory")
    host.send_json(type="ban", name="mallory")
    host.expect("ok")
    assert mallory.expect("error")["code"] == "kicked"
    mallory.assert_closed()
    _refused(connect(), "Mallory", "banned")
    host.send_json(type="unban", name="mallory")
    host.expect("ok")
    assert connect().login("mallory")["name"] == "mallory"
    bob = connect("bob")
    bob.send_json(type="ban", address="127.0.0.1")
    assert bob.expect("error")["code"] == "forbidden"


def test_topic_room_password_and_slow_mode(server: Any, connect: Any) -> None:
    host = _owner(connect, server)
    bob = connect("bob")
    host.send_json(type="topic", room="general", topic="LAN party tonight")
    assert bob.expect("topic") == {
        "type": "topic",
        "room": "general",
        "topic": "LAN party tonight",
        "by": "host",
    }
    bob.send_json(type="topic", room="general", topic="mine now")
    assert bob.expect("error", skip=("topic",))["code"] == "forbidden"
    # A room with a password
    host.send_json(type="room_settings", room="Staff", password="staff only")
    host.expect("ok", where=lambda m: m["what"] == "room_settings", skip=("topic", "joined"))
    bob.send_json(type="join", room="staff", ref="j")
    err = bob.expect("error")
    assert (err["code"], err["ref"]) == ("auth_failed", "j")
    bob.send_json(type="join", room="staff", password="staff only")
    assert bob.expect("users", where=lambda m: m["room"] == "Staff")["names"] == ["bob"]
    # Slow mode: one message per 60 s for ordinary people
    host.send_json(type="room_settings", room="general", slow=60)
    assert "slow mode" in bob.expect("notice", where=lambda m: m["room"] == "general")["text"]
    bob.send_json(type="say", room="general", text="first")
    bob.expect("message")
    bob.send_json(type="say", room="general", text="second", ref=2)
    err = bob.expect("error")
    assert (err["code"], err["ref"]) == ("rate_limited", 2)
    # A newcomer sees the topic in the users list
    assert connect("carol").users[0]["topic"] == "LAN party tonight"


def test_promoted_account_can_moderate(server: Any, connect: Any) -> None:
    host = _owner(connect, server)
    bob = connect("bob")
    bob.send_json(type="register", password="bob password")
    bob.expect("ok")
    host.send_json(type="promote", name="bob")
    host.expect("ok")
    carol = connect("carol")
    bob.send_json(type="kick", name="carol")
    bob.expect("ok")
    carol.assert_closed()
    bob.send_json(type="quit")
    again = connect()
    assert again.login("bob", password="bob password")["admin"] is True


@pytest.mark.parametrize("command", ["/kick bob", "/topic new topic", "/ban bob"])
def test_plain_text_moderation_is_refused_to_ordinary_users(connect: Any, command: str) -> None:
    connect("bob")
    nc = connect()
    nc.read_until_text("username: ")
    nc.send("tess\n")
    nc.read_until_text("Type /help for commands.\n")
    nc.read_line()
    nc.send(command + "\n")
    assert nc.read_line() == b"! only the host or an admin can do that"
