"""The desktop window's benchmark: burst absorption, event-loop stalls, memory, start-up time.

Prints figures; asserts nothing. Three measurements:

1. Burst: a real in-process server on 127.0.0.1, one MainWindow connected to it, and a raw
   socket sender in its own thread that says 1,000 messages as fast as it can. Reported:
   messages/s the window absorbs (first send to last message in the window's model) and the
   longest event-loop stall, seen by a 5 ms QTimer in the GUI thread (target <= 50 ms).
   The burst runs twice: into an empty room, and into a room already holding 100,000 messages.
2. Memory: RSS of this process before and after 100,000 messages are put in one room.
3. Start-up: ``python -m desktop_chat.app --host-chat`` as a subprocess, from process start to
   the main window's Show event (target <= 1.5 s). The child installs an event filter before
   calling ``desktop_chat.app.main`` and exits right after.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui.py
    .venv/bin/python bench/bench_gui.py --burst 5000 --history 200000 --startup-runs 5
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script from a checkout: the package is the folder above this one.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
from PySide6.QtCore import QElapsedTimer, QEventLoop, QObject, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from desktop_chat.net.client.worker import ChatClient  # noqa: E402
from desktop_chat.net.protocol.events import ChatMessage  # noqa: E402
from desktop_chat.net.server.server import Server, ServerConfig  # noqa: E402
from desktop_chat.ui.main_window import MainWindow  # noqa: E402
from desktop_chat.ui.notifications import SilentSound  # noqa: E402
from desktop_chat.ui.preferences import MemorySettings  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from serverproc import ServerProcess  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    """Run the event loop (blocking in it, as app.exec() does) until ``check()`` is true."""
    if check():
        return True
    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(5)
    poll.timeout.connect(lambda: check() and loop.quit())
    limit = QTimer()
    limit.setSingleShot(True)
    limit.timeout.connect(loop.quit)
    poll.start()
    limit.start(int(timeout * 1000))
    loop.exec()
    poll.stop()
    limit.stop()
    return check()


def spin(seconds: float) -> None:
    """Run the event loop for a while."""
    end = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= end, seconds + 1)


def core_wait_s() -> float | None:
    """Seconds this thread has spent runnable but waiting for a core (Linux), else None."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class StallMeter(QObject):
    """A 5 ms timer in the GUI thread; the longest gap between its ticks is the worst stall.

    It also records the GUI thread's own CPU time between ticks: on a busy machine a gap can
    be long because the thread waited for a core, while its CPU time shows the work it did.
    Where Linux tells (``/proc/thread-self/schedstat``), it records how long the thread was
    runnable but waiting for a core during the longest gap; the rest of a gap beyond CPU and
    that wait is time blocked, e.g. on Python's GIL held by another thread.
    """

    def __init__(self) -> None:
        super().__init__()
        self.timer = QTimer(self)
        self.timer.setInterval(5)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.clock = QElapsedTimer()
        self.cpu = 0.0
        self.worst_ms = 0.0
        self.worst_cpu_ms = 0.0
        self.worst_gap_cpu_ms = 0.0  # CPU and core-wait within the longest gap
        self.worst_gap_wait_ms: float | None = None
        self.waited = 0.0
        self.gaps: list[float] = []

    def start(self) -> None:
        self.worst_ms = self.worst_cpu_ms = self.worst_gap_cpu_ms = 0.0
        self.worst_gap_wait_ms = None
        self.gaps.clear()
        self.clock.start()
        self.cpu = time.thread_time()
        self.waited = core_wait_s() or 0.0
        self.timer.start()

    def _tick(self) -> None:
        gap = self.clock.nsecsElapsed() / 1e6
        self.clock.restart()
        cpu = time.thread_time()
        waited = core_wait_s()
        cpu_ms = (cpu - self.cpu) * 1000
        self.worst_cpu_ms = max(self.worst_cpu_ms, cpu_ms)
        self.cpu = cpu
        self.gaps.append(gap)
        if gap > self.worst_ms:
            self.worst_ms = gap
            self.worst_gap_cpu_ms = cpu_ms
            if waited is not None:
                self.worst_gap_wait_ms = (waited - self.waited) * 1000
        if waited is not None:
            self.waited = waited

    def stop(self) -> None:
        self.timer.stop()


