"""HTTP on the shared port (h11, sans-I/O): the web client's files and the ``/ws`` upgrade.

One request per connection. The web client (``desktop_chat/web``) is served from a fixed
allow-list of file names read as package resources, so no request path ever reaches the file
system; everything else is 404. Every answer carries a strict Content-Security-Policy: the page
runs only its own script and talks only to its own server.
"""

from __future__ import annotations

import html
import re
import time
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING

import h11

from desktop_chat import __version__
from desktop_chat.net.server.websocket import serve_websocket

if TYPE_CHECKING:
    from desktop_chat.net.server.connection import Connection

_REQUEST_TIMEOUT = 10.0

# URL path -> (file in desktop_chat/web, Content-Type). Nothing outside this table is served.
WEB_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/connection.js": ("connection.js", "text/javascript; charset=utf-8"),
    "/messages.js": ("messages.js", "text/javascript; charset=utf-8"),
    "/panels.js": ("panels.js", "text/javascript; charset=utf-8"),
    "/state.js": ("state.js", "text/javascript; charset=utf-8"),
    "/presence.js": ("presence.js", "text/javascript; charset=utf-8"),
    "/outbox.js": ("outbox.js", "text/javascript; charset=utf-8"),
    "/alerts.js": ("alerts.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/icon.svg": ("icon.svg", "image/svg+xml"),
    "/manifest.webmanifest": ("manifest.webmanifest", "application/manifest+json"),
    "/sw.js": ("sw.js", "text/javascript; charset=utf-8"),  # at the root: its scope is the page
    "/icon-192.png": ("icon-192.png", "image/png"),
    "/icon-512.png": ("icon-512.png", "image/png"),
}

CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PLACEHOLDER = re.compile(rb"\{\{(title|version|port)\}\}")
_SECURITY_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("Cache-Control", "no-cache"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
]


def web_file(path: str, title: str, port: int) -> tuple[bytes, str] | None:
    """The body and Content-Type for ``path``, or None when it is not one of ours.

    The page names the server in its title and, for browsers without JavaScript, says how else
    to connect; both are filled in here, escaped.
    """
    entry = WEB_FILES.get(path)
    if entry is None:
        return None
    name, ctype = entry
    body = resources.files("desktop_chat.web").joinpath(name).read_bytes()
    if name == "index.html":
        values = {
            b"title": html.escape(title).encode(),
            b"version": html.escape(__version__).encode(),
            b"port": str(port).encode(),
        }
        body = _PLACEHOLDER.sub(lambda m: values[m[1]], body)  # one pass: no re-expansion
    return body, ctype


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
            elif (found := web_file(target, conn.hub.title, conn.server.port)) is not None:
                body, ctype = found
                _respond(conn, h, 200, body, ctype, head=event.method == b"HEAD")
            else:
                _respond(conn, h, 404, b"Not found\n", "text/plain", head=event.method == b"HEAD")
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
        *_SECURITY_HEADERS,
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
