"""Shared test set-up: offscreen Qt, one timeout unit, and leak checks.

A test that leaves a thread or a socket of ours running fails and says what it left.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.helpers import T
from tests.redis_server import redis_service, redis_url  # noqa: F401  (fixtures)

# pytester: tests/gui/test_qt_leaks.py runs a leaking test in a test; pg_server: PostgreSQL.
pytest_plugins = ("pytester", "tests.pg_server")

BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``backends`` (the contract's files) run once per storage back end, unless
    also marked ``sqlite_only``; every other test uses SQLite (the ``backend`` fixture)."""
    marked = metafunc.definition.get_closest_marker("backends") is not None
    only = metafunc.definition.get_closest_marker("sqlite_only") is not None
    if marked and not only and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", BACKENDS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long fuzzing runs (marked ``fuzz``) only when ``-m`` names them."""
    if "fuzz" in (config.getoption("markexpr", "") or ""):
        return
    keep = [item for item in items if item.get_closest_marker("fuzz") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


# Threads started by libraries for the whole process, not by a test.
_PROCESS_THREADS = ("pydevd", "QDBusConnection", "ThreadPoolExecutor", "asyncio_")


def _our_threads() -> set[threading.Thread]:
    # Threads that Python did not start (QThreads running Python code) appear as "Dummy-N"
    # placeholders that Python 3.11 can neither join nor see end; tests/gui/conftest.py checks
    # those QThreads themselves, and says where each was started.
    return {
        t
        for t in threading.enumerate()
        if t is not threading.main_thread()
        and not isinstance(t, threading._DummyThread)
        and not t.name.startswith(_PROCESS_THREADS)
    }


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = _our_threads()
    yield
    leaked: set[threading.Thread] = set()
    deadline = T(2.0)
    # Threads that were told to stop may need a moment to finish: join, never sleep.
    for thread in _our_threads() - before:
        thread.join(timeout=deadline)
        if thread.is_alive():
            leaked.add(thread)
    if leaked:
        names = ", ".join(sorted(t.name for t in leaked))
        pytest.fail(f"test left threads running: {names}")


def _open_sockets() -> set[str]:
    """The process's open sockets (Linux): ``fd -> socket:[inode]`` entries."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed while listing
        if target.startswith("socket:"):
            found.add(f"{fd}->{target}")
    return found


@pytest.fixture(autouse=True)
def _no_leaked_sockets(request: pytest.FixtureRequest) -> Iterator[None]:
    if not sys.platform.startswith("linux") or "gui" in request.path.parts:
        yield  # Qt keeps process-wide sockets of its own; GUI tests check threads instead
        return
    before = _open_sockets()
    yield
    gc.collect()
    leaked = _open_sockets() - before
    if leaked:
        pytest.fail(f"test left sockets open: {sorted(leaked)}")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing a test does touches the real user's data folder or settings."""
    monkeypatch.setenv("DESKTOP_CHAT_DATA_DIR", str(tmp_path / "user-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    gc.collect()


@pytest.fixture
def backend() -> str:
    """The storage back end: SQLite, or each in turn in tests marked ``backends``."""
    return "sqlite"


@pytest.fixture
def database(backend: str, request: pytest.FixtureRequest) -> str | None:
    """``ServerConfig.database`` for the back end: None (SQLite in the data folder) or the
    URL of an empty PostgreSQL database of this test's own (the same for every server it
    starts, so a restarted server finds its data)."""
    if backend == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def make_server(data_dir: Path, database: str | None) -> Iterator[object]:
    """A factory for real servers on 127.0.0.1 port 0, on the test's back end; all are closed
    after the test."""
    from desktop_chat.net.server.server import Server, ServerConfig

    started: list[Server] = []

    def make(**overrides: object) -> Server:
        options: dict[str, object] = {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": data_dir,
            "title": "Test chat",
            "sniff_timeout": 0.3,
            "database": database,
        }
        options.update(overrides)
        server = Server(ServerConfig(**options))  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in started:
            server.close()
        stuck = [name for server in started for name in server.stuck_threads]
        assert not stuck, f"server threads that did not stop when closed: {stuck}"


@pytest.fixture
def server(make_server: object) -> object:
    return make_server()  # type: ignore[operator]


@pytest.fixture
def connect(server: object) -> Iterator[object]:
    """``connect(name=None)``: a LineClient to ``server``, logged in when a name is given."""
    from tests.helpers import LineClient

    clients: list[LineClient] = []

    def make(name: str | None = None, srv: object = None, **extra: object) -> LineClient:
        target = srv or server
        client = LineClient(target.address)  # type: ignore[attr-defined]
        clients.append(client)
        if name is not None:
            client.login(name, **extra)
        return client

    try:
        yield make
    finally:
        for client in clients:
            client.close()
