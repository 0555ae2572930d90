"""A cluster's faults: one process cut off from Redis (a relay in this test that it cuts), the
ordering lock held by a process that stopped answering, resends during an outage.

Servers run in this test process, as in tests/test_cluster.py; what needs a real process
(SIGSTOP) is in tests/test_cluster_processes.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from desktop_chat.net.server import storage_pg
from desktop_chat.net.server.storage_pg_schema import ORDER_LOCK
from tests.helpers import LineClient, T, wait_until

Server = Any


class Relay:
    """A TCP relay to Redis that the test can cut (every connection closed, new ones
    refused) and restore: one process's network partition."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.open = True
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass  # cut
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already shut by the other direction

    def cut(self) -> None:
        self.open = False
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its peer
            s.close()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self._listener.close()


@pytest.fixture
def relay(redis_service: Any) -> Iterator[Relay]:
    r = Relay(redis_service.address)
    yield r
    r.close()


@pytest.fixture
def clients() -> Iterator[Callable[..., LineClient]]:
    opened: list[LineClient] = []

    def connect(server: Server, name: str, everywhere: list[Server]) -> LineClient:
        client = LineClient(server.address)
        opened.append(client)
        client.login(name)
        for other in everywhere:
            wait_until(lambda o=other: name in o.hub.online_names(), T(5), f"{name} seen")
        return client

    yield connect
    for client in opened:
        client.close()


def _server(make_server: Any, pg_url: str, backplane: str) -> Server:
    return make_server(database=pg_url, backplane=backplane, heartbeat_ttl=1.0, tls="off")


