"""The desktop app's connection to a chat server, for the GUI: :class:`ChatClient`.

:class:`ChatClient` lives in the GUI thread. Its methods only put requests on a thread-safe
queue and wake the worker, so they return at once from any thread. The worker thread runs a
:class:`~desktop_chat.net.client_link.ClientLink` (Qt-free: socket, hello/welcome, pings,
reconnect with backoff, resume, de-duplication by id), and everything it learns reaches the
GUI as Qt signals.

Threading pattern: the worker is a ``QThread`` subclass whose ``run()`` is a ``select()`` loop
over the socket and the read end of a socketpair. A ``QObject`` moved to a ``QThread`` would
need the thread's event loop to deliver queued slot calls, and a loop blocked in ``recv`` (or
busy reading a flood) never gets back to that event loop, so sends would starve. Here nothing
depends on the worker's event loop: callers append to a ``queue.Queue`` and write one byte to
the socketpair, which wakes ``select()`` at once. The worker emits one internal signal; since
the worker thread is not the receiver's thread, Qt queues it into the GUI thread, where
:class:`ChatClient` turns it into its typed signals (and drops it once closed).
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
from typing import Literal

from PySide6.QtCore import QObject, QThread, Signal, Slot

from . import protocol as p
from .client_link import CLIENT_ID, ClientLink, ClientTiming, QuitRequest, Request

__all__ = ["CLIENT_ID", "ChatClient", "ClientTiming", "State"]

State = Literal["connecting", "connected", "reconnecting", "disconnected"]

_CLOSE_JOIN_MS = 1_000


class _Worker(QThread):
    """Runs a :class:`ClientLink`; see the module docstring for why it is a QThread subclass.

    Signals:
        happened(str kind, object payload): everything the GUI must hear, in order. Kinds are
            the names of :class:`ChatClient`'s signals; ``stateChanged`` and
            ``connectionFailed`` carry a tuple of their two strings.
    """

    happened = Signal(str, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ChatClientWorker")
        self.link: ClientLink | None = None

    @property
    def thread_ident(self) -> int | None:
        return self.link.thread_ident if self.link is not None else None

    def run(self) -> None:
        assert self.link is not None
        self.link.run()

    def notify(self, kind: str, payload: object) -> None:
        self.happened.emit(kind, payload)


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
        self.name: str | None = None  # own name (the server's spelling) once welcomed
        self.session: str | None = None
        self.welcome: p.Welcome | None = None  # the latest welcome
        self.state: State = "disconnected"
        self.address: tuple[str, int] | None = None
        self._outgoing: queue.Queue[Request] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._closed = False

    # -- requests ----------------------------------------------------------------------------

    def connect_to(
        self,
        host: str,
        port: int,
        name: str,
        password: str | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        """Start connecting; the outcome arrives as welcomed or connectionFailed.

        ``owner`` is the hosting app's token (``Server.owner_token``): host rights on it.
        """
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
            worker = _Worker(self)
            worker.link = ClientLink(
                host,
                port,
                name,
                password,
                owner=owner,
                outgoing=self._outgoing,
                wake=self._wake_r,
                timing=self.timing,
                notify=worker.notify,
            )
            worker.happened.connect(self._relay)
            self._worker = worker
            worker.start()

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
            if worker is not None and worker.link is not None:
                worker.link.quit_requested.set()
        self._submit(QuitRequest(reason))

    def retry_now(self) -> None:
        """While waiting to reconnect, try again at once (a "Reconnect now" button)."""
        with self._lock:
            worker = self._worker
            if worker is not None and worker.link is not None:
                worker.link.retry_requested.set()
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
            if worker.link is not None:
                worker.link.stop.set()
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

    def _submit(self, request: Request) -> None:
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
        if self._closed or self.sender() is not self._worker:
            return  # closed, or a late word from a worker replaced by a new connect_to()
        if kind == "welcomed":
            assert isinstance(payload, p.Welcome)
            self.welcome = payload
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
