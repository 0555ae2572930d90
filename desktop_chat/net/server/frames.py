"""WebSocket frames the server sends (unmasked, uncompressed), built with ``websockets``.

Separate from ``websocket.py`` so that the hub can build a broadcast's frame once without
depending on the WebSocket session.
"""

from __future__ import annotations

from websockets.frames import Close, CloseCode, Frame, Opcode


def text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed text frame: what a server sends."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


def close_frame(code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> bytes:
    return Frame(Opcode.CLOSE, Close(code, reason).serialize()).serialize(mask=False)
