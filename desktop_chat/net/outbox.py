"""Per-connection bounded write buffers, and the one thread that drains the backlogged ones.

Fan-out never blocks a sender on a recipient. Delivering to a connection is two steps:

1. :meth:`Outbox.enqueue` appends bytes to the connection's buffer (memory only, no system
   call), so it can run under the hub's lock, which keeps every recipient's order consistent;
2. :meth:`Outbox.flush`, called after that lock is released, tries one non-blocking ``send`` of
   everything buffered. If the kernel's socket buffer is full, the rest waits and the outbox is
   handed to the :class:`Flusher`, a single selector thread that writes it when the socket
   becomes writable. While an outbox is backlogged, senders only append.

So the common case is one ``send`` per delivery from the sender's own thread (no thread is
woken), a burst coalesces into one ``send`` per recipient, and a client that does not read
only fills its own buffer: past ``limit`` bytes it is cut off (reason ``slow``).
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

SendFn = Callable[[bytes], int]

COALESCE = 0.005  # seconds a scheduled (non-urgent) flush may wait for more to batch


def _never() -> bool:
    return False


class Outbox:
    """The write side of one connection. Thread-safe."""

    __slots__ = (
        "_backlog",
        "_buf",
        "_flusher",
        "_lock",
        "_send",
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
        self._waiting = False  # registered with the flusher: the socket was full
        self.closed = False
        self.overflowed = False

    @property
    def pending(self) -> int:
        return self._size + (1 if self._backlog() else 0)

    def enqueue(self, data: bytes, *, force: bool = False) -> bool:
        """Buffer ``data`` (no I/O). False if the outbox is closed or just overflowed.

        ``force`` skips the limit: used for a connection's own replies and its resume backlog,
        which it asked for and which are bounded by what is stored.
        """
        with self._lock:
            if self.closed:
                return False
            if not force and self._size + len(data) > self.limit:
                self.overflowed = True
                self.closed = True
                self._buf.clear()
                self._size = 0
                return False
            self._buf.append(data)
            self._size += len(data)
            return True

    def flush(self) -> None:
        """Write what is buffered without blocking; hand the rest to the flusher."""
        if self._waiting:
            return
        with self._lock:
            if self._waiting or self.closed or not (self._buf or self._backlog()):
                return
            if not self._write_locked():
                self._waiting = True
                self._flusher.watch(self)

    def send(self, data: bytes, *, force: bool = True) -> bool:
        """Enqueue and flush: for replies to this connection alone."""
        ok = self.enqueue(data, force=force)
        self.flush()
        return ok

    def _write_locked(self) -> bool:
        """Send as much as the socket takes. True when the buffer is empty afterwards."""
        if not self._buf:
            data = b""
        elif len(self._buf) == 1:
            data = self._buf[0]
        else:
            data = b"".join(self._buf)
        try:
            sent = self._send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # The peer is gone; its reader thread notices and cleans up.
            self.closed = True
            self._buf.clear()
            self._size = 0
            return True
        if sent >= len(data):
            self._buf.clear()
            self._size = 0
            return not self._backlog()
        rest = data[sent:]
        self._buf = [rest]
        self._size = len(rest)
        return False

    def drain_from_flusher(self) -> bool:
        """Called by the flusher when the socket is writable. True when done (unwatch)."""
        with self._lock:
            if self.closed or not (self._buf or self._backlog()):
                self._waiting = False
                return True
            done = self._write_locked()
            if done:
                self._waiting = False
            return done

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._buf.clear()
            self._size = 0
        self._flusher.unwatch(self)


class Flusher:
    """One thread that writes the backlog of outboxes whose sockets were full."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._to_add: list[Outbox] = []
        self._to_remove: list[Outbox] = []
        self._soon: dict[int, Outbox] = {}
        self._soon_due = 0.0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dc-flusher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def watch(self, outbox: Outbox) -> None:
        with self._lock:
            self._to_add.append(outbox)
        self._wake()

    def unwatch(self, outbox: Outbox) -> None:
        with self._lock:
            self._to_remove.append(outbox)
        self._wake()

    def schedule(self, outbox: Outbox) -> None:
        """Flush ``outbox`` within COALESCE seconds: presence notices (joined, left) go out
        batched, so a join storm costs one ``send`` per recipient per batch, not per join."""
        with self._lock:
            first = not self._soon
            self._soon[id(outbox)] = outbox
            if first:
                self._soon_due = time.monotonic() + COALESCE
        if first:
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
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _apply_changes(self, watched: dict[int, Outbox]) -> None:
        with self._lock:
            adds, self._to_add = self._to_add, []
            removes, self._to_remove = self._to_remove, []
        for ob in removes:
            if watched.get(ob.fileno) is ob:
                self._unregister(watched, ob)
        for ob in adds:
            if ob.closed or watched.get(ob.fileno) is ob:
                continue
            stale = watched.get(ob.fileno)
            if stale is not None:  # the descriptor was reused by a new connection
                self._unregister(watched, stale)
            try:
                self._selector.register(ob.fileno, selectors.EVENT_WRITE, ob)
                watched[ob.fileno] = ob
            except (ValueError, OSError):
                ob.drain_from_flusher()

    def _unregister(self, watched: dict[int, Outbox], ob: Outbox) -> None:
        watched.pop(ob.fileno, None)
        try:
            self._selector.unregister(ob.fileno)
        except (KeyError, ValueError, OSError):
            pass

    def _run(self) -> None:
        watched: dict[int, Outbox] = {}
        while True:
            self._apply_changes(watched)
            if self._stopping:
                return
            timeout = 1.0
            if self._soon:
                timeout = max(0.0, self._soon_due - time.monotonic())
                if timeout == 0.0:
                    with self._lock:
                        soon, self._soon = self._soon, {}
                    for ob in soon.values():
                        ob.flush()
                    continue
            try:
                ready = self._selector.select(timeout=timeout)
            except OSError:
                log.exception("flusher select failed")
                return
            for key, _events in ready:
                ob = key.data
                if ob is None:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                    continue
                assert isinstance(ob, Outbox)
                if ob.drain_from_flusher():
                    self._unregister(watched, ob)
