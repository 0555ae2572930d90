"""The desktop client's socket, without Qt: connecting, TLS, non-blocking reads and writes.

:func:`open_transport` connects without blocking ``close()`` (it waits on the socket and the
worker's wake-up pair together). :meth:`Transport.start_tls` then runs the TLS handshake the
same way and learns the server's certificate fingerprint; the caller decides whether to trust
it (see ``client_link.py``). There is no plain-text fallback: a server that does not answer
in TLS is a failure that says so.

TLS runs on the ``ssl`` module's ``SSLObject`` over two memory BIOs rather than an
``SSLSocket``: the socket stays an ordinary non-blocking socket under ``select()``, ciphertext
the kernel did not take waits in :attr:`Transport.backlogged` (so OpenSSL's "retry the same
write" rule never applies), decrypted bytes are never left hidden in a buffer ``select()``
cannot see, and the first raw bytes can be looked at: a server that answers in plain JSON
(``server_full``) is understood instead of being reported as a TLS error.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import ssl
import threading
import time

from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.tls import client_context, fingerprint_of_der

RECV_SIZE = 65_536
_TLS_RECORD = 0x16  # the first byte of a TLS handshake record
NO_TLS = "no_tls"
UNKNOWN_HOST = "unknown_host"  # the name does not resolve: nobody was even asked
NOT_A_CHAT = "not_a_chat"  # something answered, but not a chat server (a web server...)


class Failure(Exception):
    """Why a connection attempt or a connection ended.

    ``code`` is as in connectionFailed; ``refused_by_server`` marks an answer that retrying
    will not change (the server refused our hello, a certificate was not trusted);
    ``welcomed`` says the connection got that far.
    """

    def __init__(
        self, code: str, message: str, *, refused_by_server: bool = False, welcomed: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.refused_by_server = refused_by_server
        self.welcomed = welcomed


class Stop(Exception):
    """close() or quit() was asked for."""


def describe(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def strerror(err: int) -> str:
    try:
        return os.strerror(err)
    except ValueError:
        return f"error {err}"


def drain(wake: socket.socket) -> None:
    try:
        while wake.recv(4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


class Transport:
    """A connected, non-blocking stream socket, plain until :meth:`start_tls`: the only code
    that reads or writes it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._raw_out = bytearray()  # ciphertext the socket has not taken yet
        self._eof = False
        self.fingerprint: str | None = None  # SHA-256 of the server's certificate, hex
        self.tls_version: str | None = None

    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def backlogged(self) -> bool:
        """Encrypted bytes wait for the socket: select for writing even with nothing new."""
        return bool(self._raw_out)

    # -- TLS ---------------------------------------------------------------------------------

    def start_tls(
        self, where: str, timeout: float, wake: socket.socket, stop: threading.Event
    ) -> str:
        """Run the TLS handshake within ``timeout``; return the server's fingerprint.

        Raises :class:`Failure` (``no_tls``, ``timeout``, or the server's own error code when
        it answered in plain JSON) or :class:`Stop`.
        """
        tls = client_context().wrap_bio(self._incoming, self._outgoing, server_side=False)
        deadline = time.monotonic() + timeout
        heard = False
        while True:
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError as exc:
                raise _no_tls(where, exc.reason or str(exc)) from None
            self._raw_out += self._outgoing.read()
            if done:
                break  # our last handshake bytes may still wait in the backlog: sent first
            try:
                self._push()
            except OSError as exc:
                raise _no_tls(where, exc.strerror or str(exc)) from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("timeout", f"{where} did not answer in time (no encrypted link)")
            readable, _, _ = select.select(
                [self._sock, wake], [self._sock] if self._raw_out else [], [], left
            )
            if stop.is_set():
                raise Stop
            if wake in readable:
                drain(wake)
            if self._sock not in readable:
                continue
            try:
                raw = self._sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise _no_tls(where, exc.strerror or str(exc)) from None
            if not raw:
                raise _no_tls(where, "it closed the connection")
            if not heard and raw[0] != _TLS_RECORD:
                raise _plain_answer(where, raw)
            heard = True
            self._incoming.write(raw)
        der = tls.getpeercert(binary_form=True)
        if not der:
            raise _no_tls(where, "it showed no certificate")
        self._tls = tls
        self.fingerprint = fingerprint_of_der(der)
        self.tls_version = tls.version()
        return self.fingerprint

    def _push(self) -> None:
        """Send what the socket takes of the ciphertext backlog."""
        while self._raw_out:
            try:
                sent = self._sock.send(self._raw_out)
            except (BlockingIOError, InterruptedError):
                return
            del self._raw_out[:sent]

    # -- traffic -----------------------------------------------------------------------------

    def recv(self) -> bytes | None:
        """Bytes read, ``b""`` at end of stream, None when nothing is there after all."""
        if self._eof:
            return b""
        try:
            raw = self._sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        if self._tls is None or not raw:
            return raw  # a TCP close without TLS close_notify ends the stream all the same
        self._incoming.write(raw)
        chunks: list[bytes] = []
        while True:
            try:
                data = self._tls.read(RECV_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._eof = True
                break
            except ssl.SSLError as exc:
                raise OSError(f"TLS error: {exc.reason or exc}") from None
            if not data:
                self._eof = True
                break
            chunks.append(data)
        # TLS 1.3 may answer on its own (a key update): it goes out with our next write.
        self._raw_out += self._outgoing.read()
        if chunks:
            return b"".join(chunks)
        return b"" if self._eof else None

    def send(self, data: bytes | bytearray) -> int:
        """How much of ``data`` was taken (sent, or encrypted and queued in the backlog)."""
        if self._tls is None:
            try:
                return self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                return 0
        self._push()
        if self._raw_out or not data:
            return 0  # older ciphertext first; bounded memory, no OpenSSL write retries
        chunk = bytes(data[:RECV_SIZE])
        try:
            self._tls.write(chunk)
        except ssl.SSLWantReadError:
            return 0
        except ssl.SSLError as exc:
            raise OSError(f"TLS error: {exc.reason or exc}") from None
        self._raw_out += self._outgoing.read()
        self._push()
        return len(chunk)

    def shutdown_write(self) -> None:
        try:
            self._push()
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already reset by the peer: closing is all that is left to do

    def close(self) -> None:
        self._sock.close()


def _no_tls(where: str, detail: str) -> Failure:
    return Failure(
        NO_TLS,
        f"The chat at {where} does not offer encryption ({detail}), so Desktop Chat did not "
        "connect. Ask the host to turn encryption on.",
    )


# Before TLS, nothing a peer says is authenticated: only these codes are understood, and they
# are shown in our own words, never in the peer's (which could pose as a security warning).
_PLAIN_ANSWERS = {
    p.SERVER_FULL: "The chat at {where} is full or refused another connection from this "
    "computer. Try again later.",
}


def _plain_answer(where: str, raw: bytes) -> Failure:
    """The server answered our TLS hello in plain text: a known refusal (in our words: text
    from before TLS is never shown), a web server, or something that is not a chat."""
    if raw[:1] == b"{":
        events = p.JsonLinesProtocol(role="client").receive_data(raw)
        for event in events:
            if isinstance(event, p.ErrorReply) and event.code in _PLAIN_ANSWERS:
                message = _PLAIN_ANSWERS[event.code].format(where=where)
                return Failure(event.code, message, refused_by_server=True)
        return _no_tls(where, "it answered in plain text")
    head = raw.lstrip()[:14].lower()
    # A status line, or (from old servers that take our TLS hello for HTTP/0.9) a bare page.
    if raw[:5] == b"HTTP/" or head.startswith((b"<!doctype html", b"<html")):
        return Failure(
            NOT_A_CHAT,
            f"{where} is a web server, not a Desktop Chat. Check the port number "
            "(the host's window shows the address to type).",
            refused_by_server=True,
        )
    return Failure(
        NOT_A_CHAT,
        f"Something answered at {where}, but it is not a Desktop Chat. Check the address "
        "and the port number.",
        refused_by_server=True,
    )


def open_transport(
    host: str, port: int, timeout: float, wake: socket.socket, stop: threading.Event
) -> Transport:
    """Connect without blocking close(): wait on the socket and the wake-up pair together."""
    where = describe(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Failure(
            UNKNOWN_HOST,
            f"No computer called “{host}” was found on the network. Check the name, or type "
            "the host's address as its window shows it (like 192.168.1.20:5151).",
        ) from exc
    failure = Failure("unreachable", f"Nobody answered at {where}")
    deadline = time.monotonic() + timeout
    for family, kind, proto, _canon, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            while err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure("timeout", f"Nobody answered at {where} (timed out)")
                readable, writable, _ = select.select([wake], [sock], [], left)
                if stop.is_set():
                    raise Stop
                if writable:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                elif readable:
                    drain(wake)
            if err == 0:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return Transport(sock)
            if err == errno.ECONNREFUSED:
                failure = Failure("refused", f"Nobody answered at {where} (connection refused)")
            else:
                failure = Failure("unreachable", f"Nobody answered at {where}: {strerror(err)}")
        except BaseException:
            sock.close()
            raise
        sock.close()
    raise failure
