"""Soak: 200 clients chat, drop and resume for minutes while the server is killed and restarted.

One asyncio loop drives every client: native JSON Lines, plain text and WebSocket (the
``websockets`` library's asyncio client), in the proportions of ``--mix``. Each one says a line
every few seconds (exponential gaps, mean ``--gap``), and now and then drops its connection
without a word — sometimes in the middle of writing a line — and comes back: native and WebSocket
clients resume their session and resend, with the same ``ref``, every line whose echo they had
not seen; plain-text users log in afresh. Twice during the run the server is SIGKILLed and
started again on the same port and data folder.

At the end nobody sends any more, everyone reconnects and resends, one client says ``END``, and
every resuming client reads until it has seen it. Then the clients' own logs are compared with
the server's stored history:

* **sent**: lines written; **acknowledged**: lines whose sender saw its echo;
* **lost**: acknowledged lines missing from history, plus stored messages a resuming client
  should have received (every one in the room from its first until ``END``) and did not;
* **duplicated**: a line stored twice, or a message a client received twice;
* **out of order**: a message received with an id not above the previous one;
* delivery latency (live deliveries: sent after the receiver's current connection began);
* the server's RSS and open file descriptors over time, from ``/proc``.

    .venv/bin/python bench/soak.py                  # 10 minutes
    .venv/bin/python bench/soak.py --seconds 60     # what tests/test_soak.py runs

Traffic goes only to 127.0.0.1. Only the server process started here is ever signalled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

REPO = Path(__file__).resolve().parent.parent
ROOM = "general"
DROPPED = (OSError, EOFError, asyncio.IncompleteReadError, WebSocketException, ValueError)
_PLAIN_LINE = re.compile(r"^([^:]+): (S\S+)$")


def percentile(samples: Sequence[float], q: float) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# -- the server -------------------------------------------------------------------------------


class Server:
    """The headless server as a subprocess on a fixed port (so clients find it after a kill)."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.samples: list[tuple[float, int, int]] = []  # (seconds, RSS KiB, fds)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = (data_dir / "server.log").open("ab")

    async def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "desktop_chat.server_cli",
            *("--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir)),
            *("--no-announce", "--tls", "off", "--log-level", "warning"),
            *("--max-per-address", "2000", "--max-connections", "4000"),
            stdout=asyncio.subprocess.PIPE,
            stderr=self.log,
            env=env,
        )
        assert self.proc.stdout is not None
        while b"Ctrl+C" not in (line := await self.proc.stdout.readline()):
            if not line:
                raise RuntimeError("the server did not start; see server.log")

    async def kill_and_restart(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL, by the pid of the process we started
        await self.proc.wait()
        self.restarts += 1
        await self.start()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.log.close()

    def sample(self, t: float) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            fds = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return  # between a kill and a restart
        rss = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:"))
        self.samples.append((t, rss, fds))


# -- the clients ------------------------------------------------------------------------------


@dataclass
class Shared:
    port: int
    gap: float
    drop_every: float
    rng: random.Random
    sending: bool = True
    ending: bool = False
    sent: int = 0
    acked: set[str] = field(default_factory=set)
    sent_texts: set[str] = field(default_factory=set)
    live_latency: list[float] = field(default_factory=list)
    replay_latency: list[float] = field(default_factory=list)


class _Line:
    """A native JSON Lines connection over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, obj: dict[str, Any]) -> None:
        self.writer.write(json.dumps(obj).encode() + b"\n")
        await self.writer.drain()

    async def send_half(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        self.writer.write(data[: len(data) // 2])
        await self.writer.drain()

    async def recv(self) -> dict[str, Any]:
        line = await self.reader.readline()
        if not line.endswith(b"\n"):
            raise EOFError
        obj: dict[str, Any] = json.loads(line)
        return obj

    def abort(self) -> None:
        self.writer.transport.abort()


class _Ws:
    """The same objects, one per WebSocket text frame."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, obj: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(obj))

    async def send_half(self, obj: dict[str, Any]) -> None:
        # A frame cannot be half-sent through the library: the drop comes right after it.
        await self.ws.send(json.dumps(obj))

    async def recv(self) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(await self.ws.recv())
        return obj

    def abort(self) -> None:
        self.ws.transport.abort()


class Resumer:
    """A native or WebSocket client: resumes its session and resends unechoed lines."""

    def __init__(self, shared: Shared, name: str, kind: str) -> None:
        self.s, self.name, self.kind = shared, name, kind
        self.token: str | None = None
        self.since = 0
        self.pending: dict[str, str] = {}  # ref -> text, sent and not yet echoed
        self.received: list[int] = []
        self.seen: set[int] = set()
        self.out_of_order = 0
        self.connected_at = math.inf
        self.connected = False
        self.end_id: int | None = None
        self.n = 0

    async def _open(self) -> _Line | _Ws:
        if self.kind == "ws":
            ws = await connect(
                f"ws://127.0.0.1:{self.s.port}/ws", open_timeout=5, ping_interval=None
            )
            return _Ws(ws)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.s.port, limit=1 << 20), 5
        )
        return _Line(reader, writer)

    async def run(self) -> None:
        while not (self.s.ending and self.end_id is not None):
            try:
                conn = await self._open()
            except (*DROPPED, TimeoutError):
                await asyncio.sleep(self.s.rng.uniform(0.2, 0.6))
                continue
            try:
                await self._session(conn)
            except (*DROPPED, TimeoutError):
                pass
            finally:
                self.connected = False
                conn.abort()
            if not (self.s.ending and self.end_id is not None):
                await asyncio.sleep(self.s.rng.uniform(0.05, 1.0))

    async def _session(self, conn: _Line | _Ws) -> None:
        hello: dict[str, Any] = {"type": "hello", "protocol": 1, "name": self.name}
        if self.token is not None:
            hello["resume"] = {"session": self.token, "since": self.since}
        await conn.send(hello)
        welcome = await asyncio.wait_for(conn.recv(), 10)
        if welcome["type"] != "welcome":
            raise EOFError(f"{self.name}: {welcome}")  # e.g. the old connection still counted
        self.token = welcome["session"]
        self.connected_at = time.monotonic()
        for ref, text in list(self.pending.items()):  # the server answers repeats once
            await conn.send({"type": "say", "room": ROOM, "text": text, "ref": ref})
        self.connected = True
        talker = asyncio.create_task(self._talk(conn))
        try:
            while True:
                msg = await conn.recv()
                self._handle(msg)
                if msg["type"] == "ping":
                    await conn.send({"type": "pong", "n": msg["n"]})
                if self.s.ending and self.end_id is not None:
                    return
                if talker.done():
                    talker.result()  # a drop it chose, or an error: re-raised here
                    return
        finally:
            talker.cancel()
            with contextlib.suppress(asyncio.CancelledError, *DROPPED):
                await talker

    def _handle(self, msg: dict[str, Any]) -> None:
        if msg["type"] != "message" or msg.get("room") != ROOM:
            return
        msg_id = msg["id"]
        if msg.get("ref") is not None and msg_id in self.seen:
            return  # the answer to a resend whose original came in the replay: not news
        self.seen.add(msg_id)
        if self.received and msg_id <= self.received[-1]:
            self.out_of_order += 1
            if os.environ.get("SOAK_DEBUG"):
                print("OOO", self.name, msg_id, self.received[-5:], msg, file=sys.stderr)
        self.received.append(msg_id)
        self.since = max(self.since, msg_id)
        text = msg["text"]
        if text == "END":
            self.end_id = msg_id
        ref = msg.get("ref")
        if ref is not None and self.pending.pop(ref, None) is not None:
            self.s.acked.add(text)
        sent_at = _sent_at(text)
        if sent_at is not None:
            delay = time.monotonic() - sent_at
            live = sent_at >= self.connected_at
            (self.s.live_latency if live else self.s.replay_latency).append(delay)

    async def _talk(self, conn: _Line | _Ws) -> None:
        while True:
            await asyncio.sleep(self.s.rng.expovariate(1 / self.s.gap))
            if not self.s.sending:
                continue
            self.n += 1
            ref = f"{self.name}.{self.n}"
            text = f"S{ref}:{time.monotonic():.6f}"
            self.pending[ref] = text
            self.s.sent += 1
            self.s.sent_texts.add(text)
            say = {"type": "say", "room": ROOM, "text": text, "ref": ref}
            if self.s.rng.random() < self.s.gap / self.s.drop_every:
                if self.s.rng.random() < 0.5:
                    await conn.send_half(say)  # dropped in the middle of a line
                else:
                    await conn.send(say)
                return  # drop
            await conn.send(say)


