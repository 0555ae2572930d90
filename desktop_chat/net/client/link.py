"""The desktop client's connection logic, without Qt: socket, handshake, reconnect, resume.

:class:`ClientLink` runs on the client's worker thread (see ``client.py``) and reports everything
through one ``notify(notice, payload)`` callback (a :class:`Notice`). It connects, says ``hello``,
waits for ``welcome``, then serves one connection (:class:`_Session`) in a ``select()`` loop over
the socket and a wake-up socketpair: requests from other threads arrive on a ``queue.Queue`` and a
byte on the socketpair wakes the loop at once. After a drop it waits (exponential backoff with
jitter, at most ``reconnect_max``: about 10 s, a LAN restart is quick) and resumes the session with
``since`` = the highest message id seen; messages are de-duplicated by id, so none is reported
twice or out of order within a conversation.

Sending exactly once (contract revision 2): every ``say``/``dm`` carries a ``ref``; the link
keeps each one until its echo (a ``message`` from us with that ``ref``) or an ``error`` with that
``ref`` arrives, and after every welcome it sends again, with the same ``ref``, whatever is
still unacknowledged. The server answers a repeated ``ref`` with the original message, so a
message sent just before a drop is delivered once whether or not the first copy got through.

A ``closing`` from the server (it is shutting down) is remembered until the next welcome, so
the reconnect countdown says "The host stopped the chat" instead of "connection refused".

Every connection is encrypted (``client_transport.py``) and the server's certificate is pinned
on first use, like SSH: a fingerprint given ahead of time must match; else the one pinned for
this host and port must match (a change stops everything and asks); else the person is asked
once. Questions go out through the ``certificates`` callback and the link waits, connection
closed, for :meth:`ClientLink.answer_certificate` (the server would not wait for a person).
"""

from __future__ import annotations

import enum
import math
import queue
import random
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from desktop_chat import __version__
from desktop_chat.net.client.transport import Failure as _Failure
from desktop_chat.net.client.transport import Stop as _Stop
from desktop_chat.net.client.transport import Transport, open_transport
from desktop_chat.net.client.transport import describe as _describe
from desktop_chat.net.client.transport import drain as _drain
from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.admin import KICKED
from desktop_chat.net.protocol.names import name_key
from desktop_chat.net.protocol.tls import group_for_reading

__all__ = ["CLIENT_ID", "ClientLink", "ClientTiming", "QuitRequest", "Request", "Transport"]

CLIENT_ID = f"desktop-chat/{__version__}"
HOST_STOPPED = "The host stopped the chat"
_QUIT_FLUSH_S = 0.4  # flushing a quit, then waiting for the server to close
_KICK_WAIT_S = 2.0  # after "kicked", for the server to close (it gives us 0.5 s to read)


class Notice(enum.Enum):
    """What the link tells the GUI side; the Qt worker maps each to one signal (a table, so a
    new notice without a signal fails its test, not at run time)."""

    CONNECTION_FAILED = "connectionFailed"
    ERROR_RECEIVED = "errorReceived"
    HISTORY_RECEIVED = "historyReceived"
    HOST_CLOSING = "hostClosing"
    JOINED = "joined"
    LATENCY_CHANGED = "latencyChanged"
    LEFT = "left"
    MESSAGE_RECEIVED = "messageReceived"
    NOTICE_RECEIVED = "noticeReceived"
    RECONNECT_IN = "reconnectIn"
    REQUEST_DONE = "requestDone"
    ROOMS_LISTED = "roomsListed"
    SEND_SETTLED = "sendSettled"
    STATE_CHANGED = "stateChanged"
    TOPIC_CHANGED = "topicChanged"
    TYPING_RECEIVED = "typingReceived"
    USERS_CHANGED = "usersChanged"
    WELCOMED = "welcomed"


Notify = Callable[[Notice, object], None]
CertificateNotify = Callable[[str, object], None]  # "pinned", "unknown" or "changed"


