"""TLS for the file transfers: a blocking socket with the ``ssl`` module's memory BIOs.

Why not ``ssl.SSLSocket``: its ``recv`` returns at most one TLS record (16 KB) per call, each
call may read the socket twice (a record's header, then its body), and every call gives up the
interpreter lock and takes it back. When another thread of the app keeps Python busy, each of
those hand-overs can cost this thread up to that thread's switch interval (5 ms). Here one
socket read takes whatever the kernel holds (up to :data:`READ` bytes) and every complete
record in it is decrypted from memory before the caller sees anything (``SSLObject.read``
still lets go of the lock once per record, but makes no system call and returns at once);
writes encrypt a whole chunk in one call.

The socket keeps its timeout, and closing or shutting it down from another thread (see
``files.Cancel``) ends a read or write waiting on it.
"""

from __future__ import annotations

import socket
import ssl
from typing import cast

READ = 1 << 20  # bytes asked of the socket per read (the kernel gives what it has)


class TlsStream:
    """A TLS client over ``sock`` (connected, blocking with a timeout)."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_side=False)
        self._raw = bytearray(READ)
        self._plain = bytearray(READ)
        self._eof = False

    def handshake(self) -> None:
        """Run the handshake. Raises OSError or ssl.SSLError (also when the peer closes)."""
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        self._flush()

    def peer_certificate(self) -> bytes | None:
        """The server's certificate (DER)."""
        return self._tls.getpeercert(binary_form=True)

    def sendall(self, data: bytes | memoryview) -> None:
        """Encrypt all of ``data`` and write it. Raises OSError or ssl.SSLError."""
        self._tls.write(data)
        self._flush()

    def recv(self, size: int = READ) -> bytes:
        """Up to ``size`` (at most :data:`READ`) decrypted bytes: every complete record that
        one socket read brought. b"" at the end of the stream (TLS close or socket closed).
        Raises OSError (a timeout, a reset) or ssl.SSLError (a broken record)."""
        size = min(size, READ)
        view = memoryview(self._plain)
        got = 0
        while True:
            try:
                while got < size:
                    # With a buffer, read() returns a count (typeshed says bytes).
                    n = cast(int, self._tls.read(size - got, view[got:size]))
                    if n == 0:
                        self._eof = True
                        break
                    got += n
            except ssl.SSLWantReadError:
                pass  # every complete record is read: the socket has to give more
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self._eof = True  # what was read before the end is returned first
            self._flush()  # reading can produce records to send (a key update's answer)
            if got or self._eof or not self._fill():
                return bytes(view[:got])

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> bool:
        """One socket read into the TLS object; False at the end of the stream."""
        n = self.sock.recv_into(self._raw)
        if n == 0:
            self._eof = True
            self._in.write_eof()
            return False
        self._in.write(memoryview(self._raw)[:n])
        return True

    def _flush(self) -> None:
        if self._out.pending:
            self.sock.sendall(self._out.read())
