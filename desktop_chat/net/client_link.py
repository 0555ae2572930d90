"""The desktop client's connection logic, without Qt: socket, handshake, reconnect, resume.

:class:`ClientLink` runs on the client's worker thread (see ``client.py``) and reports
everything through one ``notify(kind, payload)`` callback. It connects, says ``hello``, waits
for ``welcome``, then serves one connection (:class:`_Session`) in a ``select()`` loop over the
socket and a wake-up socketpair: requests from other threads arrive on a ``queue.Queue`` and a
byte on the socketpair wakes the loop at once. After a drop it waits (exponential backoff with
jitter) and resumes the session with ``since`` = the highest message id seen; messages are
de-duplicated by id, so none is reported twice or out of order within a conversation.

TLS is not here yet: every socket call goes through :class:`Transport`, the one place a TLS
wrapper will go.
"""

from __future__ import annotations

import errno
import math
import os
import queue
import random
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import __version__
from . import protocol as p
from .names import name_key

CLIENT_ID = f"desktop-chat/{__version__}"
_RECV_SIZE = 65_536
_QUIT_FLUSH_S = 0.4  # flushing a quit, then waiting for the server to close

Notify = Callable[[str, object], None]


@dataclass(frozen=True, slots=True)
class ClientTiming:
    """Timeouts and intervals in seconds; tests shrink them to stay fast."""

    connect_timeout: float = 5.0
    handshake_timeout: float = 10.0
    reconnect_base: float = 0.5
    reconnect_max: float = 30.0
    ping_interval: float = 5.0
    # Nothing at all from the server for this long (our pings go unanswered): the link is dead.
    silence_timeout: float = 20.0


