"""Passwords and ranks: where a password may travel, how guessing is throttled and bounded,
and who may remove whom. Checked on real sockets on loopback.

Loopback counts as a safe place for passwords; tests of the rule for other addresses turn
that off with ``ServerConfig.trust_loopback=False``. Tests that need several addresses connect
from 127.0.0.2, 127.0.0.3... (all loopback on Linux).
"""

from __future__ import annotations

import logging
import socket
import statistics
import threading
import time
from typing import Any

import pytest

from tests.helpers import LineClient, T
from tests.test_tls import TlsLineClient


class FromClient(LineClient):
    """A line client whose connection comes from a chosen loopback address."""

    def __init__(self, address: tuple[str, int], source: str) -> None:
        self.sock = socket.create_connection(address, timeout=T(5), source_address=(source, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = T(5)


def _hello_error(client: LineClient, name: str, **extra: Any) -> dict[str, Any]:
    client.send_json(type="hello", protocol=1, name=name, **extra)
    err = client.read_json()
    assert err["type"] == "error", err
    return err


def _register(srv: Any, name: str, password: str) -> None:
    with LineClient(srv.address) as c:
        c.login(name)
        c.send_json(type="register", password=password)
        assert c.expect("ok")["what"] == "register"
        c.send_json(type="quit")
        c.assert_closed()


# -- item 3: passwords only over TLS (or loopback, or when the host allows) -----------------


def test_plain_passwords_are_refused_but_the_connection_stays(make_server: Any) -> None:
    srv = make_server(trust_loopback=False)
    with LineClient(srv.address) as js:
        err = _hello_error(js, "alice", password="hunter2hunter2")
        assert err["code"] == "tls_required"
        assert "Desktop Chat app" in err["message"]
        assert f"https://127.0.0.1:{srv.port}/" in err["message"]
        assert srv.certificate.fingerprint_colons in err["message"]
        js.login("alice")  # still open: logging in without a password works
        js.send_json(type="register", password="hunter2hunter2", ref="r")
        err = js.expect("error")
        assert (err["code"], err["ref"]) == ("tls_required", "r")
        js.send_json(type="join", room="staff", password="room secret", ref="j")
        js.expect("users")  # an open room: joined; the password never mattered
    with TlsLineClient(srv.address) as safe:
        safe.login("host", owner=srv.owner_token)
        safe.send_json(type="room_settings", room="vault", password="room secret", ref=1)
        assert safe.expect("ok", skip=("users", "joined", "notice"))["ref"] == 1
        safe.send_json(type="register", password="hunter2hunter2", ref="r")
        assert safe.expect("ok", skip=("notice",))["ref"] == "r"
    with LineClient(srv.address) as js:
        js.login("bob")
        js.send_json(type="join", room="vault", password="room secret", ref="j")
        err = js.expect("error")
        assert (err["code"], err["ref"]) == ("tls_required", "j")


def test_netcat_is_told_how_to_connect_securely(make_server: Any) -> None:
    srv = make_server(trust_loopback=False)
    with TlsLineClient(srv.address) as tls:
        tls.login("alice")
        tls.send_json(type="register", password="alice's password")
        tls.expect("ok")
    with LineClient(srv.address) as nc:
        nc.read_until_text("username: ")
        nc.send("alice\n")
        line = nc.read_line().decode()
        assert "unencrypted" in line
        assert f"openssl s_client -quiet -connect 127.0.0.1:{srv.port}" in line
        assert "Password" not in line
        nc.read_until_text("username: ")  # asked again, never for the password
        nc.send("nobody\n")
        assert b"Welcome" in nc.read_line()


def test_allow_plain_passwords_flag(make_server: Any) -> None:
    srv = make_server(trust_loopback=False, allow_plain_passwords=True)
    with LineClient(srv.address) as js:
        js.login("alice")
        js.send_json(type="register", password="alice's password", ref=1)
        assert js.expect("ok")["ref"] == 1
        js.send_json(type="quit")
        js.assert_closed()
    with LineClient(srv.address) as js:
        assert js.login("alice", password="alice's password")["name"] == "alice"


def test_loopback_may_send_passwords_by_default(make_server: Any) -> None:
    srv = make_server(password="let me in")
    with LineClient(srv.address) as js:
        assert js.login("guest", password="let me in")["name"] == "guest"


def test_a_session_begun_over_tls_resumes_only_over_tls(make_server: Any) -> None:
    srv = make_server()
    with TlsLineClient(srv.address) as alice, LineClient(srv.address) as bob:
        alice.login("alice")
        token = alice.welcome_session
        bob.login("bob")
        alice.close()
        bob.expect("left")
    with LineClient(srv.address) as thief:
        err = _hello_error(thief, "alice", resume={"session": token, "since": 0})
        assert err["code"] == "tls_required"
    with TlsLineClient(srv.address) as back:
        assert back.login("alice", resume={"session": token, "since": 0})["resumed"] is True


# -- item 6: ranks ----------------------------------------------------------------------------


def test_an_admin_cannot_kick_or_ban_the_owner(make_server: Any) -> None:
    srv = make_server()
    _register(srv, "bob", "bob's password")
    with LineClient(srv.address) as host:
        host.login("host", owner=srv.owner_token)
        host.send_json(type="promote", name="bob")
        host.expect("ok")
        with LineClient(srv.address) as bob, LineClient(srv.address) as carol:
            assert bob.login("bob", password="bob's password")["admin"] is True
            carol.login("carol")
            bob.send_json(type="kick", name="host", ref="k")
            err = bob.expect("error")
            assert (err["code"], err["ref"]) == ("forbidden", "k")
            bob.send_json(type="ban", name="HOST", ref="b")
            assert bob.expect("error")["code"] == "forbidden"
            bob.send_json(type="promote", name="host", admin=False, ref="p")
            assert bob.expect("error")["code"] == "forbidden"
            # A ban on loopback removes carol, never the owner (nor locks the host out).
            bob.send_json(type="ban", address="127.0.0.1", ref="a")
            assert bob.expect("ok")["ref"] == "a"
            assert carol.expect("error")["code"] == "kicked"
            carol.assert_closed()
        host.send_json(type="ping", n=7)
        assert host.expect("pong", skip=("left", "joined", "users"))["n"] == 7
        host.send_json(type="quit")  # gone before the next login with its name (no race)
        host.assert_closed()
    with LineClient(srv.address) as again:
        assert again.login("host", owner=srv.owner_token)["admin"] is True
    with LineClient(srv.address) as other:
        assert _hello_error(other, "dave")["code"] == "banned"


def test_a_non_ascii_owner_token_is_just_wrong(
    make_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    srv = make_server()
    with caplog.at_level(logging.ERROR), LineClient(srv.address) as c:
        welcome = c.login("mallory", owner="ünïcode")
        assert "admin" not in welcome
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- item 4: throttling without lock-outs ---------------------------------------------------


def test_strangers_cannot_lock_an_account_out(make_server: Any) -> None:
    srv = make_server()
    _register(srv, "zoe", "zoe's password")
    for _ in range(8):
        with FromClient(srv.address, "127.0.0.2") as guesser:
            assert _hello_error(guesser, "zoe", password="guess")["code"] == "auth_failed"
    with FromClient(srv.address, "127.0.0.2") as guesser:  # the guesser waits...
        err = _hello_error(guesser, "zoe", password="zoe's password")
        assert "wait" in err["message"]
    with LineClient(srv.address) as zoe:  # ...zoe, elsewhere, does not
        assert zoe.login("zoe", password="zoe's password")["name"] == "zoe"


def test_the_server_password_has_a_global_budget(make_server: Any) -> None:
    srv = make_server(password="let me in")
    with LineClient(srv.address) as regular:  # someone who got in before
        regular.login("regular", password="let me in")
        regular.send_json(type="quit")
        regular.assert_closed()
    with FromClient(srv.address, "127.0.0.20") as laptop:  # a session that lives on
        laptop.login("laptop", password="let me in")
        token = laptop.welcome_session
        laptop.send_json(type="ping", n=1)
        laptop.expect("pong")
    for n in range(20):  # 20 guesses from 4 addresses, 5 each (under each pair's limit)
        with FromClient(srv.address, f"127.0.0.{2 + n // 5}") as guesser:
            assert _hello_error(guesser, f"g{n}", password="guess")["code"] == "auth_failed"
    with FromClient(srv.address, "127.0.0.9") as fresh:  # a new address: the budget is spent
        err = _hello_error(fresh, "newbie", password="let me in")
        assert "wait" in err["message"]
    with LineClient(srv.address) as back:
        assert back.login("regular", password="let me in")["name"] == "regular"
    with FromClient(srv.address, "127.0.0.21") as moved:  # resumed from a new address
        resume = {"session": token, "since": 0}
        assert moved.login("laptop", password="let me in", resume=resume)["resumed"] is True


def test_room_password_guesses_are_throttled(make_server: Any) -> None:
    srv = make_server()
    with LineClient(srv.address) as host, LineClient(srv.address) as bob:
        host.login("host", owner=srv.owner_token)
        host.send_json(type="room_settings", room="vault", password="the right one")
        host.expect("ok", skip=("users", "joined", "notice"))
        bob.login("bob")
        for n in range(5):
            bob.send_json(type="join", room="vault", password=f"guess {n}")
            assert bob.expect("error")["message"] == "this room needs its password"
        bob.send_json(type="join", room="vault", password="the right one")
        assert "wait" in bob.expect("error")["message"]


# -- item 5: argon2 in a bounded pool -------------------------------------------------------


def _round_trip(client: LineClient, n: int) -> float:
    start = time.perf_counter()
    client.send_json(type="ping", n=n)
    client.expect("pong", where=lambda m: m["n"] == n)
    return time.perf_counter() - start


def test_room_password_flood_cannot_starve_the_chat(make_server: Any) -> None:
    """29 connections guess a room password at once: at most one argon2 check per core runs,
    the excess is refused with rate_limited, and a bystander's round trip stays short."""
    srv = make_server(argon_workers=2, argon_queue=2, rate_per_sec=0)
    with LineClient(srv.address) as host:
        host.login("host", owner=srv.owner_token)
        host.send_json(type="room_settings", room="vault", password="the right one")
        host.expect("ok", skip=("users", "joined", "notice"))
    guessers = [FromClient(srv.address, f"127.0.1.{i + 1}") for i in range(29)]
    bystander = LineClient(srv.address)
    try:
        for i, g in enumerate(guessers):
            g.login(f"guesser{i}")
        bystander.login("bystander")
        calm = statistics.median(_round_trip(bystander, n) for n in range(20))
        codes: list[str] = []
        lock = threading.Lock()

        def guess(client: LineClient) -> None:
            for n in range(3):
                client.send_json(type="join", room="vault", password=f"guess {n}", ref=n)
            for _ in range(3):
                got = client.expect("error", skip=("typing", "ping", "joined", "left", "users"))
                with lock:
                    codes.append(got["code"])

        threads = [threading.Thread(target=guess, args=(g,)) for g in guessers]
        for t in threads:
            t.start()
        busy = [_round_trip(bystander, 100 + n) for n in range(20)]
        for t in threads:
            t.join(T(60))
        assert len(codes) == 3 * len(guessers)
        assert set(codes) <= {"auth_failed", "rate_limited"}
        assert "rate_limited" in codes  # the queue is bounded
        assert srv.guard.pool.peak <= 2
        # The chat stays responsive: a bystander's median round trip stays well under the
        # 44 ms one argon2 check costs.
        assert statistics.median(busy) < max(T(0.04), 10 * calm), (calm, busy)
    finally:
        for g in guessers:
            g.close()
        bystander.close()