class Plain:
    """A netcat user: logs in afresh after each drop (plain text has no sessions)."""

    def __init__(self, shared: Shared, name: str) -> None:
        self.s, self.name = shared, name
        self.generation = 0
        self.pending: dict[str, str] = {}  # text -> its own echo line's start

    async def run(self) -> None:
        while not self.s.ending:
            self.generation += 1
            nick = f"{self.name}g{self.generation}"
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.s.port, limit=1 << 20), 5
                )
            except (*DROPPED, TimeoutError):
                await asyncio.sleep(self.s.rng.uniform(0.2, 0.6))
                continue
            try:
                await asyncio.wait_for(reader.readuntil(b"username"), 10)
                writer.write(nick.encode() + b"\n")
                await self._session(nick, reader, writer)
            except (*DROPPED, TimeoutError):
                pass
            finally:
                writer.transport.abort()
            await asyncio.sleep(self.s.rng.uniform(0.05, 1.0))

    async def _session(
        self, nick: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        talker = asyncio.create_task(self._talk(writer, nick))
        try:
            while not self.s.ending:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    raise EOFError
                m = _PLAIN_LINE.match(line.decode("utf-8", "replace").rstrip("\r\n"))
                if m and m.group(1) == nick and m.group(2) in self.pending:
                    del self.pending[m.group(2)]
                    self.s.acked.add(m.group(2))
                if talker.done():
                    talker.result()
                    return
        finally:
            talker.cancel()
            with contextlib.suppress(asyncio.CancelledError, *DROPPED):
                await talker

    async def _talk(self, writer: asyncio.StreamWriter, nick: str) -> None:
        n = 0
        while True:
            await asyncio.sleep(self.s.rng.expovariate(1 / self.s.gap))
            if not self.s.sending:
                continue
            n += 1
            text = f"S{nick}.{n}:{time.monotonic():.6f}"
            self.s.sent += 1
            self.s.sent_texts.add(text)
            if self.s.rng.random() < self.s.gap / self.s.drop_every:
                writer.write(text.encode()[:10])  # half a line, then gone: never said
                await writer.drain()
                return
            self.pending[text] = nick
            writer.write(text.encode() + b"\n")
            await writer.drain()


def _sent_at(text: str) -> float | None:
    if not text.startswith("S") or ":" not in text:
        return None
    try:
        return float(text.rsplit(":", 1)[1])
    except ValueError:
        return None


# -- the run ----------------------------------------------------------------------------------


async def _history(port: int) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
    conn = _Line(reader, writer)
    try:
        await conn.send({"type": "hello", "protocol": 1, "name": "soak-auditor"})
        out: list[dict[str, Any]] = []
        before = None
        while True:
            req: dict[str, Any] = {"type": "history", "room": ROOM, "limit": 500}
            if before is not None:
                req["before"] = before
            await conn.send(req)
            while (page := await conn.recv())["type"] != "history":
                if page["type"] == "ping":
                    await conn.send({"type": "pong", "n": page["n"]})
                elif page["type"] == "error" and page["code"] == "rate_limited":
                    await asyncio.sleep(0.5)  # flood control counts history requests too
                    await conn.send(req)
            out = page["messages"] + out
            if not page.get("more"):
                return out
            before = page["messages"][0]["id"]
    finally:
        conn.abort()


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="dc-soak-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Server(data_dir, port)
    await server.start()
    shared = Shared(port=port, gap=args.gap, drop_every=args.drop_every, rng=random.Random(7))
    native, ws, plain = (int(args.clients * share) for share in args.mix)
    plain += args.clients - native - ws - plain
    resumers = [Resumer(shared, f"n{i}", "json") for i in range(native)]
    resumers += [Resumer(shared, f"w{i}", "ws") for i in range(ws)]
    plains = [Plain(shared, f"p{i}") for i in range(plain)]
    started = time.monotonic()
    tasks = [asyncio.create_task(c.run()) for c in (*resumers, *plains)]
    kills = [started + args.seconds * k / (args.kills + 1) for k in range(1, args.kills + 1)]
    try:
        while (now := time.monotonic()) < started + args.seconds:
            server.sample(now - started)
            if kills and now >= kills[0]:
                kills.pop(0)
                await server.kill_and_restart()
            await asyncio.sleep(min(1.0, args.seconds / 60))
        # The end: nobody sends; everyone reconnects and resends; then END, read by all.
        shared.sending = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
            r.connected and not r.pending for r in resumers
        ):
            await asyncio.sleep(0.2)
        shared.ending = True
        announcer = Resumer(shared, "soak-end", "json")
        announcer.pending["END"] = "END"
        end_task = asyncio.create_task(announcer.run())
        while time.monotonic() < deadline + 30 and not all(
            r.end_id is not None for r in (*resumers, announcer)
        ):
            await asyncio.sleep(0.2)
        server.sample(time.monotonic() - started)
        history = await _history(port)
    finally:
        shared.ending = True
        for task in tasks:
            task.cancel()
        if "end_task" in locals():
            end_task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
    return _report(shared, resumers, plains, history, server, time.monotonic() - started)


