"""Refusing a connection over the caps, in the peer's own terms, at a bounded cost.

A connection past ``max_connections`` or ``max_per_address`` gets no session thread. A few
refusal workers (at most ``workers`` at a time) read its first bytes for a short while and
answer in what it speaks: HTTP gets ``503`` with a line of text (a browser shows it; the web
page reads it to say "the chat is full"), JSON Lines gets the ``server_full`` error line, IRC an
``ERROR`` line, anything else (or nothing at all: a netcat user) one line of text. TLS is closed
without a word: answering it would cost a handshake. When every worker is busy (a flood) the
connection is closed at once, so refusals can never cost more than ``workers`` threads.

:func:`refusal_answer` is the sans-I/O part (bytes in, bytes out); :class:`Refuser` does the I/O.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from desktop_chat.net.protocol import events as p
from desktop_chat.net.server.sniff import Kind, classify

log = logging.getLogger(__name__)

WORKERS = 4  # refusals answered at once; more are closed without a word
_HEAD_LIMIT = 8192  # an HTTP request head larger than this is answered as it is
_HEAD_TIME = 2.0  # seconds for the rest of an HTTP request head, once it began


def needs_more(data: bytes) -> bool:
    """Whether to wait for more bytes before answering ``data`` (the bytes so far)."""
    kind = classify(data)
    if kind in (Kind.HTTP, Kind.HTTP2):
        # Read the whole request head: closing a socket with unread bytes resets it, and a
        # browser that gets a reset shows a network error instead of our answer.
        return b"\r\n\r\n" not in data and len(data) < _HEAD_LIMIT
    if kind is Kind.UNDECIDED:
        return len(data) < _HEAD_LIMIT
    if kind in (Kind.IRC, Kind.PLAIN):
        return b"\n" not in data and len(data) < _HEAD_LIMIT
    return False  # TLS, JSON: the first byte says it all


def refusal_answer(data: bytes, reason: str) -> bytes | None:
    """What to send a refused peer whose first bytes are ``data``; None: just close."""
    kind = classify(data)
    if kind is Kind.TLS:
        return None  # no handshake spent on a refusal
    if kind is Kind.JSON:
        return p.encode(p.ErrorReply(code=p.SERVER_FULL, message=reason))
    if kind in (Kind.HTTP, Kind.HTTP2) or (kind is Kind.UNDECIDED and data):
        body = f"The chat is full right now ({reason}). Try again in a moment.\n".encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Retry-After: 10\r\n"
            "Cache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        return head if data.startswith(b"HEAD ") else head + body
    if kind is Kind.IRC:
        return f"ERROR :Closing link: {reason}\r\n".encode()
    return f"Sorry, the chat is full right now ({reason}). Try again in a moment.\n".encode()


class Refuser:
    """At most ``workers`` threads answering refused connections; past that, a plain close.

    ``first_bytes_within`` is how long a worker waits for a peer's first bytes (the server's
    sniffing time: a peer that says nothing by then is a terminal user). :meth:`close` stops
    every worker and joins it.
    """

    def __init__(self, *, workers: int = WORKERS, first_bytes_within: float = 1.0) -> None:
        self.workers = workers
        self.first_bytes_within = first_bytes_within
        self._lock = threading.Lock()
        self._busy: dict[threading.Thread, socket.socket] = {}
        self._closed = False

    def refuse(self, sock: socket.socket, reason: str) -> None:
        """Answer ``sock`` (already accepted) and close it; never blocks the caller."""
        with self._lock:
            thread: threading.Thread | None = None
            if not self._closed and len(self._busy) < self.workers:
                # Not a daemon: each ends by its deadlines (about 3 s) and close() joins it.
                thread = threading.Thread(target=self._run, args=(sock, reason), name="dc-refusal")
                self._busy[thread] = sock
        if thread is None:
            sock.close()  # every worker is busy: a flood gets no more than a close
            return
        try:
            thread.start()
        except RuntimeError:
            log.warning("no thread to answer a refused connection; closing it")
            with self._lock:
                self._busy.pop(thread, None)
            sock.close()

    def close(self) -> None:
        """Stop taking refusals, unblock the workers and join them."""
        with self._lock:
            self._closed = True
            busy = list(self._busy.items())
        for _thread, sock in busy:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the worker closed it already
        for thread, _sock in busy:
            thread.join(timeout=5)

    def _run(self, sock: socket.socket, reason: str) -> None:
        try:
            data = self._read_first(sock)
            answer = refusal_answer(data, reason)
            if answer is not None:
                sock.settimeout(1.0)  # a peer that does not read costs at most this
                sock.sendall(answer)
                sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            log.debug("refused connection: %s", exc)  # the peer left first: nothing to tell
        finally:
            sock.close()
            with self._lock:
                self._busy.pop(threading.current_thread(), None)

    def _read_first(self, sock: socket.socket) -> bytes:
        """The peer's first bytes: until they say what it speaks, or the deadline."""
        data = b""
        deadline = time.monotonic() + self.first_bytes_within
        while needs_more(data):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(_HEAD_LIMIT)
            except TimeoutError:
                break
            if not chunk:
                break
            if not data:
                deadline = time.monotonic() + _HEAD_TIME  # it spoke: let it finish its head
            data += chunk
        return data
