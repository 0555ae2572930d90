"""Property tests (hypothesis) for everything that reads a peer's bytes: the JSON Lines parser,
names, the plain-text command parser, the HTTP router, the WebSocket bridge and the discovery
packet parser.

Each property runs twice: briefly in the normal run, and at length (``LONG`` examples each)
under ``pytest -m fuzz``, which the normal run leaves out (see README, "Fuzzing").
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from desktop_chat.net.discovery.advert import Advert
from desktop_chat.net.discovery.broadcast import (
    PacketError,
    encode_answer,
    encode_query,
    parse_answer,
    parse_query,
)
from desktop_chat.net.protocol import commands
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.names import (
    InvalidName,
    name_key,
    normalize_name,
    skeleton,
)
from desktop_chat.net.server.http import WEB_FILES, web_file
from desktop_chat.net.server.plaintext import decode_line
from desktop_chat.net.server.roomlooks import RoomLooks
from desktop_chat.net.server.server import Server, ServerConfig
from tests.helpers import LineClient, T

QUICK = 60
LONG = 5000
KINDS = {"say", "me", "msg", "join", "part", "who", "rooms", "help", "quit", "error"}
KINDS |= {"kick", "ban", "topic"}


def fuzz_pair(
    *strategies: st.SearchStrategy[Any], quick: int = QUICK
) -> Callable[[Callable[..., None]], tuple[Callable[..., None], Callable[..., None]]]:
    """The same property as a quick test and a long one marked ``fuzz``."""

    def make(check: Callable[..., None]) -> tuple[Callable[..., None], Callable[..., None]]:
        def build(examples: int) -> Callable[..., None]:
            return settings(
                max_examples=examples,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            )(given(*strategies)(check))

        return build(quick), pytest.mark.fuzz(build(LONG))

    return make


# -- JSON Lines -------------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_objects = st.dictionaries(
    st.sampled_from(["type", "room", "text", "to", "ref", "name", "limit", "before", "n"])
    | st.text(max_size=6),
    _json_values | st.sampled_from(["say", "dm", "join", "history", "hello", "ping"]),
    max_size=6,
)
_lines = st.one_of(
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ")),
    _objects.map(lambda o: json.dumps(o, allow_nan=True).encode()),
)


def _check_json_lines(lines: list[bytes], cuts: list[int]) -> None:
    proto = p.JsonLinesProtocol("server", max_line=150)
    data = b"".join(line + b"\n" for line in lines)
    events: list[Any] = []
    start = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        events += proto.receive_data(data[start:cut])
        start = max(start, cut)
    # Exactly one event or one error per line, however the bytes were split.
    assert len(events) == len(lines)
    for event in events:
        if isinstance(event, p.ProtocolError):
            assert event.code in {"bad_json", "bad_message", "unknown_type", "too_long"}
            p.encode(event.reply())  # every error can be sent back
        else:
            assert isinstance(event, p.ClientEvent)


test_json_lines, test_json_lines_long = fuzz_pair(
    st.lists(_lines, max_size=8), st.lists(st.integers(min_value=0), max_size=5)
)(_check_json_lines)


# -- names ------------------------------------------------------------------------------------


def _check_names(raw: str) -> None:
    try:
        name = normalize_name(raw)
    except InvalidName as exc:
        message = str(exc)  # says why, for people
        assert message
        return
    assert normalize_name(name) == name  # valid names are kept as given (after NFC)
    assert 1 <= len(name) <= 32
    assert name_key(name) == name_key(name_key(name))
    assert isinstance(skeleton(name_key(name)), str)
    looks = RoomLooks(lambda: [("vip", "vip")])
    key = looks.key_for(name)
    assert key == name_key(name) or skeleton(key) == skeleton(name_key(name))


test_names, test_names_long = fuzz_pair(st.text(max_size=40))(_check_names)


# -- plain-text commands ----------------------------------------------------------------------


def _check_plain(raw: bytes) -> None:
    line = decode_line(raw)
    cmd = commands.parse(line)
    if cmd is None:
        assert not line.strip()
        return
    assert cmd.kind in KINDS
    if isinstance(cmd, commands.Say):
        assert cmd.text  # a said line is never empty
    if isinstance(cmd, commands.Join):
        assert cmd.room.strip()
    if isinstance(cmd, commands.Msg):
        assert cmd.to.strip()
    if isinstance(cmd, commands.Kick | commands.Ban):
        assert cmd.name.strip()


test_plain_commands, test_plain_commands_long = fuzz_pair(
    st.binary(max_size=80) | st.text(max_size=40).map(lambda t: ("/" + t).encode())
)(_check_plain)


# -- discovery packets ------------------------------------------------------------------------


def _check_discovery(data: bytes, nonce_hex: str) -> None:
    for parse in (parse_query, lambda d: parse_answer(d, nonce_hex)):
        try:
            parse(data)
        except PacketError:
            pass  # the only way a packet may be refused
    # Our own packets always parse back to what was sent.
    assert parse_query(encode_query(nonce_hex)) == nonce_hex
    advert = Advert.create("Chat " + data.decode("utf-8", "replace")[:40], people=len(data))
    port, back = parse_answer(encode_answer(nonce_hex, 5151, advert), nonce_hex)
    assert port == 5151 and back.people == advert.people


_packets = st.binary(max_size=300) | _objects.map(
    lambda o: json.dumps({"magic": "desktop-chat", "v": 1, **o}).encode()
)
test_discovery, test_discovery_long = fuzz_pair(
    _packets, st.text("0123456789abcdef", min_size=32, max_size=32)
)(_check_discovery)


# -- the HTTP router and the WebSocket bridge, on a real server -------------------------------


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = Path(tmp_path_factory.mktemp("fuzz-data"))
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        data_dir=data,
        sniff_timeout=0.3,
        tls="off",
        rate_per_sec=0,
        broadcast_port=None,
        max_per_address=1000,
    )
    with Server(config) as server:
        yield server


def _check_web_file(path: str) -> None:
    found = web_file(path, "<b>Chat</b>", 5151)
    if path in WEB_FILES:
        assert found is not None and found[0]
    else:
        assert found is None  # nothing outside the list is ever served (no path tricks)


test_web_file, test_web_file_long = fuzz_pair(
    st.text(max_size=30) | st.sampled_from([*WEB_FILES, "/../pyproject.toml", "//etc/passwd"])
)(_check_web_file)

_targets = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
).map(lambda t: "/" + t)
# Methods the port recognises as HTTP (anything else is the sniffer's business, not the router's).
_methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"])


def _check_http(server: Server, method: str, target: str, junk: bytes) -> None:
    with socket.create_connection(server.address, timeout=T(5)) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + junk)
        sock.sendall(b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    if answer:  # a request h11 cannot parse may be closed without a word
        status = answer.split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 "), status
        assert int(status.split()[1]) < 500, status


def test_http_router(fuzz_server: Server) -> None:
    _http_pair(fuzz_server)[0]()
    _still_serving(fuzz_server)


@pytest.mark.fuzz
def test_http_router_long(fuzz_server: Server) -> None:
    _http_pair(fuzz_server)[1]()
    _still_serving(fuzz_server)


def _http_pair(server: Server) -> tuple[Callable[[], None], Callable[[], None]]:
    def check(method: str, target: str, junk: bytes) -> None:
        _check_http(server, method, target, junk)

    junk = st.binary(max_size=60).map(lambda b: b.replace(b"\r\n\r\n", b""))
    return fuzz_pair(_methods, _targets, junk, quick=30)(check)


def _still_serving(server: Server) -> None:
    with LineClient(server.address) as c:
        c.login("fuzz-watcher")
        c.send_json(type="ping", n=1)
        assert c.expect("pong")["n"] == 1


def _ws_pair(server: Server) -> tuple[Callable[[], None], Callable[[], None]]:
    host, port = server.address

    def check(frames: list[str]) -> None:
        with ws_connect(f"ws://{host}:{port}/ws", open_timeout=T(5)) as ws:
            ws.send(json.dumps({"type": "hello", "protocol": 1, "name": "wsfuzz"}))
            assert json.loads(ws.recv(timeout=T(5)))["type"] == "welcome"
            for n, frame in enumerate(frames):
                ws.send(frame)
                ws.send(json.dumps({"type": "ping", "n": n}))
                answers = []
                while (got := json.loads(ws.recv(timeout=T(5)))) != {"type": "pong", "n": n}:
                    if got["type"] not in ("users", "joined", "left", "message", "typing"):
                        answers.append(got)
                assert len(answers) <= 1  # at most one answer (maybe an error) per frame
            ws.send(json.dumps({"type": "quit"}))
            try:
                while True:
                    ws.recv(timeout=T(5))
            except ConnectionClosed:
                pass

    frames = st.lists(
        st.text(max_size=60) | _objects.map(json.dumps).filter(lambda s: '"quit"' not in s),
        max_size=5,
    )
    return fuzz_pair(frames, quick=25)(check)


def test_websocket_bridge(fuzz_server: Server) -> None:
    _ws_pair(fuzz_server)[0]()
    _still_serving(fuzz_server)


@pytest.mark.fuzz
def test_websocket_bridge_long(fuzz_server: Server) -> None:
    _ws_pair(fuzz_server)[1]()
    _still_serving(fuzz_server)
