"""Outboxes and the flusher over a socketpair: order, limits, lazy rounds, full sockets, commit."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest

from desktop_chat.net.server.outbox import (
    CLOSED,
    LAZY,
    MARK,
    OVERFLOW,
    QUEUED,
    Flusher,
    Outbox,
)
from desktop_chat.net.server.storage import Storage
from tests.helpers import T


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.settimeout(T(5.0))
    try:
        yield ours, peer
    finally:
        ours.close()
        peer.close()


@pytest.fixture
def running(flusher: Flusher) -> Flusher:
    flusher.start()
    return flusher


def _read(peer: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes, waiting (with the socket's deadline) for each chunk."""
    got = b""
    while len(got) < size:
        chunk = peer.recv(size - len(got))
        assert chunk, "peer closed early"
        got += chunk
    return got


def test_enqueue_statuses_and_limit() -> None:
    flusher = Flusher()  # never started: enqueue does no I/O
    try:
        box = Outbox(lambda data: len(data), -1, flusher, limit=10)
        assert box.enqueue(b"12345") == MARK
        assert box.enqueue(b"678") == QUEUED
        assert box.pending == 8
        assert box.enqueue(b"ok") == QUEUED  # exactly at the limit
        assert box.enqueue(b"x") == OVERFLOW and box.overflowed and box.closed  # replies count
        assert box.enqueue(b"y") == CLOSED
        lazy = Outbox(lambda data: len(data), -1, flusher, limit=10)
        assert lazy.enqueue(b"joined", urgent=False) == LAZY
        assert lazy.enqueue(b"left", urgent=False) == QUEUED
    finally:
        flusher.close()


def test_the_flusher_writes_in_order(
    running: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    box = Outbox(ours.send, ours.fileno(), running, limit=1 << 20)
    lines = [f"line {i}\n".encode() for i in range(200)]
    for line in lines:
        box.send(line)
    assert _read(peer, sum(map(len, lines))) == b"".join(lines)
    assert box.wait_drained(T(5.0))


def test_a_lazy_round_is_written_too(
    running: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    box = Outbox(ours.send, ours.fileno(), running, limit=1 << 20)
    assert box.enqueue(b"a joined\n", urgent=False) == LAZY
    running.mark_lazy_many([box])
    assert _read(peer, 9) == b"a joined\n"


def test_a_full_socket_keeps_the_rest_until_the_peer_reads(
    running: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    box = Outbox(ours.send, ours.fileno(), running, limit=1 << 24)
    data = bytes(range(256)) * 4096  # 1 MiB: far more than the socket holds
    box.send(data)
    assert not box.wait_drained(0.05)  # nobody reads: it waits, nothing is lost
    assert box.pending > 0
    assert _read(peer, len(data)) == data
    assert box.wait_drained(T(5.0)) and box.pending == 0


def test_a_vanished_peer_closes_the_outbox(
    running: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    box = Outbox(ours.send, ours.fileno(), running, limit=1 << 20)
    peer.close()
    box.send(b"anyone there?\n")
    assert box.wait_drained(T(5.0))
    assert box.closed and box.send(b"more") is False


def test_messages_are_committed_before_they_are_sent(
    running: Flusher, pair: tuple[socket.socket, socket.socket], storage: Storage
) -> None:
    ours, peer = pair
    running.before_send = storage.commit
    box = Outbox(ours.send, ours.fileno(), running, limit=1 << 20)
    msg = storage.add_message(sender="Ann", text="durable", room="general", room_key="general")
    box.send(f"{msg.id}\n".encode())
    assert _read(peer, len(str(msg.id)) + 1) == f"{msg.id}\n".encode()
    # Whoever received it can rely on it: another connection sees the row already.
    with closing(sqlite3.connect(storage.path)) as other:
        assert other.execute("SELECT text FROM messages").fetchall() == [("durable",)]
