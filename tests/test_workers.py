"""Several server processes on one port: ``--workers N``, ``--backplane``, ``GET /health``.

Which process answered is told by ``GET /health`` (its ``pid`` and ``worker`` number): that is
how these tests see that every worker accepts connections.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from desktop_chat.net.server import workers
from desktop_chat.net.server.server import Server, ServerConfig
from desktop_chat.net.server.tls import CERT_FILE, KEY_FILE
from desktop_chat.server_cli import build_parser
from tests.helpers import LineClient, T, wait_until

CMD = [sys.executable, "-m", "desktop_chat.server_cli"]


def health(address: tuple[str, int]) -> dict[str, object]:
    """``GET /health`` on a fresh connection (so SO_REUSEPORT may pick any process)."""
    with socket.create_connection(address, timeout=T(5)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"content-type: application/json" in head.lower()
    answer = json.loads(body)
    assert isinstance(answer, dict)
    return answer


def answered_by(address: tuple[str, int], wanted: int, field: str = "pid") -> set[Any]:
    """Ask /health over new connections until ``wanted`` distinct processes have answered
    (the kernel spreads connections at random: 200 tries all landing on one of two
    processes would happen once in 2**199 runs)."""
    seen: set[Any] = set()
    for _ in range(200):
        seen.add(health(address)[field])
        if len(seen) >= wanted:
            break
    return seen


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CMD, "--host", "127.0.0.1", "--port", "0", "--no-announce", *args],
        capture_output=True,
        text=True,
        timeout=T(30),
        env=env,
    )


# -- refusals -------------------------------------------------------------------------------


def test_several_workers_without_postgres_and_redis_refuse_with_one_line(
    data_dir: Path,
) -> None:
    result = run_cli("--data-dir", str(data_dir), "--workers", "2")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "--workers 2 needs a PostgreSQL --database and a --backplane" in result.stderr
    assert not (data_dir / "chat.sqlite3").exists()  # refused before touching anything


def test_the_refusal_names_what_is_missing_whatever_is_given() -> None:
    pg, redis = "postgresql://u@127.0.0.1/chat", "redis://127.0.0.1:6379"
    assert workers.refusal(ServerConfig(), 1) is None  # one process needs neither
    assert workers.refusal(ServerConfig(database=pg, backplane=redis), 3) is None
    for config in (
        ServerConfig(backplane=redis),  # SQLite: a file one process writes
        ServerConfig(database=pg),  # no way to tell the other processes
        ServerConfig(database="sqlite:///x", backplane=redis),
    ):
        problem = workers.refusal(config, 2)
        assert problem is not None
        assert "PostgreSQL --database and a --backplane" in problem


def test_other_systems_are_told_to_use_a_load_balancer() -> None:
    config = ServerConfig(database="postgresql://u@h/chat", backplane="redis://h")
    for platform in ("darwin", "win32", "freebsd14"):
        problem = workers.refusal(config, 2, platform=platform)
        assert problem is not None
        assert "needs Linux" in problem
        assert "load balancer" in problem


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis://", "redis://host:port", "unix://"],
)
def test_a_backplane_that_is_not_a_redis_url_is_one_clear_line(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--backplane", url])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--backplane" in err


def test_backplane_urls_and_the_environment_variable(data_dir: Path) -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://u:p@chat.example:6380", "unix:///run/r.s"):
        assert build_parser().parse_args(["--backplane", url]).backplane == url
    # The environment variable is checked as strictly as the flag.
    env = {
        "PATH": "/usr/bin:/bin",
        "DESKTOP_CHAT_DATA_DIR": str(data_dir),
        "DESKTOP_CHAT_BACKPLANE": "memcached://127.0.0.1",
    }
    result = run_cli("--data-dir", str(data_dir), env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("desktop-chat-server: DESKTOP_CHAT_BACKPLANE: not a Redis URL")
    assert result.stderr.count("\n") == 1


# -- one port, several processes ------------------------------------------------------------


def test_servers_bound_with_reuse_port_share_the_port_and_health_says_which_answered(
    make_server: Callable[..., Server],
) -> None:
    first = make_server(reuse_port=True, worker=0)
    second = make_server(port=first.port, reuse_port=True, worker=1)
    assert second.port == first.port
    # Both accept: the kernel hands each some of the new connections.
    assert answered_by(first.address, 2, field="worker") == {0, 1}


def test_a_plain_server_answers_health_as_the_only_process(
    make_server: Callable[..., Server],
) -> None:
    import os

    answer = health(make_server().address)
    assert answer == {"status": "ok", "pid": os.getpid(), "worker": None, "people": 0}


def test_only_the_first_worker_announces_the_server() -> None:
    config = ServerConfig(announce=True, broadcast_port=5152)
    first, second = workers.for_worker(config, 0), workers.for_worker(config, 1)
    assert (first.announce, first.broadcast_port, first.worker) == (True, 5152, 0)
    assert (second.announce, second.broadcast_port, second.worker) == (False, None, 1)


def test_the_data_folder_is_prepared_once_for_every_worker(data_dir: Path) -> None:
    shared = workers.prepare(ServerConfig(data_dir=data_dir / "new", port=0))
    folder = data_dir / "new"
    assert (folder / "chat.sqlite3").exists()  # its schema made: no worker races to make it
    assert (folder / "files" / "files.sqlite3").exists()
    assert (folder / CERT_FILE).exists() and (folder / KEY_FILE).exists()  # TLS, made once
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert shared.reuse_port is True
    assert shared.owner_token  # one host key, the same in every worker
    assert workers.for_worker(shared, 1).owner_token == shared.owner_token


# -- the real thing: desktop-chat-server --workers 2 on PostgreSQL and Redis ----------------


def _banner_port(proc: subprocess.Popen[str]) -> int:
    """The port worker 0 prints in its start-up banner (the supervisor chose it)."""
    assert proc.stdout is not None
    lines: list[str] = []
    while not (lines and "Ctrl+C" in lines[-1]):
        line = proc.stdout.readline()
        assert line, f"the server stopped: {lines}"
        lines.append(line)
    return next(int(x.strip().rsplit(":", 1)[1]) for x in lines if x.startswith("  127.0.0.1:"))


def test_two_workers_serve_one_port_a_killed_one_is_restarted_and_sigterm_ends_all(
    data_dir: Path, tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    import psutil

    err_path = tmp_path / "server.err"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [*CMD, "--host", "127.0.0.1", "--port", "0", "--no-announce", "--data-dir",
             str(data_dir), "--workers", "2", "--database", pg_url, "--backplane", redis_url],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    try:
        address = ("127.0.0.1", _banner_port(proc))
        # Both workers accept connections, and they are the supervisor's children.
        pids = answered_by(address, 2)
        assert len(pids) == 2
        assert {c.pid for c in psutil.Process(proc.pid).children()} == pids
        # One chat whichever worker each person landed on: every message reaches everyone.
        people = [LineClient(address) for _ in range(4)]
        try:
            for i, person in enumerate(people):
                assert person.login(f"p{i}")["type"] == "welcome"
            for i, person in enumerate(people):
                person.send_json(type="say", room="general", text=f"from p{i}")
            for person in people:
                got = sorted(person.expect("message")["text"] for _ in people)
                assert got == [f"from p{i}" for i in range(4)]
        finally:
            for person in people:
                person.close()

        # Worker 0 is the one that printed the banner (and announces): kill that one.
        victim = wait_until(lambda: (h := health(address))["worker"] == 0 and h["pid"])
        os.kill(victim, signal.SIGKILL)
        restarted = wait_until(
            lambda: {c.pid for c in psutil.Process(proc.pid).children()} - pids,
            timeout=15,
            what="a new worker in place of the killed one",
        )
        (new_pid,) = restarted  # type: ignore[misc]
        log = err_path.read_text()
        assert f"(pid {victim}) ended unexpectedly: killed by SIGKILL; restarting it" in log
        now = (pids - {victim}) | {new_pid}
        wait_until(lambda: answered_by(address, 2) == now, what="the new worker accepts too")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=T(30)) == 0
        for pid in now:
            assert not psutil.pid_exists(pid)
        assert proc.stdout is not None
        assert "People can join" not in proc.stdout.read()  # the new worker 0 kept quiet
        log = err_path.read_text()
        assert log.count("server stopped") == 2  # each worker closed its server cleanly
        assert "Traceback" not in log
        assert "forking with threads running" not in log  # the database was closed first
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