def _report(
    shared: Shared,
    resumers: list[Resumer],
    plains: list[Plain],
    history: list[dict[str, Any]],
    server: Server,
    elapsed: float,
) -> dict[str, Any]:
    stored_texts = [m["text"] for m in history]
    stored_ids = [m["id"] for m in history]
    end_id = next((m["id"] for m in history if m["text"] == "END"), None)
    unacked_stored = len({t for t in stored_texts if t in shared.sent_texts} - shared.acked)
    lost_acked = len(shared.acked - set(stored_texts))
    missed = 0
    dup_received = 0
    for r in resumers:
        if not r.received:
            continue
        got = set(r.received)
        dup_received += len(r.received) - len(got)
        upto = r.end_id if r.end_id is not None else (end_id or stored_ids[-1])
        missed += sum(1 for i in stored_ids if r.received[0] <= i <= upto and i not in got)
    ours = [t for t in stored_texts if t in shared.sent_texts]
    dup_stored = len(ours) - len(set(ours))
    # Stored lines no client said: e.g. a WebSocket handshake that reached the server more
    # than the sniff timeout after connecting, so that its lines were taken for plain text.
    foreign = [t for t in stored_texts if t not in shared.sent_texts and t != "END"]
    rss = [kib for _t, kib, _f in server.samples]
    fds = [f for _t, _kib, f in server.samples]
    return {
        "seconds": round(elapsed, 1),
        "clients": len(resumers) + len(plains),
        "server_kills": server.restarts,
        "sent": shared.sent,
        "acknowledged": len(shared.acked),
        "stored": len(stored_texts),
        "stored_unacknowledged": unacked_stored,
        "lost": lost_acked + missed,
        "lost_acknowledged": lost_acked,
        "missed_by_readers": missed,
        "duplicated": dup_stored + dup_received,
        "foreign_stored": len(foreign),
        "foreign_examples": sorted(set(foreign))[:5],
        "out_of_order": sum(r.out_of_order for r in resumers),
        "readers_without_end": sum(1 for r in resumers if r.end_id is None),
        "latency_live_ms": {
            "p50": round(percentile(shared.live_latency, 0.5) * 1000, 2),
            "p99": round(percentile(shared.live_latency, 0.99) * 1000, 2),
            "n": len(shared.live_latency),
        },
        "latency_replay_ms": {
            "p50": round(percentile(shared.replay_latency, 0.5) * 1000, 2),
            "p99": round(percentile(shared.replay_latency, 0.99) * 1000, 2),
            "n": len(shared.replay_latency),
        },
        "rss_kib": server.samples and [(round(t), kib) for t, kib, _f in server.samples],
        "rss_kib_min_max_after_warmup": _after_warmup(rss),
        "fds_min_max_after_warmup": _after_warmup(fds),
        "fds": [(round(t), f) for t, _kib, f in server.samples],
    }


