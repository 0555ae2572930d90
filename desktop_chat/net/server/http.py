"""HTTP on the shared port (h11, sans-I/O): the web client's files and the ``/ws`` upgrade.

One request per connection. The web client (``desktop_chat/web``) is served from a fixed
allow-list of file names read as package resources, so no request path ever reaches the file
system; everything else is 404. Every answer carries a strict Content-Security-Policy: the page
runs only its own script and talks only to its own server.

``/ws`` answers only a ``Host`` that names this server (one of its addresses or names, with or
without the port) and, when the browser sends an ``Origin``, only this server's own origin: a
page elsewhere — including one on a DNS-rebinding name that resolves to this machine — gets 403.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from collections.abc import Iterator
from http import HTTPStatus
from importlib import resources
from urllib.parse import urlsplit

import h11

from desktop_chat import __version__
from desktop_chat.net.server.context import ServerContext
from desktop_chat.net.server.transport import PeerGone, Transport
from desktop_chat.net.server.tus import FilesEndpoint
from desktop_chat.net.server.websocket import WebSocketSession, accept_websocket

_REQUEST_TIMEOUT = 10.0
_BODY_IDLE = 30.0  # seconds a request body or a download may make no progress
_BODY_READ = 1 << 18  # bytes per read of a request body

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
    "/uploads.js": ("uploads.js", "text/javascript; charset=utf-8"),
    "/filecards.js": ("filecards.js", "text/javascript; charset=utf-8"),
    "/invite.js": ("invite.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/files.css": ("files.css", "text/css; charset=utf-8"),
    "/icon.svg": ("icon.svg", "image/svg+xml"),
    "/manifest.webmanifest": ("manifest.webmanifest", "application/manifest+json"),
    "/sw.js": ("sw.js", "text/javascript; charset=utf-8"),  # at the root: its scope is the page
    "/icon-192.png": ("icon-192.png", "image/png"),
    "/icon-512.png": ("icon-512.png", "image/png"),
}

# img-src blob: is for the thumbnails of shared images: the page fetches them with its session
# token and shows them from a blob: URL it made itself (nothing else may be an image source).
CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PLACEHOLDER = re.compile(rb"\{\{(title|version|port)\}\}")
_SECURITY_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("Cache-Control", "no-cache"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
]
# The HTTP/2 preface cannot be parsed as HTTP/1.1, so its answer is written out here.
_HTTP2_BODY = b"This server speaks HTTP/1.1 only.\n"
HTTP2_REFUSAL = (
    b"HTTP/1.1 505 HTTP Version Not Supported\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    + f"Content-Length: {len(_HTTP2_BODY)}\r\n".encode()
    + b"Connection: close\r\n\r\n"
    + _HTTP2_BODY
)


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


def health(ctx: ServerContext) -> tuple[int, bytes]:
    """``GET /health``: this process is up and serving, for a load balancer's checks; which
    process answered (``pid``, ``worker``: its number under ``--workers``, else null).
    503 with ``"status": "backplane_down"`` while a cluster process cannot reach Redis: it
    refuses logins then (``server_full``), so the balancer should send people elsewhere."""
    cluster = ctx.hub.cluster
    down = cluster is not None and not cluster.bp.up.is_set()
    body = {
        "status": "backplane_down" if down else "ok",
        "pid": os.getpid(),
        "worker": ctx.config.worker,
        "people": ctx.hub.people_count(),
    }
    return (503 if down else 200), json.dumps(body).encode() + b"\n"


def header(request: h11.Request, name: bytes) -> str | None:
    """The first value of header ``name`` (lowercase bytes), or None."""
    for key, value in request.headers:
        if key == name:
            return value.decode("latin-1")
    return None


def same_origin(request: h11.Request, ctx: ServerContext, local_host: str) -> bool:
    """Does the request name this server in ``Host`` and come from its own origin (if any)?"""
    host = header(request, b"host")
    if host is None or not ctx.is_own_host(host, local_host):
        return False
    origin = header(request, b"origin")
    if origin is None:
        return True  # not a browser page: nothing to check
    try:
        parts = urlsplit(origin)
    except ValueError:  # "http://[" and the like
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


class HttpExchange:
    """One HTTP request on a connection; a ``/ws`` upgrade continues as a WebSocket session."""

    def __init__(
        self, transport: Transport, ctx: ServerContext, *, refuse_status: int | None = None
    ) -> None:
        """``refuse_status`` (426 when the server requires TLS) answers every request with it."""
        self.transport = transport
        self.ctx = ctx
        self.refuse_status = refuse_status
        self.upgraded: WebSocketSession | None = None
        self._h = h11.Connection(h11.SERVER, max_incomplete_event_size=16_384)
        self._head = False  # answering a HEAD request: headers only, whatever the answer
        self._body_left: int | None = None  # body bytes still unread, once read past h11

    def run(self, first: bytes) -> None:
        h = self._h
        h.receive_data(first)
        raw = bytearray(first)  # kept for the WebSocket handshake, which parses it itself
        deadline = time.monotonic() + _REQUEST_TIMEOUT
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError:
                self.respond(400, b"Bad request\n", "text/plain")
                return
            if event is h11.NEED_DATA:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                data = self.transport.recv(remaining)
                if data is not None:
                    h.receive_data(data)
                    if len(raw) < 65_536:
                        raw += data
                continue
            if isinstance(event, h11.Request):
                self._route(event, bytes(raw))
            return

    def _route(self, request: h11.Request, raw: bytes) -> None:
        target = request.target.decode("ascii", "replace").split("?", 1)[0]
        head = self._head = request.method == b"HEAD"
        if self.refuse_status is not None:
            self.respond(
                self.refuse_status,
                b"This server accepts only TLS (https).\n",
                "text/plain; charset=utf-8",
                extra=[("Upgrade", "TLS/1.2")],
            )
        elif target == "/ws":
            self._websocket(request, raw)
        elif target == "/files" or target.startswith("/files/"):
            if not same_origin(request, self.ctx, self.transport.local_host):
                self.respond(403, b"Forbidden: not this server's own page\n", "text/plain")
                return
            FilesEndpoint(self, request, target).handle()
        elif request.method not in (b"GET", b"HEAD"):
            self.respond(405, b"Method not allowed\n", "text/plain")
        elif target == "/health":
            status, body = health(self.ctx)
            self.respond(status, body, "application/json", head=head)
        elif (found := web_file(target, self.ctx.hub.title, self.ctx.port)) is not None:
            body, ctype = found
            self.respond(200, body, ctype, head=head)
        else:
            self.respond(404, b"Not found\n", "text/plain", head=head)

    def _websocket(self, request: h11.Request, raw: bytes) -> None:
        if not same_origin(request, self.ctx, self.transport.local_host):
            self.respond(403, b"Forbidden: not this server's own page\n", "text/plain")
            return
        session = accept_websocket(self.transport, self.ctx, raw)
        if session is not None:
            self.upgraded = session
            session.run(b"")

    def finish(self) -> None:
        if self.upgraded is not None:
            self.upgraded.finish()

    def respond(
        self,
        status: int,
        body: bytes,
        ctype: str,
        *,
        head: bool = False,
        extra: list[tuple[str, str]] | None = None,
        security: list[tuple[str, str]] = _SECURITY_HEADERS,
        length: int | None = None,
    ) -> None:
        """Answer the request with ``body`` and close. For HEAD only the headers are sent,
        with ``length`` (default: the body's) as Content-Length."""
        size = len(body) if length is None else length
        out = self._head_bytes(status, ctype, size, extra, security)
        if out is None:
            return
        try:
            if not (head or self._head):
                out += self._h.send(h11.Data(data=body))
            out += self._h.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return
        self.transport.send(out)
        self.transport.drain()

    def respond_file(
        self,
        status: int,
        ctype: str,
        fd: int,
        offset: int,
        length: int,
        *,
        extra: list[tuple[str, str]],
        security: list[tuple[str, str]],
    ) -> None:
        """Answer with ``length`` bytes of the open file ``fd`` from ``offset``, written
        straight to the socket (see :meth:`Transport.send_file`)."""
        out = self._head_bytes(status, ctype, length, extra, security)
        if out is not None:
            self.transport.send_file(out, fd, offset, length, _BODY_IDLE)

    def request_complete(self) -> bool:
        """Has the whole request (its body too) arrived? What is already here is consumed."""
        if self._body_left is not None:
            return self._body_left == 0
        h = self._h
        try:
            while h.their_state is h11.SEND_BODY:
                event = h.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    break
        except h11.RemoteProtocolError:
            return False
        return h.their_state is h11.DONE

    def body(self, request: h11.Request) -> Iterator[bytes]:
        """The body of ``request`` as it arrives, never held whole. Raises PeerGone when the
        peer breaks HTTP or sends nothing for a while (what arrived before stays with the
        caller)."""
        h = self._h
        if h.they_are_waiting_for_100_continue:  # curl asks before sending a large body
            go_on = h11.InformationalResponse(status_code=100, headers=[])
            self.transport.send(h.send(go_on) or b"")
        declared = header(request, b"content-length")
        known = declared is not None and header(request, b"transfer-encoding") is None
        seen = 0
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise PeerGone from exc
            if event is h11.NEED_DATA:
                if known and declared is not None:
                    # h11's buffer is empty: the rest of a body of known length is read
                    # straight from the transport, about twice as fast for a big upload as
                    # copying it through h11's buffer (h11 validated the number).
                    yield from self._raw_body(int(declared) - seen)
                    return
                h.receive_data(self._body_bytes(_BODY_READ))
                continue
            if isinstance(event, h11.Data):
                seen += len(event.data)
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise PeerGone  # the stream ended, or something that is no body

    def _body_bytes(self, size: int) -> bytes:
        """The next body bytes; PeerGone after ``_BODY_IDLE`` seconds of nothing. (A read can
        also give nothing at once: a TLS record not complete yet. That is no reason to stop.)"""
        deadline = time.monotonic() + _BODY_IDLE
        while True:
            data = self.transport.recv(max(0.0, deadline - time.monotonic()), size)
            if data is not None:
                return data
            if time.monotonic() >= deadline:
                raise PeerGone

    def _raw_body(self, left: int) -> Iterator[bytes]:
        """``left`` more body bytes from the transport; h11 is then only used to answer."""
        self._body_left = left
        while left > 0:
            # Anything after the body is not ours to read (we close).
            data = self._body_bytes(min(left, _BODY_READ))[:left]
            left -= len(data)
            self._body_left = left
            yield data

    def _head_bytes(
        self,
        status: int,
        ctype: str,
        length: int,
        extra: list[tuple[str, str]] | None,
        security: list[tuple[str, str]],
    ) -> bytes | None:
        headers = [
            *(extra or []),
            *security,
            ("Content-Type", ctype),
            ("Content-Length", str(length)),
            ("Connection", "close"),
            ("X-Content-Type-Options", "nosniff"),
        ]
        try:
            reason = HTTPStatus(status).phrase.encode()
            return self._h.send(h11.Response(status_code=status, headers=headers, reason=reason))
        except h11.LocalProtocolError:
            return None