@dataclass(frozen=True, slots=True)
class ClientTiming:
    """Timeouts and intervals in seconds; tests shrink them to stay fast."""

    connect_timeout: float = 5.0
    handshake_timeout: float = 10.0
    reconnect_base: float = 0.5
    # A LAN host restarts within seconds: never make people wait much longer than that.
    reconnect_max: float = 10.0
    ping_interval: float = 5.0
    # Nothing at all from the server for this long (our pings go unanswered): the link is dead.
    silence_timeout: float = 20.0


class _TryAgain(Exception):
    """The person trusted a certificate: connect again at once, without waiting."""


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
        fingerprint: str | None = None,
        fingerprint_given: bool = False,
        outgoing: queue.Queue[Request],
        wake: socket.socket,
        timing: ClientTiming,
        notify: Notify,
        certificates: CertificateNotify,
    ) -> None:
        """``fingerprint``: the certificate to require (lowercase hex), typed by the person
        when ``fingerprint_given`` (a mismatch is their mistake or an impostor: no question),
        else the one pinned earlier (a change is asked about). ``certificates`` hears
        ``("unknown", (host, port, presented))``, ``("changed", (host, port, pinned,
        presented))`` (both wait for :meth:`answer_certificate`) and ``("pinned", (host,
        port, fingerprint))``: a given fingerprint matched, remember it."""
        self.host, self.port, self.name, self.password = host, port, name, password
        self.owner = owner
        self.fingerprint = fingerprint
        self.fingerprint_given = fingerprint_given and fingerprint is not None
        self.certificates = certificates
        self._answer: tuple[str | None] | None = None
        self._answer_lock = threading.Lock()
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
        # say/dm sent (or to be sent) and not yet echoed, by ref, oldest first.
        self.unacked: dict[p.Ref, p.Say | p.Dm] = {}
        self.host_closed = False  # the server said ``closing``; cleared by the next welcome

    @property
    def last_id(self) -> int:
        return self._last_id

    def resume_from(self, session: str, since: int) -> None:
        """Before run(): resume this session (kept from an earlier run of the app)."""
        self._session, self._last_id = session, since

    def run(self) -> None:
        """Connect and serve, reconnecting after drops, until the end; never raises a
        connection problem (it becomes stateChanged/connectionFailed)."""
        self.thread_ident = threading.get_ident()
        where = _describe(self.host, self.port)
        welcomed_once = False
        attempt = 0
        while True:
            if welcomed_once:
                self.notify(Notice.STATE_CHANGED, ("reconnecting", f"Reconnecting to {where}…"))
            else:
                self.notify(Notice.STATE_CHANGED, ("connecting", f"Connecting to {where}…"))
            self.retry_requested.clear()
            try:
                self._connection()
            except _TryAgain:
                continue
            except _Stop:
                if self.quit_requested.is_set():
                    self.notify(Notice.STATE_CHANGED, ("disconnected", "You left the chat."))
                return
            except _Failure as lost:
                if lost.refused_by_server or not (welcomed_once or lost.welcomed):
                    # The server refused our hello (name_taken, banned, ...), or the very first
                    # attempt failed: retrying on our own would not help the person.
                    self.notify(Notice.STATE_CHANGED, ("disconnected", lost.message))
                    if not (welcomed_once or lost.welcomed):
                        self.notify(Notice.CONNECTION_FAILED, (lost.code, lost.message))
                    return
                welcomed_once = True
                attempt = 0 if lost.welcomed else attempt + 1
                why = HOST_STOPPED if self.host_closed else lost.message
                if not self._back_off(attempt, why):
                    if self.quit_requested.is_set():
                        self.notify(Notice.STATE_CHANGED, ("disconnected", "You left the chat."))
                    return

    def _back_off(self, attempt: int, why: str) -> bool:
        """Wait before the next attempt; False when close() or quit() came first."""
        t = self.timing
        delay = min(t.reconnect_max, t.reconnect_base * 2 ** min(attempt, 30))
        delay *= random.uniform(0.5, 1.0)  # jitter: a restarted server is not hit all at once
        detail = f"{why}. Reconnecting in {max(1, math.ceil(delay))} s…"
        self.notify(Notice.STATE_CHANGED, ("reconnecting", detail))
        self.notify(Notice.RECONNECT_IN, (why, delay))
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
            where = _describe(self.host, self.port)
            presented = transport.start_tls(
                where, self.timing.handshake_timeout, self.wake, self.stop
            )
            if presented != self.fingerprint:
                transport.close()  # nobody waits on an open connection for a person to decide
                self._untrusted(presented)
            if self.fingerprint_given:
                self.fingerprint_given = False  # from now on it is the pin
                self.certificates("pinned", (self.host, self.port, presented))
            _Session(self, transport).serve()
        finally:
            transport.close()

    def _untrusted(self, presented: str) -> None:
        """A certificate other than the expected one: refuse, or ask and connect again."""
        where = _describe(self.host, self.port)
        shown = group_for_reading(presented)
        if self.fingerprint_given:
            raise _Failure(
                "certificate_mismatch",
                f"The chat at {where} has the fingerprint {shown}, not the one you gave. "
                "Desktop Chat did not connect: check the fingerprint with the host.",
                refused_by_server=True,
            )
        with self._answer_lock:
            self._answer = None
        pinned = self.fingerprint
        if pinned is None:
            self.certificates("unknown", (self.host, self.port, presented))
        else:
            self.certificates("changed", (self.host, self.port, pinned, presented))
        state = "reconnecting" if self._session is not None else "connecting"
        self.notify(Notice.STATE_CHANGED, (state, "Waiting for you to check the chat's identity…"))
        if self._await_answer() != presented:
            if pinned is None:
                raise _Failure(
                    "certificate_rejected",
                    f"You did not trust the chat at {where}, so Desktop Chat did not connect.",
                    refused_by_server=True,
                )
            raise _Failure(
                "certificate_changed",
                f"The chat at {where} no longer has the certificate you trusted before "
                "(someone may be pretending to be it), so Desktop Chat did not connect.",
                refused_by_server=True,
            )
        self.fingerprint = presented
        raise _TryAgain

    def answer_certificate(self, fingerprint: str | None) -> None:
        """Any thread: trust ``fingerprint`` (the one asked about), or None to refuse. The
        caller then wakes the worker."""
        with self._answer_lock:
            self._answer = (fingerprint,)

    def _await_answer(self) -> str | None:
        """Wait, without a deadline (a person is reading), for answer_certificate()."""
        while True:
            with self._answer_lock:
                if self._answer is not None:
                    return self._answer[0]
            if self.stop.is_set() or self.quit_requested.is_set():
                raise _Stop
            readable, _, _ = select.select([self.wake], [], [])
            if readable:
                _drain(self.wake)

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
        self.host_closed = False
        self.name = welcome.name  # resume is honoured for the same name only: use its spelling
        title = f" to {welcome.server}" if welcome.server else ""
        self.notify(Notice.STATE_CHANGED, ("connected", f"Connected{title}"))
        self.notify(Notice.WELCOMED, welcome)

    def on_message(self, msg: p.ChatMessage) -> None:
        """Report each id once, and never an older one after a newer in one conversation.

        The echo of a message we sent settles it (``sendSettled``), even when its id was
        seen already (the resumed backlog may bring it first, without its ref)."""
        ref = msg.ref
        settled = (
            ref is not None and ref in self.unacked and name_key(msg.from_) == name_key(self.name)
        )
        if settled:
            assert ref is not None
            del self.unacked[ref]
        self._report(msg)
        if settled:
            self.notify(Notice.SEND_SETTLED, ref)

    def settle_error(self, error: p.ErrorReply) -> None:
        """An error answering one of our say/dm: the server will not deliver it."""
        if error.ref is not None:
            self.unacked.pop(error.ref, None)

    def _report(self, msg: p.ChatMessage) -> None:
        if msg.room is not None:
            key = ("room", name_key(msg.room))
        else:
            peer = msg.to if name_key(msg.from_) == name_key(self.name) else msg.from_
            key = ("dm", name_key(peer or ""))
        if msg.id <= self._last_in_conversation.get(key, 0):
            return
        self._last_in_conversation[key] = msg.id
        self._last_id = max(self._last_id, msg.id)
        self.notify(Notice.MESSAGE_RECEIVED, msg)