def _messages(client: LineClient, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    return [client.expect("message", timeout=timeout) for _ in range(count)]


def test_a_message_a_cut_off_server_stored_reaches_the_others_before_newer_ones(
    pg_url: str, redis_url: str, make_server: Any, relay: Relay, clients: Any
) -> None:
    a = _server(make_server, pg_url, relay.url)
    b = _server(make_server, pg_url, redis_url)
    alice = clients(a, "alice", [a, b])
    bob = clients(b, "bob", [a, b])
    relay.cut()
    alice.send_json(type="say", room="general", text="during", ref="d")
    wait_until(lambda: b.storage.last_message_id() >= 1, T(10), "stored without Redis")
    bob.send_json(type="say", room="general", text="after", ref="a")
    # Bob's server learns of the gap from the next id and fills it from the database.
    got = _messages(bob, 2)
    assert [m["text"] for m in got] == ["during", "after"]
    assert got[0]["id"] < got[1]["id"]
    relay.restore()
    mine = _messages(alice, 2, timeout=15)  # alice's copy with its ref, then bob's: in order
    assert [(m["text"], m.get("ref")) for m in mine] == [("during", "d"), ("after", None)]


def test_a_cut_off_servers_last_message_reaches_the_others_when_it_is_back(
    pg_url: str, redis_url: str, make_server: Any, relay: Relay, clients: Any
) -> None:
    a = _server(make_server, pg_url, relay.url)
    b = _server(make_server, pg_url, redis_url)
    alice = clients(a, "alice", [a, b])
    bob = clients(b, "bob", [a, b])
    relay.cut()
    alice.send_json(type="say", room="general", text="during", ref="d")
    wait_until(lambda: b.storage.last_message_id() >= 1, T(10), "stored without Redis")
    relay.restore()
    # Nobody sends anything newer: the cut-off server says how far the database goes.
    assert bob.expect("message", timeout=15)["text"] == "during"
    assert alice.expect("message", timeout=15).get("ref") == "d"


def test_a_resend_during_an_outage_is_answered_in_id_order(
    pg_url: str, redis_url: str, make_server: Any, redis_service: Any, clients: Any
) -> None:
    a = _server(make_server, pg_url, redis_url)
    b = _server(make_server, pg_url, redis_url)
    alice = clients(a, "alice", [a, b])
    bob = clients(b, "bob", [a, b])
    redis_service.stop()
    bob.send_json(type="say", room="general", text="first", ref="b1")
    wait_until(lambda: a.storage.last_message_id() >= 1, T(10), "bob's stored")
    alice.send_json(type="say", room="general", text="second", ref="r1")
    wait_until(lambda: a.storage.last_message_id() >= 2, T(10), "alice's stored")
    alice.send_json(type="say", room="general", text="second", ref="r1")  # her resend
    redis_service.start()
    got = _messages(alice, 2, timeout=15)
    assert [(m["text"], m.get("ref")) for m in got] == [("first", None), ("second", "r1")]
    alice.send_json(type="ping", n=1)  # and nothing twice
    assert alice.expect("pong", skip=("joined", "left", "users", "typing"))["n"] == 1


def _hold_order_lock(url: str, settings: str = "") -> psycopg.Connection[Any]:
    db = psycopg.connect(url, autocommit=True)
    if settings:
        db.execute(settings)
    db.execute("SELECT pg_advisory_lock(%s)", (ORDER_LOCK,))
    return db


def test_a_stalled_lock_holder_loses_the_lock_and_the_others_go_on(
    pg_url: str, redis_url: str, make_server: Any, clients: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(storage_pg, "LOCK_HOLD", 1.0)
    a = _server(make_server, pg_url, redis_url)
    alice = clients(a, "alice", [a])
    # A "process" that took the ordering lock with the server's own limits, then stopped
    # answering (as under SIGSTOP, or with its host gone): PostgreSQL ends its session.
    stalled = a.storage
    holder = _hold_order_lock(
        pg_url, f"SET idle_session_timeout = {int(storage_pg.LOCK_HOLD * 1000)}"
    )
    alice.send_json(type="say", room="general", text="hello", ref="h")
    assert alice.expect("message", timeout=15).get("ref") == "h"
    assert stalled.last_message_id() == 1
    with pytest.raises(psycopg.OperationalError):
        holder.execute("SELECT 1")  # its session was ended: the lock went with it
    holder.close()


def test_a_sender_waiting_too_long_for_the_lock_is_told_to_resend(
    pg_url: str, redis_url: str, make_server: Any, clients: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(storage_pg, "LOCK_WAIT", 0.5)
    monkeypatch.setattr(storage_pg, "LOCK_HOLD", 0.2)
    a = _server(make_server, pg_url, redis_url)
    alice = clients(a, "alice", [a])
    # A holder whose session PostgreSQL does not end by itself (as one stopped halfway
    # through sending its round: its session counts as active, not idle).
    holder = _hold_order_lock(pg_url)
    try:
        alice.send_json(type="say", room="general", text="hello", ref="h")
        error = alice.expect("error", timeout=15)
        assert (error["code"], error.get("ref")) == ("storage_failed", "h")
        # The waiter ended the stalled holder's session: the resend goes through.
        alice.send_json(type="say", room="general", text="hello", ref="h")
        got = alice.expect("message", timeout=15)
        assert (got["text"], got.get("ref")) == ("hello", "h")
        with pytest.raises(psycopg.OperationalError):
            holder.execute("SELECT 1")
    finally:
        holder.close()


def _health(server: Server) -> tuple[int, dict[str, Any]]:
    with socket.create_connection(server.address, timeout=T(5)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_health_says_when_redis_is_out_of_reach(
    pg_url: str, make_server: Any, relay: Relay
) -> None:
    a = _server(make_server, pg_url, relay.url)
    status, body = _health(a)
    assert (status, body["status"]) == (200, "ok")
    relay.cut()
    # Logins are refused now (server_full): a load balancer should send people elsewhere.
    wait_until(lambda: _health(a)[0] == 503, T(10), "503 while cut off")
    assert _health(a)[1]["status"] == "backplane_down"
    relay.restore()
    wait_until(lambda: _health(a)[0] == 200, T(10), "200 once back")


def _keys(redis_service: Any) -> list[str]:
    import redis

    with redis.Redis.from_url(redis_service.url, decode_responses=True) as r:
        return sorted(str(k) for k in r.keys("dc:*"))


def test_a_clean_stop_leaves_no_names_in_redis(
    pg_url: str, redis_url: str, redis_service: Any, make_server: Any, clients: Any
) -> None:
    a = _server(make_server, pg_url, redis_url)
    clients(a, "alice", [a])
    assert "dc:name:alice" in _keys(redis_service)
    a.close()
    assert _keys(redis_service) == []


def test_names_and_lists_of_dead_processes_are_removed(
    pg_url: str, redis_url: str, redis_service: Any, make_server: Any, clients: Any
) -> None:
    import redis

    from desktop_chat.net.server.presence import RemoteUser, name_value

    ghost = name_value("0123456789ab", "ghost", "h")  # a process killed with nobody to reap it
    with redis.Redis.from_url(redis_url) as r:
        r.set("dc:name:ghost", ghost)
        r.set("dc:look:ghost", ghost)
        user = RemoteUser("ghost", "ghost", "h", None, rooms={"general": "general"})
        r.hset("dc:users:0123456789ab", "ghost", json.dumps(user.to_dict()))
    a = _server(make_server, pg_url, redis_url)
    clients(a, "alice", [a])
    keys = _keys(redis_service)
    assert not [k for k in keys if "ghost" in k or "0123456789ab" in k], keys
    ghost_again = clients(a, "Ghost", [a])  # and the name is free
    assert ghost_again.welcome["name"] == "Ghost"


def _store(sequencer: Any, row: Any) -> None:
    """``sequencer.store([row])``, with a deadline: a writer thread that died never answers."""
    told = threading.Event()
    errors: list[Exception | None] = []

    def done(_msgs: list[Any], error: Exception | None) -> None:
        errors.append(error)
        told.set()

    sequencer.submit([row], done)
    assert told.wait(T(10)), "the sender was never told"
    if errors[0] is not None:
        raise errors[0]


def test_a_bug_in_a_writers_round_is_reported_and_the_writer_goes_on(
    pg_url: str, redis_url: str, tmp_path: Any
) -> None:
    from desktop_chat.net.server.backplane import Backplane
    from desktop_chat.net.server.sequencer import Sequencer
    from desktop_chat.net.server.storage_api import NewMessage, StorageError, open_store

    store = open_store(pg_url, tmp_path)
    # Never started: publishing fails with an AssertionError, as a bug of ours would.
    sequencer = Sequencer(store, Backplane(redis_url))
    sequencer.start()
    try:
        for text in ("one", "two"):  # the second round proves the thread is still there
            row = NewMessage(sender="alice", text=text, room="general", room_key="general")
            with pytest.raises(StorageError):
                _store(sequencer, row)
    finally:
        sequencer.stop()
        store.close()