_SENDER = r"""
import json, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
    reader = sock.makefile("rb")
    sock.sendall(b'{"type":"hello","protocol":1,"name":"sender"}\n')
    while json.loads(reader.readline())["type"] != "users":
        pass
    print("ready", flush=True)
    sys.stdin.readline()
    lines = b"".join(
        json.dumps({"type": "say", "room": "general", "text": f"burst {i} " * 4}).encode() + b"\n"
        for i in range(count)
    )
    sock.sendall(lines)
    seen = 0
    while seen < count:
        line = reader.readline()
        if not line:
            break
        if json.loads(line).get("type") == "message":
            seen += 1
    sock.sendall(b'{"type":"quit"}\n')
print("done", flush=True)
"""


class Sender:
    """Says ``count`` messages from its own process (no share of this process's GIL)."""

    def __init__(self, port: int, count: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SENDER, str(port), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the sender did not log in")
        self.started_at = 0.0

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.started_at = time.monotonic()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return max(values, default=0.0)
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def burst(window: MainWindow, port: int, count: int, meter: StallMeter) -> dict[str, float]:
    conv = window.session.find("#general")
    assert conv is not None
    sender = Sender(port, count)
    spin(0.3)  # the sender's join reaches the window first
    before = conv.model.total
    cpu0 = time.thread_time()
    load0 = psutil.cpu_times()
    meter.start()
    sender.go()
    done = wait_until(lambda: conv.model.total >= before + count, 60)
    finished = time.monotonic()
    spin(0.1)  # the last layout and paint happen inside the measurement
    meter.stop()
    gui_cpu = time.thread_time() - cpu0
    load1 = psutil.cpu_times()
    sender.finish()
    elapsed = finished - sender.started_at
    busy = (sum(load1) - load1.idle) - (sum(load0) - load0.idle)
    span = sum(load1) - sum(load0)
    return {
        "gui_cpu_ms_per_msg": gui_cpu * 1000 / count,
        "machine_busy": busy / span if span > 0 else 0.0,
        "messages": count,
        "complete": float(done),
        "seconds": elapsed,
        "messages_per_s": count / elapsed if elapsed > 0 else float("inf"),
        "max_stall_ms": meter.worst_ms,
        "max_stall_cpu_ms": meter.worst_cpu_ms,
        "stall_gui_cpu_ms": meter.worst_gap_cpu_ms,
        "stall_core_wait_ms": -1.0 if meter.worst_gap_wait_ms is None else meter.worst_gap_wait_ms,
        "p99_gap_ms": p99(meter.gaps),
    }


def fill(window: MainWindow, n: int) -> float:
    """Put ``n`` messages in #general as if history had brought them; return seconds."""
    conv = window.session.find("#general")
    assert conv is not None
    base = int(time.time() * 1000) - n * 1000
    # Older than anything the server has said: ids below the oldest held one.
    first = min(conv.model.oldest_id() or 0, 0) - n - 1
    messages = [
        ChatMessage(
            id=first + i,
            ts=base + i * 1000,
            from_=f"person{i % 17}",
            text=f"history line {i}: some ordinary words of an ordinary chat message",
            room="general",
        )
        for i in range(n)
    ]
    t0 = time.perf_counter()
    conv.model.add_messages(messages)
    window.chat_view.scroll_to_newest()
    spin(0.2)
    return time.perf_counter() - t0


def open_window(port: int, server: Server | None = None) -> MainWindow:
    client = ChatClient()
    window = MainWindow(client, server, MemorySettings(), sound=SilentSound())
    window.resize(1100, 720)
    window.show()
    # A fresh client asks about the server's certificate; the benchmark trusts it on first use.
    client.certificateUnknown.connect(lambda _h, _p, seen: client.accept_certificate(seen))
    client.connect_to("127.0.0.1", port, "viewer")
    if not wait_until(lambda: window.current_key == "#general", 10):
        raise RuntimeError("the window was not welcomed")
    spin(0.3)
    return window


def measure_window(args: argparse.Namespace) -> None:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    proc = psutil.Process()
    meter = StallMeter()
    with tempfile.TemporaryDirectory() as data:
        # Joining someone else's chat: the server runs in its own process.
        with ServerProcess("ours", Path(data) / "remote") as remote:
            window = open_window(remote.port)
            try:
                r = burst(window, remote.port, args.burst, meter)
                print_burst("joined chat, burst into a small room", r)
                rss_before = proc.memory_info().rss
                seconds = fill(window, args.history)
                rss_after = proc.memory_info().rss
                grew = rss_after - rss_before
                print(
                    f"memory: {args.history:,} messages in one room: RSS "
                    f"{rss_before / 2**20:.0f} MiB -> {rss_after / 2**20:.0f} MiB "
                    f"(+{grew / 2**20:.0f} MiB, {grew / args.history:.0f} B/message); "
                    f"added in {seconds:.2f} s"
                )
                r = burst(window, remote.port, args.burst, meter)
                print_burst(f"joined chat, burst into a room holding {args.history:,}", r)
            finally:
                window.close()
                spin(0.05)
        # Hosting: the server's threads share this process (and its GIL) with the window.
        config = ServerConfig(
            host="127.0.0.1", port=0, data_dir=Path(data) / "hosted", rate_per_sec=0
        )
        with Server(config) as server:
            window = open_window(server.port, server)
            try:
                r = burst(window, server.port, args.burst, meter)
                print_burst("hosting (server in this process), burst", r)
            finally:
                window.close()
                spin(0.05)
    del app


def print_burst(label: str, r: dict[str, float]) -> None:
    status = "" if r["complete"] else "  (INCOMPLETE)"
    target = "ok" if r["max_stall_ms"] <= 50 else "over the 50 ms target"
    inside = f"GUI-thread CPU {r['stall_gui_cpu_ms']:.1f} ms"
    if r["stall_core_wait_ms"] >= 0:
        inside += f", waiting for a core {r['stall_core_wait_ms']:.1f} ms"
    print(
        f"{label}: {int(r['messages']):,} messages in {r['seconds']:.3f} s = "
        f"{r['messages_per_s']:,.0f} msg/s; longest event-loop stall {r['max_stall_ms']:.1f} ms "
        f"({target}; in it: {inside}; most GUI-thread CPU between two ticks "
        f"{r['max_stall_cpu_ms']:.1f} ms), "
        f"p99 timer gap {r['p99_gap_ms']:.1f} ms; GUI thread CPU "
        f"{r['gui_cpu_ms_per_msg'] * 1000:.0f} µs/message; machine "
        f"{r['machine_busy'] * 100:.0f}% busy{status}"
    )


_CHILD = r"""
import sys, time
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])

class Watch(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Show and obj.objectName() == "mainWindow":
            print("SHOWN", flush=True)
            QTimer.singleShot(0, obj.close)
            QTimer.singleShot(0, app.quit)
        return False

watch = Watch()
app.installEventFilter(watch)
from desktop_chat import app as desktop_app
sys.exit(desktop_app.main(sys.argv[1:]))
"""


def measure_startup(runs: int) -> None:
    times: list[float] = []
    for run in range(runs + 1):
        with tempfile.TemporaryDirectory() as home:
            env = dict(os.environ)
            # An installed app has its bytecode cached; so does this measurement (the first,
            # uncounted run writes the caches).
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env.update(
                QT_QPA_PLATFORM=env.get("QT_QPA_PLATFORM", "offscreen"),
                XDG_CONFIG_HOME=str(Path(home) / "config"),
                XDG_DATA_HOME=str(Path(home) / "share"),
                DESKTOP_CHAT_DATA_DIR=str(Path(home) / "data"),
                PYTHONPATH=str(REPO),
            )
            argv = [
                sys.executable,
                "-c",
                _CHILD,
                "--host-chat",
                "--port",
                str(free_port()),
                "--name",
                "bench",
                "--no-announce",
                "--data-dir",
                str(Path(home) / "data"),
            ]
            start = time.monotonic()
            child = subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            shown = None
            assert child.stdout is not None
            for line in child.stdout:
                if line.startswith("SHOWN"):
                    shown = time.monotonic() - start
                    break
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.terminate()
                child.wait(timeout=5)
            if shown is None:
                err = child.stderr.read() if child.stderr else ""
                print(f"start-up: the window never showed (exit {child.returncode}): {err[-500:]}")
                continue
            if run > 0:
                times.append(shown)
    if times:
        best, median = min(times), statistics.median(times)
        verdict = "ok" if median <= 1.5 else "over the 1.5 s target"
        runs_text = ", ".join(f"{t:.2f}" for t in times)
        print(
            f"start-up (process start -> main window shown, hosting): median {median:.2f} s, "
            f"best {best:.2f} s over {len(times)} runs [{runs_text}] ({verdict})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=1000, help="messages per burst")
    parser.add_argument("--history", type=int, default=100_000, help="messages held in a room")
    parser.add_argument("--startup-runs", type=int, default=3)
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="GIL switch interval in seconds (default: Python's, 0.005, as in the app)",
    )
    args = parser.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # read when the app is created
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(
        f"desktop_chat GUI benchmark · Python {sys.version.split()[0]} · {os.cpu_count()} CPUs "
        f"· load average {load} · QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM')} "
        f"· GIL switch interval {sys.getswitchinterval() * 1000:g} ms"
    )
    measure_window(args)
    if not args.skip_startup:
        measure_startup(args.startup_runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
