"""Per-connection bounded write buffers, and the one thread that writes them all.

Fan-out never blocks a sender on a recipient, and never costs a system call per delivery in
the sender's thread. Delivering to a connection only appends bytes to its :class:`Outbox`
(memory, under the outbox's own short lock) and, if the outbox was clean, marks it dirty. The
:class:`Flusher` — one selector loop for the whole server, as the C servers do it — takes the
dirty outboxes and writes each one's whole backlog with one non-blocking ``send``. Under load
many messages ride in one ``send`` per recipient; when idle, a message goes out as soon as the
flusher wakes (a few tens of microseconds).

A socket whose kernel buffer is full stays registered for writability, and everything for it
waits in its outbox; past ``limit`` bytes the connection is cut off (reason ``slow``), so a
client that never reads costs bounded memory and delays nobody. *Every* byte counts: broadcasts,
replies, errors, pongs, history pages and a resume's backlog alike (a client that never reads
but keeps asking for history must hit the limit too). Whoever queues a large answer keeps it
well under the limit by construction (history pages and resume chunks are cut by size).
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final

log = logging.getLogger(__name__)

SendFn = Callable[[bytes], int]

# What Outbox.enqueue says happened.
QUEUED: Final = 0  # buffered; the outbox was already waiting to be written
MARK: Final = 1  # buffered; the outbox just became dirty: hand it to the flusher
LAZY: Final = 2  # buffered, not urgent (presence): hand it to the flusher's lazy round
LAZY_DELAY: Final = 0.05  # seconds presence notices may wait to share one send per recipient
OVERFLOW: Final = -1  # the buffer would pass its limit: cut the connection off ("slow")
CLOSED: Final = -2  # the connection is gone: nothing to do


def _never() -> bool:
    return False


def _nothing() -> None:
    return None


class Outbox:
    """The write side of one connection. Thread-safe; only the flusher writes to the socket."""

    __slots__ = (
        "_backlog",
        "_buf",
        "_dirty",
        "_drained",
        "_flusher",
        "_lazy",
        "_lock",
        "_send",
        "_sending",
        "_size",
        "_waiting",
        "closed",
        "fileno",
        "limit",
        "overflowed",
    )

    def __init__(
        self,
        send: SendFn,
        fileno: int,
        flusher: Flusher,
        limit: int,
        backlog: Callable[[], bool] | None = None,
    ) -> None:
        """``send`` is a non-blocking write (``socket.send`` or a TLS channel's); ``backlog``
        tells whether the transport itself still holds bytes for the socket (TLS ciphertext)."""
        self._send = send
        self._backlog = backlog or _never
        self.fileno = fileno
        self._flusher = flusher
        self.limit = limit
        self._lock = threading.Lock()
        self._buf: list[bytes] = []
        self._size = 0
        self._dirty = False  # handed to the flusher, not written yet
        self._lazy = False  # handed to the flusher's lazy round
        self._sending = False  # the flusher took bytes and has not handed them to the kernel yet
        self._waiting = False  # the socket was full: the flusher watches it for writability
        self._drained: threading.Event | None = None  # made only when someone waits
        self.closed = False
        self.overflowed = False

    @property
    def pending(self) -> int:
        """Bytes not yet handed to the kernel (1 if only the transport holds some)."""
        return self._size or (1 if self._sending or self._backlog() else 0)

    def enqueue(self, data: bytes, *, urgent: bool = True) -> int:
        """Buffer ``data`` (no I/O); returns QUEUED, MARK, OVERFLOW or CLOSED.

        On MARK the caller hands the outbox to the flusher (:meth:`Flusher.mark`), after
        releasing any lock of its own; on OVERFLOW it cuts the connection off (``slow``).
        Not ``urgent`` (joins, leaves, typing): LAZY, written within LAZY_DELAY, so that a join
        storm costs one ``send`` per recipient per round rather than one per join.
        """
        with self._lock:
            if self.closed:
                return CLOSED
            if self._size + len(data) > self.limit:
                self.overflowed = self.closed = True
                self._buf.clear()
                self._size = 0
                return OVERFLOW
            self._buf.append(data)
            self._size += len(data)
            if self._dirty or self._waiting:
                return QUEUED
            if not urgent:
                if self._lazy:
                    return QUEUED
                self._lazy = True
                return LAZY
            self._dirty = True
            return MARK

    def mark(self) -> None:
        """Hand this outbox to the flusher (what to do when :meth:`enqueue` said MARK)."""
        self._flusher.mark(self)

    def send(self, data: bytes) -> bool:
        """Enqueue and have it written: for replies to this connection alone. False when the
        connection is gone or this passed its limit (the caller then cuts it off)."""
        status = self.enqueue(data)
        if status == MARK:
            self._flusher.mark(self)
        return status >= 0

    def kick(self) -> None:
        """Have the flusher write what the transport holds (TLS records made by a read)."""
        with self._lock:
            if self._dirty or self._waiting or self.closed:
                return
            self._dirty = True
        self._flusher.mark(self)

    def wait_drained(self, timeout: float) -> bool:
        """Wait (up to ``timeout``) until everything buffered was handed to the kernel."""
        with self._lock:
            # Bytes the flusher has taken but not yet sent count too: closing the socket in
            # that moment would lose them (seen: a web page's script answer cut off).
            if self.closed or not (self._buf or self._sending or self._backlog()):
                return True
            if self._drained is None:
                self._drained = threading.Event()
            event = self._drained
            event.clear()
        return event.wait(timeout)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._buf.clear()
            self._size = 0
            if self._drained is not None:
                self._drained.set()
        self._flusher.unwatch(self)

    # -- called by the flusher only ---------------------------------------------------------

    def _take(self, *, writable: bool) -> bytes | None:
        """Everything buffered, to be sent now; None if there is nothing to do."""
        with self._lock:
            self._dirty = self._lazy = False
            if self.closed or (self._waiting and not writable):
                return None
            buf = self._buf
            if not buf:
                if not self._backlog():
                    return None
                self._sending = True
                return b""
            data = buf[0] if len(buf) == 1 else b"".join(buf)
            self._buf = []
            self._size = 0
            self._sending = True
            return data

    def _write(self, data: bytes) -> bool:
        """Send what :meth:`_take` gave. True when the socket is full (watch it)."""
        # The socket write happens outside the lock, so senders keep appending meanwhile;
        # only the flusher writes, so the order on the wire is the order of the buffer.
        try:
            sent = self._send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._gone()
            return False
        full = sent < len(data) or self._backlog()
        with self._lock:
            self._sending = False
            if sent < len(data) and not self.closed:
                rest = data[sent:]
                self._buf.insert(0, rest)
                self._size += len(rest)
            self._waiting = full and not self.closed
            if not self._waiting and self._buf and not self._dirty:
                self._dirty = True  # appended while we were writing: another round
                self._flusher.mark_from_loop(self)
            if not self._buf and not full and self._drained is not None:
                self._drained.set()
        return self._waiting

    def _gone(self) -> None:
        # The peer is gone; its reading thread notices and cleans up.
        with self._lock:
            self.closed = True
            self._sending = False
            self._buf.clear()
            self._size = 0
            if self._drained is not None:
                self._drained.set()


class Flusher:
    """The one thread that writes every connection's outbox (a selector loop)."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._dirty: list[Outbox] = []
        self._again: list[Outbox] = []  # re-marked by the loop itself, no wake-up needed
        self._lazy: list[Outbox] = []
        self._lazy_due = 0.0
        self._to_remove: list[Outbox] = []
        self._wake_pending = False
        self._stopping = False
        self._started = False
        # Called before each round of writes: the server commits stored messages here, so
        # nothing is on the wire before it is on disk (and commits are grouped per round).
        self.before_send: Callable[[], None] = _nothing
        self._thread = threading.Thread(target=self._run, name="dc-flusher")

    def start(self) -> None:
        self._started = True
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def thread_name(self) -> str:
        return self._thread.name

    def mark(self, outbox: Outbox) -> None:
        """``outbox`` has data to write (its enqueue said MARK)."""
        with self._lock:
            self._dirty.append(outbox)
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._wake()

    def mark_many(self, outboxes: Iterable[Outbox]) -> None:
        """Like :meth:`mark` for a whole fan-out: one lock and at most one wake-up."""
        with self._lock:
            before = len(self._dirty)
            self._dirty.extend(outboxes)
            if len(self._dirty) == before:
                return
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._wake()

    def mark_lazy_many(self, outboxes: list[Outbox]) -> None:
        """Outboxes with only presence notices: written in the next lazy round."""
        if not outboxes:
            return
        with self._lock:
            first = not self._lazy
            if first:
                self._lazy_due = time.monotonic() + LAZY_DELAY
            self._lazy.extend(outboxes)
            wake = first and not self._wake_pending
            self._wake_pending = self._wake_pending or wake
        if wake:
            self._wake()  # the loop must shorten its wait to the lazy round's deadline

    def mark_from_loop(self, outbox: Outbox) -> None:
        self._again.append(outbox)

    def unwatch(self, outbox: Outbox) -> None:
        with self._lock:
            self._to_remove.append(outbox)
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, InterruptedError):
            pass  # a wake-up is already pending
        except OSError:
            pass  # closed during shutdown

    def close(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._wake()
        if self._started:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                log.error("the flusher did not stop; its sockets stay open")
                return
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        watched: dict[int, Outbox] = {}
        while True:
            with self._lock:
                dirty, self._dirty = self._dirty, []
                removes, self._to_remove = self._to_remove, []
                self._wake_pending = False
                stopping = self._stopping
            for ob in removes:
                if watched.get(ob.fileno) is ob:
                    self._unwatch(watched, ob)
            if stopping:
                return
            again, self._again = self._again, []
            self._round(watched, [(ob, ob._take(writable=False)) for ob in (*dirty, *again)])
            timeout = 0.0 if self._again else 1.0
            lazy: list[Outbox] = []
            with self._lock:
                if self._lazy:
                    wait = self._lazy_due - time.monotonic()
                    if wait <= 0:
                        lazy, self._lazy = self._lazy, []
                    else:
                        timeout = min(timeout, wait)
                if self._dirty or self._to_remove or self._stopping:
                    timeout = 0.0
            if lazy:
                self._round(watched, [(ob, ob._take(writable=False)) for ob in lazy])
                continue
            try:
                ready = self._selector.select(timeout=timeout)
            except OSError:
                log.exception("flusher select failed")
                return
            if not ready:
                self.before_send()  # idle: nothing stays uncommitted for long
            writable: list[tuple[Outbox, bytes | None]] = []
            for key, _events in ready:
                ob = key.data
                if ob is None:
                    self._drain_wake()
                else:
                    writable.append((ob, ob._take(writable=True)))
            self._round(watched, writable)

    def _round(self, watched: dict[int, Outbox], taken: list[tuple[Outbox, bytes | None]]) -> None:
        """One round of writes: take (done), commit, send."""
        if not taken:
            return
        for _ob, data in taken:
            if data:
                self.before_send()
                break
        # The per-delivery hot loop: one send and one flag update per outbox; the selector is
        # touched only when an outbox becomes full or stops being full.
        for ob, data in taken:
            full = ob._write(data) if data is not None else ob._waiting and not ob.closed
            if full or ob.fileno in watched:
                self._watch(watched, ob, full)

    def _watch(self, watched: dict[int, Outbox], ob: Outbox, full: bool) -> None:
        if full and watched.get(ob.fileno) is not ob:
            stale = watched.get(ob.fileno)
            if stale is not None:  # the descriptor was reused by a new connection
                self._unwatch(watched, stale)
            try:
                self._selector.register(ob.fileno, selectors.EVENT_WRITE, ob)
                watched[ob.fileno] = ob
            except (ValueError, OSError):
                ob._gone()
        elif not full and watched.get(ob.fileno) is ob:
            self._unwatch(watched, ob)

    def _unwatch(self, watched: dict[int, Outbox], ob: Outbox) -> None:
        watched.pop(ob.fileno, None)
        try:
            self._selector.unregister(ob.fileno)
        except (KeyError, ValueError, OSError):
            pass

    def _drain_wake(self) -> None:
        # One read: a wake-up is sent only when none is pending, so there is at most a byte or
        # two (a second read, to see EAGAIN, cost a system call per message).
        try:
            self._wake_r.recv(4096)
        except (BlockingIOError, InterruptedError):
            pass
