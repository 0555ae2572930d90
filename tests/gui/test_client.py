"""ChatClient against the real server on loopback: handshake, traffic, failures, reconnect."""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from desktop_chat.net.client.worker import ChatClient, ClientTiming
from desktop_chat.net.protocol import events as p
from desktop_chat.net.server.server import Server
from desktop_chat.net.server.tls import CERT_FILE, KEY_FILE

from .conftest import FAST, TIMEOUT_MS, ClientFactory, ServerFactory

# A client that will not reconnect by itself within a test: the test says when (retry_now).
PATIENT = ClientTiming(
    connect_timeout=FAST.connect_timeout,
    handshake_timeout=FAST.handshake_timeout,
    reconnect_base=600.0,
    reconnect_max=600.0,
)


def connected(
    qtbot: QtBot, make_client: ClientFactory, server: Server, name: str, timing: ClientTiming = FAST
) -> ChatClient:
    client = make_client(timing)
    with qtbot.waitSignal(client.welcomed, timeout=TIMEOUT_MS):
        client.connect_to("127.0.0.1", server.port, name, fingerprint=server.fingerprint)
    return client


def collect(client: ChatClient) -> list[p.ChatMessage]:
    received: list[p.ChatMessage] = []
    client.messageReceived.connect(received.append)
    return received


def texts(messages: list[p.ChatMessage]) -> list[str]:
    return [m.text for m in messages]


