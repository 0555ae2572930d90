"""The desktop app's transfer engine (net/client/files.py) against a real TLS server: round
trips with hash checks, resume of an upload from the server's offset after a cut connection,
ranged resume of a download, the certificate pin, and safe local names."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from desktop_chat.net.client import files as f
from desktop_chat.net.client.savenames import claim_unique, safe_name
from tests.helpers import T


def _endpoint(srv: Any, client: Any) -> f.Endpoint:
    host, port = srv.address[0], srv.address[1]
    return f.Endpoint(host, port, srv.fingerprint, client.welcome_session)


def _source(tmp_path: Path, size: int, name: str = "data.bin") -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def test_upload_then_download_with_hash_check(server: Any, connect: Any, tmp_path: Path) -> None:
    alice, bob = connect("alice"), connect("bob")
    path, data = _source(tmp_path, 700_000)
    seen: list[int] = []
    job = f.UploadJob(str(path), "report.pdf", len(data), room="general")
    msg_id = f.upload(_endpoint(server, alice), job, seen.append, f.Cancel())
    assert job.location is not None and seen[-1] == len(data)
    msg = bob.expect("message")
    assert msg["id"] == msg_id and msg["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    info = msg["file"]
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    (downloads / "report.pdf").write_bytes(b"mine, not to be overwritten")
    dl = f.DownloadJob(info["id"], info["name"], info["size"], info["sha256"], str(downloads))
    got = f.download(_endpoint(server, bob), dl, lambda _n: None, f.Cancel())
    assert got.name == "report (2).pdf" and got.read_bytes() == data
    assert (downloads / "report.pdf").read_bytes() == b"mine, not to be overwritten"
    assert sorted(p.name for p in downloads.iterdir()) == ["report (2).pdf", "report.pdf"]


def test_download_resumes_with_range_and_checks_the_whole_hash(
    server: Any, connect: Any, tmp_path: Path
) -> None:
    alice, bob = connect("alice"), connect("bob")
    path, data = _source(tmp_path, 500_000)
    f.upload(_endpoint(server, alice), f.UploadJob(str(path), "x.bin", len(data), room="general"),
             lambda _n: None, f.Cancel())  # fmt: skip
    info = bob.expect("message")["file"]
    downloads = tmp_path / "dl"
    downloads.mkdir()
    dl = f.DownloadJob(info["id"], info["name"], info["size"], info["sha256"], str(downloads))
    dl.part_path().write_bytes(data[:123_457])  # what an interrupted download left
    seen: list[int] = []
    got = f.download(_endpoint(server, bob), dl, seen.append, f.Cancel())
    assert seen[0] > 123_457 and seen[-1] == len(data)  # only the rest came over the wire
    assert got.read_bytes() == data and not Path(dl.part).exists()

    # A part whose first bytes are wrong fails the hash and is thrown away, not saved.
    bad = f.DownloadJob(info["id"], info["name"], info["size"], info["sha256"], str(downloads))
    bad.part_path().write_bytes(b"\0" * 1000)
    with pytest.raises(f.TransferError, match="SHA-256") as caught:
        f.download(_endpoint(server, bob), bad, lambda _n: None, f.Cancel())
    assert not caught.value.retry
    assert sorted(p.name for p in downloads.iterdir()) == ["x.bin"]


class _Relay:
    """A TCP relay to the server that can be cut, like a pulled network cable."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.moved = 0
        self.cut_after: int | None = None
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._accept, name="relay-accept")]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                a, _ = self.listener.accept()
            except OSError:
                return
            b = socket.create_connection(self.target)
            self.socks += [a, b]
            for src, dst in ((a, b), (b, a)):
                t = threading.Thread(target=self._pipe, args=(src, dst), name="relay-pipe")
                self.threads.append(t)
                t.start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                self.moved += len(data)
                with self.lock:
                    cut = self.cut_after is not None and self.moved > self.cut_after
                    if cut:
                        self.cut_after = None  # one cut: later connections go through
                if cut:
                    for s in (src, dst):  # this connection only
                        s.shutdown(socket.SHUT_RDWR)
                    return
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def cut(self) -> None:
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (close alone does not)
        self.listener.close()
        self.cut()
        for t in self.threads:
            t.join(T(5))
        for s in self.socks:
            s.close()