def _after_warmup(values: list[int]) -> list[int]:
    later = values[len(values) // 5 :] or values
    return [min(later), max(later)] if later else []


def print_report(r: dict[str, Any]) -> None:
    rows = [
        ("duration", f"{r['seconds']} s, {r['clients']} clients, {r['server_kills']} kills"),
        ("sent", r["sent"]),
        ("acknowledged", r["acknowledged"]),
        ("stored (not acknowledged: sent just before a drop)", r["stored_unacknowledged"]),
        ("lost", f"{r['lost']} ({r['lost_acknowledged']} acked, {r['missed_by_readers']} missed)"),
        ("duplicated", r["duplicated"]),
        ("stored lines nobody said (see foreign_examples)", r["foreign_stored"]),
        ("out of order", r["out_of_order"]),
        ("readers that never saw END", r["readers_without_end"]),
        ("delivery p50 / p99 (live)", _ms(r["latency_live_ms"])),
        ("delivery p50 / p99 (replayed)", _ms(r["latency_replay_ms"])),
        ("server RSS after warm-up (KiB)", _span(r["rss_kib_min_max_after_warmup"])),
        ("server fds after warm-up", _span(r["fds_min_max_after_warmup"])),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("RSS over time (s: KiB):", ", ".join(f"{t}: {k}" for t, k in r["rss_kib"] or []))
    print("fds over time (s: n):  ", ", ".join(f"{t}: {n}" for t, n in r["fds"]))


def _ms(d: dict[str, Any]) -> str:
    return f"{d['p50']} ms / {d['p99']} ms (n={d['n']})"


def _span(v: list[int]) -> str:
    return f"{v[0]} .. {v[1]}" if v else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="length of the chat phase")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument(
        "--mix",
        type=lambda s: tuple(float(x) for x in s.split(",")),
        default=(0.6, 0.2, 0.2),
        help="shares of native, WebSocket and plain-text clients (default 0.6,0.2,0.2)",
    )
    ap.add_argument("--gap", type=float, default=6.0, help="mean seconds between a client's lines")
    ap.add_argument("--drop-every", type=float, default=40.0, help="mean seconds between drops")
    ap.add_argument("--kills", type=int, default=2, help="server SIGKILLs during the run")
    ap.add_argument("--data-dir", help="server data folder (default: a new temporary one)")
    ap.add_argument("--json", type=Path, help="also write the report here as JSON")
    args = ap.parse_args(argv)
    report = asyncio.run(soak(args))
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    ok = report["lost"] == 0 and report["duplicated"] == 0 and report["out_of_order"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
