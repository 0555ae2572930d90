"""One accepted socket as the sessions see it: TLS, reads with deadlines, and the outbox.

The socket is non-blocking. Its one reading thread waits for input with ``poll`` bounded by a
deadline the session chooses; every write goes through the connection's
:class:`~desktop_chat.net.server.outbox.Outbox`, written by the server's single flusher, so no
thread ever blocks on a peer that does not read. Sessions (JSON Lines, plain text, HTTP,
WebSocket) use only the public methods here.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable

from desktop_chat.net.server.outbox import Flusher, Outbox
from desktop_chat.net.server.tls import TlsChannel, TlsClosed

log = logging.getLogger(__name__)

_RECV_SIZE = 65_536
_SENDFILE_CHUNK = 1 << 22  # bytes per os.sendfile call (the kernel sends what fits)
_BULK_NICE = 10  # the nice value of a thread that moves a file (chat threads have 0)
_TLS_CHUNK = 1 << 18  # plaintext bytes per TLS write of a file (bounds memory per download)


class PeerGone(Exception):
    """The peer closed, the connection was aborted, or a deadline passed: stop serving it."""


class Transport:
    """The byte stream of one connection (plain or TLS) and its bounded write buffer."""

    def __init__(
        self,
        sock: socket.socket,
        address: tuple[str, int],
        flusher: Flusher,
        *,
        outbox_limit: int,
    ) -> None:
        self.sock = sock
        self.address = address
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._tls: TlsChannel | None = None
        self.outbox = Outbox(
            self._send_now, sock.fileno(), flusher, outbox_limit, backlog=self._backlogged
        )
        self._poller = select.poll() if hasattr(select, "poll") else None
        if self._poller is not None:
            self._poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        self.close_reason: str | None = None
        self._bulk = False
        self.accepted_at = time.monotonic()
        self.last_heard = self.accepted_at  # any input is a sign of life (keepalive)

    # -- facts ------------------------------------------------------------------------------

    @property
    def peer(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    @property
    def secure(self) -> bool:
        """True once TLS protects the stream."""
        return self._tls is not None

    @property
    def from_loopback(self) -> bool:
        try:
            ip = ipaddress.ip_address(self.address[0])
        except ValueError:
            return False
        mapped = getattr(ip, "ipv4_mapped", None)
        return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))

    @property
    def local_host(self) -> str:
        """The address of ours that the peer connected to."""
        try:
            return str(self.sock.getsockname()[0])
        except OSError:
            return ""

    # -- reading ----------------------------------------------------------------------------

    def start_tls(self, context: ssl.SSLContext, first: bytes, deadline: float) -> bytes:
        """Run the TLS handshake (whose first bytes are ``first``) until ``deadline``; return
        what the client sent right behind its last handshake message, decrypted."""
        self._tls = TlsChannel(context, self.sock)
        raw: bytes | None = first
        try:
            while not self._tls.handshake_step(raw or b""):
                self.outbox.kick()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.info("%s: TLS handshake not finished in time", self.peer)
                    raise PeerGone
                raw = self._recv_raw(remaining)
            self.outbox.kick()
            # It came in the same read and waits decrypted in the TLS buffer, not the socket.
            return self._tls.decrypt(b"")
        except TlsClosed as exc:
            self.outbox.kick()
            log.info("%s: TLS handshake failed: %s", self.peer, exc)
            raise PeerGone from exc

    def recv(self, timeout: float, size: int = _RECV_SIZE) -> bytes | None:
        """Bytes (decrypted under TLS), or None when ``timeout`` passed with nothing.

        ``size`` bounds one read (bulk transfers ask for more than chat lines need). Raises
        :class:`PeerGone` at the end of the stream or once the connection is aborted.
        """
        data = self._recv_raw(timeout, size)
        if data is None or self._tls is None:
            return data
        try:
            plain = self._tls.decrypt(data)
        except TlsClosed as exc:
            raise PeerGone from exc
        if self._tls.backlogged:
            self.outbox.kick()  # the read produced records to send (a TLS alert, a ticket)
        return plain or None

    def _recv_raw(self, timeout: float, size: int = _RECV_SIZE) -> bytes | None:
        if self.close_reason is not None:
            raise PeerGone
        if not self._wait_readable(timeout):
            return None
        try:
            data = self.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            raise PeerGone from exc
        if not data:
            raise PeerGone
        self.last_heard = time.monotonic()
        return data

    def _wait_readable(self, timeout: float) -> bool:
        timeout = max(0.0, timeout)
        if self._poller is not None:
            return bool(self._poller.poll(int(timeout * 1000) + 1))
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return bool(ready)

    # -- writing ----------------------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        """Queue a reply to this connection alone; the flusher writes it soon. Past the
        outbox's limit (a peer that does not read) the connection is cut off as ``slow``."""
        if self.outbox.send(data):
            return True
        if self.outbox.overflowed:
            self.abort("slow")
        return False

    def drain(self, timeout: float = 1.0) -> bool:
        """Give the peer its last replies (an error, a goodbye) before the connection closes."""
        self.outbox.kick()
        return self.outbox.wait_drained(timeout)

    def mark_bulk(self) -> None:
        """This connection's thread is about to move a file: let chat threads go first.

        On Linux a thread has its own nice value, so only this (connection) thread is lowered;
        the CPU the kernel spends copying for it (``sendfile``, TLS, hashing) is then given to
        it only when chat threads do not need it. The thread ends with its connection (one
        request per connection), so the value is never restored. Elsewhere: nothing.
        """
        if self._bulk or not sys.platform.startswith("linux"):
            return
        self._bulk = True
        try:
            tid = threading.get_native_id()
            os.setpriority(
                os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), _BULK_NICE)
            )
        except OSError as exc:
            log.debug("could not lower a file transfer's priority: %s", exc)

    def send_file(self, head: bytes, fd: int, offset: int, count: int, idle: float) -> None:
        """Write ``head`` and then ``count`` bytes of the open file ``fd`` from ``offset``,
        straight to the socket from the calling (connection) thread, not through the outbox.

        Plain sockets use ``os.sendfile`` (the kernel copies; no bytes pass through Python);
        under TLS the file goes through the TLS channel in bounded chunks. Waiting for a slow
        reader blocks only this connection's thread; ``idle`` seconds without progress raise
        :class:`PeerGone`. Call it only when nothing else is queued for this connection.
        """
        self.drain(idle)  # whatever the outbox holds goes first (nothing, for HTTP)
        if self._tls is not None:
            self._send_file_tls(head, fd, offset, count, idle)
            return
        view = memoryview(head)
        while view:
            view = view[self._retry_write(idle, self.sock.send, view) :]
        end = offset + count
        out = self.sock.fileno()
        while offset < end:
            chunk = min(end - offset, _SENDFILE_CHUNK)
            sent = self._retry_write(idle, os.sendfile, out, fd, offset, chunk)
            if sent == 0:
                raise PeerGone  # the file is shorter than promised: end the response here
            offset += sent

    def _send_file_tls(self, head: bytes, fd: int, offset: int, count: int, idle: float) -> None:
        tls = self._tls
        assert tls is not None
        pending = head
        end = offset + count
        while pending or offset < end:
            if not pending:
                pending = os.pread(fd, min(end - offset, _TLS_CHUNK), offset)
                if not pending:
                    raise PeerGone
                offset += len(pending)
            self._retry_write(idle, tls.send, pending)
            pending = b""
        deadline = time.monotonic() + idle
        while tls.backlogged:  # the last ciphertext still waits for the socket
            if time.monotonic() > deadline or self.close_reason is not None:
                raise PeerGone
            self._wait_writable(1.0)
            tls.send(b"")

    def _retry_write(self, idle: float, write: Callable[..., int], *args: object) -> int:
        """Call ``write(*args)`` until the socket takes something; wait for POLLOUT between.

        ``write`` raising BlockingIOError means "not now"; ``idle`` seconds of that → PeerGone.
        """
        deadline = time.monotonic() + idle
        while True:
            if self.close_reason is not None:
                raise PeerGone
            try:
                written = write(*args)
            except (BlockingIOError, InterruptedError):
                written = -1
            except OSError as exc:
                raise PeerGone from exc
            if written >= 0:
                return written
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.info("%s: a download stalled; closing", self.peer)
                raise PeerGone
            self._wait_writable(min(remaining, 1.0))

    def _wait_writable(self, timeout: float) -> None:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(self.sock.fileno(), select.POLLOUT)
            poller.poll(int(timeout * 1000) + 1)
        else:
            select.select([], [self.sock], [], timeout)

    def finish_reading(self, timeout: float, limit: int = 1 << 20) -> None:
        """After an early answer: send it, stop writing, and read (and drop) what the peer
        still sends for a moment, so closing does not reset the answer away."""
        self.drain(timeout)
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        deadline = time.monotonic() + timeout
        dropped = 0
        while dropped < limit and (remaining := deadline - time.monotonic()) > 0:
            data = self._recv_raw(remaining)  # PeerGone at the end of the stream
            dropped += len(data or b"")

    def _send_now(self, data: bytes) -> int:
        if self._tls is None:
            return self.sock.send(data)
        return self._tls.send(data)

    def _backlogged(self) -> bool:
        return self._tls is not None and self._tls.backlogged

    # -- ending -----------------------------------------------------------------------------

    def abort(self, reason: str) -> None:
        """Close from any thread: the reading thread's next :meth:`recv` raises PeerGone."""
        if self.close_reason is None:
            self.close_reason = reason
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def close(self) -> None:
        """Called once by the reading thread at its very end."""
        self.outbox.close()
        try:
            self.sock.close()
        except OSError:
            pass  # already closed