def test_interrupted_upload_resumes_from_the_servers_offset(
    server: Any, connect: Any, tmp_path: Path
) -> None:
    alice, bob = connect("alice"), connect("bob")
    path, data = _source(tmp_path, 3_000_000)
    relay = _Relay(server.address)
    try:
        ep = _endpoint(server, alice)
        via_relay = f.Endpoint(
            ep.host, ep.port, ep.fingerprint, ep.token, ("127.0.0.1", relay.port)
        )
        relay.cut_after = 1_000_000
        job = f.UploadJob(str(path), "big.bin", len(data), room="general")
        locations: list[str] = []
        with pytest.raises(f.TransferError) as caught:
            f.upload(via_relay, job, lambda _n: None, f.Cancel(), locations.append)
        assert caught.value.retry and locations == [job.location]
        seen: list[int] = []
        f.upload(via_relay, job, seen.append, f.Cancel())
    finally:
        relay.close()
    # The last attempt (after any 423 while the server noticed the cut) started mid-file.
    starts = [i for i in range(1, len(seen)) if seen[i] < seen[i - 1]]
    last_start = seen[starts[-1]] if starts else seen[0]
    assert 0 < last_start < len(data), seen
    msg = bob.expect("message")
    assert msg["file"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_different_certificate_gets_nothing(server: Any, connect: Any, tmp_path: Path) -> None:
    alice = connect("alice")
    path, _data = _source(tmp_path, 10)
    ep = _endpoint(server, alice)
    wrong = f.Endpoint(ep.host, ep.port, "0" * 64, ep.token)
    with pytest.raises(f.TransferError, match="certificate") as caught:
        f.upload(wrong, f.UploadJob(str(path), "a", 10, room="general"), lambda _n: None,
                 f.Cancel())  # fmt: skip
    assert not caught.value.retry


def test_cancel_stops_an_upload_and_the_server_forgets_it(
    server: Any, connect: Any, tmp_path: Path
) -> None:
    alice = connect("alice")
    path, data = _source(tmp_path, 2_000_000)
    cancel = f.Cancel()
    job = f.UploadJob(str(path), "a.bin", len(data), room="general")

    def progress(done: int) -> None:
        if done > 500_000:
            cancel.cancel()

    with pytest.raises(f.Cancelled):
        f.upload(_endpoint(server, alice), job, progress, cancel)
    assert job.location is not None
    f.cancel_upload(_endpoint(server, alice), job.location)
    answer, _ = f._call(_endpoint(server, alice), f.Cancel(), "HEAD", job.location)
    assert answer.status == 404


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\system.ini", "system.ini"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("evil\u202egpj.exe", "evilgpj.exe"),
        ("a\x00b\nc.txt", "abc.txt"),
        ("...", "file"),
        (".bashrc", "bashrc"),
        ('what?<>|"*.txt', "what______.txt"),
        ("name. ", "name"),
    ],
)
def test_safe_names(label: str, expected: str) -> None:
    assert safe_name(label) == expected


def test_long_names_are_cut_keeping_the_extension(tmp_path: Path) -> None:
    name = safe_name("é" * 300 + ".jpeg")
    assert name.endswith("é.jpeg") and len(name.encode()) <= 200
    first = claim_unique(tmp_path, name)
    second = claim_unique(tmp_path, name)
    assert first.name == name and second.name == name[: -len(".jpeg")] + " (2).jpeg"


def test_a_file_the_server_no_longer_has_says_it_expired(
    server: Any, connect: Any, tmp_path: Path
) -> None:
    bob = connect("bob")
    gone = f.DownloadJob("x" * 32, "old.bin", 10, "0" * 64, str(tmp_path))
    with pytest.raises(f.TransferError, match="expired") as caught:
        f.download(_endpoint(server, bob), gone, lambda _n: None, f.Cancel())
    assert not caught.value.retry and caught.value.status == 404
