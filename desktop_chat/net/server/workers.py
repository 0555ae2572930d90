"""Several server processes on one port: what ``desktop-chat-server --workers N`` runs.

One Python process uses one core. With ``--workers N`` the command's process becomes a small
supervisor: it prepares the data folder once (the TLS certificate, the database schema, the file
store, the host's owner token: whatever a first start makes, so N processes do not race to make
it), holds the port, then forks N workers that each bind it with ``SO_REUSEPORT`` (Linux spreads
new connections over them). It forwards SIGINT/SIGTERM to the workers, restarts one that dies
unexpectedly (after a pause that doubles up to :data:`BACKOFF_MAX`, logged), and ends once every
worker has ended. The workers share everything through PostgreSQL (``--database``) and Redis
(``--backplane``): without both a multi-process start is refused (:func:`refusal`).

The supervisor starts no thread before it forks (a forked child gets only the forking thread):
it waits for its children with ``waitpid`` and short pauses.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from desktop_chat.net.server.server import ServerConfig
from desktop_chat.net.server.storage_api import is_database_url, open_store

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.5  # seconds before restarting a worker that died
BACKOFF_MAX = 30.0  # the pause never grows past this
STEADY_AFTER = 30.0  # a worker that ran this long died on its own: the pause starts over
GIVE_UP_AFTER = 5  # deaths in a row, each before STEADY_AFTER: something is wrong; stop
STOP_GRACE = 20.0  # seconds the workers get to end once told to, before SIGKILL
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def refusal(config: ServerConfig, workers: int, platform: str = sys.platform) -> str | None:
    """Why ``--workers workers`` cannot run with ``config`` (one line), or None if it can."""
    if workers <= 1:
        return None
    if not platform.startswith("linux"):
        return (
            f"--workers {workers} needs Linux (SO_REUSEPORT spreads the connections); "
            "elsewhere run one server per port behind a TCP load balancer (docs/deploy.md)"
        )
    if not is_database_url(config.database or "") or not config.backplane:
        return (
            f"--workers {workers} needs a PostgreSQL --database and a --backplane redis://… "
            "(the processes share messages and people through them; see docs/deploy.md)"
        )
    return None


def prepare(config: ServerConfig) -> ServerConfig:
    """Make once, before any worker starts, what a server makes on its first start; the
    config every worker runs (the shared owner token, SO_REUSEPORT)."""
    from desktop_chat import paths
    from desktop_chat.net.server.files import FileStore
    from desktop_chat.net.server.tls import ensure_certificate

    data_dir = Path(config.data_dir or paths.data_dir())
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    if config.tls != "off":
        ensure_certificate(data_dir)
    _prepare_database(config, data_dir)
    files = FileStore(
        data_dir / "files", max_file_size=config.max_file_size, quota=0, upload_ttl=1.0
    )
    files.close()  # its schema is made; the workers open it again
    return replace(
        config,
        data_dir=data_dir,
        reuse_port=True,
        owner_token=config.owner_token or secrets.token_urlsafe(24),
    )


def _prepare_database(config: ServerConfig, data_dir: Path) -> None:
    """Open the database once (applying its migrations) and close it. Raises StorageError."""
    open_store(config.database, data_dir).close()


def hold_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) the port the workers will share, so nobody else takes it
    while a worker restarts; with ``port`` 0 the system picks it. Raises OSError if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def for_worker(config: ServerConfig, index: int) -> ServerConfig:
    """Worker ``index``'s config: only worker 0 announces the server on the network (mDNS
    and the UDP broadcast), so it is found once, not N times."""
    first = index == 0
    return replace(
        config,
        worker=index,
        announce=config.announce and first,
        broadcast_port=config.broadcast_port if first else None,
    )


@dataclass
class _Worker:
    index: int
    pid: int
    started: float
    fast_deaths: int = 0  # deaths in a row, each soon after its start


class Supervisor:
    """Runs ``serve(index, restarted)`` in ``count`` forked processes until told to stop.

    ``serve`` runs in the child and returns its exit status; ``restarted`` is True when it
    replaces a worker that died. :meth:`run` returns 0 once every
    worker has ended after SIGINT/SIGTERM, 1 when a worker keeps dying (see GIVE_UP_AFTER).
    """

    def __init__(self, count: int, serve: Callable[[int, bool], int]) -> None:
        self.count = count
        self.serve = serve
        self._workers: dict[int, _Worker] = {}  # pid -> worker
        self._restarts: dict[int, tuple[float, int]] = {}  # index -> (when, deaths in a row)
        self._stop_signal: int | None = None
        self._told = False
        self._kill_at = 0.0
        self._failed = False
        self._pause = threading.Event()  # never set: a wait that signals can interrupt

    # -- the parent ---------------------------------------------------------------------------

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            for index in range(self.count):
                self._spawn(index, 0)
            while self._workers or (self._restarts and self._stop_signal is None):
                self._reap()
                if self._stop_signal is not None or self._failed:
                    self._stop_all()
                else:
                    self._restart_due()
                self._pause.wait(0.05)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self._failed else 0

    def pids(self) -> list[int]:
        return sorted(self._workers)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _spawn(self, index: int, fast_deaths: int) -> None:
        """Fork worker ``index``; ``fast_deaths``: 0 for a first start, else how many times in
        a row it died soon after starting (at least 1 for a restart)."""
        if threading.active_count() > 1:  # a forked child would inherit their locks, not them
            log.warning("forking with threads running: %s", threading.enumerate())
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        # Blocked across the fork: a stop signal that reaches the new worker before its server
        # has its own handlers waits for them (serve() unblocks), rather than being taken by
        # the supervisor's handler (lost) or the default one (no clean stop).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:  # the worker: never returns into the supervisor's code
                self._child(index, parent, restarted=fast_deaths > 0)
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        self._workers[pid] = _Worker(index, pid, time.monotonic(), fast_deaths)
        log.info("worker %d started (pid %d)", index, pid)

    def _reap(self) -> None:
        while self._workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self._workers.clear()
                return
            if pid == 0:
                return
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            how = _describe(status)
            if self._stop_signal is not None or self._failed:
                log.info("worker %d (pid %d) ended: %s", worker.index, pid, how)
                continue
            lived = time.monotonic() - worker.started
            deaths = worker.fast_deaths + 1 if lived < STEADY_AFTER else 1
            if deaths >= GIVE_UP_AFTER:
                log.error(
                    "worker %d (pid %d) ended: %s; it died %d times in a row soon after "
                    "starting: stopping the server",
                    worker.index, pid, how, deaths,
                )  # fmt: skip
                self._failed = True
                continue
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (deaths - 1))
            log.warning(
                "worker %d (pid %d) ended unexpectedly: %s; restarting it in %.1f s",
                worker.index, pid, how, delay,
            )  # fmt: skip
            self._restarts[worker.index] = (time.monotonic() + delay, deaths)

    def _restart_due(self) -> None:
        now = time.monotonic()
        for index, (when, deaths) in list(self._restarts.items()):
            if when <= now:
                del self._restarts[index]
                self._spawn(index, deaths)

    def _stop_all(self) -> None:
        self._restarts.clear()
        if not self._told:
            self._told = True
            self._kill_at = time.monotonic() + STOP_GRACE
            for pid in self._workers:
                _signal(pid, signal.SIGTERM)
        elif time.monotonic() > self._kill_at:
            for pid in self._workers:
                log.error("worker pid %d did not end within %.0f s: killing it", pid, STOP_GRACE)
                _signal(pid, signal.SIGKILL)
            self._kill_at = float("inf")

    # -- the child ----------------------------------------------------------------------------

    def _child(self, index: int, parent: int, *, restarted: bool) -> None:
        code = 1
        try:
            # Still blocked (see _spawn): ``serve`` installs its handlers, then unblocks.
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            _end_with_parent(parent)
            code = self.serve(index, restarted)
        except BaseException:
            log.exception("worker %d failed", index)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def _end_with_parent(parent: int) -> None:
    """Linux: a worker gets SIGTERM when the supervisor dies (even by SIGKILL), so no worker
    is left serving without anyone to restart or stop it."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # it has just ended; waitpid will say so


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
