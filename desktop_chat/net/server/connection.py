"""One thread per connection: sniff what the peer speaks, then hand it to that way in.

The thread owns a :class:`~desktop_chat.net.server.transport.Transport`. It waits for the first
bytes (TLS first when they say so, then the same choice again on the decrypted stream), picks
the way in from :data:`WAYS_IN` by what :func:`~desktop_chat.net.server.sniff.classify` says,
runs it until the peer goes, and cleans up. A peer's bad input gets an ``error`` reply or
closes this connection only; a bug of ours is logged and closes this connection only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final, Protocol

from desktop_chat.net.protocol import events as p
from desktop_chat.net.server.context import ServerContext
from desktop_chat.net.server.http import HTTP2_REFUSAL, HttpExchange
from desktop_chat.net.server.irc_session import IrcSession
from desktop_chat.net.server.json_session import JsonSession
from desktop_chat.net.server.plain_session import PlainSession
from desktop_chat.net.server.sniff import Kind, classify
from desktop_chat.net.server.storage_api import StorageError
from desktop_chat.net.server.transport import PeerGone, Transport

log = logging.getLogger(__name__)

_TLS_ONLY = "this server accepts only encrypted (TLS) connections"


class WayIn(Protocol):
    """A protocol served on a connection: runs until the peer goes, then tells the hub."""

    def run(self, first: bytes) -> None: ...

    def finish(self) -> None: ...


class _Refusal:
    """A way in that answers once in the peer's own terms, then closes."""

    def __init__(self, transport: Transport, answer: bytes) -> None:
        self.transport = transport
        self.answer = answer

    def run(self, first: bytes) -> None:
        self.transport.send(self.answer)
        self.transport.drain()

    def finish(self) -> None:
        return None


def _http2(transport: Transport, ctx: ServerContext) -> WayIn:
    return _Refusal(transport, HTTP2_REFUSAL)


# The way in for each kind of first bytes. Adding a protocol adds a row (and a module).
WAYS_IN: Final[dict[Kind, Callable[[Transport, ServerContext], WayIn]]] = {
    Kind.JSON: JsonSession,
    Kind.HTTP: HttpExchange,
    Kind.HTTP2: _http2,
    Kind.IRC: IrcSession,
    Kind.PLAIN: PlainSession,
}


def _refusal_without_tls(kind: Kind, transport: Transport, ctx: ServerContext) -> WayIn:
    """``--tls required``: say so in the peer's own terms, never reading a name."""
    if kind is Kind.JSON:
        error = p.ErrorReply(code=p.TLS_REQUIRED, message=_TLS_ONLY)
        return _Refusal(transport, p.encode(error))
    if kind is Kind.HTTP:
        return HttpExchange(transport, ctx, refuse_status=426)
    if kind is Kind.HTTP2:
        return _Refusal(transport, HTTP2_REFUSAL)
    if kind is Kind.IRC:
        return _Refusal(transport, f"ERROR :Closing link: {_TLS_ONLY}\r\n".encode())
    return _Refusal(transport, f"! {_TLS_ONLY}: use the Desktop Chat app.\n".encode())


class Connection:
    """A client connection and its reading thread (:meth:`run`)."""

    def __init__(self, ctx: ServerContext, transport: Transport) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.transport = transport
        self.way_in: WayIn | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.transport.address

    def abort(self, reason: str) -> None:
        self.transport.abort(reason)

    def run(self) -> None:
        transport = self.transport
        try:
            first, kind = self._sniff(transport.accepted_at)
            if kind is Kind.TLS:
                if self.ctx.tls_context is None:
                    log.info("%s: TLS attempted but it is off on this server", transport.peer)
                    return
                deadline = transport.accepted_at + self.config.registration_timeout
                decrypted = transport.start_tls(self.ctx.tls_context, first, deadline)
                first, kind = self._sniff(time.monotonic(), decrypted)
                if kind is Kind.TLS:
                    return  # TLS inside TLS: nonsense
            if kind is Kind.UNDECIDED:
                return  # the start of a known protocol, never finished: closed at the deadline
            if self.config.tls == "required" and not transport.secure:
                self.way_in = _refusal_without_tls(kind, transport, self.ctx)
            else:
                self.way_in = WAYS_IN[kind](transport, self.ctx)
            self.way_in.run(first)
        except PeerGone:
            pass
        except StorageError as exc:  # the database is gone (PostgreSQL down): not a bug
            log.warning("%s: closed, the database failed: %s", transport.peer, exc)
            transport.close_reason = transport.close_reason or "disconnected"
        except Exception:  # a bug of ours: logged, and it closes this connection only
            log.exception("%s: connection failed on our side", transport.peer)
            transport.close_reason = transport.close_reason or "disconnected"
        finally:
            self._cleanup()

    def _sniff(self, since: float, data: bytes = b"") -> tuple[bytes, Kind]:
        """The first bytes and the way in they choose.

        Silence for ``sniff_timeout`` chooses plain text; bytes that still could begin a known
        protocol are waited for until the registration deadline, never turned into plain text.
        """
        sniff_deadline = since + self.config.sniff_timeout
        final_deadline = self.transport.accepted_at + self.config.registration_timeout
        while True:
            kind = classify(data)
            if kind is not Kind.UNDECIDED:
                return data, kind
            deadline = final_deadline if data else sniff_deadline
            remaining = deadline - time.monotonic()
            # Look even when the time is up: a thread that started late (a busy machine, a
            # crowd reconnecting) must still see a hello that waits in the socket.
            chunk = self.transport.recv(max(0.0, remaining))
            if chunk is not None:
                data += chunk
            elif remaining <= 0:
                return data, (Kind.UNDECIDED if data else Kind.PLAIN)

    def _cleanup(self) -> None:
        transport = self.transport
        try:
            if self.way_in is not None:
                self.way_in.finish()
            if transport.close_reason is None:
                # The peer ended its side (nc -N, a script's shutdown): it may still read the
                # answers to what it sent last.
                transport.drain(0.5)
        finally:
            transport.outbox.close()
            self.ctx.forget(self)  # before closing: whoever sees the close sees it counted
            transport.close()