class _Failure(Exception):
    """Why a connection attempt or a connection ended.

    ``code`` is as in connectionFailed; ``refused_by_server`` marks an error the server sent
    in answer to hello (retrying will not help); ``welcomed`` says the connection got that far.
    """

    def __init__(
        self, code: str, message: str, *, refused_by_server: bool = False, welcomed: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.refused_by_server = refused_by_server
        self.welcomed = welcomed


class _Stop(Exception):
    """close() or quit() was asked for."""


class Transport:
    """A connected, non-blocking stream socket: the only code that reads or writes it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv(self) -> bytes | None:
        """Bytes read, ``b""`` at end of stream, None when nothing is there after all."""
        try:
            return self._sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return None

    def send(self, data: bytes | bytearray) -> int:
        try:
            return self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0

    def shutdown_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already reset by the peer: closing is all that is left to do

    def close(self) -> None:
        self._sock.close()


def _describe(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def open_transport(
    host: str, port: int, timeout: float, wake: socket.socket, stop: threading.Event
) -> Transport:
    """Connect without blocking close(): wait on the socket and the wake-up pair together."""
    where = _describe(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise _Failure("unreachable", f"Could not find {host}: {exc.strerror}") from exc
    failure = _Failure("unreachable", f"Nobody answered at {where}")
    deadline = time.monotonic() + timeout
    for family, kind, proto, _canon, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            while err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _Failure("timeout", f"Nobody answered at {where} (timed out)")
                readable, writable, _ = select.select([wake], [sock], [], left)
                if stop.is_set():
                    raise _Stop
                if writable:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                elif readable:
                    _drain(wake)
            if err == 0:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return Transport(sock)
            if err == errno.ECONNREFUSED:
                failure = _Failure("refused", f"Nobody answered at {where} (connection refused)")
            else:
                failure = _Failure("unreachable", f"Nobody answered at {where}: {_strerror(err)}")
        except BaseException:
            sock.close()
            raise
        sock.close()
    raise failure


def _strerror(err: int) -> str:
    try:
        return os.strerror(err)
    except ValueError:
        return f"error {err}"


def _drain(wake: socket.socket) -> None:
    try:
        while wake.recv(4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


@dataclass(frozen=True, slots=True)
class QuitRequest:
    """quit() was called: say ``quit`` with this reason, then stop."""

    reason: str | None = None


Request = p.ClientEvent | QuitRequest


class ClientLink:
    """The loop over connections that one ChatClient's worker thread runs.

    Thread-safety: ``stop``, ``quit_requested`` and ``retry_requested`` are Events other
    threads set (then write a byte to ``wake``); ``outgoing`` is a Queue; everything else is
    touched only by the thread in :meth:`run`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        name: str,
        password: str | None,
        *,
        owner: str | None = None,
        outgoing: queue.Queue[Request],
        wake: socket.socket,
        timing: ClientTiming,
        notify: Notify,
    ) -> None:
        self.host, self.port, self.name, self.password = host, port, name, password
        self.owner = owner
        self.outgoing = outgoing
        self.wake = wake
        self.timing = timing
        self.notify = notify
        self.stop = threading.Event()
        self.quit_requested = threading.Event()
        self.retry_requested = threading.Event()
        self.thread_ident: int | None = None
        self._session: str | None = None
        self._last_id = 0
        self._last_in_conversation: dict[tuple[str, str], int] = {}

    def run(self) -> None:
        """Connect and serve, reconnecting after drops, until the end; never raises a
        connection problem (it becomes stateChanged/connectionFailed)."""
        self.thread_ident = threading.get_ident()
        where = _describe(self.host, self.port)
        welcomed_once = False
        attempt = 0
        while True:
            if welcomed_once:
                self.notify("stateChanged", ("reconnecting", f"Reconnecting to {where}…"))
            else:
                self.notify("stateChanged", ("connecting", f"Connecting to {where}…"))
            self.retry_requested.clear()
            try:
                self._connection()
            except _Stop:
                if self.quit_requested.is_set():
                    self.notify("stateChanged", ("disconnected", "You left the chat."))
                return
            except _Failure as lost:
                if lost.refused_by_server or not (welcomed_once or lost.welcomed):
                    # The server refused our hello (name_taken, banned, ...), or the very first
                    # attempt failed: retrying on our own would not help the person.
                    self.notify("stateChanged", ("disconnected", lost.message))
                    if not welcomed_once:
                        self.notify("connectionFailed", (lost.code, lost.message))
                    return
                welcomed_once = True
                attempt = 0 if lost.welcomed else attempt + 1
                if not self._back_off(attempt, lost.message):
                    if self.quit_requested.is_set():
                        self.notify("stateChanged", ("disconnected", "You left the chat."))
                    return

    def _back_off(self, attempt: int, why: str) -> bool:
        """Wait before the next attempt; False when close() or quit() came first."""
        t = self.timing
        delay = min(t.reconnect_max, t.reconnect_base * 2 ** min(attempt, 30))
        delay *= random.uniform(0.5, 1.0)  # jitter: a restarted server is not hit all at once
        detail = f"{why}. Reconnecting in {max(1, math.ceil(delay))} s…"
        self.notify("stateChanged", ("reconnecting", detail))
        deadline = time.monotonic() + delay
        while not (self.stop.is_set() or self.quit_requested.is_set()):
            left = deadline - time.monotonic()
            if left <= 0 or self.retry_requested.is_set():
                return True
            readable, _, _ = select.select([self.wake], [], [], left)
            if readable:
                _drain(self.wake)
        return False

    def _connection(self) -> None:
        """Connect, say hello and serve until the connection ends.

        Raises :class:`_Failure` when it is lost or refused, :class:`_Stop` after close() or
        a completed quit.
        """
        if self.quit_requested.is_set() or self.stop.is_set():
            raise _Stop
        transport = open_transport(
            self.host, self.port, self.timing.connect_timeout, self.wake, self.stop
        )
        try:
            _Session(self, transport).serve()
        finally:
            transport.close()

    def hello(self) -> p.Hello:
        resume = None
        if self._session is not None:
            resume = p.Resume(session=self._session, since=self._last_id)
        return p.Hello(
            name=self.name,
            password=self.password,
            client=CLIENT_ID,
            resume=resume,
            owner=self.owner,
        )

    def on_welcome(self, welcome: p.Welcome) -> None:
        if welcome.resumed is False and self._session is not None:
            # A fresh session after a reconnect: the server kept nothing for us, so the ids we
            # saw say nothing about what comes next.
            self._last_id = 0
            self._last_in_conversation.clear()
        self._session = welcome.session
        self.name = welcome.name  # resume is honoured for the same name only: use its spelling
        title = f" to {welcome.server}" if welcome.server else ""
        self.notify("stateChanged", ("connected", f"Connected{title}"))
        self.notify("welcomed", welcome)

    def on_message(self, msg: p.ChatMessage) -> None:
        """Report each id once, and never an older one after a newer in one conversation."""
        if msg.room is not None:
            key = ("room", name_key(msg.room))
        else:
            peer = msg.to if name_key(msg.from_) == name_key(self.name) else msg.from_
            key = ("dm", name_key(peer or ""))
        if msg.id <= self._last_in_conversation.get(key, 0):
            return
        self._last_in_conversation[key] = msg.id
        self._last_id = max(self._last_id, msg.id)
        self.notify("messageReceived", msg)


_FORWARD: dict[type[p.ServerEvent], str] = {
    p.Joined: "joined",
    p.Left: "left",
    p.Users: "usersChanged",
    p.TypingNotice: "typingReceived",
    p.RoomList: "roomsListed",
    p.HistoryReply: "historyReceived",
}


