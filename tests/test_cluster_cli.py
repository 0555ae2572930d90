"""The cluster's command line: refusals and what it shows of secrets (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from desktop_chat.net.server.storage_api import describe, has_password
from tests.helpers import T

CMD = [sys.executable, "-m", "desktop_chat.server_cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CMD, "--host", "127.0.0.1", "--port", "0", "--no-announce", "--tls", "off", *args],
        capture_output=True,
        text=True,
        timeout=T(30),
        env=env,
    )


def test_a_backplane_without_postgresql_is_refused_with_one_line(tmp_path: Path) -> None:
    for env_or_flag in ("flag", "env"):
        data_dir = tmp_path / env_or_flag
        if env_or_flag == "flag":
            result = run_cli("--data-dir", str(data_dir), "--backplane", "redis://127.0.0.1:1/0")
        else:
            env = dict(os.environ, DESKTOP_CHAT_BACKPLANE="redis://127.0.0.1:1/0")
            result = run_cli("--data-dir", str(data_dir), env=env)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "--backplane needs a PostgreSQL --database" in result.stderr
        assert not (data_dir / "chat.sqlite3").exists()  # refused before touching anything


def test_passwords_never_show_in_errors_or_logs(tmp_path: Path, pg_url: str) -> None:
    bad_db = "postgresql://chat:s3cret-db@127.0.0.1:1/chat?password=s3cret-q"
    bad_bp = "redis://:s3cret-bp@127.0.0.1:1/0"
    for args in (("--database", bad_db), ("--database", pg_url, "--backplane", bad_bp)):
        result = run_cli("--data-dir", str(tmp_path / "data"), *args)
        assert result.returncode != 0
        assert "s3cret" not in result.stdout + result.stderr, result.stderr
        # The operator is told why it failed, with the password masked...
        assert ("chat:***@127.0.0.1:1" in result.stderr) or ":***@127.0.0.1:1/0" in result.stderr
        # ... and that a password in the command line shows in ps.
        assert "shows in ps" in result.stderr


def test_describe_masks_every_kind_of_password() -> None:
    shown = {
        "postgresql://chat:pw@db/chat": "postgresql://chat:***@db/chat",
        "postgresql://db/chat?sslmode=require&password=pw": (
            "postgresql://db/chat?sslmode=require&password=***"
        ),
        "redis://:pw@cache:6379/0": "redis://:***@cache:6379/0",
        "rediss://default:pw@cache/0": "rediss://default:***@cache/0",
        "redis://cache/0?password=pw": "redis://cache/0?password=***",
        "postgresql://chat@db/chat": "postgresql://chat@db/chat",
        "redis://[::1:6379": "(a URL that cannot be read)",
    }
    for url, expected in shown.items():
        assert describe(url) == expected
        assert has_password(url) == ("pw" in url)


def test_a_stop_signal_during_the_start_still_stops_cleanly(tmp_path: Path, pg_url: str) -> None:
    import psycopg

    from desktop_chat.net.server.storage_pg_schema import MIGRATE_LOCK
    from tests.helpers import wait_until

    with psycopg.connect(pg_url, autocommit=True) as db:
        # The start waits for the schema lock: a start that takes a while, on purpose.
        db.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
        proc = subprocess.Popen(
            [*CMD, "--host", "127.0.0.1", "--port", "0", "--no-announce", "--tls", "off",
             "--data-dir", str(tmp_path), "--database", pg_url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:

            def starting() -> bool:
                row = db.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                ).fetchone()
                return row is not None and row[0] == 1

            wait_until(starting, T(20), "the server waits for the schema lock")
            proc.terminate()  # SIGTERM in the middle of the start
            db.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
            _out, err = proc.communicate(timeout=T(30))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err  # not killed by the signal: started, then closed


def test_without_redis_py_a_backplane_is_one_clear_line(tmp_path: Path, pg_url: str) -> None:
    """A build without redis-py (the bundled server is made for one process): --backplane
    says what is missing in one line instead of a traceback."""
    code = (
        "import sys\n"
        "class NoRedis:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'redis':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoRedis())\n"
        "from desktop_chat.server_cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["--host", "127.0.0.1", "--port", "0", "--no-announce", "--tls", "off"]
    args += ["--data-dir", str(tmp_path), "--backplane", "redis://127.0.0.1:1/0"]
    env = dict(os.environ, DESKTOP_CHAT_DATABASE=pg_url)
    run = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=T(30), env=env
    )
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert "Redis support is not installed" in lines[0]
