"""``GET /ws``: the native protocol over WebSocket (one JSON object per text message).

The handshake, frame parsing, control frames (ping, pong, close), the order of fragments and
the 1 MiB cap on a message are the ``websockets`` library's sans-I/O ``ServerProtocol``. A
fragmented message is put back together here as its frames arrive — linearly, and keeping at
most the line limit of it — and a text message is checked with an incremental UTF-8 decoder,
so invalid UTF-8 closes with 1007 at the first bad byte, and a code point split across two
fragments is fine. (The library's own ``Assembler`` is built for a consumer thread that blocks;
polling it from this one reading thread re-queues every fragment on each call.)

A message over the line limit gets one ``too_long`` error and the connection stays usable, as
in JSON Lines. Frames from the server are never masked or compressed, so a broadcast's frame is
built once for every WebSocket client (``Outgoing.ws_frame``).
"""

from __future__ import annotations

import codecs
import logging
import time
from collections.abc import Iterable

from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from desktop_chat.net.protocol.framing import TOO_LONG
from desktop_chat.net.server.context import ServerContext
from desktop_chat.net.server.fanout import Outgoing
from desktop_chat.net.server.frames import close_frame
from desktop_chat.net.server.json_session import JsonSession
from desktop_chat.net.server.session import Mode
from desktop_chat.net.server.transport import PeerGone, Transport

log = logging.getLogger(__name__)

HARD_FRAME_LIMIT = 1 << 20
_HANDSHAKE_TIMEOUT = 10.0


class WebSocketSession(JsonSession):
    """A browser (or any WebSocket client) speaking the native protocol in text messages."""

    mode = Mode.WEBSOCKET

    def __init__(
        self,
        transport: Transport,
        ctx: ServerContext,
        ws: ServerProtocol,
        early: Iterable[object] = (),
    ) -> None:
        super().__init__(transport, ctx)
        self.ws = ws
        self._early = list(early)  # frames that came in the same read as the upgrade request
        self._parts: list[bytes] = []
        self._size = 0
        self._text = True
        self._decoder: codecs.IncrementalDecoder | None = None
        self._closing = False

    def encode(self, out: Outgoing) -> bytes | None:
        return None if self._closing else out.ws_frame

    def run(self, first: bytes) -> None:
        early, self._early = self._early, []
        self._events(early)
        super().run(first)

    def receive(self, data: bytes) -> None:
        self.ws.receive_data(data)
        self._events(self.ws.events_received())

    def _events(self, events: Iterable[object]) -> None:
        try:
            for event in events:
                if isinstance(event, Frame) and not self._frame(event):
                    break
        finally:
            self._flush_protocol()  # pongs, close frames: also when handling ended the session

    def _frame(self, frame: Frame) -> bool:
        """Take one data frame; False once the connection is failing."""
        if frame.opcode is Opcode.CONT:
            pass
        elif frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._parts, self._size = [], 0
            self._text = frame.opcode is Opcode.TEXT
            self._decoder = codecs.getincrementaldecoder("utf-8")() if self._text else None
        else:
            return True  # ping, pong, close: the library answers them
        if self._decoder is not None:
            try:
                self._decoder.decode(frame.data, final=frame.fin)
            except UnicodeDecodeError:
                self.ws.fail(CloseCode.INVALID_DATA, "text message is not UTF-8")
                return False
        self._size += len(frame.data)
        if self._size <= self.config.max_line:
            self._parts.append(bytes(frame.data))
        else:
            self._parts = []  # too long: keep nothing more of it
        if frame.fin:
            too_long = self._size > self.config.max_line
            line = TOO_LONG if too_long else b"".join(self._parts)
            self._parts, self._size, self._decoder = [], 0, None
            self.handle(self.protocol.parse_line(line))
        return True

    def _flush_protocol(self) -> None:
        pending = b"".join(self.ws.data_to_send())
        if pending:
            self.transport.send(pending)
        if self.ws.state is State.CLOSED or self.ws.close_expected():
            self._closing = True
            self.close(self.transport.close_reason or "disconnected")

    def goodbye(self) -> None:
        self._send_close(CloseCode.NORMAL_CLOSURE, "")

    def close(self, reason: str) -> None:
        if not self._closing and self.ws.state is State.OPEN:
            # Our own decision to close (a timeout, a refused hello): say it in WebSocket
            # terms, so the browser sees a reason rather than 1006.
            code = CloseCode.GOING_AWAY if reason in ("timeout", "shutdown") else 1008
            self._send_close(code, reason)
        super().close(reason)

    def _send_close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True  # nothing more after the close frame
        self.transport.send(close_frame(code, reason[:100]))


def accept_websocket(
    transport: Transport, ctx: ServerContext, raw_request: bytes
) -> WebSocketSession | None:
    """Complete the upgrade whose request is ``raw_request``; the session, or None if refused
    (the refusal has been sent). The caller checked ``Host`` and ``Origin``."""
    ws = ServerProtocol(max_size=HARD_FRAME_LIMIT)
    ws.receive_data(raw_request)
    found = _wait_request(transport, ws)
    if found is None:
        return None
    request, early = found
    response = ws.accept(request)
    ws.send_response(response)
    transport.send(b"".join(ws.data_to_send()))
    if response.status_code != 101:
        transport.drain()
        return None
    return WebSocketSession(transport, ctx, ws, early)


def _wait_request(transport: Transport, ws: ServerProtocol) -> tuple[Request, list[object]] | None:
    """The upgrade request and the frames that came right behind it, or None when the library
    refused it (its answer — 400, 414, 431 — has been sent)."""
    deadline = time.monotonic() + _HANDSHAKE_TIMEOUT
    while True:
        events = ws.events_received()
        for i, event in enumerate(events):
            if isinstance(event, Request):
                return event, list[object](events[i + 1 :])
        refusal = b"".join(ws.data_to_send())
        if refusal:
            transport.send(refusal)
            transport.drain()
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PeerGone
        data = transport.recv(remaining)
        if data:
            ws.receive_data(data)