_FORWARD: dict[type[p.ServerEvent], Notice] = {
    p.Joined: Notice.JOINED,
    p.Left: Notice.LEFT,
    p.Users: Notice.USERS_CHANGED,
    p.TypingNotice: Notice.TYPING_RECEIVED,
    p.RoomList: Notice.ROOMS_LISTED,
    p.HistoryReply: Notice.HISTORY_RECEIVED,
    pa.Ok: Notice.REQUEST_DONE,
    pa.TopicChanged: Notice.TOPIC_CHANGED,
    pa.Notice: Notice.NOTICE_RECEIVED,
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
            if self.quit_sent and not self.out and not self.t.backlogged:
                self.finish_quit(time.monotonic() + _QUIT_FLUSH_S)
                raise _Stop
            if not self.welcomed and link.quit_requested.is_set():
                raise _Stop
            now = time.monotonic()
            wait = min(self.next_ping, self.last_rx + timing.silence_timeout) - now
            if not self.welcomed:
                wait = min(wait, self.handshake_deadline - now)
            fd, wake_fd = self.t.fileno(), link.wake.fileno()
            sending = bool(self.out) or self.t.backlogged
            readable, writable, _ = select.select(
                [fd, wake_fd], [fd] if sending else [], [], max(0.0, wait)
            )
            if wake_fd in readable:
                _drain(link.wake)
            if fd in readable:
                self.read()
            if fd in writable and sending:
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
            for request in link.unacked.values():  # same ref: the server keeps one copy
                self.out += self.proto.send(request)
        elif isinstance(event, p.ErrorReply):
            if not self.welcomed:  # an error answering hello: the server closes
                raise _Failure(event.code, event.message, refused_by_server=True)
            link.settle_error(event)
            link.notify(Notice.ERROR_RECEIVED, event)
            if event.code == KICKED:  # removed by an admin: coming back on our own is wrong
                # The server closes the line itself; leaving first would make it look to the
                # others as if we had just dropped.
                self.await_close(time.monotonic() + _KICK_WAIT_S, or_stop=True)
                raise _Failure(event.code, event.message, refused_by_server=True, welcomed=True)
        elif isinstance(event, p.Closing):
            link.host_closed = True
            link.notify(Notice.HOST_CLOSING, event.reason)
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
        self.link.notify(Notice.LATENCY_CHANGED, (time.monotonic() - sent) * 1000.0)

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
            if isinstance(request, p.Say | p.Dm) and request.ref is not None:
                self.link.unacked[request.ref] = request
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
        while self.out or self.t.backlogged:
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
        self.await_close(deadline)

    def await_close(self, deadline: float, *, or_stop: bool = False) -> None:
        """Read (and drop) until the server closes the connection or the deadline (or, with
        ``or_stop``, close())."""
        fd, wake = self.t.fileno(), self.link.wake.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            readable, _, _ = select.select([fd, wake], [], [], left)
            if wake in readable:
                _drain(self.link.wake)
                if or_stop and self.link.stop.is_set():
                    return
            if fd in readable:
                try:
                    data = self.t.recv()
                except OSError:
                    return
                if data == b"":
                    return
