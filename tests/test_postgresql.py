"""PostgreSQL as the chat database: what only it has (migrations under an advisory lock, the
cluster-wide ordered append, a lost connection) and the ``--database`` flag as a user meets it.
The contract itself runs on PostgreSQL in the files marked ``backends``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from desktop_chat.net.protocol.events import ChatMessage
from desktop_chat.net.server.storage_api import Identity, NewMessage, StorageError, open_store
from desktop_chat.net.server.storage_pg import PgStorage
from desktop_chat.net.server.storage_pg_schema import SCHEMA_VERSION, migrate
from tests.helpers import LineClient, T, wait_until
from tests.pg_server import PgCluster, run_sql

CMD = [sys.executable, "-m", "desktop_chat.server_cli"]
ANN = Identity("ann", "s-ann")


def _versions(url: str) -> list[int]:
    with psycopg.connect(url) as db:
        return [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY version")]


def test_a_database_at_the_previous_step_is_upgraded_with_its_data(pg_cluster: PgCluster) -> None:
    url = pg_cluster.fresh_url(empty=True)
    with psycopg.connect(url, autocommit=True) as db:
        migrate(db, upto=SCHEMA_VERSION - 1)
        db.execute(
            "INSERT INTO messages (ts, sender, room_key, room, text, sender_key, from_session, "
            "ref) VALUES (1000, 'Ann', 'general', 'general', 'kept', 'ann', 's-ann', '7')"
        )
        db.execute(
            "INSERT INTO sessions (token, name_key, name, rooms, created, last_seen) "
            "VALUES ('hashed', 'ann', 'Ann', '[\"general\"]', 1, 1)"
        )
    store = PgStorage(url)
    try:
        assert _versions(url) == list(range(1, SCHEMA_VERSION + 1))
        [old] = store.messages_since(0, ["general"], ANN)
        assert (old.text, old.ref) == ("kept", 7)
        assert store.message_for_ref(ANN.session, 7) == old
        new = store.add_message(sender="Ann", text="new", room="general", room_key="general")
        assert new.id > old.id
        assert store.expire_sessions(0) == 1  # the old session, found by the new index
    finally:
        store.close()
    PgStorage(url).close()  # opening an up-to-date database changes nothing
    assert _versions(url) == list(range(1, SCHEMA_VERSION + 1))


def test_repeated_refs_of_an_old_database_keep_the_earliest(pg_cluster: PgCluster) -> None:
    """Step 3 makes (session, ref) unique; a ref stored twice before (two processes racing)
    keeps it on the earliest message, and a repeat is then answered with that one."""
    url = pg_cluster.fresh_url(empty=True)
    with psycopg.connect(url, autocommit=True) as db:
        migrate(db, upto=2)
        for text in ("first", "second"):
            db.execute(
                "INSERT INTO messages (ts, sender, room_key, room, text, from_session, ref) "
                "VALUES (1, 'Ann', 'general', 'general', %s, 's-ann', '\"r\"')",
                (text,),
            )
    store = PgStorage(url)
    try:
        original = store.message_for_ref(ANN.session, "r")
        assert original is not None and original.text == "first"
        again = store.add_message(
            sender="Ann", text="third", room="general", room_key="general", by=ANN, ref="r"
        )
        assert again == original
        store.commit()
        texts = [m.text for m in store.room_history("general", before=None, limit=9)[0]]
        assert texts == ["first", "second"]
    finally:
        store.close()


def test_processes_starting_at_once_migrate_once(pg_cluster: PgCluster) -> None:
    url = pg_cluster.fresh_url(empty=True)
    opened: list[PgStorage] = []
    failed: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(PgStorage(url))
        except (StorageError, psycopg.Error) as exc:
            failed.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T(30))
    try:
        assert failed == [] and len(opened) == 4
        assert _versions(url) == list(range(1, SCHEMA_VERSION + 1))
    finally:
        for store in opened:
            store.close()


def test_a_database_from_a_newer_version_is_refused(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StorageError, match="schema version"):
        PgStorage(pg_url)


def test_ordered_appends_of_two_processes_call_back_in_id_order(pg_url: str) -> None:
    """Store-then-publish is one critical section for every process sharing the database:
    the callbacks (the publishes) run in id order whichever store made them."""
    stores = [PgStorage(pg_url), PgStorage(pg_url)]
    published: list[int] = []

    def publish(msgs: list[ChatMessage]) -> None:
        published.extend(m.id for m in msgs)

    def sender(store: PgStorage, who: str) -> None:
        for i in range(40):
            batch = [
                NewMessage(sender=who, text=f"{i}.{j}", room="general", room_key="general")
                for j in range(1 + i % 3)
            ]
            store.append_ordered(batch, publish)

    threads = [
        threading.Thread(target=sender, args=(store, who))
        for store, who in ((stores[0], "Ann"), (stores[0], "Ben"), (stores[1], "Cy"))
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(T(60))
        assert len(published) == 3 * sum(1 + i % 3 for i in range(40))
        assert published == sorted(published) and len(set(published)) == len(published)
        committed = run_sql(stores[1], "SELECT id FROM messages ORDER BY id")
        assert [r[0] for r in committed] == published
    finally:
        for store in stores:
            store.close()


def test_a_lock_kept_for_the_next_round_lets_a_waiting_process_go_first(pg_url: str) -> None:
    """With more to store (``more``), a process keeps the cluster's lock between rounds (one
    round trip less each); its next round lets go first, so another process waiting for the
    lock is not starved: it stores before that next round."""
    first, other = PgStorage(pg_url), PgStorage(pg_url)
    order: list[str] = []

    def row(text: str) -> list[NewMessage]:
        return [NewMessage(sender="Ann", text=text, room="general", room_key="general")]

    def waiting() -> int:
        found = run_sql(first, "SELECT count(*) FROM pg_locks WHERE NOT granted")
        return int(found[0][0])  # type: ignore[call-overload]

    def publish(msgs: list[ChatMessage]) -> None:
        order.append(msgs[0].text)

    try:
        first.append_ordered(row("a1"), publish, more=lambda: True)  # keeps the lock
        thread = threading.Thread(target=other.append_ordered, args=(row("b1"), publish))
        thread.start()
        wait_until(lambda: waiting() == 1, T(5), "the other process waits for the lock")
        first.append_ordered(row("a2"), publish)
        thread.join(T(10))
        assert order == ["a1", "b1", "a2"]
        stored = run_sql(first, "SELECT text FROM messages ORDER BY id")
        assert [r[0] for r in stored] == order
        held = run_sql(first, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert held == [(0,)]  # nobody keeps it once no more is coming
    finally:
        first.close()
        other.close()


def test_a_failed_insert_keeps_the_rounds_other_messages(pg_url: str) -> None:
    # PostgreSQL aborts the whole open transaction on an error: the messages of the round
    # already handed out must be written again, not lost.
    store = PgStorage(pg_url)
    try:
        kept = store.add_message(sender="Ann", text="first", room="general", room_key="general")
        with pytest.raises(StorageError):
            store.add_message(sender="Ann", text=None, room="general", room_key="general")  # type: ignore[arg-type]
        later = store.add_message(sender="Ann", text="later", room="general", room_key="general")
        store.commit()
        stored = run_sql(store, "SELECT id, text FROM messages ORDER BY id")
        assert stored == [(kept.id, "first"), (later.id, "later")]
    finally:
        store.close()


def test_a_lost_connection_refuses_one_message_and_keeps_the_others(pg_url: str) -> None:
    store = PgStorage(pg_url)
    try:
        kept = store.add_message(sender="Ann", text="before", room="general", room_key="general")
        # The database ends our writer's connection (a restart, a failover, an admin).
        run_sql(
            store,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'idle in transaction'",
        )
        with pytest.raises(StorageError):
            store.add_message(sender="Ann", text="refused", room="general", room_key="general")
        after = store.add_message(sender="Ann", text="after", room="general", room_key="general")
        store.commit()
        stored = run_sql(store, "SELECT id, text FROM messages ORDER BY id")
        assert stored == [(kept.id, "before"), (after.id, "after")]
    finally:
        store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_database_flag_that_is_not_a_url_gives_one_clear_line(data_dir: Path) -> None:
    result = subprocess.run(
        [*CMD, "--data-dir", str(data_dir), "--database", "chat.db"],
        capture_output=True,
        text=True,
        timeout=T(30),
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not a database URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_gives_one_clear_line(data_dir: Path) -> None:
    url = f"postgresql://chat:s3cret@127.0.0.1:{_free_port()}/chat"
    result = subprocess.run(
        [*CMD, "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=T(30),
        env={**os.environ, "DESKTOP_CHAT_DATABASE": url},
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "database" in line]
    assert len(lines) == 1 and "cannot reach" in lines[0], result.stderr
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr


def test_the_command_keeps_the_chat_in_postgresql(data_dir: Path, pg_url: str) -> None:
    flags = ["--no-announce", "--tls", "off", "--database", pg_url]

    def serve() -> tuple[subprocess.Popen[str], tuple[str, int]]:
        proc = subprocess.Popen(
            [*CMD, "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("  127.0.0.1:"):
                return proc, ("127.0.0.1", int(line.strip().rsplit(":", 1)[1]))
        raise AssertionError(f"the server stopped: {proc.communicate()}")

    def stop(proc: subprocess.Popen[str]) -> str:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=T(15))
        assert proc.returncode == 0 and "Traceback" not in err, err
        return err

    proc, address = serve()
    try:
        with LineClient(address) as alice:
            alice.login("alice")
            alice.send_json(type="say", room="general", text="kept in PostgreSQL")
            first = alice.expect("message")
        stop(proc)
        proc, address = serve()
        with LineClient(address) as bob:
            bob.login("bob")
            bob.send_json(type="history", room="general")
            [msg] = bob.expect("history")["messages"]
            assert (msg["id"], msg["text"]) == (first["id"], "kept in PostgreSQL")
        stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert not (data_dir / "chat.sqlite3").exists()  # nothing went to SQLite


def test_psycopg_is_imported_only_for_a_postgresql_url(tmp_path: Path) -> None:
    code = (
        "import sys, pathlib\n"
        "import desktop_chat.server_cli\n"
        "from desktop_chat.net.server.storage_api import open_store\n"
        "open_store(None, pathlib.Path(sys.argv[1])).close()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('psycopg'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=T(30),
        check=True,
    )
    assert json.loads(out.stdout) == []


def test_open_store_refuses_what_is_not_a_database_url(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not a database URL") as refused:
        open_store("mysql://root:hunter2@db/chat", tmp_path)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_send_the_database_cannot_take_is_refused_and_nothing_acked_is_lost(
    make_server: Any,
) -> None:
    srv = make_server(rate_per_sec=0)
    with LineClient(srv.address) as alice, LineClient(srv.address) as bob:
        alice.login("alice")
        bob.login("bob")
        alice.send_json(type="say", room="general", text="before", ref=1)
        first = alice.expect("message")
        assert bob.expect("message")["id"] == first["id"]
        # PostgreSQL drops the server's connections (a restart, a failover).
        run_sql(
            srv.storage,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        alice.send_json(type="say", room="general", text="refused", ref=2)
        refused = alice.expect("error")
        assert (refused["code"], refused["ref"]) == ("storage_failed", 2)
        alice.send_json(type="say", room="general", text="again", ref=2)  # the client resends
        again = alice.expect("message")
        assert (again["ref"], bob.expect("message")["id"]) == (2, again["id"])
        bob.send_json(type="history", room="general")
        texts = [m["text"] for m in bob.expect("history")["messages"]]
        assert texts == ["before", "again"]


def test_pooled_connections_the_database_dropped_are_replaced(pg_url: str) -> None:
    store = PgStorage(pg_url)
    try:
        store.save_account("zoe", "Zoe", "hash")
        run_sql(
            store,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        assert store.account("zoe") == ("Zoe", "hash", "user")  # no error on the first use
    finally:
        store.close()


def test_postgresql_down_refuses_sends_and_then_serves_again(
    make_server: Any, pg_cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL stops (crashes, restarts): senders are told to send again, everyone else is
    still served, and once it is back the resent message is stored once after the others."""
    own = PgCluster(pg_cluster.bin_dir)  # a cluster of this test's own, to stop and restart
    own.start()
    try:
        srv = make_server(database=own.fresh_url(), rate_per_sec=0)
        with LineClient(srv.address) as alice, LineClient(srv.address) as bob:
            alice.login("alice")
            bob.login("bob")
            alice.send_json(type="say", room="general", text="before", ref=1)
            before = alice.expect("message")
            assert bob.expect("message")["id"] == before["id"]
            own.halt()
            alice.send_json(type="say", room="general", text="during", ref=2)
            assert alice.expect("error")["code"] == "storage_failed"
            bob.send_json(type="ping", n=1)
            assert bob.expect("pong")["n"] == 1  # everyone else is still served
            with LineClient(srv.address) as late:  # a login needs the database: closed, no bug
                late.send_json(type="hello", protocol=1, name="cy")
                late.assert_closed()
            assert "the database failed" in caplog.text and "on our side" not in caplog.text
            own.launch()

            def resent() -> dict[str, Any] | None:
                alice.send_json(type="say", room="general", text="during", ref=2)
                reply = alice.read_json()
                return reply if reply["type"] == "message" else None

            stored = wait_until(resent, 20, "a send accepted once PostgreSQL is back")
            assert stored["ref"] == 2 and stored["id"] > before["id"]  # type: ignore[index]
            assert bob.expect("message")["text"] == "during"
            bob.send_json(type="history", room="general")
            assert [m["text"] for m in bob.expect("history")["messages"]] == ["before", "during"]
        srv.close()
    finally:
        own.stop()


