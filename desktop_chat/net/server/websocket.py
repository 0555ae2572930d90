"""``GET /ws``: the native protocol over WebSocket (one JSON object per text message).

The handshake, frame parsing, control frames and closing are the ``websockets`` library's
sans-I/O ``ServerProtocol``; reassembling fragmented messages and checking that a text
message is UTF-8 are its :class:`~websockets.sync.messages.Assembler` (used here without
waiting: frames are put in as they arrive and complete messages taken out). A text message that
is not UTF-8 closes with 1007, as RFC 6455 says. A message over the line limit gets one
``too_long`` error and the connection stays usable, as in JSON Lines; a message over 1 MiB
closes it (1009). Frames from the server are never masked or compressed, so a broadcast's frame
is built once for every WebSocket client (``Outgoing.ws_frame``).
"""

from __future__ import annotations

import logging
import time

from websockets.exceptions import ProtocolError
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.sync.messages import Assembler

from desktop_chat.net.protocol.framing import TOO_LONG
from desktop_chat.net.server.context import ServerContext
from desktop_chat.net.server.frames import close_frame
from desktop_chat.net.server.hub import Outgoing
from desktop_chat.net.server.json_session import JsonSession
from desktop_chat.net.server.session import Mode
from desktop_chat.net.server.transport import PeerGone, Transport

log = logging.getLogger(__name__)

HARD_FRAME_LIMIT = 1 << 20
_HANDSHAKE_TIMEOUT = 10.0
_DATA_FRAMES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


class WebSocketSession(JsonSession):
    """A browser (or any WebSocket client) speaking the native protocol in text messages."""

    mode = Mode.WEBSOCKET

    def __init__(self, transport: Transport, ctx: ServerContext, ws: ServerProtocol) -> None:
        super().__init__(transport, ctx)
        self.ws = ws
        self.messages = Assembler()

    def encode(self, out: Outgoing) -> bytes | None:
        return out.ws_frame

    def run(self, first: bytes) -> None:
        self._pump()  # frames that came in the same read as the upgrade request
        super().run(first)

    def receive(self, data: bytes) -> None:
        self.ws.receive_data(data)
        self._pump()

    def _pump(self) -> None:
        for event in self.ws.events_received():
            if isinstance(event, Frame) and event.opcode in _DATA_FRAMES:
                self.messages.put(event)
        self._take_messages()
        self._flush_protocol()

    def _take_messages(self) -> None:
        while True:
            try:
                message = self.messages.get(timeout=0)
            except TimeoutError:
                return  # no complete message yet (or none at all)
            except UnicodeDecodeError:
                self.ws.fail(CloseCode.INVALID_DATA, "text message is not UTF-8")
                return
            except ProtocolError:  # too many fragments
                self.ws.fail(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
                return
            raw = message.encode("utf-8") if isinstance(message, str) else message
            if len(raw) > self.config.max_line:
                self.handle(self.protocol.parse_line(TOO_LONG))
            else:
                self.handle(self.protocol.parse_line(raw))

    def _flush_protocol(self) -> None:
        pending = self.ws.data_to_send()
        if pending:
            self.transport.send(b"".join(pending))
        if self.ws.state is State.CLOSED or self.ws.close_expected():
            self.close(self.transport.close_reason or "disconnected")

    def goodbye(self) -> None:
        self.transport.send(close_frame())


def accept_websocket(
    transport: Transport, ctx: ServerContext, raw_request: bytes
) -> WebSocketSession | None:
    """Complete the upgrade whose request is ``raw_request``; the session, or None if refused
    (the refusal has been sent). The caller checked ``Host`` and ``Origin``."""
    ws = ServerProtocol(max_size=HARD_FRAME_LIMIT)
    ws.receive_data(raw_request)
    request = _wait_request(transport, ws)
    if request is None:
        return None
    response = ws.accept(request)
    ws.send_response(response)
    transport.send(b"".join(ws.data_to_send()))
    if response.status_code != 101:
        transport.drain()
        return None
    return WebSocketSession(transport, ctx, ws)


def _wait_request(transport: Transport, ws: ServerProtocol) -> Request | None:
    deadline = time.monotonic() + _HANDSHAKE_TIMEOUT
    while True:
        for event in ws.events_received():
            if isinstance(event, Request):
                return event
        if ws.data_to_send():
            return None  # the library refused the request
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PeerGone
        data = transport.recv(remaining)
        if data:
            ws.receive_data(data)
