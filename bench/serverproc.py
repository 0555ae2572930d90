"""Start, pin, measure and stop one chat-server process for the benchmark.

Two kinds: ``ours`` (``python -m desktop_chat.server_cli``, storage on, limits raised so the
benchmark measures speed and not the rate limiter) and ``original`` (``bench/original_server.py``).
The server is pinned to one core and the generator to another where the machine allows it.
Only the process started here is ever stopped, by its pid (terminate, then kill).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
# original-nodelay: the original design with the one setsockopt (TCP_NODELAY) it lacked, so that
# CPU per delivery is compared with Nagle's batching of small writes out of the picture.
KINDS = ("ours", "original", "original-nodelay")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def pin(pid: int, cpu: int | None) -> bool:
    """Pin ``pid`` (0 = this process) to ``cpu`` where the platform and machine allow it."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return False
    if cpu not in os.sched_getaffinity(0):
        return False
    os.sched_setaffinity(pid, {cpu})
    return True


def raise_nofile() -> int:
    """Raise this process's open-file soft limit to the hard limit; children inherit it."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@lru_cache
def _supported_flags(cmd: tuple[str, ...]) -> str:
    """The ``--help`` text of a command (to pass optional flags only where they exist)."""
    out = subprocess.run(
        [*cmd, "--help"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=30
    )
    return out.stdout


def _env(tree: Path = REPO) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    return env


def split_kind(kind: str) -> tuple[str, Path]:
    """``ours``, ``original`` or ``ours@TREE`` (our server from another checkout, e.g. the
    code before a change, for a before/after comparison in the same run)."""
    base, _, tree = kind.partition("@")
    if base not in KINDS or (tree and base != "ours"):
        raise ValueError(f"unknown server kind {kind!r}")
    return base, Path(tree).resolve() if tree else REPO


class ServerProcess:
    """A server subprocess on 127.0.0.1; a context manager that always stops what it started."""

    def __init__(
        self,
        kind: str,
        data_dir: Path,
        *,
        cpu: int | None = None,
        max_clients: int = 2000,
        original_nodelay: bool = False,
        profile: Path | None = None,
        startup_timeout: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.kind, self.tree = split_kind(kind)
        self.data_dir = data_dir
        self.cpu = cpu
        self.max_clients = max_clients
        self.original_nodelay = original_nodelay
        self.profile = profile  # ours only: run under bench/profile_server.py, stats here
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args  # ours: e.g. --database, --backplane, --workers
        self.host = "127.0.0.1"
        self.port = 0
        self.log_path = data_dir / f"{self.kind}-server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._ps: psutil.Process | None = None

    def command(self, port: int) -> list[str]:
        if self.kind.startswith("original"):
            cmd = [sys.executable, str(REPO / "bench" / "original_server.py")]
            cmd += ["--host", self.host, "--port", str(port)]
            nodelay = self.original_nodelay or self.kind == "original-nodelay"
            return [*cmd, "--nodelay"] if nodelay else cmd
        base = [sys.executable, "-m", "desktop_chat.server_cli"]
        if self.profile is not None:
            base = [sys.executable, str(REPO / "bench" / "profile_server.py"), str(self.profile)]
        cmd = [*base, "--host", self.host, "--port", str(port), "--data-dir", str(self.data_dir)]
        big = str(10_000_000)
        cmd += ["--rate-burst", big, "--rate-per-sec", big]
        cmd += ["--max-connections", str(self.max_clients)]
        cmd += ["--max-per-address", str(self.max_clients)]
        if "--no-announce" in _supported_flags((sys.executable, "-m", "desktop_chat.server_cli")):
            cmd.append("--no-announce")
        return [*cmd, *self.extra_args]

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.port = free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = self.command(self.port)
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=self.tree, env=_env(self.tree), stdout=log, stderr=subprocess.STDOUT
            )
        pin(self._proc.pid, self.cpu)
        self._ps = psutil.Process(self._proc.pid)
        self._wait_listening()

    def _wait_listening(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited at start:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.kind} server did not listen in time:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _processes(self) -> list[psutil.Process]:
        """The server process and its children (the workers of ``--workers``)."""
        assert self._ps is not None
        try:
            return [self._ps, *self._ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            return [self._ps]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole server (every thread, every worker) so far."""
        total = 0.0
        for ps in self._processes():
            try:
                t = ps.cpu_times()
            except psutil.NoSuchProcess:
                continue  # a worker that has just ended
            total += float(t.user + t.system)
        return total

    def meter(self) -> Meter:
        return Meter(self)

    def rss(self) -> int:
        total = 0
        for ps in self._processes():
            try:
                total += int(ps.memory_info().rss)
            except psutil.NoSuchProcess:
                continue
        return total

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # ours shuts down cleanly; the original just dies
        try:
            proc.wait(timeout=10 if self.profile is None else 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _machine_busy() -> float:
    """CPU seconds every core of the machine has spent not idle (steal counts as busy)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


class Meter:
    """The probe handed to a load-generator phase: server CPU, and everything else running.

    Each call records the server's CPU, this process's CPU and the machine's busy time, so the
    last two calls bracket a measured window. ``other_load`` is what neither the server nor
    the generator used in it (other programs, the hypervisor, kernel threads): a benchmark on
    a busy machine says so instead of printing quietly wrong figures.
    """

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.marks: list[tuple[float, float, float, float]] = []

    def __call__(self) -> float:
        cpu = self.server.cpu_seconds()
        self.marks.append((time.monotonic(), cpu, time.process_time(), _machine_busy()))
        return cpu

    def other_load(self) -> float:
        """Cores' worth of CPU used by anything else during the last measured window."""
        if len(self.marks) < 2:
            return 0.0
        (t0, s0, g0, b0), (t1, s1, g1, b1) = self.marks[-2:]
        return max(0.0, ((b1 - b0) - (s1 - s0) - (g1 - g0)) / max(t1 - t0, 1e-9))