class _Session:
    """One TCP connection's select loop: hello, welcome, traffic, pings."""

    def __init__(self, link: ClientLink, transport: Transport) -> None:
        self.link = link
        self.t = transport
        self.proto = p.JsonLinesProtocol(role="client")
        self.out = bytearray(self.proto.send(link.hello()))
        self.welcomed = False
        self.quit_sent = False
        now = time.monotonic()
        self.handshake_deadline = now + link.timing.handshake_timeout
        self.last_rx = now
        self.next_ping = math.inf
        self.ping_n = 0
        self.pings: dict[int, float] = {}

    def lost(self, message: str) -> _Failure:
        return _Failure("unreachable", message, welcomed=self.welcomed)

    def serve(self) -> None:
        link, timing = self.link, self.link.timing
        while True:
            if link.stop.is_set():
                self.stop()
            if self.welcomed and not self.quit_sent:
                self.take_requests()
            if self.quit_sent and not self.out:
                self.finish_quit(time.monotonic() + _QUIT_FLUSH_S)
                raise _Stop
            if not self.welcomed and link.quit_requested.is_set():
                raise _Stop
            now = time.monotonic()
            wait = min(self.next_ping, self.last_rx + timing.silence_timeout) - now
            if not self.welcomed:
                wait = min(wait, self.handshake_deadline - now)
            fd, wake_fd = self.t.fileno(), link.wake.fileno()
            readable, writable, _ = select.select(
                [fd, wake_fd], [fd] if self.out else [], [], max(0.0, wait)
            )
            if wake_fd in readable:
                _drain(link.wake)
            if fd in readable:
                self.read()
            if fd in writable and self.out:
                self.write()
            self.timers()

    def write(self) -> None:
        try:
            del self.out[: self.t.send(self.out)]
        except OSError as exc:
            raise self.lost(f"Connection lost ({exc.strerror or exc})") from None

    def read(self) -> None:
        try:
            data = self.t.recv()
        except OSError as exc:
            raise self.lost(f"Connection lost ({exc.strerror or exc})") from None
        if data is None:
            return
        if not data:
            self.proto.receive_eof()
            raise self.lost("The server closed the connection")
        self.last_rx = time.monotonic()
        for event in self.proto.receive_data(data):
            self.handle(event)

    def handle(self, event: Any) -> None:
        link = self.link
        if isinstance(event, p.ChatMessage):
            link.on_message(event)
        elif isinstance(event, p.ServerPing):
            self.out += self.proto.send(p.Pong(n=event.n))
        elif isinstance(event, p.ServerPong):
            self.on_pong(event)
        elif isinstance(event, p.Welcome):
            self.welcomed = True
            self.next_ping = time.monotonic() + link.timing.ping_interval
            link.on_welcome(event)
        elif isinstance(event, p.ErrorReply):
            if not self.welcomed:  # an error answering hello: the server closes
                raise _Failure(event.code, event.message, refused_by_server=True)
            link.notify("errorReceived", event)
        elif type(event) in _FORWARD:
            link.notify(_FORWARD[type(event)], event)
        # A ProtocolError (a line from the server we cannot parse) is skipped: the contract
        # lets servers add message types, and one bad line must not end the connection.

    def on_pong(self, pong: p.ServerPong) -> None:
        if not isinstance(pong.n, int) or pong.n not in self.pings:
            return  # not one of ours
        sent = self.pings.pop(pong.n)
        for n in [n for n in self.pings if n < pong.n]:  # lost answers: forget them
            del self.pings[n]
        self.link.notify("latencyChanged", (time.monotonic() - sent) * 1000.0)

    def timers(self) -> None:
        now = time.monotonic()
        if not self.welcomed and now >= self.handshake_deadline:
            raise _Failure("timeout", "The server did not answer our hello")
        if now >= self.last_rx + self.link.timing.silence_timeout:
            raise self.lost("The server stopped answering")
        if now >= self.next_ping:
            self.ping_n += 1
            self.pings[self.ping_n] = now
            self.out += self.proto.send(p.Ping(n=self.ping_n))
            self.next_ping = now + self.link.timing.ping_interval

    def take_requests(self) -> None:
        while True:
            try:
                request = self.link.outgoing.get_nowait()
            except queue.Empty:
                return
            if isinstance(request, QuitRequest):
                self.out += self.proto.send(p.Quit(reason=request.reason))
                self.quit_sent = True
                return
            self.out += self.proto.send(request)

    def stop(self) -> None:
        """close(): send nothing more, except a quit that was asked for and not yet sent."""
        if self.welcomed and self.link.quit_requested.is_set():
            if not self.quit_sent:
                self.out = bytearray(self.proto.send(p.Quit()))
                self.quit_sent = True
            deadline = time.monotonic() + _QUIT_FLUSH_S
            self.flush(deadline)
            self.finish_quit(deadline)
        raise _Stop

    def flush(self, deadline: float) -> None:
        while self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            _, writable, _ = select.select([], [self.t.fileno()], [], left)
            if writable:
                try:
                    del self.out[: self.t.send(self.out)]
                except OSError:
                    return

    def finish_quit(self, deadline: float) -> None:
        """The quit is sent: half-close, and read until the server closes (or the deadline),
        so closing our end never resets a connection whose quit is still on its way."""
        self.t.shutdown_write()
        fd = self.t.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                try:
                    data = self.t.recv()
                except OSError:
                    return
                if data == b"":
                    return
