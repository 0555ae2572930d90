"""Sharing files: tus uploads and ranged downloads on the chat port, against a real server.

Every request is real HTTP over 127.0.0.1 (the standard library's client, or a raw socket where
the test needs to stop half-way); files are real files in the test's data folder.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from desktop_chat.net.protocol.tls import client_context
from tests.helpers import T, wait_until
from tests.irc_helpers import RawIrc
from tests.tus_client import FilesClient, metadata


def png(width: int, height: int, extra: int = 0) -> bytes:
    """A PNG signature and IHDR chunk (all the server reads), then ``extra`` random bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    crc = struct.pack(">I", zlib.crc32(chunk))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + crc + os.urandom(extra)


def _files(srv: Any, client: Any) -> FilesClient:
    return FilesClient(srv.address, client.welcome_session)


def _blobs(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "files" / "blobs").iterdir())


def _raw_request(address: tuple[str, int], head: str, body: bytes = b"") -> bytes:
    """Send a request head (and maybe part of a body); return the whole answer."""
    with socket.create_connection(address, timeout=T(5)) as s:
        s.sendall(head.encode() + body)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_round_trip_image_in_a_room(server: Any, connect: Any, data_dir: Path) -> None:
    alice, bob = connect("alice"), connect("bob")
    alice.expect("joined")
    data = png(640, 480, extra=300_000)
    location, message_id = _files(server, alice).upload(data, filename="cat.png", room="general")
    assert location.startswith("/files/uploads/")
    msg = bob.expect("message")
    assert msg["id"] == message_id and msg["room"] == "general" and msg["from"] == "alice"
    f = msg["file"]
    assert f["name"] == "cat.png" and f["size"] == len(data)
    assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert (f["mime"], f["width"], f["height"]) == ("image/png", 640, 480)
    assert len(f["id"]) >= 22  # 128+ random bits, URL-safe
    assert alice.expect("message")["file"] == f  # the sender sees it like everyone else

    got = _files(server, bob).request("GET", f"/files/{f['id']}")
    assert got.status == 200 and got.body == data
    assert got.headers["content-type"] == "image/png"
    assert got.headers["content-disposition"].startswith("inline;")
    assert got.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in got.headers["content-security-policy"]
    head = _files(server, bob).request("HEAD", f"/files/{f['id']}")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(len(data))
    assert head.headers["content-type"] == "image/png"
    # Stored once, by its hash; nothing left in the upload folder.
    assert [p.name for p in _blobs(data_dir)] == [f["sha256"]]
    assert list((data_dir / "files" / "uploads").iterdir()) == []
    # History carries the file too.
    bob.send_json(type="history", room="general")
    assert bob.expect("history")["messages"][-1]["file"] == f


def test_identical_content_is_stored_once(server: Any, connect: Any, data_dir: Path) -> None:
    alice = connect("alice")
    data = os.urandom(50_000)
    _files(server, alice).upload(data, filename="a.bin", room="general")
    _files(server, alice).upload(data, filename="b.bin", room="general")
    first, second = alice.expect("message")["file"], alice.expect("message")["file"]
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert len(_blobs(data_dir)) == 1
    for f in (first, second):
        assert _files(server, alice).request("GET", f"/files/{f['id']}").body == data


def test_tokens_and_tus_version_are_required(server: Any, connect: Any) -> None:
    alice = connect("alice")
    assert FilesClient(server.address, None).create(10, filename="x", room="general").status == 401
    assert (
        FilesClient(server.address, "nope").create(10, filename="x", room="general").status == 401
    )
    no_version = _files(server, alice).request("POST", "/files", headers={"Tus-Resumable": "0.2"})
    assert no_version.status == 412 and no_version.headers["tus-version"] == "1.0.0"
    options = FilesClient(server.address, None).request("OPTIONS", "/files")
    assert options.status == 204
    assert options.headers["tus-extension"] == "creation,termination"


