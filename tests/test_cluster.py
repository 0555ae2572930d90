"""Several servers, one chat (``--backplane``): two and three servers in this test process,
sharing one PostgreSQL database (tests/pg_server.py) and a real redis-server
(tests/redis_server.py).

What separate processes add (SIGKILL, the real command) is in tests/test_cluster_processes.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.helpers import LineClient, T, wait_until

Server = Any


servers: list[Server] = []  # the servers of the running test (for clients())


@pytest.fixture
def cluster(
    pg_url: str, redis_url: str, make_server: Any
) -> Iterator[Callable[[int], list[Server]]]:
    # pg_url first: set up before the servers, so torn down after they are closed.
    def make(n: int) -> list[Server]:
        servers[:] = [
            make_server(database=pg_url, backplane=redis_url, heartbeat_ttl=1.0, tls="off")
            for _ in range(n)
        ]
        return list(servers)

    yield make
    servers.clear()


@pytest.fixture
def clients() -> Iterator[Callable[..., LineClient]]:
    opened: list[LineClient] = []

    def connect(server: Server, name: str | None = None, **hello: Any) -> LineClient:
        """A client logged in as ``name`` on ``server``, once every server knows of it
        (presence reaches the others a moment after the login)."""
        client = LineClient(server.address)
        opened.append(client)
        if name is not None:
            client.login(name, **hello)
            for other in servers:
                wait_until(lambda o=other: name in o.hub.online_names(), T(5), f"{name} seen")
        return client

    yield connect
    for client in opened:
        client.close()


def _say(client: LineClient, text: str, room: str = "general") -> dict[str, Any]:
    client.send_json(type="say", room=room, text=text, ref=text)
    return client.expect("message", where=lambda m: m.get("ref") == text)


def test_chat_across_two_servers(cluster: Any, clients: Any) -> None:
    a, b = cluster(2)
    alice = clients(a, "alice")
    bob = clients(b, "bob")
    assert bob.users[0]["names"] == ["alice", "bob"]
    assert alice.expect("joined")["name"] == "bob"
    mine = _say(alice, "hello from a")
    got = bob.expect("message")
    assert (got["id"], got["text"], got["from"]) == (mine["id"], "hello from a", "alice")
    assert "ref" not in got
    reply = _say(bob, "hello from b")
    assert alice.expect("message")["id"] == reply["id"] > mine["id"]


def test_ids_arrive_in_one_order_everywhere(cluster: Any, clients: Any) -> None:
    servers = cluster(3)
    people = [clients(s, f"p{i}") for i, s in enumerate(servers)]
    for i, person in enumerate(people):
        for j in range(5):
            person.send_json(type="say", room="general", text=f"{i}-{j}", ref=j)
    seen = []
    for i, person in enumerate(people):
        got = [person.expect("message", timeout=5) for _ in range(15)]
        ids = [m["id"] for m in got]
        assert ids == sorted(ids) and len(set(ids)) == 15
        # Its own five carry their refs (sent at once: stored in shared rounds).
        assert [m.get("ref") for m in got if m["from"] == f"p{i}"] == [0, 1, 2, 3, 4]
        assert all("ref" not in m for m in got if m["from"] != f"p{i}")
        seen.append(ids)
    assert seen[0] == seen[1] == seen[2]


def test_dm_to_a_user_on_another_server(cluster: Any, clients: Any) -> None:
    a, b = cluster(2)
    alice = clients(a, "alice")
    bob = clients(b, "bob")
    alice.expect("joined")  # a knows of bob now
    alice.send_json(type="dm", to="Bob", text="psst", ref=1)
    sent = alice.expect("message", where=lambda m: m.get("ref") == 1)
    got = bob.expect("message")
    assert (got["id"], got["to"], got["text"]) == (sent["id"], "bob", "psst")
    bob.send_json(type="history", **{"with": "alice"})
    history = bob.expect("history")
    assert [m["text"] for m in history["messages"]] == ["psst"]
    bob.send_json(type="dm", to="nobody", text="x")
    assert bob.expect("error")["code"] == "no_such_user"


def test_presence_joins_leaves_and_rooms(cluster: Any, clients: Any) -> None:
    a, b = cluster(2)
    alice = clients(a, "alice")
    bob = clients(b, "bob")
    alice.expect("joined")
    alice.send_json(type="join", room="games")
    assert alice.expect("users", where=lambda m: m["room"] == "games")["names"] == ["alice"]
    wait_until(lambda: "alice" in b.hub.online_names(), T(5))
    bob.send_json(type="join", room="games")
    assert alice.expect("joined", where=lambda m: m["room"] == "games")["name"] == "bob"
    wait_until(lambda: b.hub.room_names("games") == ["alice", "bob"], T(5), "both in games")
    alice.send_json(type="rooms")
    rooms = {r["name"]: r["users"] for r in alice.expect("rooms")["rooms"]}
    assert rooms == {"general": 2, "games": 2}
    bob.send_json(type="typing", room="games")
    assert alice.expect("typing", skip=("joined", "left", "users"))["name"] == "bob"
    bob.send_json(type="part", room="games")
    left = alice.expect("left", skip=("typing",))
    assert (left["room"], left["name"], left["reason"]) == ("games", "bob", "part")
    assert sorted(a.hub.online_names()) == ["alice", "bob"]
    bob.send_json(type="quit")
    left = alice.expect("left", skip=("typing",))
    assert (left["room"], left["name"], left["reason"]) == ("general", "bob", "quit")
    wait_until(lambda: a.hub.online_names() == ["alice"], T(5), "bob gone from a's list")


def test_resume_on_another_server_gets_the_missed_once(cluster: Any, clients: Any) -> None:
    a, b = cluster(2)
    alice = clients(a, "alice")
    bob = clients(b, "bob")
    first = _say(bob, "m1")
    alice.expect("message", where=lambda m: m["id"] == first["id"])
    token = alice.welcome_session
    alice.close()
    bob.expect("left")
    missed = [_say(bob, f"m{i}")["id"] for i in (2, 3)]
    back = clients(b)
    back.login("alice", resume={"session": token, "since": first["id"]})
    assert back.welcome["resumed"] is True
    assert [back.expect("message")["id"] for _ in missed] == missed
    live = _say(bob, "m4")
    assert back.expect("message")["id"] == live["id"]


def test_a_resent_ref_is_answered_on_another_server(cluster: Any, clients: Any) -> None:
    a, b = cluster(2)
    alice = clients(a, "alice")
    sent = _say(alice, "only once")
    token = alice.welcome_session
    alice.close()
    back = clients(b)
    back.login("alice", resume={"session": token, "since": sent["id"]})
    back.send_json(type="say", room="general", text="only once", ref="only once")
    again = back.expect("message", where=lambda m: m.get("ref") == "only once")
    assert again["id"] == sent["id"]


def test_names_are_unique_across_servers(cluster: Any, clients: Any) -> None:
    a, b = cluster(2)
    clients(a, "alice")
    for name in ("alice", "ALICE", "aIice"):
        late = clients(b)
        late.send_json(type="hello", protocol=1, name=name)
        refused = late.read_json()
        assert refused.get("code") == "name_taken", (name, refused)


def test_resuming_elsewhere_replaces_the_old_connection_silently(
    cluster: Any, clients: Any
) -> None:
    a, b = cluster(2)
    alice = clients(a, "alice")
    bob = clients(a, "bob")
    alice.expect("joined")
    back = clients(b)
    back.login("alice", resume={"session": alice.welcome_session, "since": 0})
    alice.assert_closed()
    live = _say(bob, "still here?")
    assert back.expect("message")["id"] == live["id"]
    assert "alice" in a.hub.online_names()
    # a's list in Redis (what a server starting now would load) no longer has alice.
    wait_until(lambda: a.hub.cluster.bp.redis.hkeys(f"dc:users:{a.hub.cluster.bp.proc}") == ["bob"])
    # bob saw no `left` of alice: the next event after his own message is nothing else.
    bob.send_json(type="ping", n=7)
    assert bob.expect("pong", skip=())["n"] == 7


def test_redis_restarted_mid_chat_loses_nothing_and_repeats_nothing(
    cluster: Any, clients: Any, redis_service: Any
) -> None:
    a, b = cluster(2)
    alice = clients(a, "alice")
    bob = clients(b, "bob")
    before = _say(alice, "before")
    assert bob.expect("message")["id"] == before["id"]
    redis_service.stop()
    # Stored while Redis is away (sending is not refused); delivery waits.
    alice.send_json(type="say", room="general", text="during", ref="during")
    wait_until(lambda: a.storage.last_message_id() > before["id"], T(10), "stored")
    redis_service.start()
    got = bob.expect("message", timeout=15)
    assert (got["text"], got["from"]) == ("during", "alice")
    mine = alice.expect("message")
    assert (mine["id"], mine.get("ref")) == (got["id"], "during")
    after = _say(bob, "after")
    assert alice.expect("message")["id"] == after["id"]
    for client in (alice, bob):  # and nothing twice
        client.send_json(type="ping", n=1)
        assert client.expect("pong", skip=("joined", "left", "users", "typing"))["n"] == 1


def test_kick_ban_and_promote_reach_a_user_on_another_server(cluster: Any, clients: Any) -> None:
    a, b = cluster(2)
    host = clients(a, "host", owner=a.owner_token)
    carol = clients(b, "carol")
    dave = clients(b, "dave")
    host.send_json(type="kick", name="Carol", reason="spam", ref="k")
    assert host.expect("ok")["ref"] == "k"
    assert carol.expect("error")["code"] == "kicked"
    carol.assert_closed()
    left = host.expect("left", where=lambda m: m["name"] == "carol")
    assert left["reason"] == "kicked"
    host.send_json(type="ban", name="dave", ref="b")
    assert host.expect("ok")["ref"] == "b"
    assert dave.expect("error")["code"] == "kicked"
    dave.assert_closed()
    for server in (a, b):  # the ban holds on every server
        again = clients(server)
        again.send_json(type="hello", protocol=1, name="dave")
        assert again.read_json()["code"] == "banned"
    host.send_json(type="ban", name="host", ref="self")
    assert host.expect("error")["code"] == "forbidden"


def test_promote_topic_and_typing_reach_another_server(cluster: Any, clients: Any) -> None:
    from desktop_chat.net.server.accounts import hash_password

    a, b = cluster(2)
    a.storage.save_account("bob", "bob", hash_password("bob's password"))
    host = clients(a, "host", owner=a.owner_token)
    carol = clients(a, "carol")
    bob = clients(b, "bob", password="bob's password")
    assert "admin" not in bob.welcome
    host.send_json(type="promote", name="bob", ref="p")
    assert host.expect("ok")["ref"] == "p"
    # bob, on the other server, may moderate now: he sets the topic for everyone...
    wait_until(lambda: b.hub.members()[0].is_admin, T(5), "bob an admin on b")
    bob.send_json(type="topic", room="general", topic="cluster night", ref="t")
    assert bob.expect("ok", skip=("joined", "users", "topic"))["ref"] == "t"
    for person in (host, carol):
        changed = person.expect("topic")
        assert (changed["topic"], changed["by"]) == ("cluster night", "bob")
    # ...and typing, in the room and to one person, crosses too.
    bob.send_json(type="typing", to="carol")
    assert carol.expect("typing", skip=("joined", "users"))["name"] == "bob"
    # ...and kicks someone who is on the first server.
    bob.send_json(type="kick", name="carol", ref="k")
    assert bob.expect("ok", skip=("joined", "users", "topic", "typing"))["ref"] == "k"
    assert carol.expect("error", skip=("joined", "users", "typing", "topic"))["code"] == "kicked"


def test_a_name_registered_on_one_server_is_guarded_on_another(cluster: Any, clients: Any) -> None:
    a, b = cluster(2)
    carol = clients(a, "carol")
    carol.send_json(type="register", password="carol's long password", ref="r")
    assert carol.expect("ok")["ref"] == "r"
    carol.send_json(type="quit")
    carol.assert_closed()
    wait_until(lambda: "carol" in b.hub._registered_keys, T(5), "b knows carol registered")
    # The name itself needs its password; one with a Cyrillic а looks the same: refused.
    for name, code in (("carol", "auth_failed"), ("c\u0430rol", "name_taken")):
        late = clients(b)
        late.send_json(type="hello", protocol=1, name=name)
        assert late.read_json()["code"] == code, name


def test_a_ref_sent_twice_at_once_is_stored_and_delivered_once(cluster: Any, clients: Any) -> None:
    a, b = cluster(2)
    alice = clients(a, "alice")
    bob = clients(b, "bob")
    line = b'{"type":"say","room":"general","text":"twice","ref":"r"}\n'
    alice.send(line * 2)  # the second may arrive while the first is still queued
    first = bob.expect("message")
    mine = alice.expect("message")
    assert (mine["id"], mine["ref"]) == (first["id"], "r")
    # alice gets the original once more at most (the answer to a resend found stored)...
    alice.send_json(type="say", room="general", text="after", ref="after")
    got = alice.expect("message")
    if got["id"] == first["id"]:
        got = alice.expect("message")
    assert got["ref"] == "after"
    # ...and bob, and the history, have it once.
    assert bob.expect("message")["text"] == "after"
    bob.send_json(type="history", room="general")
    texts = [m["text"] for m in bob.expect("history")["messages"]]
    assert texts == ["twice", "after"]


def test_a_send_the_database_cannot_take_is_refused_and_delivered_once_when_resent(
    cluster: Any, clients: Any, pg_url: str, tmp_path: Any
) -> None:
    from desktop_chat.net.server.storage_api import open_store
    from tests.pg_server import run_sql

    a, b = cluster(2)
    alice = clients(a, "alice")
    bob = clients(b, "bob")
    before = _say(alice, "before")
    assert bob.expect("message")["id"] == before["id"]
    # PostgreSQL drops every connection (a restart, a failover): the round cannot be stored.
    run_sql(
        a.storage,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    alice.send_json(type="say", room="general", text="again", ref="r")
    refused = alice.expect("error")
    assert (refused["code"], refused["ref"]) == ("storage_failed", "r")
    alice.send_json(type="say", room="general", text="again", ref="r")  # the client resends
    again = alice.expect("message", where=lambda m: m.get("ref") == "r")
    assert bob.expect("message")["id"] == again["id"] > before["id"]
    store = open_store(pg_url, tmp_path)  # stored once
    try:
        msgs, _more = store.room_history("general", before=None, limit=10)
    finally:
        store.close()
    assert [m.text for m in msgs] == ["before", "again"]


def test_a_ref_queued_on_one_server_and_resent_on_another_is_stored_once(
    cluster: Any, clients: Any, pg_url: str
) -> None:
    """alice's message is queued on a (its round waits for the cluster's lock, held here);
    she resumes on b and resends the ref, which b's database check cannot see yet. The
    unique index decides: one message stored, and her echo is the one original."""
    import psycopg

    from desktop_chat.net.server.storage_pg_schema import ORDER_LOCK

    a, b = cluster(2)
    alice = clients(a, "alice")
    bob = clients(b, "bob")
    before = _say(alice, "before")
    assert bob.expect("message")["id"] == before["id"]

    def waiting() -> int:
        row = holder.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
        return 0 if row is None else int(row[0])

    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (ORDER_LOCK,))
        alice.send_json(type="say", room="general", text="x", ref="x")
        wait_until(lambda: waiting() == 1, T(5), "a's round waits for the lock")
        token = alice.welcome_session
        alice.close()
        back = clients(b)
        back.login("alice", resume={"session": token, "since": before["id"]})
        back.send_json(type="say", room="general", text="x", ref="x")
        wait_until(lambda: waiting() == 2, T(5), "b's round waits for the lock too")
        holder.execute("SELECT pg_advisory_unlock(%s)", (ORDER_LOCK,))
        echo = back.expect("message", where=lambda m: m.get("ref") == "x")
        stored = holder.execute(
            "SELECT id, ts FROM messages WHERE text = 'x' ORDER BY id"
        ).fetchall()
    assert [(echo["id"], echo["ts"])] == [tuple(r) for r in stored]
    assert bob.expect("message")["id"] == echo["id"]
    # Neither gets it twice: the next message each sees is the next one said.
    back.send_json(type="say", room="general", text="after", ref="after")
    after = back.expect("message")
    assert after["ref"] == "after" and after["id"] > echo["id"]
    assert bob.expect("message")["id"] == after["id"]


def test_a_login_while_redis_is_down_is_refused_in_plain_words(
    cluster: Any, clients: Any, redis_service: Any
) -> None:
    (a,) = cluster(1)
    assert a.hub.cluster is not None
    redis_service.stop()
    wait_until(lambda: not a.hub.cluster.bp.up.is_set(), T(10), "the outage noticed")
    newcomer = clients(a)
    newcomer.send_json(type="hello", protocol=1, name="nina")
    refusal = newcomer.read_json()
    assert refusal["code"] == "server_full"
    assert refusal["message"] == "the chat server is busy reconnecting; try again in a moment"
    nc = clients(a)  # a netcat user reads the same words, no jargon
    nc.send("nina\n")
    seen = nc.read_until_text("try again in a moment", timeout=5).decode()
    assert "! the chat server is busy reconnecting" in seen
    assert "Redis" not in seen and "backplane" not in seen
    redis_service.start()
