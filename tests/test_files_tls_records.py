"""An upload over TLS whose records reach the server in pieces: a socket read that ends inside
a record decrypts to nothing yet, which is no reason to give up on the body.

The client here writes the ciphertext itself (the ``ssl`` module's memory BIOs), so it can cut
records where no TLS library would: inside the 5-byte record header, one byte into the
payload, one byte before the end. Each piece goes out on its own TCP segment (``TCP_NODELAY``)
a moment after the one before, as over a slow link, so the server's reads end mid-record.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import time
from typing import Any

import pytest

from desktop_chat.net.protocol.tls import client_context
from tests.helpers import T
from tests.tus_client import FilesClient

GAP = 0.01  # seconds between two pieces of a record (the "slow link"; nothing is waited for)


class RawTlsClient:
    """TLS whose records the test cuts into TCP segments itself."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=T(10))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = client_context().wrap_bio(self._in, self._out)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self._out.read())
                data = self.sock.recv(65536)
                assert data, "the server closed during the handshake"
                self._in.write(data)
        self.sock.sendall(self._out.read())

    def records(self, plaintext: bytes) -> bytes:
        """The ciphertext of ``plaintext`` (records of at most 16 KB), not sent yet."""
        self.tls.write(plaintext)
        return self._out.read()

    def send_in_pieces(self, ciphertext: bytes) -> int:
        """Send each record as three segments: its first 3 header bytes, then the rest up to
        one byte before its end, then that last byte. Returns the number of records."""
        count = 0
        view = memoryview(ciphertext)
        while view:
            length = 5 + int.from_bytes(view[3:5], "big")
            record, view = view[:length], view[length:]
            for piece in (record[:3], record[3:-1], record[-1:]):
                self.sock.sendall(piece)
                time.sleep(GAP)
            count += 1
        return count

    def answer(self) -> bytes:
        """Everything the server says until it closes, decrypted."""
        plain = b""
        while True:
            try:
                plain += self.tls.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return plain
            data = self.sock.recv(65536)
            if not data:
                return plain
            self._in.write(data)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_upload_in_records_cut_across_segments_arrives_whole(
    server: Any, connect: Any, chunked: bool
) -> None:
    alice = connect("alice")
    data = os.urandom(100_000)  # 7 records of body
    files = FilesClient(server.address, alice.welcome_session)
    created = files.create(len(data), filename="pieces.bin", room="general")
    assert created.status == 201
    location = created.headers["location"]

    body = data
    framing = f"Content-Length: {len(data)}"
    if chunked:  # the body then goes through h11's buffer, not straight from the transport
        body = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"
        framing = "Transfer-Encoding: chunked"
    head = (
        f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {alice.welcome_session}\r\nTus-Resumable: 1.0.0\r\n"
        "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
        f"{framing}\r\nConnection: close\r\n\r\n"
    ).encode()
    client = RawTlsClient(server.address)
    try:
        client.sock.sendall(client.records(head))  # the head arrives whole
        try:
            assert client.send_in_pieces(client.records(body)) >= 7
        except OSError as exc:  # the old code took a read that ended mid-record for the end
            pytest.fail(f"the server closed the connection in the middle of the body: {exc}")
        answer = client.answer()
    finally:
        client.close()

    assert answer.startswith(b"HTTP/1.1 204 "), answer[:200]
    assert f"upload-offset: {len(data)}".encode() in answer.lower()
    msg = alice.expect("message")
    assert msg["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert msg["file"]["size"] == len(data)
