"""One thread per connection: sniff what the peer speaks, read it, keep it alive.

The socket is non-blocking: its thread waits for input with ``poll`` (bounded by the next
deadline: sniffing, registration, keepalive), and every write goes through the connection's
:class:`~desktop_chat.net.outbox.Outbox`, so no thread ever blocks on a peer that does not
read. A peer's bad input gets an ``error`` reply or closes this connection only; a bug of ours
is logged and closes this connection only.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from typing import TYPE_CHECKING

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.framing import TOO_LONG, LineBuffer
from desktop_chat.net.protocol.names import name_key as _key
from desktop_chat.net.server.http import serve_http
from desktop_chat.net.server.hub import Hub, LoginRefused, Outgoing
from desktop_chat.net.server.outbox import MARK, OVERFLOW, QUEUED, Outbox
from desktop_chat.net.server.plaintext import HELP, PROMPT, decode_line, parse_command, render
from desktop_chat.net.server.ratelimit import TokenBucket
from desktop_chat.net.server.tls import TlsChannel, TlsClosed
from desktop_chat.net.server.websocket import goodbye

if TYPE_CHECKING:
    from desktop_chat.net.server.server import Server, ServerConfig

log = logging.getLogger(__name__)

_HTTP_METHODS = (
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
)
_RECV_SIZE = 65_536


class PeerGone(Exception):
    """The peer closed or the connection was aborted."""


class Connection:
    """A client connection and its reading thread (``run``); a hub Member once logged in."""

    def __init__(self, server: Server, sock: socket.socket, address: tuple[str, int]) -> None:
        self.server = server
        self.config: ServerConfig = server.config
        self.hub: Hub = server.hub
        self.sock = sock
        self.address = address
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.tls: TlsChannel | None = None
        self.outbox = Outbox(
            self._transport_send,
            sock.fileno(),
            server.flusher,
            self.config.outbox_limit,
            backlog=self._transport_backlog,
        )
        self._poller = select.poll() if hasattr(select, "poll") else None
        if self._poller is not None:
            self._poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        self.close_reason: str | None = None
        self.mode = "sniffing"
        self.logged_in = False
        # Member fields (set by Hub.login)
        self.name = ""
        self.key = ""
        self.session = ""
        self.rooms: dict[str, str] = {}
        self.current_room = "general"  # plain-text mode: where typed lines go
        self.is_admin = False
        self.last_said: dict[str, float] = {}
        self.end_session = False
        self._pending_name: str | None = None  # plain-text mode: waiting for its password
        self.bucket = TokenBucket(self.config.rate_burst, self.config.rate_per_sec)
        self.accepted_at = time.monotonic()
        self.last_heard = self.accepted_at
        self._ping_sent_at: float | None = None
        self._ping_n = 0

    # -- Member interface -------------------------------------------------------------------

    def deliver(self, out: Outgoing, *, urgent: bool = True) -> int:
        mode = self.mode
        if mode == "plain":
            text = render(out.event, me=self.name, room=self.current_room)  # type: ignore[arg-type]
            if not text:
                return QUEUED
            return self.outbox.enqueue(text.encode("utf-8"), urgent=urgent)
        if mode == "ws":
            return self.outbox.enqueue(out.ws_frame, urgent=urgent)
        return self.outbox.enqueue(out.json, urgent=urgent)

    def abort(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def _transport_send(self, data: bytes) -> int:
        if self.tls is None:
            return self.sock.send(data)
        return self.tls.send(data)

    def _transport_backlog(self) -> bool:
        return self.tls is not None and self.tls.backlogged

    # -- the thread -------------------------------------------------------------------------

    def run(self) -> None:
        try:
            first = self._sniff(self.accepted_at)
            if first[:1] == b"\x16":
                if self.server.tls_context is None:
                    log.info("%s: TLS attempted but it is off on this server", self.peer)
                    return
                self._start_tls(first)
                first = self._sniff(time.monotonic(), self._decrypted_with_handshake())
                if first[:1] == b"\x16":
                    return  # TLS inside TLS: nonsense
            elif self.config.tls == "required":
                self._refuse_without_tls(first)
                return
            if first[:1] == b"{":
                self.mode = "json"
                self._run_json(first)
            elif any(first.startswith(m) for m in _HTTP_METHODS):
                self.mode = "http"
                serve_http(self, first)
            else:
                self.mode = "plain"
                self._run_plain(first)
        except PeerGone:
            pass
        except Exception:  # a bug of ours: logged, and it closes this connection only
            log.exception("%s: connection failed on our side", self.peer)
            self.close_reason = self.close_reason or "disconnected"
        finally:
            self._cleanup()

    def _start_tls(self, first: bytes) -> None:
        """Run the TLS handshake; it counts against the registration deadline."""
        assert self.server.tls_context is not None
        self.tls = TlsChannel(self.server.tls_context, self.sock)
        deadline = self.accepted_at + self.config.registration_timeout
        raw: bytes | None = first
        try:
            while not self.tls.handshake_step(raw or b""):
                self.outbox.kick()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.info("%s: TLS handshake not finished in time", self.peer)
                    raise PeerGone
                raw = self._recv_raw(remaining)
        except TlsClosed as exc:
            self.outbox.kick()
            log.info("%s: TLS handshake failed: %s", self.peer, exc)
            raise PeerGone from exc
        self.outbox.kick()

    def _refuse_without_tls(self, first: bytes) -> None:
        """``--tls required``: say so in the peer's own terms, never reading a name."""
        message = "this server accepts only encrypted (TLS) connections"
        if first[:1] == b"{":
            self.send_event(p.ErrorReply(code=p.TLS_REQUIRED, message=message))
        elif any(first.startswith(m) for m in _HTTP_METHODS):
            serve_http(self, first, refuse_status=426)
            return
        else:
            self._write_text(f"! {message}: use the Desktop Chat app.\n")
        self._drain_before_close()

    @property
    def peer(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def _decrypted_with_handshake(self) -> bytes:
        """What the client sent right behind its last handshake message: it came in the same
        read and waits decrypted in the TLS buffer, not on the socket."""
        assert self.tls is not None
        try:
            return self.tls.decrypt(b"")
        except TlsClosed as exc:
            raise PeerGone from exc

    def _sniff(self, since: float, data: bytes = b"") -> bytes:
        """The first bytes, once they tell the mode (or b"" after the sniff timeout)."""
        deadline = since + self.config.sniff_timeout
        while True:
            if data[:1] in (b"\x16", b"{") or b"\n" in data or len(data) >= 8:
                return data
            if data and not any(m.startswith(data[: len(m)]) for m in _HTTP_METHODS):
                return data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return data
            chunk = self._recv(remaining)
            if chunk is not None:
                data += chunk

    def _recv(self, timeout: float) -> bytes | None:
        """Bytes (decrypted under TLS), or None on timeout; raises PeerGone at end of stream."""
        data = self._recv_raw(timeout)
        if data is None or self.tls is None:
            return data
        try:
            plain = self.tls.decrypt(data)
        except TlsClosed as exc:
            raise PeerGone from exc
        if self.tls.backlogged:
            self.outbox.kick()
        return plain or None

    def _recv_raw(self, timeout: float) -> bytes | None:
        if self.close_reason is not None:
            raise PeerGone
        if not self._wait_readable(timeout):
            return None
        try:
            data = self.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            raise PeerGone from exc
        if not data:
            raise PeerGone
        self.last_heard = time.monotonic()
        self._ping_sent_at = None
        return data

    def _wait_readable(self, timeout: float) -> bool:
        timeout = max(0.0, timeout)
        if self._poller is not None:
            return bool(self._poller.poll(int(timeout * 1000) + 1))
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return bool(ready)

    def _next_timeout(self) -> float:
        """Seconds until the next deadline (registration or keepalive); acts on a passed one."""
        now = time.monotonic()
        if not self.logged_in:
            left = self.accepted_at + self.config.registration_timeout - now
            if left <= 0:
                self.send_event(
                    p.ErrorReply(code="timeout", message="no name given in time; goodbye")
                )
                self._drain_before_close()
                self.close_reason = "timeout"
                raise PeerGone
            return left
        if self.mode == "plain":
            return 3600.0  # TCP keepalive watches idle terminals; they cannot answer pings
        if self._ping_sent_at is not None:
            left = self._ping_sent_at + self.config.ping_timeout - now
            if left <= 0:
                self.close_reason = "timeout"
                raise PeerGone
            return left
        left = self.last_heard + self.config.ping_interval - now
        if left <= 0:
            self._ping_n += 1
            self._ping_sent_at = now
            self.send_event(p.ServerPing(n=self._ping_n))
            return self.config.ping_timeout
        return left

    def send_event(self, event: p.ServerEvent) -> None:
        """A reply to this connection alone, written by the flusher soon."""
        status = self.deliver(Outgoing(event))
        if status == MARK:
            self.server.flusher.mark(self.outbox)
        elif status == OVERFLOW:  # replies count against the limit too
            self.abort("slow")

    # -- native JSON Lines ------------------------------------------------------------------

    def _run_json(self, first: bytes) -> None:
        proto = p.JsonLinesProtocol("server", self.config.max_line)
        data: bytes | None = first
        while True:
            if data:
                for event in proto.receive_data(data):
                    self._handle_json(event)
            data = self._recv(self._next_timeout())

    def _handle_json(self, event: object) -> None:
        if self.close_reason is not None:
            return  # cut off (slow, replaced...): the rest of what it sent is not acted on
        if isinstance(event, p.ProtocolError):
            self.send_event(event.reply())
            return
        if not self.logged_in:
            if isinstance(event, p.Hello):
                self._login(event)
            else:
                ref = getattr(event, "ref", None)
                self.send_event(
                    p.ErrorReply(code=p.BAD_MESSAGE, message="say hello first", ref=ref)
                )
            return
        self._dispatch(event)

    def _login(self, hello: p.Hello) -> None:
        try:
            admin = self.server.authenticate(self, hello)
            self.hub.login(self, hello, admin=admin)
        except LoginRefused as exc:
            self.send_event(p.ErrorReply(code=exc.code, message=exc.message, ref=hello.ref))
            self.close_reason = "refused"
            self._drain_before_close()
            raise PeerGone from exc
        self.logged_in = True

    def _dispatch(self, event: object) -> None:
        hub = self.hub
        if isinstance(event, p.Ping):
            self.send_event(p.ServerPong(n=event.n, ref=event.ref))
            return
        if isinstance(event, p.Pong):
            return  # any input already counted as a sign of life
        if isinstance(event, p.Quit):
            self._quit()
            return
        if isinstance(event, p.Hello):
            self.send_event(
                p.ErrorReply(code=p.BAD_MESSAGE, message="already logged in", ref=event.ref)
            )
            return
        ref = getattr(event, "ref", None)
        if not self.bucket.take():
            self.send_event(
                p.ErrorReply(code=p.RATE_LIMITED, message="slow down: too many messages", ref=ref)
            )
            return
        if isinstance(event, p.Say):
            hub.say(self, event.room, event.text, event.ref, me=bool(event.me))
        elif isinstance(event, p.Dm):
            hub.dm(self, event.to, event.text, event.ref, me=bool(event.me))
        elif isinstance(event, p.Join):
            hub.join(self, event)
        elif isinstance(event, p.Part):
            hub.part(self, event.room, event.ref)
        elif isinstance(event, p.ListRooms):
            hub.list_rooms(self, event.ref)
        elif isinstance(event, p.GetHistory):
            hub.history(self, event)
        elif isinstance(event, p.Typing):
            hub.typing(self, room=event.room, to=event.to, ref=event.ref)
        else:
            self._dispatch_admin(event)

    def _dispatch_admin(self, event: object) -> None:
        hub = self.hub
        if isinstance(event, pa.Register):
            hub.register(self, event)
        elif isinstance(event, pa.SetPassword):
            hub.set_password(self, event)
        elif isinstance(event, pa.Kick):
            hub.kick(self, event)
        elif isinstance(event, pa.Unban):
            hub.unban(self, event)
        elif isinstance(event, pa.Ban):
            hub.ban(self, event)
        elif isinstance(event, pa.SetTopic):
            hub.set_topic(self, event)
        elif isinstance(event, pa.RoomSettings):
            hub.room_settings(self, event)
        elif isinstance(event, pa.Promote):
            hub.promote(self, event)

    def _quit(self) -> None:
        self.close_reason = "quit"
        self.hub.leave(self, "quit")
        if self.mode == "ws":
            goodbye(self)
        self._drain_before_close()
        raise PeerGone

    # -- plain text -------------------------------------------------------------------------

    def _run_plain(self, first: bytes) -> None:
        lines = LineBuffer(self.config.max_line)
        self._write_text(f"Welcome to {self.hub.title}!\n{PROMPT}")
        data: bytes | None = first
        while True:
            if data:
                for line in lines.feed(data):
                    if line is TOO_LONG:
                        self._write_text(
                            f"! line too long (over {self.config.max_line} bytes), ignored\n"
                        )
                    else:
                        assert isinstance(line, bytes)
                        self._handle_plain(decode_line(line))
            data = self._recv(self._next_timeout())

    def _write_text(self, text: str) -> None:
        if not self.outbox.send(text.encode("utf-8")) and self.outbox.overflowed:
            self.abort("slow")

    def _handle_plain(self, line: str) -> None:
        if self.close_reason is not None:
            return  # cut off: the rest of what it sent is not acted on
        if not self.logged_in:
            self._plain_login(line)
            return
        cmd = parse_command(line)
        if cmd is None:
            return
        if cmd.kind == "quit":
            self._quit()
        elif cmd.kind == "help":
            self._write_text(HELP + "\n")
        elif cmd.kind == "error":
            self._write_text(f"! {cmd.text}\n")
        elif cmd.kind == "who":
            self._show_who()
        elif not self.bucket.take():
            self._write_text("! slow down: too many messages\n")
        elif cmd.kind == "say":
            self.hub.say(self, self.current_room, cmd.text)
        elif cmd.kind == "me":
            self.hub.say(self, self.current_room, cmd.text, me=True)
        elif cmd.kind == "msg":
            self.hub.dm(self, cmd.arg, cmd.text)
        elif cmd.kind == "rooms":
            self.hub.list_rooms(self)
        elif cmd.kind in ("kick", "ban", "topic"):
            self._plain_admin(cmd.kind, cmd.arg, cmd.text)
        elif cmd.kind == "join":
            self.hub.join(self, p.Join(room=cmd.arg, password=cmd.text or None))
            joined = self.rooms.get(_key(cmd.arg))
            if joined is not None:
                self.current_room = joined
                self._write_text(f"* You are now talking in {joined}.\n")
        elif cmd.kind == "part":
            self._part(cmd.arg or self.current_room)

    def _plain_login(self, line: str) -> None:
        if self._pending_name is None:
            if not line.strip():
                self._write_text(PROMPT)
                return
            if self.server.needs_password(line):
                self._pending_name = line
                self._write_text("Password: ")
                return
            hello = p.Hello(name=line)
        else:
            hello = p.Hello(name=self._pending_name, password=line)
            self._pending_name = None
        try:
            admin = self.server.authenticate(self, hello)
            self.hub.login(self, hello, admin=admin)
        except LoginRefused as exc:
            if exc.code in (p.NAME_INVALID, p.NAME_TAKEN):
                self._write_text(f"! {exc.message}\n{PROMPT}")
                return
            self._write_text(f"! {exc.message}\n")
            self.close_reason = "refused"
            self._drain_before_close()
            raise PeerGone from exc
        self.logged_in = True

    def _plain_admin(self, kind: str, arg: str, text: str) -> None:
        if kind == "kick":
            self.hub.kick(self, pa.Kick(name=arg, reason=text or None))
        elif kind == "ban":
            self.hub.ban(self, pa.Ban(name=arg))
        elif kind == "topic":
            self.hub.set_topic(self, pa.SetTopic(room=self.current_room, topic=text))

    def _show_who(self) -> None:
        room = self.rooms.get(_key(self.current_room))
        if room is None:
            self._write_text("! you are not in any room; /join one\n")
            return
        names = self.hub.room_names(_key(room))
        self.send_event(p.Users(room=room, names=tuple(names)))

    def _part(self, room: str) -> None:
        self.hub.part(self, room)
        if _key(room) == _key(self.current_room) and _key(room) not in self.rooms:
            nxt = next(iter(self.rooms.values()), None)
            if nxt is not None:
                self.current_room = nxt
                self._write_text(f"* You are now talking in {nxt}.\n")
            else:
                self._write_text("* You are in no room now; /join one to talk.\n")

    # -- closing ----------------------------------------------------------------------------

    def _drain_before_close(self, timeout: float = 1.0) -> None:
        """Give the peer its last replies (an error, a goodbye) before we close."""
        self.outbox.kick()
        self.outbox.wait_drained(timeout)

    def _cleanup(self) -> None:
        if self.logged_in:
            reason = self.close_reason or "disconnected"
            if reason in ("refused", "replaced", "shutdown"):
                reason = "disconnected"
            if self.end_session and reason == "disconnected":
                reason = "kicked"  # removed by an admin, even if the client hung up first
            if self.close_reason != "replaced":
                self.hub.leave(self, reason)
        self.outbox.close()
        self.server.forget(self)  # before closing: whoever sees the close sees it counted
        try:
            self.sock.close()
        except OSError:
            pass
