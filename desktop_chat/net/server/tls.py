"""TLS on the shared port: the server's self-signed certificate, and TLS over a non-blocking
socket shared by a reading thread and many writing threads.

The certificate (EC P-256, self-signed) is made on first start in the data folder and kept; the
key file is readable by its owner only. Clients pin its fingerprint: SHA-256 over the DER
certificate, as ``openssl x509 -fingerprint -sha256`` shows it.

:class:`TlsChannel` runs the ``ssl`` module's sans-I/O ``SSLObject`` over two memory BIOs, so the
connection keeps its own socket handling (non-blocking, ``poll`` with deadlines): the reading
thread feeds it ciphertext and gets plaintext; writers hand it plaintext and it sends the
ciphertext, keeping what the socket did not take for the next write.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from desktop_chat.net.protocol.tls import fingerprint_of_der, format_fingerprint, group_for_reading

_RECORD = 16_384 + 256  # the most plaintext one TLS record holds, and some
CERT_FILE = "tls-cert.pem"
KEY_FILE = "tls-key.pem"


@dataclass(frozen=True, slots=True)
class Certificate:
    cert_path: Path
    key_path: Path
    fingerprint: str  # lowercase hex, no separators

    @property
    def fingerprint_colons(self) -> str:
        return format_fingerprint(self.fingerprint)

    @property
    def fingerprint_for_reading(self) -> str:
        return group_for_reading(self.fingerprint)


def ensure_certificate(data_dir: Path) -> Certificate:
    """Load the server's certificate from ``data_dir``, making one on first use."""
    cert_path, key_path = data_dir / CERT_FILE, data_dir / KEY_FILE
    if not (cert_path.exists() and key_path.exists()):
        _make_certificate(cert_path, key_path)
    pem = cert_path.read_bytes()
    der = ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))
    return Certificate(cert_path, key_path, fingerprint_of_der(der))


def _make_certificate(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname() or "desktop-chat"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Desktop Chat on {host}"[:64])])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    if host.isascii() and host.replace("-", "").replace(".", "").isalnum():
        alt_names.insert(0, x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key is written with owner-only permissions from the start, never world-readable,
    # to a new file of a random name (mkstemp: O_EXCL, so a leftover file or a planted symlink
    # is never followed), then renamed into place.
    fd, tmp_name = tempfile.mkstemp(prefix=".tls-key-", dir=key_path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem)
        os.replace(tmp_name, key_path)
    except BaseException:
        os.unlink(tmp_name)
        raise
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_context(cert: Certificate) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    return ctx


class TlsClosed(Exception):
    """The peer ended the TLS session, or broke it."""


class TlsChannel:
    """TLS over a non-blocking socket; thread-safe between one reader and many writers."""

    def __init__(self, ctx: ssl.SSLContext, sock: socket.socket) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(self._in, self._out, server_side=True)
        self._sock = sock
        self._lock = threading.Lock()
        self._raw_pending = b""  # ciphertext the socket has not taken, from _raw_sent on
        self._raw_sent = 0

    @property
    def backlogged(self) -> bool:
        """Ciphertext is waiting for the socket to take it."""
        return bool(self._raw_pending)

    @property
    def version(self) -> str | None:
        return self._obj.version()

    def handshake_step(self, raw: bytes) -> bool:
        """Feed handshake bytes; True once the handshake is complete. Raises TlsClosed."""
        with self._lock:
            if raw:
                self._in.write(raw)
            try:
                self._obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except (ssl.SSLError, ValueError) as exc:
                self._queue_out_locked()
                raise TlsClosed(str(exc)) from exc
            self._queue_out_locked()
        return done

    def decrypt(self, raw: bytes) -> bytes:
        """Ciphertext in, the plaintext it completes out (maybe b""). Raises TlsClosed."""
        with self._lock:
            self._in.write(raw)
            # Every record is read into one buffer and copied out once. The plaintext is no
            # longer than the ciphertext in the BIO plus the partial record OpenSSL already
            # took from it (at most one); the buffer grows if that ever falls short.
            out = bytearray(self._in.pending + _RECORD)
            got = 0
            while True:
                if got == len(out):
                    out.extend(bytes(_RECORD))
                try:
                    with memoryview(out) as view:
                        # With a buffer, read() returns a count (typeshed says bytes).
                        n = cast(int, self._obj.read(len(out) - got, view[got:]))
                except ssl.SSLWantReadError:
                    break
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError) as exc:
                    raise TlsClosed("closed") from exc
                except ssl.SSLError as exc:
                    raise TlsClosed(str(exc)) from exc
                if not n:
                    raise TlsClosed("closed")
                got += n
            self._queue_out_locked()
            del out[got:]
            return bytes(out)

    def send(self, data: bytes) -> int:
        """Encrypt all of ``data`` and send what the socket takes; the rest waits in
        ``backlogged``. Returns ``len(data)`` (the plaintext is always consumed) or raises
        BlockingIOError when older ciphertext still waits, so the caller keeps ``data``."""
        with self._lock:
            if self._raw_pending:
                self._push_locked()
                if self._raw_pending:
                    if data:
                        raise BlockingIOError
                    return 0
            if data:
                try:
                    self._obj.write(data)
                except ssl.SSLError as exc:
                    raise OSError(str(exc)) from exc
            self._queue_out_locked()
        return len(data)

    def _queue_out_locked(self) -> None:
        pending = self._out.read()
        if pending:
            if self._raw_pending:
                self._raw_pending = self._raw_pending[self._raw_sent :] + pending
            else:
                self._raw_pending = pending
            self._raw_sent = 0
        self._push_locked()

    def _push_locked(self) -> None:
        if not self._raw_pending:
            return
        try:
            # A view, not a slice: what the socket did not take is not copied again for
            # every retry (a download's 256 KB write often goes out in several pieces).
            with memoryview(self._raw_pending) as view:
                sent = self._sock.send(view[self._raw_sent :])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._raw_pending, self._raw_sent = b"", 0  # the peer is gone: the reader notices
            return
        self._raw_sent += sent
        if self._raw_sent >= len(self._raw_pending):
            self._raw_pending, self._raw_sent = b"", 0
