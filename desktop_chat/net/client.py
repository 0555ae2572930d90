"""The desktop app's connection to a chat server: :class:`ChatClient` and its network worker.

:class:`ChatClient` lives in the GUI thread. Its methods only put requests on a thread-safe
queue and wake the worker, so they return at once from any thread. The worker owns the socket
and a :class:`~desktop_chat.net.protocol.JsonLinesProtocol`, does the hello/welcome handshake,
answers the server's ``ping``, measures latency, reconnects with backoff and resumes the
session, and de-duplicates messages by id. Everything it learns reaches the GUI as Qt signals.

Threading pattern: the worker is a ``QThread`` subclass whose ``run()`` is a ``select()`` loop
over the socket and the read end of a socketpair. A ``QObject`` moved to a ``QThread`` would
need the thread's event loop to deliver queued slot calls, and a loop blocked in ``recv`` (or
busy reading a flood) never gets back to that event loop, so sends would starve. Here nothing
depends on the worker's event loop: callers append to a ``queue.Queue`` and write one byte to
the socketpair, which wakes ``select()`` at once. The worker emits one internal signal; since
the worker thread is not the receiver's thread, Qt queues it into the GUI thread, where
:class:`ChatClient` turns it into its typed signals (and drops it once closed).

TLS is not here yet: every socket call goes through :class:`_Transport`, the one place a TLS
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
from typing import Any, Literal

from PySide6.QtCore import QObject, QThread, Signal, Slot

from .. import __version__
from . import protocol as p
from .names import name_key

State = Literal["connecting", "connected", "reconnecting", "disconnected"]

CLIENT_ID = f"desktop-chat/{__version__}"
_RECV_SIZE = 65_536
_CLOSE_JOIN_MS = 1_000
_QUIT_FLUSH_S = 0.5


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
    """close() or quit() was asked for while connecting."""


class _Transport:
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


def _open(
    host: str, port: int, timeout: float, wake: socket.socket, stop: threading.Event
) -> _Transport:
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
                return _Transport(sock)
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
class _Quit:
    reason: str | None


class _Worker(QThread):
    """Runs the connection; see the module docstring for why it is a QThread subclass.

    Signals:
        happened(str kind, object payload): everything the GUI must hear, in order. Kinds are the
            names of :class:`ChatClient`'s signals; ``stateChanged`` and ``connectionFailed``
            carry a tuple of their two strings.
    """

    happened = Signal(str, object)

    def __init__(
        self,
        host: str,
        port: int,
        name: str,
        password: str | None,
        outgoing: queue.Queue[p.ClientEvent | _Quit],
        wake: socket.socket,
        timing: ClientTiming,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("ChatClientWorker")
        self._host, self._port, self._name, self._password = host, port, name, password
        self._outgoing = outgoing
        self._wake = wake
        self._timing = timing
        self.stop_event = threading.Event()
        self.quit_requested = threading.Event()
        self.retry_requested = threading.Event()
        self.thread_ident: int | None = None
        self._session: str | None = None
        self._last_id = 0
        self._last_in_conversation: dict[tuple[str, str], int] = {}

    # -- the loop over connections -----------------------------------------------------------

    def run(self) -> None:
        self.thread_ident = threading.get_ident()
        where = _describe(self._host, self._port)
        welcomed_once = False
        attempt = 0
        while True:
            if welcomed_once:
                self.notify("stateChanged", ("reconnecting", f"Reconnecting to {where}…"))
            else:
                self.notify("stateChanged", ("connecting", f"Connecting to {where}…"))
            self.retry_requested.clear()
            try:
                welcomed = self._connection()
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
            else:
                if welcomed:  # ended by quit() after a welcome
                    self.notify("stateChanged", ("disconnected", "You left the chat."))
                return

    def _back_off(self, attempt: int, why: str) -> bool:
        """Wait before the next attempt; False when close() or quit() came first."""
        t = self._timing
        delay = min(t.reconnect_max, t.reconnect_base * 2 ** min(attempt, 30))
        delay *= random.uniform(0.5, 1.0)  # jitter: a restarted server is not hit all at once
        detail = f"{why}. Reconnecting in {max(1, math.ceil(delay))} s…"
        self.notify("stateChanged", ("reconnecting", detail))
        deadline = time.monotonic() + delay
        while not (self.stop_event.is_set() or self.quit_requested.is_set()):
            left = deadline - time.monotonic()
            if left <= 0 or self.retry_requested.is_set():
                return True
            readable, _, _ = select.select([self._wake], [], [], left)
            if readable:
                _drain(self._wake)
        return False

    # -- one connection ----------------------------------------------------------------------

    def _connection(self) -> bool:
        """Connect, say hello, serve until the end; True if it ended by quit() after welcome.

        A lost or refused connection raises :class:`_Failure`; close() raises :class:`_Stop`.
        """
        if self.quit_requested.is_set() or self.stop_event.is_set():
            raise _Stop
        t = self._timing
        transport = _open(self._host, self._port, t.connect_timeout, self._wake, self.stop_event)
        try:
            return _Session(self, transport).serve()
        finally:
            transport.close()

    def hello(self) -> p.Hello:
        resume = None
        if self._session is not None:
            resume = p.Resume(session=self._session, since=self._last_id)
        return p.Hello(name=self._name, password=self._password, client=CLIENT_ID, resume=resume)

    def on_welcome(self, welcome: p.Welcome) -> None:
        if welcome.resumed is False and self._session is not None:
            # A fresh session after a reconnect: the server kept nothing for us, so the ids we
            # saw say nothing about what comes next.
            self._last_id = 0
            self._last_in_conversation.clear()
        self._session = welcome.session
        self._name = welcome.name
        title = f" to {welcome.server}" if welcome.server else ""
        self.notify("stateChanged", ("connected", f"Connected{title}"))
        self.notify("welcomed", welcome)

    def on_message(self, msg: p.ChatMessage) -> None:
        """Emit each id once, and never an older one after a newer in the same conversation."""
        if msg.room is not None:
            key = ("room", name_key(msg.room))
        else:
            peer = msg.to if name_key(msg.from_) == name_key(self._name) else msg.from_
            key = ("dm", name_key(peer or ""))
        if msg.id <= self._last_in_conversation.get(key, 0):
            return
        self._last_in_conversation[key] = msg.id
        self._last_id = max(self._last_id, msg.id)
        self.notify("messageReceived", msg)

    def notify(self, kind: str, payload: object) -> None:
        self.happened.emit(kind, payload)

    @property
    def outgoing(self) -> queue.Queue[p.ClientEvent | _Quit]:
        return self._outgoing

    @property
    def wake(self) -> socket.socket:
        return self._wake

    @property
    def timing(self) -> ClientTiming:
        return self._timing


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

    def __init__(self, worker: _Worker, transport: _Transport) -> None:
        self.w = worker
        self.t = transport
        self.proto = p.JsonLinesProtocol(role="client")
        self.out = bytearray(self.proto.send(worker.hello()))
        self.welcomed = False
        self.quit_sent = False
        now = time.monotonic()
        self.handshake_deadline = now + worker.timing.handshake_timeout
        self.last_rx = now
        self.next_ping = math.inf
        self.ping_n = 0
        self.pings: dict[int, float] = {}

    def lost(self, message: str) -> _Failure:
        return _Failure("unreachable", message, welcomed=self.welcomed)

    def serve(self) -> bool:
        w, timing = self.w, self.w.timing
        while True:
            if w.stop_event.is_set():
                self.stop()
            if self.welcomed and not self.quit_sent:
                self.take_requests()
            if self.quit_sent and not self.out:
                self.finish_quit()
                return True
            if not self.welcomed and w.quit_requested.is_set():
                raise _Stop
            now = time.monotonic()
            wait = min(self.next_ping, self.last_rx + timing.silence_timeout) - now
            if not self.welcomed:
                wait = min(wait, self.handshake_deadline - now)
            fd, wake_fd = self.t.fileno(), w.wake.fileno()
            readable, writable, _ = select.select(
                [fd, wake_fd], [fd] if self.out else [], [], max(0.0, wait)
            )
            if wake_fd in readable:
                _drain(w.wake)
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
        w = self.w
        if isinstance(event, p.ChatMessage):
            w.on_message(event)
        elif isinstance(event, p.ServerPing):
            self.out += self.proto.send(p.Pong(n=event.n))
        elif isinstance(event, p.ServerPong):
            self.on_pong(event)
        elif isinstance(event, p.Welcome):
            self.welcomed = True
            self.next_ping = time.monotonic() + w.timing.ping_interval
            w.on_welcome(event)
        elif isinstance(event, p.ErrorReply):
            if not self.welcomed:  # an error answering hello: the server closes
                raise _Failure(event.code, event.message, refused_by_server=True)
            w.notify("errorReceived", event)
        elif type(event) in _FORWARD:
            w.notify(_FORWARD[type(event)], event)
        # A ProtocolError (a line from the server we cannot parse) is skipped: the contract
        # lets servers add message types, and one bad line must not end the connection.

    def on_pong(self, pong: p.ServerPong) -> None:
        if not isinstance(pong.n, int) or pong.n not in self.pings:
            return  # not one of ours
        sent = self.pings.pop(pong.n)
        for n in [n for n in self.pings if n < pong.n]:  # lost answers: forget them
            del self.pings[n]
        self.w.notify("latencyChanged", (time.monotonic() - sent) * 1000.0)

    def timers(self) -> None:
        now = time.monotonic()
        if not self.welcomed and now >= self.handshake_deadline:
            raise _Failure("timeout", "The server did not answer our hello")
        if now >= self.last_rx + self.w.timing.silence_timeout:
            raise self.lost("The server stopped answering")
        if now >= self.next_ping:
            self.ping_n += 1
            self.pings[self.ping_n] = now
            self.out += self.proto.send(p.Ping(n=self.ping_n))
            self.next_ping = now + self.w.timing.ping_interval

    def take_requests(self) -> None:
        while True:
            try:
                request = self.w.outgoing.get_nowait()
            except queue.Empty:
                return
            if isinstance(request, _Quit):
                self.out += self.proto.send(p.Quit(reason=request.reason))
                self.quit_sent = True
                return
            self.out += self.proto.send(request)

    def stop(self) -> None:
        """close(): send nothing more, except a quit that was asked for and not yet sent."""
        if self.welcomed and self.w.quit_requested.is_set() and not self.quit_sent:
            self.out = bytearray(self.proto.send(p.Quit()))
            self.quit_sent = True
            self.flush(time.monotonic() + _QUIT_FLUSH_S)
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

    def finish_quit(self) -> None:
        """The quit is sent: half-close and read until the server closes (bounded)."""
        self.t.shutdown_write()
        deadline = time.monotonic() + _QUIT_FLUSH_S
        while not self.w.stop_event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            fd, wake_fd = self.t.fileno(), self.w.wake.fileno()
            readable, _, _ = select.select([fd, wake_fd], [], [], left)
            if wake_fd in readable:
                _drain(self.w.wake)
            if fd in readable:
                try:
                    data = self.t.recv()
                except OSError:
                    return
                if data == b"":
                    return


class ChatClient(QObject):
    """Lives in the GUI thread; owns a QThread running the network worker. All methods are
    thread-safe, return at once and never block the GUI (close() joins the worker, briefly).

    Signals (all delivered in the GUI thread, none after close()):
        stateChanged(str state, str detail): state in "connecting", "connected",
            "reconnecting", "disconnected"; detail for people ("Reconnecting in 3 s…").
        welcomed(object)            protocol.Welcome (also after each successful resume)
        messageReceived(object)     protocol.ChatMessage (live, resumed backlog: each exactly once)
        joined(object)              protocol.Joined
        left(object)                protocol.Left
        usersChanged(object)        protocol.Users
        typingReceived(object)      protocol.TypingNotice
        roomsListed(object)         protocol.RoomList
        historyReceived(object)     protocol.HistoryReply
        errorReceived(object)       protocol.ErrorReply (a server error reply to a request)
        connectionFailed(str code, str message)  the FIRST connection attempt failed for good
            (refused/unreachable/name_taken/name_invalid/auth_failed/...): no auto-retry;
            code is the server's error code or "unreachable"/"refused"/"timeout".
        latencyChanged(float)       round-trip ms measured with ping/pong

    Requests made before the welcome (or while reconnecting) wait in the queue and go out once
    the server has welcomed us.
    """

    stateChanged = Signal(str, str)
    welcomed = Signal(object)
    messageReceived = Signal(object)
    joined = Signal(object)
    left = Signal(object)
    usersChanged = Signal(object)
    typingReceived = Signal(object)
    roomsListed = Signal(object)
    historyReceived = Signal(object)
    errorReceived = Signal(object)
    connectionFailed = Signal(str, str)
    latencyChanged = Signal(float)

    def __init__(
        self, parent: QObject | None = None, *, timing: ClientTiming | None = None
    ) -> None:
        super().__init__(parent)
        self.timing = timing or ClientTiming()
        self.name: str | None = None
        self.session: str | None = None
        self.state: State = "disconnected"
        self.address: tuple[str, int] | None = None
        self._outgoing: queue.Queue[p.ClientEvent | _Quit] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._closed = False

    # -- requests ----------------------------------------------------------------------------

    def connect_to(self, host: str, port: int, name: str, password: str | None = None) -> None:
        """Start connecting; the outcome arrives as welcomed or connectionFailed."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this ChatClient is closed")
            if self._worker is not None and not self._worker.isFinished():
                raise RuntimeError("already connected or connecting")
            if self._worker is not None:
                self._worker.wait()
                self._worker.deleteLater()
            if self._wake_r is None:
                self._wake_r, self._wake_w = socket.socketpair()
                self._wake_r.setblocking(False)
                self._wake_w.setblocking(False)
            assert self._wake_r is not None
            self.address = (host, port)
            self._worker = _Worker(
                host, port, name, password, self._outgoing, self._wake_r, self.timing, self
            )
            self._worker.happened.connect(self._relay)
            self._worker.start()

    def say(self, room: str, text: str) -> None:
        self._submit(p.Say(room=room, text=text))

    def dm(self, to: str, text: str) -> None:
        self._submit(p.Dm(to=to, text=text))

    def join(self, room: str) -> None:
        self._submit(p.Join(room=room))

    def part(self, room: str) -> None:
        self._submit(p.Part(room=room))

    def list_rooms(self) -> None:
        self._submit(p.ListRooms())

    def request_history(
        self,
        *,
        room: str | None = None,
        with_: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> None:
        self._submit(p.GetHistory(room=room, with_=with_, before=before, limit=limit))

    def send_typing(self, *, room: str | None = None, to: str | None = None) -> None:
        self._submit(p.Typing(room=room, to=to))

    def quit(self, reason: str | None = None) -> None:
        """Say quit (when connected) and end the session; no reconnect afterwards."""
        with self._lock:
            worker = self._worker
            if worker is not None:
                worker.quit_requested.set()
        self._submit(_Quit(reason))

    def retry_now(self) -> None:
        """While waiting to reconnect, try again at once (a "Reconnect now" button)."""
        with self._lock:
            worker = self._worker
            if worker is not None:
                worker.retry_requested.set()
        self._wake()

    def close(self) -> None:
        """Stop the worker and join its thread (within about a second); idempotent.

        Sends nothing more, except a ``quit`` asked for by quit() and not yet sent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            worker = self._worker
        if worker is not None:
            worker.stop_event.set()
            self._wake()
            # getaddrinfo() cannot be interrupted; everything else ends within the limit.
            if QThread.currentThread() is not worker and not worker.wait(_CLOSE_JOIN_MS):
                worker.wait()
        with self._lock:
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._wake_r = self._wake_w = None
        self.state = "disconnected"

    def is_closed(self) -> bool:
        return self._closed

    def worker_thread(self) -> QThread | None:
        """The worker's QThread (for tests and diagnostics)."""
        return self._worker

    # -- internals ---------------------------------------------------------------------------

    def _submit(self, request: p.ClientEvent | _Quit) -> None:
        if self._closed:
            return
        self._outgoing.put(request)
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._wake_w is None:
                return
            try:
                self._wake_w.send(b"\0")
            except (BlockingIOError, InterruptedError):
                pass  # the pair is full of wake-ups already: the worker will look anyway

    @Slot(str, object)
    def _relay(self, kind: str, payload: object) -> None:
        if self._closed:
            return
        if kind == "welcomed":
            assert isinstance(payload, p.Welcome)
            self.name = payload.name
            self.session = payload.session
        if kind in ("stateChanged", "connectionFailed"):
            assert isinstance(payload, tuple)
            if kind == "stateChanged":
                self.state = payload[0]
            signal: Callable[..., None] = getattr(self, kind).emit
            signal(*payload)
            return
        getattr(self, kind).emit(payload)
