"""``GET /ws``: the same JSON objects, one per text frame (a real websockets client)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from tests.helpers import T


def _recv(ws: ClientConnection, type_: str) -> dict[str, Any]:
    while True:
        obj = json.loads(ws.recv(timeout=T(5)))
        if obj["type"] == type_:
            return obj
        assert obj["type"] in ("joined", "users", "typing", "ping"), obj


def test_websocket_client_chats_with_json_client(server: Any, connect: Any) -> None:
    host, port = server.address
    alice = connect("alice")
    with connect_ws(host, port) as ws:
        ws.send(json.dumps({"type": "hello", "protocol": 1, "name": "webby"}))
        assert _recv(ws, "welcome")["name"] == "webby"
        assert _recv(ws, "users")["names"] == ["alice", "webby"]
        assert alice.expect("joined")["name"] == "webby"
        ws.send(json.dumps({"type": "say", "room": "general", "text": "from a phone", "ref": 1}))
        assert _recv(ws, "message")["ref"] == 1
        assert alice.expect("message")["text"] == "from a phone"
        alice.send_json(type="say", room="general", text="hello phone")
        alice.expect("message")
        assert _recv(ws, "message")["text"] == "hello phone"
        ws.send("{broken")
        assert _recv(ws, "error")["code"] == "bad_json"
        ws.send(json.dumps({"type": "say", "room": "general", "text": "x" * 70_000}))
        assert _recv(ws, "error")["code"] == "too_long"
        ws.send(json.dumps({"type": "ping", "n": 5}))
        assert _recv(ws, "pong")["n"] == 5  # still usable
        ws.send(json.dumps({"type": "quit"}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=T(5))
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1000
    assert alice.expect("left")["reason"] == "quit"


def test_cross_site_pages_are_refused(server: Any) -> None:
    host, port = server.address
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(f"ws://{host}:{port}/ws", origin="http://evil.example", open_timeout=T(5))
    assert refused.value.response.status_code == 403


def test_websocket_over_tls(server: Any) -> None:
    from desktop_chat.net.protocol.tls import client_context

    host, port = server.address
    with ws_connect(f"wss://{host}:{port}/ws", ssl=client_context(), open_timeout=T(5)) as ws:
        ws.send(json.dumps({"type": "hello", "protocol": 1, "name": "secure"}))
        assert _recv(ws, "welcome")["name"] == "secure"


def connect_ws(host: str, port: int) -> ClientConnection:
    return ws_connect(f"ws://{host}:{port}/ws", open_timeout=T(5))
