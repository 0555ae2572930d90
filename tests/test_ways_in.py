"""Choosing a way in from the first bytes (contract revision 2): a connection that began a
known protocol is never a plain-text user, however slowly it arrives; other protocols are
answered in their own terms. And the WebSocket's framing and ``Host``/``Origin`` rules."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from desktop_chat.net.server.sniff import HTTP2_PREFACE, HTTP_METHODS, IRC_COMMANDS, Kind, classify
from tests.helpers import LineClient, T

KNOWN = (*HTTP_METHODS, HTTP2_PREFACE, *IRC_COMMANDS)


# -- the classifier, sans-I/O ----------------------------------------------------------------


@given(st.sampled_from(KNOWN), st.integers(min_value=1, max_value=20))
def test_every_start_of_a_known_protocol_is_undecided_never_plain(token: bytes, n: int) -> None:
    start = token[: min(n, len(token) - 1)]
    assert classify(start) is Kind.UNDECIDED


@given(st.binary(max_size=64))
def test_classify_never_fails_and_plain_only_when_nothing_known_can_follow(data: bytes) -> None:
    kind = classify(data)
    if kind is Kind.PLAIN:
        assert data and data[0] not in (0x16, 0x7B)
        assert not any(t.startswith(data) or data.startswith(t) for t in KNOWN)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", Kind.UNDECIDED),
        (b"\x16\x03\x01", Kind.TLS),
        (b'{"type"', Kind.JSON),
        (b"GET / HTTP/1.1\r\n", Kind.HTTP),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Kind.HTTP2),
        (b"NICK bob\r\n", Kind.IRC),
        (b"CAP LS 302\r\n", Kind.IRC),
        (b"Gary\n", Kind.PLAIN),
        (b"Ga", Kind.PLAIN),
        (b"USER\n", Kind.PLAIN),  # a person called USER, not an IRC registration
        (b"G", Kind.UNDECIDED),
        (b"PRI * HT", Kind.UNDECIDED),
    ],
)
def test_classify_examples(data: bytes, kind: Kind) -> None:
    assert classify(data) is kind


# -- on the wire ---------------------------------------------------------------------------


def _wait_past_sniff_timeout(address: tuple[str, int]) -> None:
    """A silent connection made now gets the plain-text prompt once the sniff timeout has
    passed: after that, every connection opened before it has passed it too."""
    with LineClient(address) as quiet:
        quiet.read_until_text("username")


def test_a_request_trickled_from_its_first_byte_is_http_not_a_user(
    server: Any, connect: Any
) -> None:
    host, port = server.address
    with LineClient(server.address) as slow:
        slow.send(b"G")
        _wait_past_sniff_timeout(server.address)
        for byte in f"ET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode():
            slow.send(bytes([byte]))
        assert slow.read_line().startswith(b"HTTP/1.1 200")
    watcher = connect("watcher")
    watcher.send_json(type="rooms")
    assert watcher.expect("rooms")["rooms"][0]["users"] == 1  # nobody else became a user
    assert server.hub.online_names() == ["watcher"]


def test_an_http2_preface_gets_an_http_error_and_never_posts(server: Any, connect: Any) -> None:
    with LineClient(server.address) as h2:
        h2.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert h2.read_line().startswith(b"HTTP/1.1 505")
        h2.assert_closed()
    reader = connect("reader")
    reader.send_json(type="history", room="general")
    assert reader.expect("history")["messages"] == []


def test_an_irc_registration_is_an_irc_user_even_when_trickled(server: Any) -> None:
    with LineClient(server.address) as irc:
        irc.send(b"N")
        _wait_past_sniff_timeout(server.address)
        irc.send(b"ICK bob\r\nUSER bob 0 * :Bob\r\n")
        assert irc.read_line().startswith(b":desktop-chat 001 bob ")
        assert server.hub.online_names() == ["bob"]  # while connected (it leaves on close)


def test_with_tls_required_irc_is_refused_in_irc_terms(make_server: Any) -> None:
    server = make_server(tls="required")
    with LineClient(server.address) as irc:
        irc.send(b"NICK bob\r\nUSER bob 0 * :Bob\r\n")
        assert irc.read_line().startswith(b"ERROR :Closing link: this server accepts only")
        irc.assert_closed()
    assert server.hub.online_names() == []


def test_the_start_of_a_protocol_that_never_finishes_is_closed_at_the_deadline(
    make_server: Any,
) -> None:
    server = make_server(registration_timeout=T(0.5))
    with LineClient(server.address) as half:
        half.send(b"PR")
        assert half.assert_closed() == b""  # no prompt, no reply: never a plain-text user
    assert server.hub.online_names() == []


def test_a_plain_name_is_still_a_plain_text_user(server: Any) -> None:
    with LineClient(server.address) as gary:
        gary.send(b"Gary\n")
        assert b"Welcome to Test chat, Gary" in gary.read_until_text("Gary!")


# -- WebSocket: framing, UTF-8, Host and Origin --------------------------------------------------


class RawWebSocket:
    """A WebSocket client over a plain socket, using the websockets sans-I/O client, so a test
    can send what a well-behaved library would not (fragments, invalid UTF-8, odd headers)."""

    def __init__(self, address: tuple[str, int], host: str | None = None, **headers: str):
        self.sock = socket.create_connection(address, timeout=T(5))
        self.backlog: list[Any] = []
        self.proto = ClientProtocol(parse_uri(f"ws://{address[0]}:{address[1]}/ws"))
        request = self.proto.connect()
        if host is not None:
            del request.headers["Host"]
            request.headers["Host"] = host
        for name, value in headers.items():
            request.headers[name] = value
        self.proto.send_request(request)
        self._flush()
        self.response = self._wait(lambda e: isinstance(e, Response))

    def _flush(self) -> None:
        for chunk in self.proto.data_to_send():
            if chunk:
                self.sock.sendall(chunk)

    def _wait(self, wanted: Any) -> Any:
        """The first event ``wanted`` accepts; the others stay queued for later waits."""
        while True:
            self.backlog.extend(self.proto.events_received())
            for i, event in enumerate(self.backlog):
                if wanted(event):
                    del self.backlog[i]
                    return event
            data = self.sock.recv(65536)
            if not data:
                self.proto.receive_eof()
                return None
            self.proto.receive_data(data)

    def send_fragments(self, *parts: bytes) -> None:
        for i, part in enumerate(parts):
            fin = i == len(parts) - 1
            if i == 0:
                self.proto.send_text(part, fin=fin)
            else:
                self.proto.send_continuation(part, fin=fin)
        self._flush()

    def next_text(self) -> str:
        frame = self._wait(lambda e: isinstance(e, Frame) and e.opcode is Opcode.TEXT)
        return bytes(frame.data).decode()

    def close_code(self) -> int | None:
        frame = self._wait(lambda e: isinstance(e, Frame) and e.opcode is Opcode.CLOSE)
        return None if frame is None else Close.parse(frame.data).code

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_ws(server: Any) -> Any:
    opened: list[RawWebSocket] = []

    def make(**kwargs: Any) -> RawWebSocket:
        ws = RawWebSocket(server.address, **kwargs)
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.close()


def test_a_fragmented_message_is_reassembled(raw_ws: Any) -> None:
    ws = raw_ws()
    assert ws.response.status_code == 101
    ws.send_fragments(b'{"type":"hello",', b'"protocol":1,', b'"name":"frag"}')
    assert '"welcome"' in ws.next_text()
    ws.send_fragments(b'{"type":"say","room":"general","text":"h', 'é"}'.encode())
    while '"message"' not in (text := ws.next_text()):
        pass
    assert '"text":"hé"' in text


def test_a_text_message_that_is_not_utf8_closes_with_1007(raw_ws: Any) -> None:
    ws = raw_ws()
    ws.send_fragments(b'{"type":"hello","protocol":1,"name":"bad\xff"}')
    assert ws.close_code() == 1007


def test_a_utf8_sequence_split_across_fragments_is_fine(raw_ws: Any) -> None:
    ws = raw_ws()
    hello = '{"type":"hello","protocol":1,"name":"Zoë"}'.encode()
    cut = hello.index("ë".encode()) + 1  # between the two bytes of ë
    ws.send_fragments(hello[:cut], hello[cut:])
    assert '"name":"Zoë"' in ws.next_text()


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("evil.example:{port}", "http://evil.example:{port}"),  # DNS rebinding
        ("evil.example", None),
        ("127.0.0.1:1", None),  # our address, another port
        ("127.0.0.1:{port}", "http://evil.example"),  # another site's page
        ("127.0.0.1:{port}", "null"),
    ],
)
def test_ws_refuses_hosts_and_origins_that_are_not_ours(
    raw_ws: Any, server: Any, host: str, origin: str | None
) -> None:
    port = server.address[1]
    headers = {} if origin is None else {"Origin": origin.format(port=port)}
    ws = raw_ws(host=host.format(port=port), **headers)
    assert ws.response.status_code == 403


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("127.0.0.1:{port}", "http://127.0.0.1:{port}"),
        ("localhost:{port}", "http://localhost:{port}"),
        ("LOCALHOST", None),
        ("127.0.0.1:{port}", None),
    ],
)
def test_ws_accepts_its_own_names(raw_ws: Any, server: Any, host: str, origin: str | None) -> None:
    port = server.address[1]
    headers = {} if origin is None else {"Origin": origin.format(port=port)}
    ws = raw_ws(host=host.format(port=port), **headers)
    assert ws.response.status_code == 101


# -- found in review: more ways a peer could break the choice or the thread -------------------


def test_any_http_method_is_http_and_never_posts_its_headers(server: Any, connect: Any) -> None:
    watcher = connect("watcher")
    host, port = server.address
    with LineClient(server.address) as dav:
        dav.send(
            f"PROPFIND /dav/ HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Authorization: Basic dXNlcjpwYXNz\r\n\r\n"
        )
        assert dav.read_line().startswith(b"HTTP/1.1 405")
    watcher.send_json(type="history", room="general")
    assert watcher.expect("history")["messages"] == []
    assert server.hub.online_names() == ["watcher"]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"PROPFIND /x HTTP/1.1\r\n", Kind.HTTP),
        (b"MKCOL /x HTT", Kind.UNDECIDED),
        (b"ALICE\n", Kind.PLAIN),
        (b"HELLO world\n", Kind.PLAIN),
    ],
)
def test_request_lines_of_any_method(data: bytes, kind: Kind) -> None:
    assert classify(data) is kind


def test_tls_then_an_unfinished_prefix_is_closed_quietly(
    make_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import ssl

    from desktop_chat.net.protocol.tls import client_context

    server = make_server(registration_timeout=T(0.5))
    raw = socket.create_connection(server.address, timeout=T(5))
    with client_context().wrap_socket(raw) as tls:
        tls.sendall(b"G")
        try:
            assert tls.recv(100) == b""
        except (ConnectionResetError, ssl.SSLError):
            pass  # closed under TLS: either way, closed without an answer
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize(
    ("host", "origin"),
    [("localhost:²", None), ("127.0.0.1:{port}", "http://["), ("[::1", None)],
)
def test_malformed_host_and_origin_get_403_not_a_crash(
    raw_ws: Any, server: Any, host: str, origin: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    port = server.address[1]
    headers = {} if origin is None else {"Origin": origin}
    ws = raw_ws(host=host.format(port=port), **headers)
    assert ws.response.status_code in (400, 403)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_thousands_of_fragments_are_reassembled_in_linear_time(raw_ws: Any) -> None:
    ws = raw_ws()
    hello = b'{"type":"hello","protocol":1,"name":"many"}'
    ws.send_fragments(*(hello[i : i + 1] for i in range(len(hello))))
    assert '"welcome"' in ws.next_text()
    parts = [b'{"type":"ping","n":9,"pad":"'] + [b"x"] * 3000 + [b'"}']
    ws.send_fragments(*parts)
    while '"pong"' not in (text := ws.next_text()):
        pass
    assert '"n":9' in text


def test_a_ping_between_fragments_is_answered_and_the_message_still_arrives(raw_ws: Any) -> None:
    ws = raw_ws()
    # A control frame may come between fragments (RFC 6455 5.4); written by hand, since the
    # client library itself refuses to send one there.
    ws.proto.send_text(b'{"type":"hello",', fin=False)
    ws._flush()
    ws.sock.sendall(Frame(Opcode.PING, b"are you there").serialize(mask=True))
    ws.proto.send_continuation(b'"protocol":1,"name":"pinger"}', fin=True)
    ws._flush()
    pong = ws._wait(lambda e: isinstance(e, Frame) and e.opcode is Opcode.PONG)
    assert bytes(pong.data) == b"are you there"
    assert '"welcome"' in ws.next_text()


def test_a_hello_in_the_same_write_as_the_upgrade_is_answered(server: Any) -> None:
    host, port = server.address
    proto = ClientProtocol(parse_uri(f"ws://{host}:{port}/ws"))
    proto.send_request(proto.connect())
    hello = Frame(Opcode.TEXT, b'{"type":"hello","protocol":1,"name":"eager"}')
    with socket.create_connection(server.address, timeout=T(5)) as sock:
        # The request and the first frame in one write, before the 101 came back.
        sock.sendall(b"".join(proto.data_to_send()) + hello.serialize(mask=True))
        got = b""
        while b"welcome" not in got:
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
    assert b'"name":"eager"' in got


@pytest.mark.parametrize("kind", ["json", "plain"])
def test_answers_reach_a_peer_that_half_closed(server: Any, kind: str) -> None:
    with LineClient(server.address) as peer:
        if kind == "json":
            peer.send(b'{"type":"hello","protocol":1,"name":"half"}\n{"type":"ping","n":3}\n')
            want = b'"pong"'
        else:
            peer.read_until_text("username")
            peer.send(b"half\n/rooms\n")
            want = b"Rooms:"
        peer.sock.shutdown(socket.SHUT_WR)
        assert want in peer.read_until_text(want)


@pytest.mark.parametrize(
    "first_line",
    [b"GET /ws HTTP/1.1\r\n", b"NICK bob\r\n", b'{"type":"hello","protocol":1,"name":"x"}\n'],
)
def test_a_request_that_comes_after_the_silence_never_becomes_a_user(
    server: Any, connect: Any, first_line: bytes
) -> None:
    watcher = connect("watcher")
    with LineClient(server.address) as late:
        late.read_until_text("username")  # silence chose plain text; then the request arrives
        late.send(first_line + b"Host: x\r\nUpgrade: websocket\r\n\r\n")
        late.assert_closed()
    watcher.send_json(type="history", room="general")
    assert watcher.expect("history")["messages"] == []
    assert server.hub.online_names() == ["watcher"]
