"""Plain-text mode driven by a raw socket exactly as ``nc host port`` would."""

from __future__ import annotations

from typing import Any

from tests.helpers import LineClient


def _nc(connect: Any, name: str | None = None) -> LineClient:
    c = connect()
    c.read_until_text("username")
    c.read_until_text(": ")
    if name is not None:
        c.send(f"{name}\n")
        c.read_until_text("Type /help for commands.\n")
        c.read_until_text("\n")  # who is in general
    return c


def test_prompt_name_and_chat_with_json_users(connect: Any) -> None:
    json_user = connect("alice")
    nc = _nc(connect)
    nc.send("bob\r\n")  # telnet ends lines with CR LF
    welcome = nc.read_line().decode()
    assert "bob" in welcome and "/help" in welcome
    assert "alice" in nc.read_line().decode()
    assert json_user.expect("joined") == {"type": "joined", "room": "general", "name": "bob"}
    nc.send("hello from a terminal\n")
    got = json_user.expect("message")
    assert got["from"] == "bob" and got["text"] == "hello from a terminal"
    assert nc.read_line() == b"bob: hello from a terminal"
    json_user.send_json(type="say", room="general", text="hi bob")
    assert nc.read_line() == b"alice: hi bob"
    json_user.send_json(type="dm", to="bob", text="psst")
    assert nc.read_line() == b"[dm] alice: psst"


def test_refused_name_says_why_and_asks_again(connect: Any) -> None:
    connect("alice")
    nc = _nc(connect)
    nc.send("ALICE\n")
    assert b"in use" in nc.read_line()
    nc.read_until_text("username")
    nc.send(" spaced\n")
    assert b"white space" in nc.read_line()
    nc.read_until_text("username")
    nc.send("al\u202eice\n")
    assert b"control" in nc.read_line()
    nc.read_until_text("username: ")
    nc.send("carol\n")
    assert b"carol" in nc.read_line()


def test_commands(connect: Any) -> None:
    alice = connect("alice")
    nc = _nc(connect, "bob")
    nc.send("/help\n")
    helptext = nc.read_until_text("current room.\n").decode()
    for cmd in ("/help", "/who", "/rooms", "/join", "/msg", "/quit"):
        assert cmd in helptext
    nc.send("/who\n")
    assert nc.read_line() == b"* In general (2 people): alice, bob."
    nc.send("/rooms\n")
    assert nc.read_line() == b"* Rooms: general (2)"
    nc.send("/msg alice secret plan\n")
    assert nc.read_line() == b"[dm to alice] bob: secret plan"
    assert alice.expect("message")["to"] == "alice"
    nc.send("/msg nobody hi\n")
    assert b"nobody" in nc.read_line()
    nc.send("/bogus\n")
    assert b"unknown command" in nc.read_line().lower()
    nc.send("/join Games\n")
    assert nc.read_line() == b"* In Games (1 person): bob."
    assert nc.read_line() == b"* You are now talking in Games."
    nc.send("here now\n")
    assert nc.read_line() == b"bob: here now"
    alice.send_json(type="say", room="general", text="back in general")
    assert nc.read_line() == b"[general] alice: back in general"
    alice.send_json(type="join", room="games")
    assert nc.read_line() == b"* alice joined Games"
    nc.send("/me waves\n")
    assert nc.read_line() == b"* bob waves"
    assert alice.expect("message", where=lambda m: m["room"] == "Games")["me"] is True
    nc.send("/quit\n")
    assert alice.expect("left")["reason"] == "quit"
    nc.assert_closed()


def test_quoted_names_with_spaces(connect: Any) -> None:
    ann = connect("Ann Lee")
    nc = _nc(connect, "bob")
    nc.send('/msg "Ann Lee" hi there\n')
    assert nc.read_line() == b"[dm to Ann Lee] bob: hi there"
    assert ann.expect("message")["text"] == "hi there"
    nc.send("/msg ann\n")  # no text: a usage error in a terminal, nothing sent
    assert nc.read_line() == b"! Usage: /msg <name> <text>"
    nc.send('/join "board games"\n')
    assert nc.read_line() == b"* In board games (1 person): bob."
    assert nc.read_line() == b"* You are now talking in board games."
    nc.send('/part "board games"\n')
    assert nc.read_line() == b"* bob left board games (part)"
    assert nc.read_line() == b"* You are now talking in general."


def test_joins_and_leaves_are_shown(connect: Any) -> None:
    nc = _nc(connect, "bob")
    alice = connect("alice")
    assert nc.read_line() == b"* alice joined general"
    alice.close()
    line = nc.read_line().decode()
    assert "alice" in line and "left" in line


def test_invalid_utf8_control_chars_and_long_lines(make_server: Any) -> None:
    srv = make_server(max_line=100)
    with LineClient(srv.address) as alice:
        alice.login("alice")
        nc = LineClient(srv.address)
        with nc:
            nc.read_until_text("username: ")
            nc.send("bob\n")
            nc.read_until_text("Type /help for commands.\n")
            nc.read_line()
            nc.send(b"caf\xe9 \xff\n")
            msg = alice.expect("message")
            assert msg["text"] == "caf\ufffd \ufffd"
            nc.read_line()
            nc.send(b"x" * 500 + b"\nok\n")
            assert b"too long" in nc.read_line()
            assert nc.read_line() == b"bob: ok"
            # ANSI escapes and fake lines from others cannot reach a terminal raw.
            alice.send_json(type="say", room="general", text="\x1b[2Jboo\nmallory: fake")
            assert nc.read_line() == "alice: \ufffd[2Jboo".encode()
            assert nc.read_line() == b"    mallory: fake"


def test_name_typed_before_the_prompt(connect: Any) -> None:
    c = connect()
    c.send("eager\n")  # sent at once, before the server chose the mode
    c.read_until_text("username: ")
    assert b"eager" in c.read_line()
