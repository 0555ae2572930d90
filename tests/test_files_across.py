"""Files when several server processes share one data folder and one database (``--workers``):
an upload, its resumption or a download may land on another process than the person's chat
connection. Two real servers here, one data folder between them (as two workers on one host).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from desktop_chat.net.server.server import Server
from tests.helpers import LineClient
from tests.tus_client import FilesClient

MakeServer = Callable[..., Server]

# Two servers on one database: SQLite (one file, as two processes on one host would share it)
# and PostgreSQL (what --workers runs on). The last test adds the Redis backplane.
backends = pytest.mark.backends


def _upload_id(location: str) -> str:
    return location.rsplit("/", 1)[1]


@backends
def test_an_upload_begun_on_one_process_finishes_on_another_and_downloads_from_both(
    make_server: MakeServer, connect: Any
) -> None:
    first, second = make_server(), make_server()
    alice: LineClient = connect("alice", srv=first)  # her chat connection is on the first
    bob: LineClient = connect("bob", srv=first)
    alice.expect("joined")
    token = alice.welcome_session
    on_first, on_second = FilesClient(first.address, token), FilesClient(second.address, token)
    data = os.urandom(700_000)

    # Created on the second process: it knows her (and her rooms) from the stored session.
    created = on_second.create(len(data), filename="notes.bin", room="general")
    assert created.status == 201, created
    location = created.headers["location"]
    assert on_first.patch(location, 0, data[:300_000]).status == 204
    head = on_second.request("HEAD", location)  # resumed elsewhere: same offset
    assert head.headers["upload-offset"] == "300000"
    done = on_second.patch(location, 300_000, data[300_000:])
    assert done.status == 204, done
    message_id = int(done.headers["upload-message-id"])

    # The message is in the shared database: history on the first process has it.
    bob.send_json(type="history", room="general")
    last = bob.expect("history")["messages"][-1]
    assert last["id"] == message_id and last["from"] == "alice"
    file = last["file"]
    assert file["sha256"] == hashlib.sha256(data).hexdigest()
    # Either process serves it, to anyone in the room.
    for srv in (first, second):
        got = FilesClient(srv.address, bob.welcome_session).request("GET", f"/files/{file['id']}")
        assert got.status == 200 and got.body == data
    # Not to someone outside the room, on either process.
    carol = connect("carol", srv=second)
    carol.send_json(type="part", room="general")
    carol.expect("left")
    for srv in (first, second):
        refused = FilesClient(srv.address, carol.welcome_session).request(
            "GET", f"/files/{file['id']}"
        )
        assert refused.status == 404


@backends
def test_a_patch_on_another_process_waits_while_one_process_writes(
    make_server: MakeServer, connect: Any
) -> None:
    first, second = make_server(), make_server()
    alice = connect("alice", srv=first)
    on_second = FilesClient(second.address, alice.welcome_session)
    location = on_second.create(10, filename="x.txt", room="general").headers["location"]
    upload_id = _upload_id(location)

    assert first.files.claim(upload_id)  # the first process is writing it
    try:
        busy = on_second.patch(location, 0, b"0123456789")
        assert busy.status == 423, busy  # not two writers on one file
        assert busy.headers["retry-after"] == "1"
        assert on_second.request("DELETE", location).status == 423
        assert not second.files.claim(upload_id)
    finally:
        first.files.release(upload_id)
    done = on_second.patch(location, 0, b"0123456789")
    assert done.status == 204 and done.headers["upload-offset"] == "10"


@backends
def test_no_process_sweeps_away_an_upload_another_is_writing(
    make_server: MakeServer, connect: Any
) -> None:
    first, second = make_server(), make_server()
    alice = connect("alice", srv=first)
    files = FilesClient(first.address, alice.welcome_session)
    location = files.create(1000, filename="slow.bin", room="general").headers["location"]
    upload_id = _upload_id(location)
    much_later = time.time() + 10 * second.config.upload_ttl  # as if untouched for ages

    assert first.files.claim(upload_id)
    try:
        assert second.files.sweep(now=much_later) == 0
        assert files.request("HEAD", location).status == 200
    finally:
        first.files.release(upload_id)
    assert second.files.sweep(now=much_later) == 1  # abandoned once nobody writes it
    assert files.request("HEAD", location).status == 404


def test_in_a_cluster_files_through_any_process_reach_people_on_every_process(
    make_server: MakeServer, connect: Any, pg_url: str, redis_url: str
) -> None:
    first = make_server(database=pg_url, backplane=redis_url)
    second = make_server(database=pg_url, backplane=redis_url)
    alice: LineClient = connect("alice", srv=first)
    bob: LineClient = connect("bob", srv=second)
    alice.expect("joined")  # bob, seen across processes
    on_second = FilesClient(second.address, alice.welcome_session)

    # A room file through the process her chat connection is not on: both hear of it live.
    _, message_id = on_second.upload(b"shared notes", filename="n.txt", room="general")
    for person in (alice, bob):
        msg = person.expect("message")
        assert msg["id"] == message_id and msg["file"]["name"] == "n.txt"

    # A DM file to bob (on the second) through the first, where he is not: he is online.
    on_first = FilesClient(first.address, alice.welcome_session)
    created = on_first.create(3, filename="hi.txt", to="bob")
    assert created.status == 201, created
    done = on_first.patch(created.headers["location"], 0, b"hi!")
    assert done.status == 204
    dm = bob.expect("message")
    assert dm["to"] == "bob" and dm["file"]["name"] == "hi.txt"
    got = FilesClient(second.address, bob.welcome_session).request(
        "GET", f"/files/{dm['file']['id']}"
    )
    assert got.status == 200 and got.body == b"hi!"
