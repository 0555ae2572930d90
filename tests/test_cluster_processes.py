"""Several ``desktop-chat-server`` processes, one chat: real processes on PostgreSQL and Redis.

Each process listens on a port of its own here, so a test knows which process each client is
on (``--workers N`` shares one port; tests/test_workers.py covers that). The heartbeat TTL is
small (``--heartbeat-ttl``) so a killed process's users leave within a second or two.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from desktop_chat.net.protocol import events as p
from desktop_chat.net.server.accounts import hash_password
from desktop_chat.net.server.storage_api import open_store
from tests.helpers import LineClient, T, wait_until
from tests.redis_server import free_port

TTL = 1.5  # seconds: the heartbeat TTL of these tests' processes


class ServerProcess:
    """One ``desktop-chat-server`` of ours, ended by its pid."""

    def __init__(self, folder: Path, database: str, backplane: str, *extra: str) -> None:
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.log = (folder / "server.log").open("wb")
        argv = [
            sys.executable, "-m", "desktop_chat.server_cli", "--host", "127.0.0.1",
            "--port", str(self.port), "--no-announce", "--tls", "off",
            "--data-dir", str(folder), "--database", database, "--backplane", backplane,
            "--heartbeat-ttl", str(TTL), *extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._answers, T(20), f"server on port {self.port} listening")

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def _answers(self) -> bool:
        assert self.process.poll() is None, f"the server ended ({self.process.returncode})"
        try:
            socket.create_connection(self.address, timeout=1).close()
        except OSError:
            return False
        return True

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=T(10))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def start(
    tmp_path: Path, pg_url: str, redis_url: str
) -> Iterator[Callable[..., list[ServerProcess]]]:
    running: list[ServerProcess] = []

    def make(n: int, *extra: str) -> list[ServerProcess]:
        started = [
            ServerProcess(tmp_path / f"p{len(running) + i}", pg_url, redis_url, *extra)
            for i in range(n)
        ]
        running.extend(started)
        return started

    yield make
    for proc in running:
        proc.stop()


@pytest.fixture
def clients() -> Iterator[Callable[..., LineClient]]:
    opened: list[LineClient] = []

    def connect(proc: ServerProcess, name: str | None = None, **hello: Any) -> LineClient:
        client = LineClient(proc.address)
        opened.append(client)
        if name is not None:
            client.login(name, **hello)
        return client

    yield connect
    for client in opened:
        client.close()


def _say(client: LineClient, text: str) -> dict[str, Any]:
    client.send_json(type="say", room="general", text=text, ref=text)
    return client.expect("message", where=lambda m: m.get("ref") == text)


def _see_all(client: LineClient, names: list[str]) -> None:
    """Wait until ``client`` has been told that everyone in ``names`` is in general."""
    present = set(client.users[0]["names"])
    while not set(names) <= present:
        event = client.expect("joined", skip=("typing", "ping", "users"))
        present.add(event["name"])


def test_three_processes_are_one_chat(start: Any, clients: Any) -> None:
    procs = start(3)
    names = ["alice", "bob", "carol"]
    people = []
    for proc, name in zip(procs, names, strict=True):
        people.append(clients(proc, name))
        for earlier in people[:-1]:  # told of the newcomer, wherever they are
            assert earlier.expect("joined")["name"] == name
    alice, bob, carol = people
    _see_all(carol, names)
    for person in people:
        for i in range(3):
            person.send_json(type="say", room="general", text=f"{person.welcome['name']} {i}")
    orders = [[p.expect("message")["id"] for _ in range(9)] for p in people]
    assert orders[0] == orders[1] == orders[2] == sorted(set(orders[0]))
    alice.send_json(type="dm", to="carol", text="psst", ref="d")
    sent = alice.expect("message", where=lambda m: m.get("ref") == "d")
    got = carol.expect("message")
    assert (got["id"], got["to"], got["from"]) == (sent["id"], "carol", "alice")
    bob.send_json(type="join", room="general")  # already in: answered with who is there
    assert bob.expect("users", skip=("typing",))["names"] == names
    bob.send_json(type="rooms")
    rooms = bob.expect("rooms")
    assert rooms["rooms"][0] == {"name": "general", "users": 3}
    late = clients(procs[2])
    late.send_json(type="hello", protocol=1, name="Alice")  # taken on another process
    assert late.read_json()["code"] == "name_taken"
    bob.send_json(type="quit")
    for person in (alice, carol):
        left = person.expect("left")
        assert (left["name"], left["reason"]) == ("bob", "quit")


def _kill_alice_and_daves_process(start: Any, clients: Any) -> tuple[Any, LineClient, int, str]:
    """Two processes: alice and dave on one, bob on the other; the first is SIGKILLed.
    Returns the survivor, bob, the id of the last message alice saw, and her session."""
    doomed, survivor = start(2)
    alice = clients(doomed, "alice")
    dave = clients(doomed, "dave")
    bob = clients(survivor, "bob")
    _see_all(bob, ["alice", "bob", "dave"])
    first = _say(bob, "m1")
    assert alice.expect("message")["id"] == first["id"]
    token = alice.welcome_session
    doomed.kill()
    alice.assert_closed()
    dave.assert_closed()
    return survivor, bob, first["id"], token


def test_a_killed_process_users_leave_and_resume_elsewhere(start: Any, clients: Any) -> None:
    survivor, bob, first_id, token = _kill_alice_and_daves_process(start, clients)
    # Within the heartbeat's TTL (plus a beat), both are shown leaving.
    gone = [bob.expect("left", timeout=TTL * 4) for _ in range(2)]
    assert sorted((m["name"], m["reason"]) for m in gone) == [
        ("alice", "disconnected"),
        ("dave", "disconnected"),
    ]
    # The dead process's names are free: someone new may take one.
    clients(survivor, "Dave")
    missed = [_say(bob, f"m{i}")["id"] for i in (2, 3)]
    back = clients(survivor)
    back.login("alice", resume={"session": token, "since": first_id})
    assert back.welcome["resumed"] is True
    live = _say(bob, "m4")
    got = [back.expect("message")["id"] for _ in range(3)]
    assert got == [*missed, live["id"]]  # none lost, none twice, strictly increasing
    back.send_json(type="ping", n=1)
    assert back.expect("pong", skip=("joined", "left", "users", "typing"))["n"] == 1


def test_people_who_resumed_elsewhere_before_the_reaping_are_not_shown_leaving(
    start: Any, clients: Any
) -> None:
    """A stranger killed a worker: its people resumed on the other within a second, and ~9 s
    later the survivor announced them as gone (its own replica still listed them under the
    dead process); a phone page then sat outside every room."""
    survivor, bob, first_id, token = _kill_alice_and_daves_process(start, clients)
    back = clients(survivor)  # at once, well before the dead process is noticed
    back.login("alice", resume={"session": token, "since": first_id})
    assert back.welcome["resumed"] is True
    gone = bob.expect("left", timeout=TTL * 4)
    assert (gone["name"], gone["reason"]) == ("dave", "disconnected")
    # The reaping told bob everything in one batch: a ping's answer comes after all of it.
    bob.send_json(type="ping", n=7)
    seen = []
    while (event := bob.read_json())["type"] != "pong":
        seen.append(event)
    assert [e for e in seen if e["type"] == "left"] == []
    live = _say(bob, "m2")
    assert back.expect("message")["id"] == live["id"]
    carol = clients(survivor, "carol")  # a newcomer's list of the room: alice is in it
    assert set(carol.users[0]["names"]) == {"alice", "bob", "carol"}


def test_a_ban_on_one_process_holds_on_the_other(
    start: Any, clients: Any, pg_url: str, tmp_path: Path
) -> None:
    store = open_store(pg_url, tmp_path)
    try:
        store.save_account("boss", "boss", hash_password("boss password"), role="admin")
    finally:
        store.close()
    here, there = start(2)
    boss = clients(here, "boss", password="boss password")
    assert boss.welcome["admin"] is True
    dave = clients(there, "dave")
    _see_all(boss, ["boss", "dave"])
    boss.send_json(type="ban", name="dave", ref="b")
    assert boss.expect("ok")["ref"] == "b"
    assert dave.expect("error")["code"] == "kicked"
    dave.assert_closed()
    for proc in (there, here):
        again = clients(proc)
        again.send_json(type="hello", protocol=1, name="Dave")
        assert again.read_json()["code"] == "banned"


def test_redis_restarted_mid_chat(
    start: Any, clients: Any, redis_service: Any, pg_url: str, tmp_path: Path
) -> None:
    a, b = start(2)
    alice = clients(a, "alice")
    bob = clients(b, "bob")
    _see_all(bob, ["alice", "bob"])
    first = _say(alice, "before")
    assert bob.expect("message")["id"] == first["id"]
    redis_service.stop()
    alice.send_json(type="say", room="general", text="during", ref="a")
    bob.send_json(type="say", room="general", text="also during", ref="b")
    store = open_store(pg_url, tmp_path)  # both are stored while Redis is away
    try:
        wait_until(lambda: store.last_message_id() >= first["id"] + 2, T(10), "both stored")
    finally:
        store.close()
    redis_service.start()
    for me, mine in ((alice, "a"), (bob, "b")):
        got = [me.expect("message", timeout=TTL * 6) for _ in range(2)]
        assert [m["text"] for m in sorted(got, key=lambda m: m["id"])] == [
            m["text"] for m in got
        ]  # in id order
        assert {m["text"] for m in got} == {"during", "also during"}
        assert [m.get("ref") for m in got if m.get("ref")] == [mine]
    after = _say(bob, "after")
    assert alice.expect("message")["id"] == after["id"]
    for me in (alice, bob):  # nothing twice, and nobody shown leaving or joining again
        me.send_json(type="ping", n=2)
        assert me.expect("pong", skip=())["n"] == 2


def test_a_terminal_user_and_an_app_on_two_processes(start: Any, clients: Any) -> None:
    first, second = start(2)
    alice = clients(first, "alice")
    nc = clients(second)  # as `nc host port` would
    nc.read_until_text("username")
    nc.read_until_text(": ")
    nc.send("bob\n")
    nc.read_until_text("Type /help for commands.\n")
    assert "alice" in nc.read_line().decode()  # who is in general: the other process too
    assert alice.expect("joined")["name"] == "bob"
    nc.send("hello from a terminal\n")
    got = alice.expect("message")
    assert (got["from"], got["text"]) == ("bob", "hello from a terminal")
    assert nc.read_line() == b"bob: hello from a terminal"
    alice.send_json(type="dm", to="bob", text="psst")
    assert nc.read_line() == b"[dm] alice: psst"


def test_the_heartbeat_ttl_flag() -> None:
    from desktop_chat.server_cli import build_parser, config_from_args

    assert config_from_args(build_parser().parse_args([])).heartbeat_ttl == 7.5
    args = build_parser().parse_args(["--heartbeat-ttl", "2"])
    assert config_from_args(args).heartbeat_ttl == 2.0
    for bad in ("0", "-1", "soon"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--heartbeat-ttl", bad])


def test_an_unreachable_backplane_stops_the_server_with_one_line(
    tmp_path: Path, pg_url: str
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        [sys.executable, "-m", "desktop_chat.server_cli", "--host", "127.0.0.1", "--port", "0",
         "--no-announce", "--data-dir", str(tmp_path), "--database", pg_url,
         "--backplane", nobody],
        capture_output=True, text=True, timeout=T(30),
    )  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "desktop-chat-server:" in line]
    assert len(lines) == 1 and f"the backplane {nobody} cannot be reached" in lines[0], lines


def _pause(proc: ServerProcess, watcher: LineClient, name: str) -> None:
    """SIGSTOP ``proc`` until ``watcher`` (on another process) sees ``name`` leave: the
    others took ``proc`` for dead."""
    proc.process.send_signal(signal.SIGSTOP)
    try:
        left = watcher.expect("left", timeout=15, skip=("typing", "ping", "users", "joined"))
        assert (left["name"], left["reason"]) == (name, "disconnected")
    except BaseException:
        proc.process.send_signal(signal.SIGCONT)
        raise


def test_a_paused_processs_users_come_back_when_it_continues(start: Any, clients: Any) -> None:
    a, b = start(2)
    alice = clients(a, "alice")
    bob = clients(b, "bob")
    assert alice.expect("joined")["name"] == "bob"
    _pause(b, alice, "bob")
    b.process.send_signal(signal.SIGCONT)
    # Back: it announces its users again; they are online for everyone once more.
    assert alice.expect("joined", timeout=15)["name"] == "bob"
    alice.send_json(type="dm", to="bob", text="still there?", ref="d")
    assert alice.expect("message", where=lambda m: m.get("ref") == "d")["to"] == "bob"
    assert bob.expect("message", timeout=10)["text"] == "still there?"
    alice.send_json(type="join", room="general")
    assert alice.expect("users", skip=("typing",))["names"] == ["alice", "bob"]


def test_a_name_taken_while_its_process_was_paused_stays_with_the_new_holder(
    start: Any, clients: Any
) -> None:
    a, b = start(2)
    alice = clients(a, "alice")
    bob = clients(b, "bob")
    assert alice.expect("joined")["name"] == "bob"
    _pause(b, alice, "bob")
    new_bob = clients(a, "Bob")  # the name is free: its holder counts as gone
    b.process.send_signal(signal.SIGCONT)
    bob.assert_closed(timeout=15)  # the paused process's bob lost the name
    resume = {"session": bob.welcome_session, "since": 0}

    def refused() -> str:
        again = clients(b)
        again.send_json(type="hello", protocol=1, name="bob", resume=resume)
        return str(again.read_json()["code"])

    # server_full ("try again shortly") while b is still subscribing again; then for good:
    wait_until(lambda: refused() != p.SERVER_FULL, T(10), "b back on Redis")
    assert refused() == p.NAME_TAKEN
    alice.send_json(type="dm", to="bob", text="who are you?", ref="d")
    alice.expect("message", where=lambda m: m.get("ref") == "d")
    assert new_bob.expect("message", timeout=10)["text"] == "who are you?"
    alice.send_json(type="join", room="general")
    assert alice.expect("users", skip=("typing", "joined", "left"))["names"] == ["alice", "Bob"]
