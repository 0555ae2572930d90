"""TLS on the shared port: same protocol inside, pinned fingerprint, plain refused when required."""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import stat
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest

from desktop_chat.net.protocol.tls import client_context, format_fingerprint, normalize_fingerprint
from tests.helpers import LineClient, T


class TlsLineClient(LineClient):
    def __init__(self, address: tuple[str, int], ctx: ssl.SSLContext | None = None) -> None:
        raw = socket.create_connection(address, timeout=T(5))
        self.sock = (ctx or client_context()).wrap_socket(raw)
        self.buf = b""
        self.timeout = T(5)


def test_json_over_tls_with_matching_fingerprint(make_server: Any, data_dir: Path) -> None:
    srv = make_server()
    with TlsLineClient(srv.address) as alice, LineClient(srv.address) as bob:
        der = alice.sock.getpeercert(binary_form=True)
        assert hashlib.sha256(der).hexdigest() == srv.fingerprint
        assert alice.sock.version() in ("TLSv1.2", "TLSv1.3")
        alice.login("alice")
        bob.login("bob")  # plain and TLS clients share the room ("offered")
        alice.send_json(type="say", room="general", text="secret-ish")
        assert bob.expect("message")["text"] == "secret-ish"
        assert alice.expect("message")["text"] == "secret-ish"
    key = data_dir / "tls-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_certificate_is_kept_across_restarts(make_server: Any) -> None:
    first = make_server()
    fp = first.fingerprint
    first.close()
    assert make_server().fingerprint == fp


def test_fingerprint_matches_openssl(make_server: Any, data_dir: Path) -> None:
    srv = make_server()
    out = subprocess.run(
        [
            "openssl",
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            str(data_dir / "tls-cert.pem"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=T(10),
    ).stdout
    assert out.strip().split("=", 1)[1] == format_fingerprint(srv.fingerprint)
    assert normalize_fingerprint(out.split("=", 1)[1]) == srv.fingerprint


def test_plain_text_over_tls(make_server: Any) -> None:
    srv = make_server()
    with TlsLineClient(srv.address) as term:
        term.read_until_text("username: ")
        term.send("tessa\n")
        assert b"tessa" in term.read_line()


def test_tls_required_refuses_plain_in_its_own_terms(make_server: Any) -> None:
    srv = make_server(tls="required")
    with LineClient(srv.address) as js:
        js.send_json(type="hello", protocol=1, name="alice", password="hunter2")
        err = js.read_json()
        assert err["type"] == "error"
        assert err["code"] == "tls_required"
        js.assert_closed()
    with LineClient(srv.address) as web:
        web.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert web.read_line().startswith(b"HTTP/1.1 426")
        web.assert_closed()
    with LineClient(srv.address) as term:
        rest = term.assert_closed()  # after the sniff timeout: one line, no username prompt
        assert b"TLS" in rest
        assert b"username" not in rest
        assert rest.count(b"\n") == 1
    with TlsLineClient(srv.address) as ok:
        assert ok.login("alice")["name"] == "alice"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_versions_are_refused(make_server: Any, version: ssl.TLSVersion) -> None:
    srv = make_server()
    ctx = client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # we use the old versions on purpose
        ctx.minimum_version = version
        ctx.maximum_version = version
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    raw = socket.create_connection(srv.address, timeout=T(5))
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        ctx.wrap_socket(raw)
    raw.close()


def test_stalled_handshake_is_dropped_at_the_deadline(make_server: Any) -> None:
    srv = make_server(registration_timeout=0.5)
    with LineClient(srv.address) as staller:
        # The start of a ClientHello record, then nothing.
        staller.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        staller.assert_closed(timeout=3)
    assert srv.connection_count() == 0


def test_garbage_after_tls_byte_harms_no_one(make_server: Any) -> None:
    srv = make_server()
    with LineClient(srv.address) as alice:
        alice.login("alice")
        with LineClient(srv.address) as bad:
            bad.send(b"\x16" + b"\xff" * 200 + b"\n")
            bad.assert_closed()
        alice.send_json(type="ping", n=1)
        assert alice.expect("pong") == json.loads('{"type":"pong","n":1}')