def client_side_threads() -> set[threading.Thread]:
    """Live threads other than the server's own ("dc-…", checked when the server closes)."""
    return {
        t
        for t in threading.enumerate()
        if not t.name.startswith("dc-") and not isinstance(t, threading._DummyThread)
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_say_round_trip_between_two_clients(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = make_server()
    alice = connected(qtbot, make_client, server, "alice")
    assert alice.name == "alice"
    assert alice.session
    assert alice.state == "connected"
    bob = connected(qtbot, make_client, server, "Bob")
    alice_got, bob_got = collect(alice), collect(bob)

    alice.say("general", "hello Bob")
    qtbot.waitUntil(lambda: texts(bob_got) == ["hello Bob"], timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: texts(alice_got) == ["hello Bob"], timeout=TIMEOUT_MS)
    message = bob_got[0]
    assert (message.from_, message.room) == ("alice", "general")
    assert message.id == alice_got[0].id

    with qtbot.waitSignal(alice.messageReceived, timeout=TIMEOUT_MS) as dm:
        bob.dm("alice", "psst")
    assert (dm.args[0].from_, dm.args[0].to, dm.args[0].text) == ("Bob", "alice", "psst")


def test_joined_users_and_rooms_reach_the_gui(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = make_server()
    alice = connected(qtbot, make_client, server, "alice")
    with qtbot.waitSignal(alice.joined, timeout=TIMEOUT_MS) as joined:
        connected(qtbot, make_client, server, "bob")
    assert (joined.args[0].room, joined.args[0].name) == ("general", "bob")

    with qtbot.waitSignal(alice.usersChanged, timeout=TIMEOUT_MS) as users:
        alice.join("projects")
    assert users.args[0].room == "projects"
    assert users.args[0].names == ("alice",)

    with qtbot.waitSignal(alice.roomsListed, timeout=TIMEOUT_MS) as rooms:
        alice.list_rooms()
    assert {r.name for r in rooms.args[0].rooms} >= {"general", "projects"}

    with qtbot.waitSignal(alice.errorReceived, timeout=TIMEOUT_MS) as error:
        alice.say("nowhere", "hello?")
    assert error.args[0].code == p.NOT_IN_ROOM


def test_history_and_typing(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = make_server()
    alice = connected(qtbot, make_client, server, "alice")
    bob = connected(qtbot, make_client, server, "bob")
    got = collect(alice)
    for n in range(3):
        alice.say("general", f"m{n}")
    qtbot.waitUntil(lambda: len(got) == 3, timeout=TIMEOUT_MS)

    with qtbot.waitSignal(bob.historyReceived, timeout=TIMEOUT_MS) as history:
        bob.request_history(room="general", before=got[-1].id, limit=10)
    assert texts(list(history.args[0].messages)) == ["m0", "m1"]

    with qtbot.waitSignal(bob.typingReceived, timeout=TIMEOUT_MS) as typing:
        alice.send_typing(room="general")
    assert (typing.args[0].name, typing.args[0].room) == ("alice", "general")


def test_requests_made_before_the_welcome_wait_for_it(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = make_server()
    alice = make_client()
    got = collect(alice)
    alice.say("general", "early bird")  # before connect_to: queued, sent after welcome
    alice.connect_to("127.0.0.1", server.port, "alice", fingerprint=server.fingerprint)
    qtbot.waitUntil(lambda: texts(got) == ["early bird"], timeout=TIMEOUT_MS)


def test_name_taken_fails_the_first_connection(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = make_server()
    connected(qtbot, make_client, server, "alice")
    other = make_client()
    with qtbot.waitSignal(other.connectionFailed, timeout=TIMEOUT_MS) as failed:
        other.connect_to("127.0.0.1", server.port, "ALICE", fingerprint=server.fingerprint)
    assert failed.args[0] == p.NAME_TAKEN
    worker = other.worker_thread()
    assert worker is not None
    qtbot.waitUntil(worker.isFinished, timeout=TIMEOUT_MS)  # no retry after a refusal
    assert other.state == "disconnected"


def test_invalid_name_fails_the_first_connection(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = make_server()
    client = make_client()
    with qtbot.waitSignal(client.connectionFailed, timeout=TIMEOUT_MS) as failed:
        client.connect_to("127.0.0.1", server.port, "bad\u202ename", fingerprint=server.fingerprint)
    assert failed.args[0] == p.NAME_INVALID


def test_refused_port_fails_without_retrying(qtbot: QtBot, make_client: ClientFactory) -> None:
    client = make_client()
    states: list[str] = []
    client.stateChanged.connect(lambda state, _detail: states.append(state))
    with qtbot.waitSignal(client.connectionFailed, timeout=TIMEOUT_MS) as failed:
        client.connect_to("127.0.0.1", free_port(), "alice")
    assert failed.args[0] in ("refused", "unreachable")
    assert "Nobody answered at 127.0.0.1:" in failed.args[1]
    worker = client.worker_thread()
    assert worker is not None
    qtbot.waitUntil(worker.isFinished, timeout=TIMEOUT_MS)
    assert states == ["connecting", "disconnected"]


def test_unknown_host_says_so(qtbot: QtBot, make_client: ClientFactory) -> None:
    client = make_client()
    with qtbot.waitSignal(client.connectionFailed, timeout=TIMEOUT_MS) as failed:
        client.connect_to("no-such-host.invalid", 5151, "alice")
    assert failed.args[0] == "unknown_host"
    assert "No computer called “no-such-host.invalid”" in failed.args[1]


def test_silent_peer_times_out(qtbot: QtBot) -> None:
    """A listener that never answers hello: "timeout", not a hang."""
    quick = ClientTiming(connect_timeout=1.0, handshake_timeout=0.3)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = ChatClient(timing=quick)
        try:
            with qtbot.waitSignal(client.connectionFailed, timeout=TIMEOUT_MS) as failed:
                client.connect_to("127.0.0.1", listener.getsockname()[1], "alice")
            assert failed.args[0] == "timeout"
        finally:
            client.close()


def test_restart_under_a_client_resumes_with_nothing_lost_or_twice(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    data = tmp_path / "chat-data"
    first = make_server(data_dir=data)
    port = first.port
    alice = connected(qtbot, make_client, first, "alice", timing=PATIENT)
    bob = connected(qtbot, make_client, first, "bob")
    alice_got = collect(alice)
    bob_got = collect(bob)
    bob.say("general", "before")
    qtbot.waitUntil(lambda: texts(alice_got) == ["before"], timeout=TIMEOUT_MS)
    states: list[tuple[str, str]] = []
    alice.stateChanged.connect(lambda state, detail: states.append((state, detail)))

    with qtbot.waitSignal(
        alice.stateChanged,
        check_params_cb=lambda state, detail: state == "reconnecting" and "in" in detail,
        timeout=TIMEOUT_MS,
    ):
        first.close()
    second = make_server(port=port, data_dir=data)

    # Bob comes back first (fast backoff) and talks while Alice is still away.
    qtbot.waitUntil(lambda: bob.state == "connected", timeout=TIMEOUT_MS)
    sent_meanwhile = [f"missed {n}" for n in range(5)]
    for text in sent_meanwhile:
        bob.say("general", text)
    qtbot.waitUntil(lambda: texts(bob_got)[-5:] == sent_meanwhile, timeout=TIMEOUT_MS)
    assert texts(alice_got) == ["before"]

    with qtbot.waitSignal(alice.welcomed, timeout=TIMEOUT_MS) as welcome:
        alice.retry_now()
    assert welcome.args[0].session == alice.session
    bob.say("general", "after")
    expected = ["before", *sent_meanwhile, "after"]
    qtbot.waitUntil(lambda: texts(alice_got) == expected, timeout=TIMEOUT_MS)
    ids = [m.id for m in alice_got]
    assert ids == sorted(set(ids))  # each once, in order
    assert ("connected", "Connected to Test chat") in states
    assert second.people_count() == 2


def test_resume_refused_disconnects_without_connection_failed(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    """The restarted server lost its sessions and someone else took the name meanwhile."""
    first = make_server(data_dir=tmp_path / "one")
    port = first.port
    alice = connected(qtbot, make_client, first, "alice", timing=PATIENT)
    with qtbot.waitSignal(alice.stateChanged, timeout=TIMEOUT_MS):
        first.close()
    # Same certificate (its files copied), everything else new.
    (tmp_path / "two").mkdir()
    for cert_file in (CERT_FILE, KEY_FILE):
        shutil.copy2(tmp_path / "one" / cert_file, tmp_path / "two" / cert_file)
    second = make_server(port=port, data_dir=tmp_path / "two")
    connected(qtbot, make_client, second, "Alice")

    failures: list[tuple[str, str]] = []
    alice.connectionFailed.connect(lambda code, message: failures.append((code, message)))
    with qtbot.waitSignal(
        alice.stateChanged,
        check_params_cb=lambda state, _detail: state == "disconnected",
        timeout=TIMEOUT_MS,
    ):
        alice.retry_now()
    worker = alice.worker_thread()
    assert worker is not None
    qtbot.waitUntil(worker.isFinished, timeout=TIMEOUT_MS)
    assert failures == []


def test_quit_ends_the_session_without_reconnecting(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = make_server()
    alice = connected(qtbot, make_client, server, "alice")
    bob = connected(qtbot, make_client, server, "bob")
    with qtbot.waitSignal(bob.left, timeout=TIMEOUT_MS) as left:
        alice.quit("bye")
    assert (left.args[0].name, left.args[0].reason) == ("alice", "quit")
    qtbot.waitUntil(lambda: alice.state == "disconnected", timeout=TIMEOUT_MS)
    worker = alice.worker_thread()
    assert worker is not None
    qtbot.waitUntil(worker.isFinished, timeout=TIMEOUT_MS)


def test_quit_then_close_at_once_still_says_quit(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = make_server()
    alice = connected(qtbot, make_client, server, "alice")
    bob = connected(qtbot, make_client, server, "bob")
    with qtbot.waitSignal(bob.left, timeout=TIMEOUT_MS) as left:
        alice.quit()
        alice.close()
    assert left.args[0].reason == "quit"


def test_latency_is_measured(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = make_server()
    timing = ClientTiming(ping_interval=0.05)
    client = make_client(timing)
    with qtbot.waitSignal(client.latencyChanged, timeout=TIMEOUT_MS) as latency:
        client.connect_to("127.0.0.1", server.port, "alice", fingerprint=server.fingerprint)
    assert 0.0 <= latency.args[0] < TIMEOUT_MS


def test_server_pings_are_answered(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory
) -> None:
    """The server pings after 0.1 s of silence and gives up 0.4 s later: unanswered, the
    connection would drop within the wait; answered, it stays."""
    server = make_server(ping_interval=0.1, ping_timeout=0.4)
    client = connected(qtbot, make_client, server, "alice")
    with qtbot.assertNotEmitted(client.stateChanged, wait=900):
        pass
    assert client.state == "connected"


def test_close_joins_the_worker_and_leaves_nothing_running(
    qtbot: QtBot, make_server: ServerFactory
) -> None:
    server = make_server()
    before = client_side_threads()
    client = ChatClient(timing=FAST)
    with qtbot.waitSignal(client.welcomed, timeout=TIMEOUT_MS):
        client.connect_to("127.0.0.1", server.port, "alice", fingerprint=server.fingerprint)
    worker = client.worker_thread()
    assert worker is not None and worker.isRunning()
    ident = getattr(worker, "thread_ident", None)
    assert ident in sys._current_frames()

    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 1.0
    assert worker.isFinished()
    assert ident not in sys._current_frames()
    assert client_side_threads() <= before
    client.close()  # idempotent
    with qtbot.assertNotEmitted(client.messageReceived, wait=50):
        client.say("general", "after close: dropped")


def test_close_while_reconnecting_is_prompt(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = make_server()
    client = connected(qtbot, make_client, server, "alice", timing=PATIENT)
    with qtbot.waitSignal(
        client.stateChanged,
        check_params_cb=lambda state, _detail: state == "reconnecting",
        timeout=TIMEOUT_MS,
    ):
        server.close()
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 1.0
    worker = client.worker_thread()
    assert worker is not None and worker.isFinished()


def test_connect_twice_is_refused(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = make_server()
    client = connected(qtbot, make_client, server, "alice")
    with pytest.raises(RuntimeError, match="already"):
        client.connect_to("127.0.0.1", server.port, "alice", fingerprint=server.fingerprint)


def test_connect_again_after_a_failure(
    qtbot: QtBot, make_server: ServerFactory, make_client: ClientFactory
) -> None:
    client = make_client()
    with qtbot.waitSignal(client.connectionFailed, timeout=TIMEOUT_MS):
        client.connect_to("127.0.0.1", free_port(), "alice")
    server = make_server()
    with qtbot.waitSignal(client.welcomed, timeout=TIMEOUT_MS):
        client.connect_to("127.0.0.1", server.port, "alice", fingerprint=server.fingerprint)
    assert client.state == "connected"
    assert client.welcome is not None and client.welcome.name == "alice"


def test_every_notice_of_the_link_has_a_signal(make_client: ClientFactory) -> None:
    from desktop_chat.net.client.link import Notice

    client = make_client()
    assert set(client.notice_signals()) == set(Notice)
