"""HTTP on the shared port (h11, sans-I/O): for now a page that says what this port is.

The web client, the WebSocket endpoint ``/ws`` and file transfer will be served from here;
until then every request gets a clear answer and the connection is closed.
"""

from __future__ import annotations

import html
import time
from http import HTTPStatus
from typing import TYPE_CHECKING

import h11

from .. import __version__
from .websocket import serve_websocket

if TYPE_CHECKING:
    from .connection import Connection

_REQUEST_TIMEOUT = 10.0


def _page(title: str, port: int) -> bytes:
    safe = html.escape(title)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width'><title>{safe}</title></head>"
        f"<body><h1>{safe}</h1><p>This is a Desktop Chat server (version {__version__}). "
        "Open it in the Desktop Chat app, or from a terminal with "
        f"<code>nc &lt;this address&gt; {port}</code>.</p></body></html>"
    ).encode()


def serve_http(conn: Connection, first: bytes, *, refuse_status: int | None = None) -> None:
    """Answer one HTTP request on ``conn``, then return (the caller closes).

    ``refuse_status`` (426 when the server requires TLS) answers every request with that status.
    """
    h = h11.Connection(h11.SERVER, max_incomplete_event_size=16_384)
    h.receive_data(first)
    raw = bytearray(first)  # kept for the WebSocket handshake, which parses it itself
    deadline = time.monotonic() + _REQUEST_TIMEOUT
    while True:
        try:
            event = h.next_event()
        except h11.RemoteProtocolError:
            _respond(conn, h, 400, b"Bad request\n", "text/plain")
            return
        if event is h11.NEED_DATA:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            data = conn._recv(remaining)
            if data is not None:
                h.receive_data(data)
                if len(raw) < 65_536:
                    raw += data
            continue
        if isinstance(event, h11.Request):
            target = event.target.decode("ascii", "replace").split("?", 1)[0]
            if refuse_status is not None:
                _respond(
                    conn,
                    h,
                    refuse_status,
                    b"This server accepts only TLS (https).\n",
                    "text/plain; charset=utf-8",
                    extra=[("Upgrade", "TLS/1.2")],
                )
            elif target == "/ws" and _is_upgrade(event):
                serve_websocket(conn, bytes(raw))
            elif event.method not in (b"GET", b"HEAD"):
                _respond(conn, h, 405, b"Method not allowed\n", "text/plain")
            elif target in ("/", "/index.html"):
                body = _page(conn.hub.title, conn.server.port)
                _respond(
                    conn, h, 200, body, "text/html; charset=utf-8", head=event.method == b"HEAD"
                )
            else:
                _respond(conn, h, 404, b"Not found\n", "text/plain")
            return
        return


def _is_upgrade(request: h11.Request) -> bool:
    for name, value in request.headers:
        if name == b"upgrade" and value.lower() == b"websocket":
            return True
    return False


def _respond(
    conn: Connection,
    h: h11.Connection,
    status: int,
    body: bytes,
    ctype: str,
    *,
    head: bool = False,
    extra: list[tuple[str, str]] | None = None,
) -> None:
    headers = [
        *(extra or []),
        ("Content-Type", ctype),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    try:
        reason = HTTPStatus(status).phrase.encode()
        out = h.send(h11.Response(status_code=status, headers=headers, reason=reason))
        if not head:
            out += h.send(h11.Data(data=body))
        out += h.send(h11.EndOfMessage())
    except h11.LocalProtocolError:
        return
    conn.outbox.send(out)
    conn._drain_before_close()
