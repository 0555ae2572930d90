"""Refusals at the connection caps, answered in the peer's own terms (real sockets).

HTTP gets ``503`` with a line of text (what the web page reads to say "the chat is full"), JSON
Lines the ``server_full`` line, a silent terminal user one line of text, TLS a plain close; a
flood of refused peers costs at most the refusal pool's few threads.
"""

from __future__ import annotations

from typing import Any

from desktop_chat.net.server.refusal import WORKERS, needs_more, refusal_answer
from tests.helpers import LineClient, T


def _full_server(make_server: Any) -> tuple[Any, list[LineClient]]:
    srv = make_server(max_connections=2)
    held = [LineClient(srv.address), LineClient(srv.address)]
    held[0].login("ann")
    held[1].login("bob")
    return srv, held


def test_http_at_the_cap_gets_503_with_a_line_of_text(make_server: Any) -> None:
    srv, held = _full_server(make_server)
    try:
        with LineClient(srv.address) as c:
            c.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
            raw = c.assert_closed()
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 503 Service Unavailable"
        assert b"Connection: close" in lines
        assert b"Content-Type: text/plain; charset=utf-8" in lines
        assert f"Content-Length: {len(body)}".encode() in lines
        assert body == b"The chat is full right now (the server is full). Try again in a moment.\n"

        # HEAD: the same answer without the body (the page's probe uses it).
        with LineClient(srv.address) as c:
            c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
            raw = c.assert_closed()
        assert raw.startswith(b"HTTP/1.1 503 ") and raw.endswith(b"\r\n\r\n")

        # A request head in pieces is read to its end before the answer.
        with LineClient(srv.address) as c:
            c.send(b"GE")
            c.send(b"T / HTTP/1.1\r\nHost: x\r\n")
            c.send(b"\r\n")
            assert c.assert_closed().startswith(b"HTTP/1.1 503 ")
    finally:
        for client in held:
            client.close()


def test_json_silent_irc_and_tls_peers_at_the_cap(make_server: Any) -> None:
    srv, held = _full_server(make_server)
    try:
        with LineClient(srv.address) as c:
            c.send_json(type="hello", protocol=1, name="carol")
            err = c.read_json()
            assert (err["type"], err["code"]) == ("error", "server_full")
            assert err["message"] == "the server is full"
            assert c.assert_closed() == b""
        with LineClient(srv.address) as c:  # a terminal user who waits for the prompt
            line = c.read_line(timeout=3)
            assert line == b"Sorry, the chat is full right now (the server is full). " + (
                b"Try again in a moment."
            )
            c.assert_closed()
        with LineClient(srv.address) as c:
            c.send(b"NICK carol\r\nUSER carol 0 * :Carol\r\n")
            assert c.assert_closed().startswith(b"ERROR :Closing link: the server is full")
        with LineClient(srv.address) as c:
            c.send(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")  # a ClientHello's start
            assert c.assert_closed() == b""  # no handshake is spent on a refusal
        # The two inside were never disturbed.
        held[0].send_json(type="say", room="general", text="still here")
        assert held[1].expect("message")["text"] == "still here"
    finally:
        for client in held:
            client.close()


def test_a_flood_of_refused_peers_costs_at_most_the_pool(make_server: Any) -> None:
    srv = make_server(max_per_address=1, sniff_timeout=1.0)
    with LineClient(srv.address) as inside:
        inside.login("ann")
        silent = [LineClient(srv.address) for _ in range(10)]
        try:
            # The pool's workers wait for their peers' first bytes; the rest are closed at once.
            answered = 0
            for c in silent:
                rest = c.assert_closed(timeout=3)
                assert rest == b"" or rest.startswith(
                    b"Sorry, the chat is full right now (too many connections from your address)"
                )
                answered += rest != b""
            assert answered == WORKERS  # the rest were closed at once (the leak check joins)
        finally:
            for c in silent:
                c.close()
        inside.send_json(type="ping", n=7)
        assert inside.expect("pong", timeout=T(2))["n"] == 7


def test_the_answer_for_each_beginning() -> None:
    assert needs_more(b"") and needs_more(b"G") and needs_more(b"GET / HTTP/1.1\r\n")
    assert not needs_more(b"GET / HTTP/1.1\r\n\r\n")
    assert not needs_more(b"{") and not needs_more(b"\x16")
    assert needs_more(b"NIC") and not needs_more(b"NICK a\r\n")
    assert not needs_more(b"hello\n") and needs_more(b"hello")
    assert refusal_answer(b"\x16\x03", "full") is None
    assert refusal_answer(b"PRI * HTTP/2.0\r\n\r\n", "full").startswith(b"HTTP/1.1 503")  # type: ignore[union-attr]
    assert refusal_answer(b"", "full") == (
        b"Sorry, the chat is full right now (full). Try again in a moment.\n"
    )
