"""A second, deliberately different load generator, to check ``loadgen.py`` against.

A generator that measures itself reports its own queueing as the server's latency, so the
benchmark's figures are only trusted when an independent implementation agrees with them.
This one shares no code with ``loadgen.py``: asyncio (raw sockets read through
``loop.add_reader``, one coroutine per sender, senders spread evenly), every received line
decoded with ``json.loads``, server CPU read straight from ``/proc/<pid>/stat`` (utime +
stime, in clock ticks). Only the server launcher is shared. Each delivery's arrival is taken
two ways: the kernel's receive timestamp (``SO_TIMESTAMPNS``: ``p50_ms``/``p99_ms``) and this
loop's clock when it got round to reading the socket (``p99_user_ms``); on a busy machine the
second includes the generator's own queueing and scheduling delays. The kernel's stamp is exact
only while this loop reads each socket before the next line for it arrives: TCP merges queued
data, and the merged data carries the newest stamp (lines read one at a time, even after a
``MSG_PEEK``, were measured to get it too). Linux only.

    .venv/bin/python bench/crosscheck.py --n 100 --rate 200 --duration 5 --repeat 3

For each server (ours, the original design; same run, alternating) it prints p50/p99 fan-out
latency at a fixed total rate from 10 senders, and the server's CPU µs per delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serverproc import ServerProcess, pin, raise_nofile

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; this script is Linux-only
ANC_SIZE = socket.CMSG_SPACE(16)


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of proc(5)


class Receiver:
    """One client: a raw non-blocking socket read by the asyncio loop (``add_reader``), so
    that ``recvmsg`` can return the kernel's receive timestamp beside this loop's own clock."""

    def __init__(self, bench: CrossCheck, name: str, sock: socket.socket) -> None:
        self.bench = bench
        self.sock = sock
        self.buf = b""
        self.ready = asyncio.get_running_loop().create_future()
        hello = {"type": "hello", "protocol": 1, "name": name}
        self.write(json.dumps(hello).encode() + b"\n")

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)  # tiny lines on a socket with room: never blocks here

    def on_readable(self) -> None:
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(1 << 18, ANC_SIZE)
        except BlockingIOError:
            return
        now = kernel = time.time_ns()
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("@qq", payload[:16])
                kernel = sec * 1_000_000_000 + nsec
        lines = (self.buf + data).split(b"\n")
        self.buf = lines.pop()
        for line in lines:
            event = json.loads(line)
            kind = event.get("type")
            if kind == "message":
                self.bench.on_message(event["text"], now, kernel)
            elif kind == "users" and not self.ready.done():
                self.ready.set_result(None)
            elif kind == "ping":
                self.write(json.dumps({"type": "pong", "n": event.get("n")}).encode() + b"\n")


class CrossCheck:
    def __init__(self) -> None:
        self.window = (0, 0)  # wall-clock ns: messages sent in [lo, hi) are measured
        self.lat_ns: list[int] = []  # arrival by the kernel's stamp
        self.user_ns: list[int] = []  # arrival by this loop's clock when it read the socket
        self.deliveries = 0

    def on_message(self, text: str, now: int, kernel: int) -> None:
        self.deliveries += 1
        if text.startswith("C"):
            sent = int(text[1:].split("-", 1)[0])
            if self.window[0] <= sent < self.window[1]:
                self.lat_ns.append(kernel - sent)
                self.user_ns.append(now - sent)


async def run_one(host: str, port: int, pid: int, args: argparse.Namespace) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    bench = CrossCheck()
    clients: list[Receiver] = []
    for i in range(args.n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        client = Receiver(bench, f"c{i:04d}", sock)
        loop.add_reader(sock.fileno(), client.on_readable)
        clients.append(client)
    await asyncio.wait_for(asyncio.gather(*(c.ready for c in clients)), 60)
    print("joined", flush=True)  # side_by_side.py waits for this
    await asyncio.sleep(0.5)  # the join notices settle
    senders = clients[: args.senders]
    stop_at = loop.time() + args.warmup + args.duration
    start_rec = loop.time() + args.warmup
    per_sender = args.rate / len(senders)
    sent = 0
    self_cpu = [0.0]

    async def sender(k: int, proto: Receiver) -> None:
        nonlocal sent
        interval = 1.0 / per_sender
        nxt = loop.time() + k * interval / len(senders)  # spread the senders evenly
        while nxt < stop_at:
            await asyncio.sleep(max(0.0, nxt - loop.time()))
            stamp = time.time_ns()
            text = f"C{stamp}-".ljust(48, "y")
            line = {"type": "say", "room": "general", "text": text}
            proto.write(json.dumps(line).encode() + b"\n")
            if bench.window[0] <= stamp < bench.window[1]:
                sent += 1
            nxt += interval

    async def window() -> tuple[float, int, float]:
        await asyncio.sleep(max(0.0, start_rec - loop.time()))
        bench.window = (time.time_ns(), time.time_ns() + int(args.duration * 1e9))
        cpu0, d0, t0 = proc_cpu_s(pid), bench.deliveries, time.monotonic()
        g0 = time.process_time()
        await asyncio.sleep(max(0.0, stop_at - loop.time()))
        cpu1, d1, t1 = proc_cpu_s(pid), bench.deliveries, time.monotonic()
        self_cpu[0] = (time.process_time() - g0) / (t1 - t0)
        return cpu1 - cpu0, d1 - d0, t1 - t0

    measured = asyncio.ensure_future(window())
    await asyncio.gather(measured, *(sender(k, s) for k, s in enumerate(senders)))
    cpu, delivered, span = measured.result()
    expected = sent * len(clients)
    deadline = loop.time() + 5
    while len(bench.lat_ns) < expected and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for c in clients:
        loop.remove_reader(c.sock.fileno())
        c.sock.close()
    lat, user = sorted(bench.lat_ns), sorted(bench.user_ns)
    total = max(expected, len(lat))

    def q(x: float, samples: list[int]) -> float:
        rank = max(0, int(x * total + 0.999999) - 1)
        return samples[rank] / 1e6 if rank < len(samples) else float("inf")

    return {
        "p50_ms": q(0.50, lat),
        "p99_ms": q(0.99, lat),
        "p99_user_ms": q(0.99, user),
        "received": len(lat) / expected if expected else 0.0,
        "cpu_us_per_delivery": cpu / delivered * 1e6 if delivered else float("nan"),
        "server_cores": cpu / span,
        "generator_cores": self_cpu[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--senders", type=int, default=10)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--servers", default="ours,original")
    ap.add_argument("--original-nodelay", action="store_true")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument(
        "--attach", metavar="PORT:PID", help="measure a server already running on 127.0.0.1"
    )
    args = ap.parse_args(argv)
    raise_nofile()
    pinned = not args.no_pin and pin(0, 1)
    print(f"crosscheck: N={args.n}, {args.rate:g} msg/s, pinned={pinned}", flush=True)
    if args.attach:
        port, pid = (int(x) for x in args.attach.split(":"))
        one = asyncio.run(run_one("127.0.0.1", port, pid, args))
        print("attached: " + ", ".join(f"{k} {v:.3g}" for k, v in one.items()), flush=True)
        return 0
    figures: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="crosscheck-") as tmp:
        for i in range(args.repeat):
            for kind in args.servers.split(","):
                srv = ServerProcess(
                    kind,
                    Path(tmp) / f"{kind}-{i}",
                    cpu=None if args.no_pin else 0,
                    max_clients=2 * args.n + 10,
                    original_nodelay=args.original_nodelay,
                )
                with srv:
                    one = asyncio.run(run_one(srv.host, srv.port, srv.pid, args))
                figures.setdefault(kind, []).append(one)
                print(f"  {kind} run {i + 1}: " + ", ".join(f"{k} {v:.3g}" for k, v in one.items()))
    for kind, runs in figures.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{kind:9} median of {len(runs)}: " + ", ".join(f"{k} {v:.3g}" for k, v in med.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