def test_without_psycopg_a_postgresql_url_is_one_clear_line(tmp_path: Path) -> None:
    """The bundled server leaves psycopg out: --database postgresql://… says what is missing
    in one line instead of a traceback."""
    code = (
        "import sys\n"
        "class NoPsycopg:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('psycopg', 'psycopg_pool'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoPsycopg())\n"
        "from desktop_chat.server_cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path)]
    args += ["--database", "postgresql://chat@127.0.0.1:1/chat"]
    run = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=T(30)
    )
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert "PostgreSQL support is not installed" in lines[0]


def test_after_postgresql_restarts_every_read_is_served_and_meanwhile_refused_clearly(
    make_server: Any, pg_cluster: PgCluster
) -> None:
    """A restart leaves each process's writer connection dead, which only its first use finds
    out: the read is made again on a fresh connection (a history, a resume's refs and
    backlog), not failed. While PostgreSQL is down a read is answered ``storage_failed`` and
    the connection stays open."""
    own = PgCluster(pg_cluster.bin_dir)  # a cluster of this test's own, to stop and restart
    own.start()
    try:
        url = own.fresh_url()
        srv, other = make_server(database=url), make_server(database=url)
        with LineClient(srv.address) as alice, LineClient(srv.address) as bob:
            alice.login("alice")
            bob.login("bob")
            alice.send_json(type="say", room="general", text="before", ref=1)
            before = alice.expect("message")
            assert bob.expect("message")["id"] == before["id"]
            token = alice.welcome_session
            alice.close()
            own.halt()
            own.launch()
            bob.send_json(type="history", room="general", ref="h1")
            assert [m["text"] for m in bob.expect("history")["messages"]] == ["before"]
            with LineClient(other.address) as back:  # its writer connection is stale too
                back.login("alice", resume={"session": token, "since": 0})
                assert back.welcome["resumed"] is True
                replayed = back.expect("message")
                assert (replayed["id"], replayed["ref"]) == (before["id"], 1)

            own.halt()
            bob.send_json(type="history", room="general", ref="h2")
            refused = bob.expect("error")
            assert (refused["code"], refused["ref"]) == ("storage_failed", "h2")
            bob.send_json(type="ping", n=1)
            assert bob.expect("pong")["n"] == 1  # still connected
            own.launch()

            def served() -> dict[str, Any] | None:
                bob.send_json(type="history", room="general", ref="h3")
                reply = bob.read_json()
                return reply if reply["type"] == "history" else None

            again = wait_until(served, 20, "history served once PostgreSQL is back")
            assert [m["text"] for m in again["messages"]] == ["before"]  # type: ignore[index]
    finally:
        own.stop()
