"""Safety of a cluster (``--backplane``) against one user's bad input, names changing hands
while a round is being stored, and resumes on the same process: in-process servers on a real
PostgreSQL database and a real redis-server, as in tests/test_cluster.py.

The cluster's critical section is a PostgreSQL advisory lock; a test that takes that lock on a
connection of its own holds every process's next round back — a slow round, made on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from desktop_chat.net.server.cluster import _storage_failed
from desktop_chat.net.server.storage_api import Identity, NewMessage, StorageError
from desktop_chat.net.server.storage_pg_schema import ORDER_LOCK
from tests.helpers import LineClient, T, wait_until

Server = Any


@pytest.fixture
def cluster(pg_url: str, redis_url: str, make_server: Any) -> Callable[[int], list[Server]]:
    def make(n: int) -> list[Server]:
        return [
            make_server(database=pg_url, backplane=redis_url, heartbeat_ttl=1.0, tls="off")
            for _ in range(n)
        ]

    return make


@pytest.fixture
def order_lock(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection of the test's own that can hold the cluster's ordering lock."""
    with psycopg.connect(pg_url, autocommit=True) as db:
        yield db
        db.execute("SELECT pg_advisory_unlock_all()")


def _writers_waiting(db: psycopg.Connection[Any]) -> int:
    row = db.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    ).fetchone()
    return 0 if row is None else int(row[0])


opened: list[LineClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    for client in opened:
        client.close()
    opened.clear()


def _login(server: Server, name: str, everywhere: list[Server]) -> LineClient:
    client = LineClient(server.address)
    opened.append(client)
    client.login(name)
    for other in everywhere:
        wait_until(lambda o=other: name in o.hub.online_names(), T(5), f"{name} seen")
    return client


def _quit(client: LineClient, name: str, everywhere: list[Server]) -> None:
    client.send_json(type="quit")
    client.assert_closed()
    client.close()
    for other in everywhere:
        wait_until(lambda o=other: name not in o.hub.online_names(), T(5), f"{name} gone")


def test_a_dm_stored_late_never_reaches_a_later_holder_of_either_name(
    cluster: Any, order_lock: psycopg.Connection[Any]
) -> None:
    a, b = servers = cluster(2)
    alice, bob = _login(a, "alice", servers), _login(b, "bob", servers)
    carol = _login(a, "carol", servers)
    order_lock.execute("SELECT pg_advisory_lock(%s)", (ORDER_LOCK,))
    alice.send_json(type="dm", to="bob", text="the door code is 4711", ref="secret")
    wait_until(lambda: _writers_waiting(order_lock) == 1, T(5), "the round waits for the lock")
    # Both leave while the DM is being stored; two other people take their names.
    _quit(bob, "bob", servers)
    _quit(alice, "alice", servers)
    mallory, eve = _login(b, "bob", servers), _login(a, "alice", servers)
    order_lock.execute("SELECT pg_advisory_unlock(%s)", (ORDER_LOCK,))
    carol.send_json(type="say", room="general", text="after the dm", ref="c1")
    # Ids are delivered in order: the DM (stored first) would come before carol's message.
    for newcomer in (mallory, eve):
        got = newcomer.expect("message")
        assert (got["from"], got["text"]) == ("carol", "after the dm"), got


def test_one_row_the_database_refuses_fails_only_its_sender(
    cluster: Any, order_lock: psycopg.Connection[Any]
) -> None:
    (a,) = servers = cluster(1)
    alice, bob = _login(a, "alice", servers), _login(a, "bob", servers)
    order_lock.execute("SELECT pg_advisory_lock(%s)", (ORDER_LOCK,))
    alice.send_json(type="say", room="general", text="first", ref="a1")
    wait_until(lambda: _writers_waiting(order_lock) == 1, T(5), "the round waits for the lock")
    # The next round gathers: a row PostgreSQL cannot take (NUL; however it got this far) and
    # bob's message.
    outcome: list[StorageError | None] = []
    bad = NewMessage(sender="alice", text="bad\0row", room="general", room_key="general")
    a.hub.cluster.sequencer.submit([bad], lambda _m, error: outcome.append(error))
    bob.send_json(type="say", room="general", text="fine", ref="b1")
    sequencer = a.hub.cluster.sequencer
    wait_until(lambda: len(sequencer._waiting) == 2, T(5), "both queued for the next round")
    order_lock.execute("SELECT pg_advisory_unlock(%s)", (ORDER_LOCK,))
    assert bob.expect("message", where=lambda m: m.get("ref") == "b1")["text"] == "fine"
    wait_until(lambda: outcome, T(5), "the bad row answered")
    assert isinstance(outcome[0], StorageError)
    # Its sender is not told to send it again: it would be refused again.
    assert "send it again" not in _storage_failed(outcome[0])[1]
    texts = [
        m.text for m in a.hub.storage.messages_since(0, ["general"], Identity("x", "x"), limit=10)
    ]
    assert texts == ["first", "fine"]


def test_nul_in_json_text_is_refused_with_a_clear_error(connect: Any) -> None:
    alice = connect("alice")
    alice.send(b'{"type":"say","room":"general","text":"a\\u0000b","ref":"n1"}\n')
    error = alice.expect("error")
    assert (error["code"], error["ref"]) == ("bad_message", "n1")
    assert "NUL" in error["message"]
    alice.send_json(type="say", room="general", text="a\\u0000b", ref="n2")  # an escaped one
    assert alice.expect("message")["text"] == "a\\u0000b"


def test_nul_from_a_terminal_becomes_a_replacement_character_on_postgresql(
    pg_url: str, make_server: Any
) -> None:
    server = make_server(database=pg_url, tls="off")
    alice = _login(server, "alice", [server])
    nc = LineClient(server.address)
    opened.append(nc)
    nc.send(b"bob\n")
    nc.read_line()
    nc.send(b"a\0b\n")
    got = alice.expect("message")
    assert (got["from"], got["text"]) == ("bob", "a\ufffdb")


def test_resuming_on_the_same_server_keeps_no_state_of_the_replaced_connection(
    cluster: Any,
) -> None:
    (a,) = servers = cluster(1)
    first = _login(a, "alice", servers)
    session = first.welcome_session
    for _ in range(3):
        again = LineClient(a.address)
        opened.append(again)
        again.login("alice", resume={"session": session, "since": 0})
    # One live member, one entry: the replaced connections' entries are gone with them.
    assert len(a.hub.cluster.last_id) == 1


def test_a_message_event_the_database_does_not_have_is_ignored(
    cluster: Any, redis_url: str
) -> None:
    import json

    import redis

    (a,) = servers = cluster(1)
    alice = _login(a, "alice", servers)
    forged = {
        "t": "msg", "rk": "general", "fk": None, "tk": None, "sk": None, "h": "", "ref": None,
        "m": {"type": "message", "id": 10**12, "ts": 1, "from": "admin", "room": "general",
              "text": "forged"},
    }  # fmt: skip
    with redis.Redis.from_url(redis_url) as r:
        r.publish(a.hub.cluster.bp.channel, json.dumps(forged))
    # Someone who logs in afterwards still gets the real messages (seen_id not poisoned).
    bob = _login(a, "bob", servers)
    alice.send_json(type="say", room="general", text="real", ref="r")
    for person in (alice, bob):
        got = person.expect("message")
        assert got["text"] == "real", got
    assert a.hub.cluster.seen_id == got["id"]