def test_declared_too_large_is_refused_before_the_body(make_server: Any, connect: Any) -> None:
    srv = make_server(max_file_size=1000)
    alice = connect("alice", srv=srv)
    host, port = srv.address
    # Only the head is sent: the answer must come without waiting for any body byte.
    answer = _raw_request(
        srv.address,
        f"POST /files HTTP/1.1\r\nHost: {host}:{port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Authorization: Bearer {alice.welcome_session}\r\nUpload-Length: 1001\r\n"
        f"Upload-Metadata: {metadata(filename='big', room='general')}\r\n"
        "Content-Length: 0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413 ")
    created = _files(srv, alice).create(1000, filename="ok", room="general")
    assert created.status == 201
    # A PATCH whose Content-Length would pass Upload-Length: refused before its body too.
    answer = _raw_request(
        srv.address,
        f"PATCH {created.headers['location']} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Tus-Resumable: 1.0.0\r\nAuthorization: Bearer {alice.welcome_session}\r\n"
        "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
        "Content-Length: 5000\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_the_limit_is_enforced_mid_stream(make_server: Any, connect: Any, data_dir: Path) -> None:
    srv = make_server(max_file_size=200_000)
    alice = connect("alice", srv=srv)
    files = _files(srv, alice)
    location = files.create(100_000, filename="x.bin", room="general").headers["location"]
    # Chunked: no length up front, so only counting while receiving can stop it.
    chunks = [os.urandom(30_000) for _ in range(6)]
    refused = files.patch(location, 0, iter(chunks), chunked=True)
    assert refused.status == 413
    state = files.request("HEAD", location)
    kept = int(state.headers["upload-offset"])
    assert kept <= 100_000 and state.headers["upload-length"] == "100000"
    parts = list((data_dir / "files" / "uploads").iterdir())
    assert len(parts) == 1 and parts[0].stat().st_size == kept
    assert _blobs(data_dir) == []
    alice.send_json(type="ping", n=1)
    assert alice.expect("pong")["n"] == 1  # no message was sent, and the chat is fine


def test_interrupted_upload_resumes_from_its_offset(server: Any, connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    files = _files(server, alice)
    data = os.urandom(3_000_000)
    location = files.create(len(data), filename="movie.bin", room="general").headers["location"]
    host, port = server.address
    head = (
        f"PATCH {location} HTTP/1.1\r\nHost: {host}:{port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Authorization: Bearer {alice.welcome_session}\r\nUpload-Offset: 0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    with socket.create_connection(server.address, timeout=T(5)) as s:
        s.sendall(head.encode() + data[:1_200_000])  # and then the connection is lost
    offset = wait_until(
        lambda: int(files.request("HEAD", location).headers["upload-offset"]) or None,
        what="the server kept what arrived",
    )
    assert offset == 1_200_000
    stale = files.patch(location, 0, data)
    assert stale.status == 409 and stale.headers["upload-offset"] == "1200000"
    done = files.patch(location, 1_200_000, data[1_200_000:])
    assert done.status == 204 and done.headers["upload-offset"] == str(len(data))
    f = bob.expect("message")["file"]
    assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert _files(server, bob).request("GET", f"/files/{f['id']}").body == data


def test_abandoned_upload_is_gone_after_its_expiry(
    make_server: Any, connect: Any, data_dir: Path
) -> None:
    srv = make_server(upload_ttl=0.5)
    alice = connect("alice", srv=srv)
    files = _files(srv, alice)
    location = files.create(10_000, filename="x", room="general").headers["location"]
    assert files.patch(location, 0, b"a" * 4000).status == 204
    uploads = data_dir / "files" / "uploads"
    assert len(list(uploads.iterdir())) == 1
    wait_until(lambda: not list(uploads.iterdir()), timeout=10, what="the sweeper removed it")
    assert files.request("HEAD", location).status == 404
    deleted = files.create(10, filename="y", room="general").headers["location"]
    assert files.request("DELETE", deleted).status == 204  # termination: gone at once
    assert files.request("HEAD", deleted).status == 404
    assert srv.files.used() == 0


def test_range_downloads(server: Any, connect: Any) -> None:
    alice = connect("alice")
    data = bytes(range(256)) * 40
    _files(server, alice).upload(data, filename="r.bin", room="general")
    path = f"/files/{alice.expect('message')['file']['id']}"
    files = _files(server, alice)
    part = files.request("GET", path, headers={"Range": "bytes=10-19"})
    assert part.status == 206 and part.body == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert files.request("GET", path, headers={"Range": "bytes=-5"}).body == data[-5:]
    assert files.request("GET", path, headers={"Range": "bytes=10000-"}).body == data[10000:]
    assert files.request("GET", path, headers={"Range": "bytes=9000-99999"}).body == data[9000:]
    bad = files.request("GET", path, headers={"Range": "bytes=20000-"})
    assert bad.status == 416 and bad.headers["content-range"] == f"bytes */{len(data)}"
    several = files.request("GET", path, headers={"Range": "bytes=0-1,5-6"})
    assert several.status == 200 and several.body == data  # allowed: the whole file


HOSTILE = [
    "../../x",
    "/abs/path",
    "C:\\x",
    "CON",
    "nul\x00byte.txt",
    "a" * 300 + ".txt",
    "gnp\u202e.exe",
    "Report.TXT",
    "report.txt",
    '"; filename=evil.html',
    "..",
]


def test_hostile_names_never_become_paths(server: Any, connect: Any, data_dir: Path) -> None:
    alice = connect("alice")
    before = {p for p in data_dir.rglob("*")}
    shown = []
    for i, name in enumerate(HOSTILE):
        _files(server, alice).upload(f"content {i}".encode(), filename=name, room="general")
        f = alice.expect("message")["file"]
        shown.append(f["name"])
        got = _files(server, alice).request("GET", f"/files/{f['id']}")
        assert got.body == f"content {i}".encode()
        disposition = got.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="')
        assert disposition.count('"') == 2  # the name cannot close the quotes early
    for name in shown:
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert "\u202e" not in name and not name.startswith(".")
        assert 0 < len(name.encode()) <= 255
    assert shown[0] == "x" and shown[2] == "x" and shown[3] == "CON"
    assert shown[5].endswith(".txt")
    assert shown[7] == "Report.TXT" and shown[8] == "report.txt"  # labels, not paths
    # Only blobs named by their hash appeared (plus the store's own database).
    new = {p for p in data_dir.rglob("*")} - before
    for p in new:
        assert p.parent.name in ("blobs", "files", "uploads"), p
        if p.parent.name == "blobs":
            assert len(p.name) == 64 and all(c in "0123456789abcdef" for c in p.name)


@pytest.mark.parametrize(
    ("content", "mime"),
    [
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "image/svg+xml",
        ),
        (b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>", "text/html"),
    ],
)
def test_script_files_are_attachments(server: Any, connect: Any, content: bytes, mime: str) -> None:
    alice = connect("alice")
    # The claimed name says PNG: the bytes decide.
    _files(server, alice).upload(content, filename="innocent.png", room="general")
    f = alice.expect("message")["file"]
    assert f["mime"] == mime and "width" not in f
    got = _files(server, alice).request("GET", f"/files/{f['id']}")
    assert got.headers["content-type"] == mime
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["x-content-type-options"] == "nosniff"
    csp = got.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp


def test_who_may_upload_and_download(server: Any, connect: Any) -> None:
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    carol.send_json(type="join", room="secret")
    carol.expect("users", skip=("joined", "typing", "ping"))
    _files(server, alice).upload(b"for bob only", filename="dm.txt", to="bob")
    f = bob.expect("message")["file"]
    assert alice.expect("message")["to"] == "bob"
    assert _files(server, bob).request("GET", f"/files/{f['id']}").body == b"for bob only"
    assert _files(server, alice).request("GET", f"/files/{f['id']}").status == 200
    assert _files(server, carol).request("GET", f"/files/{f['id']}").status == 404
    assert _files(server, carol).request("HEAD", f"/files/{f['id']}").status == 404
    # A room file is for the room's readers.
    _files(server, carol).upload(b"secret room", filename="s.txt", room="secret")
    secret = carol.expect("message")["file"]
    assert _files(server, alice).request("GET", f"/files/{secret['id']}").status == 404
    assert _files(server, alice).request("GET", "/files/" + "A" * 32).status == 404
    # Uploading: not in the room → 403, nobody of that name → 404.
    assert _files(server, alice).create(5, filename="x", room="secret").status == 403
    assert _files(server, alice).create(5, filename="x", to="nobody").status == 404
    # Someone else's upload is not yours to see.
    location = _files(server, alice).create(5, filename="x", room="general").headers["location"]
    assert _files(server, bob).request("HEAD", location).status == 404


def test_a_dm_file_is_not_for_a_later_session_with_the_same_free_name(
    server: Any, connect: Any
) -> None:
    alice, bob = connect("alice"), connect("bob")
    _files(server, alice).upload(b"for this bob", filename="dm.txt", to="bob")
    f = bob.expect("message")["file"]
    assert _files(server, bob).request("GET", f"/files/{f['id']}").status == 200
    bob.send_json(type="quit")
    bob.assert_closed()
    later_bob = connect("bob")  # a new session that takes the free name
    assert _files(server, later_bob).request("GET", f"/files/{f['id']}").status == 404


def test_plain_text_and_irc_users_see_a_line(server: Any, connect: Any) -> None:
    nc = connect()
    nc.read_until_text("username")
    nc.send("netty\n")
    nc.read_until_text("Type /help for commands.\n")
    irc = RawIrc(server.address)
    try:
        irc.register("ircy")
        alice = connect("alice")
        _files(server, alice).upload(b"x" * 2048, filename="notes\u202e.txt", room="general")
        assert b"* alice shared notes.txt (2.0 KB)\n" in nc.read_until_text("KB)\n")
        notice = irc.expect("NOTICE")
        assert list(notice.params) == ["#general", "* alice shared notes.txt (2.0 KB)"]
    finally:
        irc.close()


def test_retention_expires_the_oldest_file(make_server: Any, connect: Any) -> None:
    srv = make_server(files_quota=250_000)
    alice = connect("alice", srv=srv)
    files = _files(srv, alice)
    ids = []
    for _ in range(3):
        files.upload(os.urandom(100_000), filename="f.bin", room="general")
        ids.append(alice.expect("message")["file"]["id"])
    assert files.request("GET", f"/files/{ids[0]}").status == 410
    assert files.request("GET", f"/files/{ids[1]}").status == 200
    assert srv.files.used() == 200_000
    alice.send_json(type="history", room="general")
    first = alice.expect("history")["messages"][0]
    assert first["file"]["id"] == ids[0] and first["file"]["expired"] is True
    # More than the whole quota: refused up front.
    assert files.create(300_000, filename="huge", room="general").status == 507


def test_plain_http_is_refused_when_tls_is_required(make_server: Any, connect: Any) -> None:
    srv = make_server(tls="required")
    answer = FilesClient(srv.address, "whatever").create(5, filename="x", room="general")
    assert answer.status == 426


def test_files_over_tls(server: Any) -> None:
    from tests.test_tls import TlsLineClient

    alice = TlsLineClient(server.address)
    try:
        alice.login("alice")
        data = png(32, 16, extra=2_000_000)
        tls = FilesClient(server.address, alice.welcome_session, tls=client_context())
        _, message_id = tls.upload(data, filename="t.png", room="general")
        msg = alice.expect("message")
        assert msg["id"] == message_id
        f = msg["file"]
        got = tls.request("GET", f"/files/{f['id']}")
        assert got.body == data and got.headers["content-type"] == "image/png"
        part = tls.request("GET", f"/files/{f['id']}", headers={"Range": "bytes=100-"})
        assert part.status == 206 and part.body == data[100:]
    finally:
        alice.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A data folder whose file store is on a 2 MB tmpfs: a real full disk (needs root)."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a real full disk) needs root; CI runs as root")
    folder = tmp_path / "disk" / "files"
    folder.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_full_disk_is_a_clear_error(make_server: Any, connect: Any, small_disk: Path) -> None:
    srv = make_server(files_quota=100 << 20, data_dir=small_disk.parent)
    alice = connect("alice", srv=srv)
    files = _files(srv, alice)
    data = os.urandom(3_000_000)
    location = files.create(len(data), filename="big.bin", room="general").headers["location"]
    refused = files.patch(location, 0, data)
    assert refused.status == 507 and b"disk is full" in refused.body
    kept = int(files.request("HEAD", location).headers["upload-offset"])
    part = next((small_disk / "uploads").iterdir())
    assert part.stat().st_size == kept < len(data)  # no torn chunk past the offset
    assert _blobs(small_disk.parent) == []
    files.request("DELETE", location)
    # The server is fine: chat works, and a file that fits goes through.
    small = os.urandom(100_000)
    files.upload(small, filename="ok.bin", room="general")
    f = alice.expect("message")["file"]
    assert files.request("GET", f"/files/{f['id']}").body == small


def test_an_upload_resumes_across_a_server_restart(make_server: Any, data_dir: Path) -> None:
    from tests.helpers import LineClient

    data = os.urandom(2_500_000)
    first = make_server()
    with LineClient(first.address) as alice:
        alice.login("alice")
        token = alice.welcome_session
        files = FilesClient(first.address, token)
        location = files.create(len(data), filename="r.bin", room="general").headers["location"]
        assert files.patch(location, 0, data[:1_000_000]).status == 204
    first.close()
    second = make_server()  # same data folder: the upload and the session were kept
    files = FilesClient(second.address, token)  # alice is not even online: her session is
    assert files.request("HEAD", location).headers["upload-offset"] == "1000000"
    done = files.patch(location, 1_000_000, data[1_000_000:])
    assert done.status == 204
    with LineClient(second.address) as bob:
        bob.login("bob")
        bob.send_json(type="history", room="general")
        msg = bob.expect("history")["messages"][-1]
        assert msg["id"] == int(done.headers["upload-message-id"]) and msg["from"] == "alice"
        assert msg["file"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert (
            FilesClient(second.address, bob.welcome_session)
            .request("GET", f"/files/{msg['file']['id']}")
            .body
            == data
        )
