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
the socketpair, which wakes ``select()`` at once.

Crossing into the GUI thread in batches: the worker appends what it learns to an outbox and
emits its one internal signal only when the outbox goes from empty to non-empty; since the
worker thread is not the receiver's thread, Qt queues that call into the GUI thread, where
:class:`ChatClient` takes the whole outbox at once and emits its typed signals for each item
and ``eventsReceived`` with lists of the protocol events (and drops it all once closed).
A flood of 1,000 messages thus costs the GUI thread a handful of queued calls, one per event
loop turn at most, instead of 1,000 (each queued call is a trip through the event loop, and
they all run back to back in one pass of it).
"""

from __future__ import annotations

import queue
import secrets
import socket
import threading
from collections.abc import Callable
from typing import Literal

from PySide6.QtCore import QObject, Qt, QThread, Signal, SignalInstance, Slot

from desktop_chat.net.client.link import (
    CLIENT_ID,
    ClientLink,
    ClientTiming,
    Notice,
    QuitRequest,
    Request,
)
from desktop_chat.net.client.pins import MemoryPins, PinStore
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.tls import normalize_fingerprint

__all__ = ["CLIENT_ID", "ChatClient", "ClientTiming", "State"]

State = Literal["connecting", "connected", "reconnecting", "disconnected"]

_CLOSE_JOIN_MS = 1_000


def new_ref() -> str:
    """A ref no other message of this session uses, even across runs of the app."""
    return secrets.token_hex(8)


class _Worker(QThread):
    """Runs a :class:`ClientLink`; see the module docstring for why it is a QThread subclass.

    Signals:
        happened(): the outbox was empty and is not any more; :meth:`take` empties it. What
            it holds is everything the GUI must hear, in order, as ``(kind, payload)`` pairs:
            kinds are the names of :class:`ChatClient`'s signals; ``stateChanged`` and
            ``connectionFailed`` carry a tuple of their two strings.
    """

    happened = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ChatClientWorker")
        self.link: ClientLink | None = None
        self._outbox: list[tuple[Notice, object]] = []
        self._outbox_lock = threading.Lock()

    @property
    def thread_ident(self) -> int | None:
        return self.link.thread_ident if self.link is not None else None

    def run(self) -> None:
        assert self.link is not None
        self.link.run()

    def notify(self, kind: Notice, payload: object) -> None:
        with self._outbox_lock:
            self._outbox.append((kind, payload))
            first = len(self._outbox) == 1
        if first:  # otherwise a queued call is on its way and will take this item too
            self.happened.emit()

    def take(self) -> list[tuple[Notice, object]]:
        """Everything notified since the last take, oldest first (any thread)."""
        with self._outbox_lock:
            items, self._outbox = self._outbox, []
        return items


# Notices whose payload is a tuple of the signal's arguments.
_SPREAD = frozenset({Notice.STATE_CHANGED, Notice.CONNECTION_FAILED, Notice.RECONNECT_IN})


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
            code is the server's error code or "unreachable"/"refused"/"timeout",
            "unknown_host" (the name does not resolve), "not_a_chat" (something else answers
            on that port, a web server...), "no_tls" (the server offers no encryption: never
            a plain-text fallback),
            "certificate_mismatch" (not the fingerprint given), "certificate_rejected" or
            "certificate_changed" (the person did not trust it). After a welcome, a change of
            certificate or a kick ends the connection with stateChanged "disconnected" instead.
        latencyChanged(float)       round-trip ms measured with ping/pong
        topicChanged(object)        protocol.admin.TopicChanged
        noticeReceived(object)      protocol.admin.Notice
        requestDone(object)         protocol.admin.Ok (a moderation or account request worked)
        certificateUnknown(str host, int port, str fingerprint): first connection to this
            address: show the fingerprint and answer with accept_certificate() or
            reject_certificate(); the client waits, not connected, until then.
        certificateChanged(str host, int port, str pinned, str presented): the address no
            longer has the certificate trusted before. Nothing is connected; the default
            answer is reject_certificate() (connectionFailed "certificate_changed" on a first
            attempt); accept_certificate(presented) trusts the new one and connects.
        sendSettled(object ref)     the say/dm with this ref (say() and dm() return it) was
            echoed by the server: it is delivered (its message came in messageReceived,
            or earlier in a resumed backlog). An ``error`` with the ref settles it too (it
            comes in errorReceived). Until then the worker resends it after each reconnect.
        reconnectIn(str why, float seconds): waiting this long before the next attempt
            (after stateChanged "reconnecting"), for a countdown; retry_now() cuts it short.
        hostClosing(str reason)     the server said it is shutting down (the host stopped
            the chat); the client keeps trying to reconnect, the countdown says so.
        eventsReceived(object)      a list of the protocol events above (every
            protocol.ServerEvent: Welcome, ChatMessage, Users...), in the order the server
            sent them, for consumers that handle many events (the chat session) with one
            signal per batch instead of one per event. A run of messages comes as one list;
            any other event ends its list, which is emitted just before that event's own
            typed signal (so a listener of the typed signal finds everything up to it
            delivered); messageReceived is emitted for each message as it is met, before
            the list that holds it.

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
    topicChanged = Signal(object)
    noticeReceived = Signal(object)
    requestDone = Signal(object)
    certificateUnknown = Signal(str, int, str)
    certificateChanged = Signal(str, int, str, str)
    eventsReceived = Signal(object)
    sendSettled = Signal(object)
    hostClosing = Signal(str)
    reconnectIn = Signal(str, float)
    # From the worker thread, queued into ours: (link, kind, details); see ClientLink.
    _certificateEvent = Signal(object, str, object)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        timing: ClientTiming | None = None,
        pins: PinStore | None = None,
    ) -> None:
        super().__init__(parent)
        self._signal_for = self.notice_signals()
        self.timing = timing or ClientTiming()
        self.pins: PinStore = pins if pins is not None else MemoryPins()
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
        self._certificateEvent.connect(
            self._on_certificate_event, Qt.ConnectionType.QueuedConnection
        )

    # -- requests ----------------------------------------------------------------------------

    def connect_to(
        self,
        host: str,
        port: int,
        name: str,
        password: str | None = None,
        *,
        owner: str | None = None,
        fingerprint: str | None = None,
        resume: tuple[str, int] | None = None,
    ) -> None:
        """Start connecting; the outcome arrives as welcomed or connectionFailed.

        ``owner`` is the hosting app's token (``Server.owner_token``): host rights on it.
        ``fingerprint`` (any form normalize_fingerprint() reads; ValueError if none) is the
        certificate the server must have: given, it is checked and then pinned; else the
        pinned one is checked; else certificateUnknown asks. ``resume`` is ``(session,
        since)`` kept from an earlier run: the first hello resumes that session.
        """
        given = normalize_fingerprint(fingerprint) if fingerprint is not None else None
        expected = given if given is not None else self.pins.pinned_fingerprint(host, port)
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
                fingerprint=expected,
                fingerprint_given=given is not None,
                outgoing=self._outgoing,
                wake=self._wake_r,
                timing=self.timing,
                notify=worker.notify,
                certificates=self._certificates_from(worker),
            )
            if resume is not None:
                worker.link.resume_from(*resume)
            worker.happened.connect(self._take_events)
            self._worker = worker
            worker.start()

    def say(self, room: str, text: str) -> str:
        """Send ``text`` to ``room``; return its ref (see sendSettled)."""
        ref = new_ref()
        self._submit(p.Say(room=room, text=text, ref=ref))
        return ref

    def dm(self, to: str, text: str) -> str:
        """Send ``text`` to ``to``; return its ref (see sendSettled)."""
        ref = new_ref()
        self._submit(p.Dm(to=to, text=text, ref=ref))
        return ref

    def join(self, room: str, password: str | None = None) -> None:
        self._submit(p.Join(room=room, password=password))

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

    def send_request(self, request: p.ClientEvent) -> None:
        """Send any client event (the account and moderation ones in protocol.admin)."""
        self._submit(request)

    def use_password(self, password: str | None) -> None:
        """The password for the next hellos (a reconnect) after registering the name."""
        with self._lock:
            worker = self._worker
            if worker is not None and worker.link is not None:
                worker.link.password = password

    @property
    def has_password(self) -> bool:
        """This connection logs in with a password (an account's, or the chat's own)."""
        worker = self._worker
        return worker is not None and worker.link is not None and bool(worker.link.password)

    @property
    def last_id(self) -> int:
        """The highest message id seen (``since`` for a later resume)."""
        worker = self._worker
        return worker.link.last_id if worker is not None and worker.link else 0

    @property
    def fingerprint(self) -> str | None:
        """The certificate fingerprint this connection trusts (lowercase hex), once known."""
        worker = self._worker
        return worker.link.fingerprint if worker is not None and worker.link else None

    def accept_certificate(self, fingerprint: str) -> None:
        """Trust ``fingerprint`` (the one certificateUnknown/Changed showed): pin it for this
        address and connect."""
        fingerprint = normalize_fingerprint(fingerprint)
        with self._lock:
            worker, address = self._worker, self.address
        if worker is None or worker.link is None or address is None or self._closed:
            return
        self.pins.pin_fingerprint(address[0], address[1], fingerprint)
        worker.link.answer_certificate(fingerprint)
        self._wake()

    def reject_certificate(self) -> None:
        """Do not trust the certificate asked about: the connection attempt ends."""
        with self._lock:
            worker = self._worker
        if worker is not None and worker.link is not None:
            worker.link.answer_certificate(None)
            self._wake()

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

    def _certificates_from(self, worker: _Worker) -> Callable[[str, object], None]:
        def tell(kind: str, details: object) -> None:
            self._certificateEvent.emit(worker, kind, details)

        return tell

    @Slot(object, str, object)
    def _on_certificate_event(self, worker: object, kind: str, details: object) -> None:
        if self._closed or worker is not self._worker:
            return  # closed, or a late word from a worker replaced by a new connect_to()
        assert isinstance(details, tuple)
        if kind == "pinned":
            host, port, fingerprint = details
            self.pins.pin_fingerprint(host, port, fingerprint)
        elif kind == "unknown":
            self.certificateUnknown.emit(*details)
        elif kind == "changed":
            self.certificateChanged.emit(*details)

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

    @Slot()
    def _take_events(self) -> None:
        worker = self.sender()
        if not isinstance(worker, _Worker):
            return
        events: list[p.ServerEvent] = []
        for kind, payload in worker.take():
            if self._closed or worker is not self._worker:
                return  # closed, or a late word from a worker replaced by a new connect_to()
            if isinstance(payload, p.ServerEvent):
                events.append(payload)
                if not isinstance(payload, p.ChatMessage):
                    # Whoever handles this event's own signal (a topic line, a header) finds
                    # it and everything before it already with eventsReceived listeners.
                    self.eventsReceived.emit(events)
                    events = []
                    if self._closed or worker is not self._worker:
                        return
            self._relay(kind, payload)
        if events:
            self.eventsReceived.emit(events)

    def notice_signals(self) -> dict[Notice, SignalInstance]:
        """The signal each notice of the link is emitted as."""
        return {
            Notice.CONNECTION_FAILED: self.connectionFailed,
            Notice.ERROR_RECEIVED: self.errorReceived,
            Notice.HISTORY_RECEIVED: self.historyReceived,
            Notice.HOST_CLOSING: self.hostClosing,
            Notice.JOINED: self.joined,
            Notice.LATENCY_CHANGED: self.latencyChanged,
            Notice.LEFT: self.left,
            Notice.MESSAGE_RECEIVED: self.messageReceived,
            Notice.NOTICE_RECEIVED: self.noticeReceived,
            Notice.RECONNECT_IN: self.reconnectIn,
            Notice.REQUEST_DONE: self.requestDone,
            Notice.ROOMS_LISTED: self.roomsListed,
            Notice.SEND_SETTLED: self.sendSettled,
            Notice.STATE_CHANGED: self.stateChanged,
            Notice.TOPIC_CHANGED: self.topicChanged,
            Notice.TYPING_RECEIVED: self.typingReceived,
            Notice.USERS_CHANGED: self.usersChanged,
            Notice.WELCOMED: self.welcomed,
        }

    def _relay(self, kind: Notice, payload: object) -> None:
        if kind is Notice.WELCOMED:
            assert isinstance(payload, p.Welcome)
            self.welcome = payload
            self.name = payload.name
            self.session = payload.session
        signal = self._signal_for[kind]
        if kind in _SPREAD:
            assert isinstance(payload, tuple)
            if kind is Notice.STATE_CHANGED:
                self.state = payload[0]
            signal.emit(*payload)
        else:
            signal.emit(payload)
