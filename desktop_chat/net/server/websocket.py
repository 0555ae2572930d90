"""``GET /ws``: the native protocol over WebSocket (one JSON object per text frame).

The handshake and frame parsing are the ``websockets`` library's sans-I/O ``ServerProtocol``;
this module only moves bytes between it and the connection. Frames from the server are never
masked or compressed, so a broadcast's frame is built once and sent to every WebSocket client
as the same bytes (see ``Outgoing.ws_frame``).

A text frame over the line limit gets one ``too_long`` error and the connection stays usable,
as in JSON Lines; a frame over 1 MiB closes it (code 1009).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Origin

from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.framing import TOO_LONG

if TYPE_CHECKING:
    from desktop_chat.net.server.connection import Connection

log = logging.getLogger(__name__)

HARD_FRAME_LIMIT = 1 << 20
_HANDSHAKE_TIMEOUT = 10.0


def text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed text frame: what a server sends."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


def close_frame(code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> bytes:
    return Frame(Opcode.CLOSE, Close(code, reason).serialize()).serialize(mask=False)


def serve_websocket(conn: Connection, raw_request: bytes) -> None:
    """Complete the upgrade whose request is ``raw_request``, then serve the chat over it."""
    # Same-origin pages and non-browser clients (no Origin header) are welcome; a page from
    # another site must not drive a visitor's browser into the chat.
    ws = ServerProtocol(max_size=HARD_FRAME_LIMIT, origins=_origins(conn, raw_request))
    ws.receive_data(raw_request)
    request = _wait_request(conn, ws)
    if request is None:
        return
    response = ws.accept(request)
    ws.send_response(response)
    conn.outbox.send(b"".join(ws.data_to_send()))
    if response.status_code != 101:
        conn._drain_before_close()
        return
    conn.mode = "ws"
    proto = p.JsonLinesProtocol("server", conn.config.max_line)
    while True:
        for event in ws.events_received():
            if not isinstance(event, Frame) or event.opcode not in (Opcode.TEXT, Opcode.BINARY):
                continue
            if len(event.data) > conn.config.max_line:
                conn._handle_json(proto.parse_line(TOO_LONG))
            else:
                conn._handle_json(proto.parse_line(bytes(event.data)))
        pending = ws.data_to_send()
        if pending:
            conn.outbox.send(b"".join(pending))
        if ws.state is State.CLOSED or ws.close_expected():
            conn._drain_before_close()
            return
        data = conn._recv(conn._next_timeout())
        if data:
            ws.receive_data(data)


def _wait_request(conn: Connection, ws: ServerProtocol) -> Request | None:
    deadline = time.monotonic() + _HANDSHAKE_TIMEOUT
    while True:
        for event in ws.events_received():
            if isinstance(event, Request):
                return event
        if ws.data_to_send():
            return None  # the library refused the request
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        data = conn._recv(remaining)
        if data:
            ws.receive_data(data)


def _origins(conn: Connection, raw_request: bytes) -> list[Origin | None]:
    host = b""
    for line in raw_request.split(b"\r\n")[1:]:
        if line.lower().startswith(b"host:"):
            host = line[5:].strip()
            break
    name = host.decode("latin-1")
    return [None, Origin(f"http://{name}"), Origin(f"https://{name}")]


def goodbye(conn: Connection) -> None:
    """Say a proper WebSocket close before the connection is closed."""
    conn.outbox.send(close_frame())
