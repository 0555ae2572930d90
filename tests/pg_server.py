"""A real PostgreSQL for the tests: one cluster per test session, a fresh database per test.

The cluster is made with Debian's ``initdb``/``pg_ctl`` (``/usr/lib/postgresql/<version>/bin``)
in a temporary folder, listens on a free loopback port (its Unix socket in that folder, not in
/var/run), and is stopped by its postmaster's pid when the session ends. PostgreSQL refuses to
run as root: under root the folder is given to ``nobody`` and the programs run through
``runuser``. Without the binaries the tests that need them skip, saying which package to
install.

Fixtures (registered from tests/conftest.py): ``pg_cluster`` (session) and ``pg_url`` (a URL of
an empty database of its own). Other code asks the cluster for more with
:meth:`PgCluster.fresh_url`.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until

MISSING = "PostgreSQL not found: install Debian's postgresql package"
_RUN_AS = "nobody"  # PostgreSQL will not run as root
# UTF-8 whatever the machine's locale (names and texts are any Unicode), byte order.
_INITDB = ("-E", "UTF8", "--locale=C", "--no-sync")


def _bin_dir() -> Path | None:
    """The newest installed PostgreSQL's programs (or the folder named by
    ``DESKTOP_CHAT_PG_BIN``), else None."""
    chosen = os.environ.get("DESKTOP_CHAT_PG_BIN")
    if chosen is not None:
        return Path(chosen) if (Path(chosen) / "pg_ctl").exists() else None
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """A PostgreSQL cluster of our own in a temporary folder."""

    def __init__(self, bin_dir: Path, *, fsync: bool = False) -> None:
        self.bin_dir = bin_dir
        self.fsync = fsync
        self.root = Path(tempfile.mkdtemp(prefix="dc-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._names = itertools.count(1)
        self.pid: int | None = None
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, _RUN_AS)

    def _run(self, program: str, *args: str) -> None:
        cmd = [str(self.bin_dir / program), *args]
        if self._as_root:
            cmd = ["runuser", "-u", _RUN_AS, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        """Make the cluster and start it."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", *_INITDB)
        self.launch()
        self._template()

    def launch(self) -> None:
        """Start the postmaster (again, after :meth:`halt`: same folder, same port)."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        options += " -c max_connections=300"
        if not self.fsync:
            # A throwaway cluster: the machine's own crashes are not under test, and without
            # fsync a fresh database per test costs milliseconds (bench/ measures with it).
            # synchronous_commit stays on: a commit is in the WAL (the OS's cache) when it
            # returns, so halt() (PostgreSQL crashing) loses nothing committed.
            options += " -c fsync=off -c full_page_writes=off"
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def halt(self) -> None:
        """Stop the postmaster at once, by its pid (no checkpoint: what was committed is in
        the WAL and comes back on :meth:`launch`)."""
        pid, self.pid = self.pid, None
        if pid is not None:
            os.kill(pid, signal.SIGQUIT)
            # Not our child (pg_ctl started it): watch for its pid file to go.
            wait_until(
                lambda: not (self.data / "postmaster.pid").exists(), 30, "PostgreSQL stopped"
            )

    def _template(self) -> None:
        """A database at the current schema to copy for each test (migrating every test's
        database would cost as much again; the migrations have tests of their own)."""
        import psycopg

        from desktop_chat.net.server.storage_pg_schema import migrate

        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE dc_template TEMPLATE template0")
        with psycopg.connect(self.url("dc_template"), autocommit=True) as db:
            migrate(db)

    def stop(self) -> None:
        """Stop the postmaster; the folder goes with the cluster in it."""
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def fresh_url(self, *, empty: bool = False) -> str:
        """A URL of a new database of this cluster: with the chat's tables and nothing in
        them, or ``empty`` (no tables at all, for the migrations' tests)."""
        import psycopg

        name = f"dc_test_{next(self._names)}"
        template = "template0" if empty else "dc_template"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop the database of ``url``, unless something still uses it (a server made
        before the URL was asked for and closed after it: then it stays, harmless)."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as admin:
            try:
                admin.execute(f"DROP DATABASE IF EXISTS {name}")
            except psycopg.errors.ObjectInUse:
                pass  # never pulled from under a running server


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip(MISSING)
    cluster = PgCluster(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """The URL of a PostgreSQL database for this test alone (the chat's tables, no rows);
    dropped afterwards, so the cluster stays small."""
    url = pg_cluster.fresh_url()
    yield url
    pg_cluster.drop(url)


def run_sql(store: object, sql: str) -> list[tuple[object, ...]]:
    """Run ``sql`` on a store's database behind its back, on a connection of its own (as
    another program would), whichever back end; the rows it returns, if any."""
    import sqlite3

    from desktop_chat.net.server.storage import Storage

    if isinstance(store, Storage):
        db = sqlite3.connect(store.path)
        try:
            with db:
                return db.execute(sql).fetchall()
        finally:
            db.close()
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as conn:  # type: ignore[attr-defined]
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description is not None else []
