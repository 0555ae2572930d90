"""IRC on the shared port: real IRC clients (a raw one, the ``irc`` package's) chatting with
JSON, WebSocket and netcat users through one hub."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import irc.client
import pytest
from hypothesis import given
from hypothesis import strategies as st

from desktop_chat.net.protocol.irc import (
    MAX_LINE,
    format_message,
    from_escaped,
    parse,
    split_text,
    to_channel,
    to_nick,
)
from desktop_chat.net.protocol.names import is_valid_name
from desktop_chat.net.protocol.tls import client_context
from tests.helpers import LineClient, T
from tests.irc_helpers import RawIrc

# -- the codec, sans-I/O -------------------------------------------------------------------

names = st.text(min_size=1, max_size=32).filter(is_valid_name)


@given(names)
def test_every_name_has_a_valid_nick_that_maps_back(name: str) -> None:
    nick = to_nick(name)
    assert nick.isascii() or any(ord(c) > 127 for c in name)
    assert " " not in nick and "," not in nick and not nick[0].isdigit()
    assert from_escaped(nick) == name


@given(names)
def test_every_room_has_a_channel_that_maps_back(room: str) -> None:
    channel = to_channel(room)
    assert channel.startswith("#") and " " not in channel and "," not in channel
    assert from_escaped(channel[1:]) == room


@given(st.text(max_size=2000), st.integers(min_value=4, max_value=600))
def test_split_text_keeps_every_character_and_the_budget(text: str, budget: int) -> None:
    pieces = list(split_text(text, budget))
    assert all(len(piece.encode()) <= budget for piece in pieces)
    joined = "".join(pieces).replace(" ", "")
    assert joined == text.replace("\r", "").replace("\n", "").replace(" ", "")


@given(
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_characters=" \r\n\0:", blacklist_categories=("Cs",)),
            min_size=1,
        ),
        max_size=5,
    ),
    st.text(alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",))),
)
def test_format_then_parse_is_the_same_message(middle: list[str], trailing: str) -> None:
    line = format_message("PRIVMSG", *middle, trailing, source="a!u@h", tags={"time": "x; y"})
    msg = parse(line.decode()[:-2])
    assert msg.params == (*middle, trailing)
    assert msg.tags == {"time": "x; y"}
    assert msg.source == "a!u@h"


def test_a_lone_surrogate_cannot_break_a_line() -> None:
    assert format_message("PRIVMSG", "#a", "x\ud800y").endswith(b"x?y\r\n")


# -- on the wire ---------------------------------------------------------------------------


@pytest.fixture
def raw_irc(server: Any) -> Iterator[Callable[..., RawIrc]]:
    opened: list[RawIrc] = []

    def make(**kwargs: Any) -> RawIrc:
        client = RawIrc(server.address, **kwargs)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def test_registration_burst_and_general(raw_irc: Any) -> None:
    bob = raw_irc()
    burst = bob.register("bob")
    commands = [m.command for m in burst]
    assert commands[:5] == ["001", "002", "003", "004", "005"]
    isupport = next(m for m in burst if m.command == "005").params
    for token in ("CASEMAPPING=ascii", "CHANTYPES=#", "NICKLEN=32", "PREFIX=(o)@"):
        assert token in isupport
    motd = [m.params[-1] for m in burst if m.command == "372"]
    assert any("Test chat" in line for line in motd)
    join = next(m for m in burst if m.command == "JOIN")
    assert join.params == ("#general",) and join.source.startswith("bob!")
    names = next(m for m in burst if m.command == "353")
    assert names.params[-1] == "bob"


def test_irc_and_json_users_chat_both_ways_including_dms(raw_irc: Any, connect: Any) -> None:
    ann = connect("Ann Lee")
    bob = raw_irc()
    bob.register("bob", "server-time", "message-tags")
    assert ann.expect("joined")["name"] == "bob"
    bob.send("PRIVMSG #general :hello from irc")
    msg = ann.expect("message")
    assert (msg["from"], msg["text"], msg["room"]) == ("bob", "hello from irc", "general")
    ann.send_json(type="say", room="general", text="hi bob")
    assert ann.expect("message")["text"] == "hi bob"  # its own echo
    line = bob.expect("PRIVMSG")
    assert line.source.startswith("Ann`20`Lee!")
    assert line.params == ("#general", "hi bob")
    assert "time" in line.tags and line.tags["msgid"] == str(msg["id"] + 1)
    bob.send("PRIVMSG Ann`20`Lee :psst")
    dm = ann.expect("message")
    assert (dm["to"], dm["text"]) == ("Ann Lee", "psst")
    ann.send_json(type="dm", to="bob", text="back at you")
    assert bob.expect("PRIVMSG").params == ("bob", "back at you")


def test_own_messages_are_echoed_only_with_echo_message(raw_irc: Any, connect: Any) -> None:
    ann = connect("ann")
    plain, echo = raw_irc(), raw_irc()
    plain.register("plain")
    echo.register("echo", "echo-message")
    plain.send("PRIVMSG #general :one")
    assert ann.expect("message")["text"] == "one"  # two connections: one at a time
    echo.send("PRIVMSG #general :two")
    assert ann.expect("message")["text"] == "two"
    mine = [m for m in echo.until("PRIVMSG") if m.command == "PRIVMSG"]
    assert mine[-1].params == ("#general", "one")
    assert echo.expect("PRIVMSG").params == ("#general", "two")  # its own, echoed
    got = plain.expect("PRIVMSG")
    assert got.params == ("#general", "two")  # "one" was not echoed back to its sender


def test_irc_nc_and_websocket_users_in_one_room(raw_irc: Any, server: Any) -> None:
    from websockets.sync.client import connect as ws_connect

    host, port = server.address
    bob = raw_irc()
    bob.register("bob")
    with LineClient(server.address) as nc, ws_connect(f"ws://{host}:{port}/ws") as ws:
        nc.read_until_text("username")
        nc.send(b"carol\n")
        nc.read_until_text("Welcome")
        ws.send(json.dumps({"type": "hello", "protocol": 1, "name": "dave"}))
        assert bob.expect("JOIN").source.startswith("carol!")
        assert bob.expect("JOIN").source.startswith("dave!")
        bob.send("PRIVMSG #general :from irc")
        assert b"bob: from irc" in nc.read_until_text("from irc")
        while (obj := json.loads(ws.recv(timeout=T(5))))["type"] != "message":
            pass
        assert (obj["from"], obj["text"]) == ("bob", "from irc")
        nc.send(b"from nc\n")
        assert bob.expect("PRIVMSG").params == ("#general", "from nc")
        ws.send(json.dumps({"type": "say", "room": "general", "text": "from web"}))
        assert bob.expect("PRIVMSG").params == ("#general", "from web")
        ws.send(json.dumps({"type": "quit"}))
        quit_line = bob.expect("QUIT")
        assert quit_line.source.startswith("dave!")


def test_join_part_topic_kick_and_errors(raw_irc: Any, make_server: Any, data_dir: Any) -> None:
    server = make_server()
    host_app = LineClient(server.address)
    host_app.send_json(type="hello", protocol=1, name="host", owner=server.owner_token)
    host_app.expect("welcome")
    bob = RawIrc(server.address)
    try:
        bob.register("bob")
        bob.send("JOIN #games,#music")
        assert bob.expect("JOIN").params == ("#games",)
        assert bob.expect("JOIN").params == ("#music",)
        bob.send("PART #music :bye")
        assert bob.expect("PART").params[0] == "#music"
        bob.send("PART #nowhere")
        assert bob.expect("442").params[1] == "#nowhere"
        bob.send("PRIVMSG #nowhere :x")
        assert bob.expect("404").params[1] == "#nowhere"
        bob.send("PRIVMSG nobody :x")
        assert bob.expect("401").params[1] == "nobody"
        bob.send("TOPIC #general :mine")
        assert bob.expect("482").params[1] == "#general"
        bob.send("JOIN #bad,name")
        bob.send("FROB")
        assert bob.expect("421").params[1] == "FROB"
        bob.send("KICK #general")
        assert bob.expect("461").params[1] == "KICK"
        host_app.send_json(type="topic", room="general", topic="Welcome all")
        topic = bob.expect("TOPIC")
        assert topic.params == ("#general", "Welcome all") and topic.source.startswith("host!")
        bob.send("TOPIC #general")
        assert bob.expect("332").params[-1] == "Welcome all"
        host_app.send_json(type="kick", name="bob", reason="test")
        assert bob.expect("NOTICE").params[-1].startswith("host removed you")
    finally:
        bob.close()
        host_app.close()


def test_names_with_spaces_and_unicode_are_escaped_consistently(raw_irc: Any, connect: Any) -> None:
    zoe = connect("Zoë Ann")
    bob = raw_irc()
    bob.register("bob")
    bob.send("NAMES #general")
    names = [m for m in bob.until("366") if m.command == "353"]
    assert "Zo`eb``20`Ann" in " ".join(n.params[-1] for n in names)
    bob.send("PRIVMSG Zo`eb``20`Ann :hi")
    assert zoe.expect("message")["to"] == "Zoë Ann"
    bob.send("WHOIS Zo`eb``20`Ann")
    assert bob.expect("311").params[-1] == "Zoë Ann"


def test_nick_in_use_and_invalid_nicks(raw_irc: Any, connect: Any) -> None:
    connect("alice")
    eve = raw_irc()
    eve.send("NICK alice", "USER e 0 * :e")
    assert eve.expect("433").params[1] == "alice"
    eve.send("NICK a,b")
    assert eve.expect("432")
    eve.send("NICK аlice")  # Cyrillic а: a look-alike of alice
    assert eve.expect("433")
    eve.send("NICK eve")
    assert eve.expect("001").params[0] == "eve"


def test_long_messages_are_split_within_512_bytes_on_utf8_boundaries(
    raw_irc: Any, connect: Any
) -> None:
    ann = connect("ann")
    bob = raw_irc()
    bob.register("bob")
    text = ("héllo wörld " * 200).strip()
    ann.send_json(type="say", room="general", text=text)
    pieces: list[str] = []
    while sum(len(p) for p in pieces) < len(text.replace(" ", "")):
        msg = bob.expect("PRIVMSG")
        line = format_message(*(msg.command, *msg.params), source=msg.source)
        assert len(line) <= MAX_LINE
        pieces.append(msg.params[1].replace(" ", ""))
    assert "".join(pieces) == text.replace(" ", "")


def test_a_long_irc_line_is_accepted_and_a_huge_one_refused(raw_irc: Any, connect: Any) -> None:
    ann = connect("ann")
    bob = raw_irc()
    bob.register("bob")
    bob.send("PRIVMSG #general :" + "x" * 3000)  # longer than 512: accepted, as IRCv3 allows
    assert ann.expect("message")["text"] == "x" * 3000
    bob.send("PRIVMSG #general :" + "y" * 10_000)
    assert bob.expect("417")
    bob.send("PING :still-here")
    assert bob.expect("PONG").params[-1] == "still-here"


def test_hostile_lines_are_dropped_or_answered_and_harm_no_one(raw_irc: Any, connect: Any) -> None:
    ann = connect("ann")
    bob = raw_irc()
    bob.register("bob")
    bob.send(b"PRIVMSG #general :\x01VERSION\x01\r\n")  # CTCP other than ACTION: dropped
    bob.send(b"PRIVMSG #general :a\0b\r\n")  # NUL: the line is dropped
    bob.send(b"PRIVMSG #general :one\rPRIVMSG #general :two\r\n")  # a lone CR ends a line
    bob.send(b"PRIVMSG #general :\xff\xfe bad bytes\r\n")
    bob.send(b"PRIVMSG #general :\x01ACTION waves\x01\r\n")
    bob.send(b":::: \r\n@@@\r\n \r\n")
    assert ann.expect("message")["text"] == "one"
    assert ann.expect("message")["text"] == "two"
    assert ann.expect("message")["text"] == "\ufffd\ufffd bad bytes"
    action = ann.expect("message")
    assert (action["text"], action.get("me")) == ("waves", True)
    ann.send_json(type="ping", n=1)
    assert ann.expect("pong")["n"] == 1


def test_a_join_flood_is_limited_and_nobody_else_waits(raw_irc: Any, connect: Any) -> None:
    ann = connect("ann")
    bob = raw_irc()
    bob.register("bob")
    bob.send(*(f"JOIN #room{i}" for i in range(200)))
    started = time.monotonic()
    ann.send_json(type="ping", n=7)
    assert ann.expect("pong")["n"] == 7
    assert time.monotonic() - started < T(2)
    notices = [m for m in bob.until("NOTICE") if m.command == "NOTICE"]
    assert "slow down" in notices[-1].params[-1].lower()


def test_irc_over_tls(server: Any, connect: Any) -> None:
    ann = connect("ann")
    bob = RawIrc(server.address, tls=client_context())
    try:
        bob.register("bob")
        bob.send("PRIVMSG #general :encrypted")
        assert ann.expect("message")["text"] == "encrypted"
    finally:
        bob.close()


def _run_irc_package_client(
    address: tuple[str, int], nick: str, *, sasl: tuple[str, str] | None = None
) -> tuple[irc.client.Reactor, irc.client.ServerConnection, list[Any]]:
    reactor = irc.client.Reactor()
    events: list[Any] = []
    reactor.add_global_handler("all_events", lambda c, e: events.append(e), -10)
    conn = reactor.server()
    if sasl is not None:
        conn.connect(address[0], address[1], nick, password=sasl[1], sasl_login=sasl[0])
    else:
        conn.connect(address[0], address[1], nick)
    return reactor, conn, events


def _pump_until(reactor: irc.client.Reactor, events: list[Any], kind: str) -> Any:
    deadline = time.monotonic() + T(5)
    while time.monotonic() < deadline:
        for event in events:
            if event.type == kind:
                events.remove(event)
                return event
        reactor.process_once(0.05)
    raise TimeoutError(f"no {kind}; saw {[e.type for e in events]}")


def test_the_irc_package_client_chats(server: Any, connect: Any) -> None:
    ann = connect("ann")
    reactor, conn, events = _run_irc_package_client(server.address, "bot")
    try:
        _pump_until(reactor, events, "welcome")
        _pump_until(reactor, events, "join")
        conn.privmsg("#general", "beep boop")
        assert ann.expect("message")["text"] == "beep boop"
        ann.send_json(type="say", room="general", text="hello bot")
        event = _pump_until(reactor, events, "pubmsg")
        assert event.arguments == ["hello bot"] and event.source.nick == "ann"
    finally:
        conn.disconnect("bye")
        reactor.process_once(0)


def test_sasl_plain_logs_into_a_registered_account(server: Any, connect: Any) -> None:
    owner = connect("acct")
    owner.send_json(type="register", password="correct horse battery")
    owner.expect("ok")
    owner.send_json(type="quit")
    owner.assert_closed()
    reactor, conn, events = _run_irc_package_client(
        server.address, "acct", sasl=("acct", "correct horse battery")
    )
    try:
        welcome = _pump_until(reactor, events, "welcome")
        assert welcome.target == "acct"
    finally:
        conn.disconnect()
        reactor.process_once(0)
    bad = RawIrc(server.address)
    try:
        bad.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN")
        assert bad.expect("AUTHENTICATE").params == ("+",)
        bad.send("AUTHENTICATE " + __import__("base64").b64encode(b"\0acct\0wrong").decode())
        assert bad.expect("904")
        bad.send("NICK acct", "USER a 0 * :a", "CAP END")
        assert bad.expect("433")  # the registered name needs its password
    finally:
        bad.close()


def test_admins_are_marked_in_names_as_isupport_says(raw_irc: Any, server: Any) -> None:
    with LineClient(server.address) as host:
        host.send_json(type="hello", protocol=1, name="host", owner=server.owner_token)
        host.expect("welcome")
        bob = raw_irc()
        burst = bob.register("bob")
        names = " ".join(m.params[-1] for m in burst if m.command == "353")
        assert sorted(names.split()) == ["@host", "bob"]
        bob.send("NAMES #general")
        again = [m for m in bob.until("366") if m.command == "353"]
        assert sorted(" ".join(m.params[-1] for m in again).split()) == ["@host", "bob"]


def test_a_registered_irc_user_gets_what_it_missed_once_after_a_drop(
    server: Any, connect: Any
) -> None:
    import base64

    owner = connect("acct")
    owner.send_json(type="register", password="correct horse battery")
    owner.expect("ok")
    owner.send_json(type="quit")
    owner.assert_closed()
    ann = connect("ann")
    secret = base64.b64encode(b"\0acct\0correct horse battery").decode()

    def sign_in() -> RawIrc:
        irc = RawIrc(server.address)
        irc.send("CAP LS 302", "CAP REQ :sasl message-tags", "AUTHENTICATE PLAIN")
        irc.expect("AUTHENTICATE")
        irc.send(f"AUTHENTICATE {secret}", "NICK acct", "USER a 0 * :a", "CAP END")
        irc.until("001")
        return irc

    first = sign_in()
    try:
        first.until("366")
        assert ann.expect("joined")["name"] == "acct"
        ann.send_json(type="say", room="general", text="seen before the drop")
        assert ann.expect("message")["text"] == "seen before the drop"
        assert first.expect("PRIVMSG").params[-1] == "seen before the drop"
        ack = first.expect("PING")  # "have you read up to here?"
        assert ack.params[-1].startswith("ack-")
        first.send(f"PONG :{ack.params[-1]}")
        first.send("PING :sync")  # answered in order: the server has read our PONG
        first.expect("PONG")
    finally:
        first.close()  # a drop: no QUIT
    assert ann.expect("left")["reason"] == "disconnected"
    for text in ("missed one", "missed two"):
        ann.send_json(type="say", room="general", text=text)
        assert ann.expect("message")["text"] == text
    second = sign_in()
    try:
        replayed = [m.params[-1] for m in second.until("366") if m.command == "PRIVMSG"]
        ann.send_json(type="say", room="general", text="live again")
        while (msg := second.expect("PRIVMSG")).params[-1] != "live again":
            replayed.append(msg.params[-1])
        assert replayed == ["missed one", "missed two"]  # in order, each once, nothing older
    finally:
        second.close()
