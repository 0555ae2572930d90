"""A chat user on one connection, whatever it speaks: the hub's :class:`Member`.

:class:`Session` holds what every way in shares — the member state the hub reads and writes,
login, flood control, keepalive deadlines, quitting and the leave at the end — and leaves two
things to each protocol: :meth:`Session.receive` (bytes in → hub requests) and
:meth:`Session.encode` (hub events → bytes for this peer). The reading thread drives it with
:meth:`Session.run`; nothing here touches the socket except through the
:class:`~desktop_chat.net.server.transport.Transport`.
"""

from __future__ import annotations

import abc
import enum
import logging
import time
from typing import TYPE_CHECKING

from desktop_chat.net.protocol import events as p
from desktop_chat.net.server.fanout import Outgoing
from desktop_chat.net.server.guard import LoginRefused
from desktop_chat.net.server.outbox import MARK, OVERFLOW, QUEUED
from desktop_chat.net.server.ratelimit import TokenBucket
from desktop_chat.net.server.storage_api import StorageError
from desktop_chat.net.server.transport import PeerGone, Transport

if TYPE_CHECKING:
    from desktop_chat.net.server.context import ServerContext

log = logging.getLogger(__name__)

# Leave reasons that only say how the connection ended on our side: everyone else is told
# "disconnected" (or "kicked" when an admin removed the member).
_QUIET_REASONS = ("refused", "replaced", "shutdown")


class Mode(enum.Enum):
    """How a session's events are written to its peer."""

    JSON = "json"
    PLAIN = "plain"
    WEBSOCKET = "ws"


class Session(abc.ABC):
    """One user on one transport. Subclasses implement :meth:`receive` and :meth:`encode`."""

    mode: Mode = Mode.JSON
    answers_pings = True  # False for terminals: TCP keepalive watches them instead

    def __init__(self, transport: Transport, ctx: ServerContext) -> None:
        self.transport = transport
        self.ctx = ctx
        self.hub = ctx.hub
        self.config = ctx.config
        self.outbox = transport.outbox
        self.address = transport.address
        self.secure = transport.secure
        self.logged_in = False
        # Member state (set by Hub.login)
        self.name = ""
        self.key = ""
        self.session = ""
        self.rooms: dict[str, str] = {}
        self.is_admin = False
        self.is_owner = False
        self.last_said: dict[str, float] = {}
        self.end_session = False
        self.bucket = TokenBucket(self.config.rate_burst, self.config.rate_per_sec)
        self._ping_sent_at: float | None = None
        self._ping_heard = transport.last_heard
        self._ping_n = 0

    # -- the Member interface ---------------------------------------------------------------

    def encode(self, out: Outgoing) -> bytes | None:
        """The bytes that show ``out`` to this peer (None: nothing to show)."""
        return out.json

    def deliver(self, out: Outgoing, *, urgent: bool = True) -> int:
        data = self.encode(out)
        if not data:
            return QUEUED
        return self.outbox.enqueue(data, urgent=urgent)

    def send_event(self, event: p.ServerEvent) -> None:
        """A reply to this connection alone, written by the flusher soon."""
        status = self.deliver(Outgoing(event))
        if status == MARK:
            self.outbox.mark()
        elif status == OVERFLOW:  # replies count against the limit too
            self.abort("slow")

    def abort(self, reason: str) -> None:
        self.transport.abort(reason)

    # -- driving it -------------------------------------------------------------------------

    def run(self, first: bytes) -> None:
        """Serve the peer until it goes (raises :class:`PeerGone`)."""
        data: bytes | None = first
        while True:
            if data:
                self.receive(data)
            data = self.transport.recv(self.next_timeout())

    @property
    def cut_off(self) -> bool:
        """Closed from our side (slow, replaced, kicked…): what it sent after is not acted on."""
        return self.transport.close_reason is not None

    @abc.abstractmethod
    def receive(self, data: bytes) -> None:
        """What this peer's bytes mean: every way in defines it."""

    def next_timeout(self) -> float:
        """Seconds until the next deadline (registration or keepalive); acts on a passed one."""
        now = time.monotonic()
        transport = self.transport
        if not self.logged_in:
            left = transport.accepted_at + self.config.registration_timeout - now
            if left <= 0:
                self.send_event(
                    p.ErrorReply(code="timeout", message="no name given in time; goodbye")
                )
                self.close("timeout")
            return left
        if not self.answers_pings:
            return 3600.0
        if self._ping_sent_at is not None and transport.last_heard > self._ping_heard:
            self._ping_sent_at = None  # heard from since the ping: alive
        if self._ping_sent_at is not None:
            left = self._ping_sent_at + self.config.ping_timeout - now
            if left <= 0:
                transport.close_reason = transport.close_reason or "timeout"
                raise PeerGone
            return left
        left = transport.last_heard + self.config.ping_interval - now
        if left <= 0:
            self._ping_n += 1
            self._ping_sent_at = now
            self._ping_heard = transport.last_heard
            self.send_event(p.ServerPing(n=self._ping_n))
            return self.config.ping_timeout
        return left

    # -- shared steps -----------------------------------------------------------------------

    def login(self, hello: p.Hello) -> None:
        """Authenticate and join the hub (raises LoginRefused; nothing changed then)."""
        admin = self.ctx.authenticate(self, hello)
        self.hub.login(self, hello, admin=admin)
        self.logged_in = True

    def refuse(self, exc: LoginRefused, ref: p.Ref | None = None) -> None:
        """Answer a refused login and close (``tls_required`` keeps the connection open: it
        may still log in without a password)."""
        self.send_event(p.ErrorReply(code=exc.code, message=exc.message, ref=ref))
        if exc.code != p.TLS_REQUIRED:
            self.close("refused")

    def database_failed(self, exc: StorageError, ref: p.Ref | None = None) -> None:
        """A request the database could not serve (PostgreSQL down or restarting): answered
        ``storage_failed``, to be asked again. Only a login so answered closes (every error
        that answers ``hello`` does); a logged-in user stays connected."""
        log.warning("%s: the database failed: %s", self.transport.peer, exc)
        message = f"the server's database failed ({exc}); try again"
        self.send_event(p.ErrorReply(code=p.STORAGE_FAILED, message=message, ref=ref))
        if not self.logged_in:
            self.close("refused")

    def quit(self) -> None:
        self.transport.close_reason = "quit"
        self.hub.leave(self, "quit")
        self.goodbye()
        self.close("quit")

    def goodbye(self) -> None:  # noqa: B027 - most ways in have no farewell of their own
        """Protocol-level farewell before a close we decide (a WebSocket close frame)."""

    def close(self, reason: str) -> None:
        """Give the peer its last replies, then end this connection."""
        if self.transport.close_reason is None:
            self.transport.close_reason = reason
        self.transport.drain()
        raise PeerGone

    def finish(self) -> None:
        """The connection ended: tell the hub (once), with the reason others should see."""
        if not self.logged_in:
            return
        reason = self.transport.close_reason or "disconnected"
        if reason in _QUIET_REASONS:
            reason = "disconnected"
        if self.end_session and reason == "disconnected":
            reason = "kicked"  # removed by an admin, even if the client hung up first
        if self.transport.close_reason != "replaced":
            self.hub.leave(self, reason)
