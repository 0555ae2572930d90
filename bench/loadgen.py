"""Load generator for the server benchmark: many native JSON Lines clients in one process.

One ``selectors`` event loop (epoll on Linux) drives every client, so a thousand clients cost one
thread and the generator stays cheaper than the server it measures. It never parses a received
line as JSON on the hot path: every benchmark message's ``text`` starts with ``Z<sender>.<ns>.``
(the sender's index and its wall-clock ``time_ns`` at send time), so a delivery is one occurrence
of ``"Z`` in the received bytes, a sender's own echo is one occurrence of ``"Z<sender>.``, and a
latency is ``arrival - ns`` found with one regular expression over a whole ``recv``. ``arrival``
is the kernel's receive timestamp of the read (``SO_TIMESTAMPNS``), not this loop's clock: a
single loop serving N sockets reads the last one long after its data arrived, and timing it
then measured the generator (see ``RateResult.p99_user_ms``). Only the rare
lines that need an answer (``ping``) or a count (``error``) are decoded.

Phases, each bounded in time:

* :meth:`LoadGenerator.join` — N clients connect at once and send ``hello``; a client is ready
  when it has its ``welcome`` and its first ``users`` (the join storm);
* :meth:`LoadGenerator.run_rate` — a fixed total rate shared by the senders, open loop; fan-out
  latency is measured at every receiver, and deliveries still missing at the end count as
  infinitely late (so a frozen server reports ``stalled``, not a flattering p99);
* :meth:`LoadGenerator.run_saturating` — each sender keeps at most ``window`` messages in
  flight, a message leaving the window when its own echo comes back;
* :meth:`LoadGenerator.add_stuck_client` — a client that says hello and then never reads.

Traffic goes only to the address it is given (the benchmark gives 127.0.0.1).
"""

from __future__ import annotations

import json
import math
import re
import selectors
import socket
import struct
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

ROOM = "general"
TEXT_SIZE = 48
MARK = b'"Z'
_SEND_NS = re.compile(rb'"Z\d+\.(\d+)\.')
_RECV_SIZE = 262_144
# Receipt times come from the kernel (SO_TIMESTAMPNS: when the segment reached the socket), not
# from this process's clock after ``recv``: one loop reading N sockets in turn would otherwise
# add its own queueing to every latency it measures. (Data that waited in a socket behind a
# later segment carries that segment's stamp: a stall longer than the gap between lines still
# overstates; see bench/README.md.)
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else 0)
_ANC_SIZE = socket.CMSG_SPACE(16) if _SO_TIMESTAMPNS else 0
_TIMESPEC = struct.Struct("@qq")
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE

Probe = Callable[[], float]
"""Returns the server's CPU seconds so far; called at the start and end of a measured window."""


def percentile(samples: Sequence[float], q: float, total: int | None = None) -> float:
    """The ``q`` quantile of sorted ``samples``, out of ``total`` (the missing ones are +inf)."""
    count = len(samples) if total is None else total
    if count == 0:
        return math.nan
    rank = max(0, math.ceil(q * count) - 1)
    return samples[rank] if rank < len(samples) else math.inf


@dataclass
class JoinResult:
    clients: int
    ready: int
    seconds: float | None  # until every client had welcome + users; None if some never did
    p50_ms: float
    p99_ms: float
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class RateResult:
    rate: float
    receivers: int
    sent: int  # messages sent inside the measured window
    expected: int  # sent * receivers
    received: int  # deliveries of those messages seen by the end of the drain
    p50_ms: float
    p99_ms: float  # math.inf when more than 1 % of the deliveries had not come by the end
    deliveries_per_s: float
    server_cpu_s: float
    generator_cpu: float  # fraction of one core the generator used
    progressing: bool  # deliveries were still arriving at the end of the drain
    # The same latencies timed on this process's clock when it got round to each recv: the
    # difference from p99_ms is the generator's own delay (kernel stamps: 0 when unavailable).
    p99_user_ms: float = math.nan
    kernel_stamps: bool = False
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """``ok``; ``behind`` (still delivering, too late); ``stalled`` (delivery stopped)."""
        if not math.isinf(self.p99_ms):
            return "ok"
        return "behind" if self.progressing else "stalled"


@dataclass
class SaturatingResult:
    window: int
    deliveries: int
    seconds: float
    deliveries_per_s: float
    server_cpu_s: float
    generator_cpu: float
    errors: dict[str, int] = field(default_factory=dict)


class Client:
    """One connection's state; ``marker`` is set for senders (finds their own echoes)."""

    __slots__ = (
        "acked",
        "closed",
        "connecting",
        "index",
        "marker",
        "name",
        "out",
        "ready",
        "ready_ns",
        "sent",
        "sock",
        "tail",
        "welcomed",
    )

    def __init__(self, index: int, sock: socket.socket, name: str) -> None:
        self.index = index
        self.sock = sock
        self.name = name
        self.tail = b""
        self.out = bytearray()
        self.connecting = True
        self.welcomed = False
        self.ready = False
        self.ready_ns = 0
        self.closed = False
        self.marker: bytes | None = None
        self.sent = 0
        self.acked = 0


class LoadGenerator:
    """N clients of one server in one room, driven by one event loop (not thread-safe)."""

    def __init__(self, host: str, port: int, *, text_size: int = TEXT_SIZE) -> None:
        self.address = (host, port)
        self.text_size = text_size
        self.clients: list[Client] = []
        self.delivered = 0
        self.dropped = 0
        self.errors: Counter[str] = Counter()
        self._sel = selectors.DefaultSelector()
        self._stuck: list[socket.socket] = []
        self._ready_count = 0
        self._last_rx_ns = 0
        self._window = 0  # > 0 while saturating: refill a sender's window on each echo
        self._recording = False
        self._rec_lo = 0
        self._rec_hi = 0
        self._lat = array("q")
        self._lat_user = array("q")
        self.kernel_stamps = False  # set once a kernel receive timestamp was seen

    # ---- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        for c in self.clients:
            if not c.closed:
                self._drop(c, counted=False)
        for s in self._stuck:
            s.close()
        self._stuck.clear()
        self._sel.close()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def live(self) -> list[Client]:
        return [c for c in self.clients if c.ready and not c.closed]

    # ---- phases ----------------------------------------------------------------------------

    def join(self, n: int, timeout: float) -> JoinResult:
        """Connect ``n`` clients at once; time until all have ``welcome`` and first ``users``."""
        t0 = time.perf_counter_ns()
        base = len(self.clients)
        new: list[Client] = []
        for i in range(base, base + n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if _SO_TIMESTAMPNS:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            sock.connect_ex(self.address)
            c = Client(i, sock, f"b{i:04d}")
            self._sel.register(sock, _WRITE, c)
            new.append(c)
        self.clients.extend(new)
        deadline = t0 + int(timeout * 1e9)
        while self._ready_count < len(self.clients) and time.perf_counter_ns() < deadline:
            if all(c.closed for c in new):
                break
            self._poll(0.05)
        times = sorted((c.ready_ns - t0) / 1e6 for c in new if c.ready)
        done = len(times) == n
        return JoinResult(
            clients=n,
            ready=len(times),
            seconds=times[-1] / 1e3 if done and times else None,
            p50_ms=percentile(times, 0.50, n),
            p99_ms=percentile(times, 0.99, n),
            errors=dict(self.errors),
        )

    def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Read until nothing has arrived for ``quiet`` seconds (at most ``timeout``)."""
        end = time.perf_counter_ns() + int(timeout * 1e9)
        self._last_rx_ns = time.perf_counter_ns()
        while True:
            now = time.perf_counter_ns()
            if now >= end or now - self._last_rx_ns >= quiet * 1e9:
                return
            self._poll(0.05)

    def add_stuck_client(self, name: str = "stuck", rcvbuf: int = 4096) -> None:
        """A client that says hello and never reads again (a small receive buffer, as a slow
        or frozen peer has once it is full)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(5.0)
        sock.connect(self.address)
        sock.sendall(_hello(name))
        self._stuck.append(sock)

    def run_rate(
        self,
        senders: Sequence[Client],
        rate: float,
        duration: float,
        *,
        warmup: float = 0.5,
        drain: float = 2.0,
        probe: Probe | None = None,
        text_size: int | None = None,
    ) -> RateResult:
        """Send ``rate`` messages/s in total, round robin over ``senders``; measure fan-out."""
        receivers = len(self.live)
        size, self.text_size = self.text_size, text_size or self.text_size
        errors0 = Counter(self.errors)
        interval = 1e9 / rate
        start = time.perf_counter_ns()
        lo = start + int(warmup * 1e9)
        hi = lo + int(duration * 1e9)
        self._lat, self._lat_user = array("q"), array("q")
        # Send times travel in the text on the wall clock (kernel receive stamps use it).
        wall = time.time_ns() - time.perf_counter_ns()
        self._rec_lo, self._rec_hi, self._recording = lo + wall, hi + wall, True
        k = 0
        next_t = float(start)
        sent = 0
        in_window = False
        cpu0 = cpu1 = 0.0
        d0 = d1 = 0
        g0 = g1 = 0.0
        while True:
            now = time.perf_counter_ns()
            if not in_window and now >= lo:
                in_window = True
                d0, g0 = self.delivered, time.process_time()
                cpu0 = probe() if probe else 0.0
            if now >= hi:
                break
            while next_t <= now:
                ns = time.perf_counter_ns()
                if ns >= hi:
                    break
                self._say(senders[k % len(senders)])
                if ns >= lo:
                    sent += 1
                k += 1
                next_t += interval
            wait = (min(next_t, hi) - time.perf_counter_ns()) / 1e9
            self._poll(max(0.0, wait))
        d1, g1 = self.delivered, time.process_time()
        cpu1 = probe() if probe else 0.0
        expected = sent * receivers
        progressing = self._drain(lambda: len(self._lat) >= expected, drain)
        self._recording = False
        self.text_size = size
        samples = sorted(self._lat)
        user = sorted(self._lat_user)
        self._lat, self._lat_user = array("q"), array("q")
        span = (hi - lo) / 1e9
        return RateResult(
            rate=rate,
            receivers=receivers,
            sent=sent,
            expected=expected,
            received=len(samples),
            p50_ms=percentile(samples, 0.50, max(expected, len(samples))) / 1e6,
            p99_ms=percentile(samples, 0.99, max(expected, len(samples))) / 1e6,
            deliveries_per_s=(d1 - d0) / span,
            server_cpu_s=cpu1 - cpu0,
            generator_cpu=(g1 - g0) / span,
            progressing=progressing,
            p99_user_ms=percentile(user, 0.99, max(expected, len(user))) / 1e6,
            kernel_stamps=self.kernel_stamps,
            errors=dict(self.errors - errors0),
        )

    def run_saturating(
        self,
        senders: Sequence[Client],
        window: int,
        duration: float,
        *,
        warmup: float = 0.5,
        drain: float = 5.0,
        probe: Probe | None = None,
    ) -> SaturatingResult:
        """Each sender keeps ``window`` messages in flight; count deliveries per second."""
        errors0 = Counter(self.errors)
        self._window = window
        for c in senders:
            c.sent = c.acked = 0
            c.marker = b'"Z%d.' % c.index
            self._fill(c)
        start = time.perf_counter_ns()
        lo = start + int(warmup * 1e9)
        hi = lo + int(duration * 1e9)
        while time.perf_counter_ns() < lo:
            self._poll(0.05)
        t0, d0, g0 = time.perf_counter_ns(), self.delivered, time.process_time()
        cpu0 = probe() if probe else 0.0
        while time.perf_counter_ns() < hi:
            self._poll(0.05)
        t1, d1, g1 = time.perf_counter_ns(), self.delivered, time.process_time()
        cpu1 = probe() if probe else 0.0
        self._window = 0
        self._drain(lambda: all(c.acked >= c.sent for c in senders), drain)
        span = (t1 - t0) / 1e9
        return SaturatingResult(
            window=window,
            deliveries=d1 - d0,
            seconds=span,
            deliveries_per_s=(d1 - d0) / span,
            server_cpu_s=cpu1 - cpu0,
            generator_cpu=(g1 - g0) / span,
            errors=dict(self.errors - errors0),
        )

    def _drain(self, done: Callable[[], bool], limit: float, idle: float = 1.0) -> bool:
        """Read until ``done()``, for at most ``limit`` s, giving up after ``idle`` s without a
        delivery. True if deliveries were still arriving when it stopped (or all came)."""
        start = time.perf_counter_ns()
        last, seen = start, self.delivered
        while not done():
            now = time.perf_counter_ns()
            if self.delivered != seen:
                last, seen = now, self.delivered
            if now - last >= idle * 1e9:
                return False
            if now - start >= limit * 1e9:
                return True
            self._poll(0.05)
        return True

    def make_senders(self, count: int) -> list[Client]:
        """The first ``count`` live clients, marked so their own echoes are recognised."""
        senders = self.live[:count]
        for c in senders:
            c.marker = b'"Z%d.' % c.index
        return senders

    # ---- the event loop --------------------------------------------------------------------

    def _poll(self, timeout: float) -> None:
        for key, mask in self._sel.select(timeout):
            c: Client = key.data
            if mask & _WRITE:
                self._on_writable(c)
            if mask & _READ and not c.closed:
                self._on_readable(c)

    def _on_writable(self, c: Client) -> None:
        if c.closed:
            return
        if c.connecting:
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.errors[f"connect errno {err}"] += 1
                self._drop(c)
                return
            c.connecting = False
            c.out += _hello(c.name)
        self._flush(c)

    def _flush(self, c: Client) -> None:
        try:
            n = c.sock.send(c.out)
        except BlockingIOError:
            n = 0
        except OSError:
            self._drop(c)
            return
        del c.out[:n]
        self._sel.modify(c.sock, _READ | _WRITE if c.out else _READ, c)

    def _send(self, c: Client, data: bytes) -> None:
        if c.closed:
            return
        if c.out:  # keep order: queue behind what is already waiting
            c.out += data
            return
        try:
            n = c.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._drop(c)
            return
        if n < len(data):
            c.out += data[n:]
            self._sel.modify(c.sock, _READ | _WRITE, c)

    def _say(self, c: Client) -> None:
        c.sent += 1
        self._send(c, self._say_line(c.index, time.time_ns()))

    def _say_line(self, index: int, ns: int) -> bytes:
        prefix = f"Z{index}.{ns}."
        text = prefix + "x" * max(0, self.text_size - len(prefix))
        return b'{"type":"say","room":"general","text":"%s"}\n' % text.encode()

    def _fill(self, c: Client) -> None:
        room = self._window - (c.sent - c.acked)
        if room <= 0 or c.closed:
            return
        ns = time.time_ns()
        c.sent += room
        self._send(c, b"".join(self._say_line(c.index, ns) for _ in range(room)))

    def _on_readable(self, c: Client) -> None:
        try:
            if _ANC_SIZE:
                data, anc, _flags, _addr = c.sock.recvmsg(_RECV_SIZE, _ANC_SIZE)
            else:
                data, anc = c.sock.recv(_RECV_SIZE), []
        except BlockingIOError:
            return
        except OSError:
            data, anc = b"", []
        if not data:
            self._drop(c)
            return
        now = time.perf_counter_ns()
        self._last_rx_ns = now
        wall = stamp = time.time_ns()
        if anc:
            # The newest segment's arrival: every line of this read counts as arrived then
            # (TCP merges queued data under the newest stamp anyway: exact while we keep up).
            sec, nsec = _TIMESPEC.unpack_from(anc[0][2])
            stamp = sec * 1_000_000_000 + nsec
            self.kernel_stamps = True
        if c.tail:
            data = c.tail + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            c.tail = data
            return
        if cut < len(data):
            c.tail = data[cut:]
            data = data[:cut]
        else:
            c.tail = b""
        n = data.count(MARK)
        if n:
            self.delivered += n
            if c.marker is not None:
                c.acked += data.count(c.marker)
                if self._window:
                    self._fill(c)
            if self._recording:
                lo, hi, lat, user = self._rec_lo, self._rec_hi, self._lat, self._lat_user
                for s in _SEND_NS.findall(data):
                    t = int(s)
                    if lo <= t < hi:
                        lat.append(stamp - t)
                        user.append(wall - t)
        if not c.ready:
            if not c.welcomed and b'"welcome"' in data:
                c.welcomed = True
            if c.welcomed and b'"users"' in data:
                c.ready, c.ready_ns = True, now
                self._ready_count += 1
        if b'"ping"' in data or b'"error"' in data:
            self._decode_rare(c, data)

    def _decode_rare(self, c: Client, data: bytes) -> None:
        """Answer pings and count errors; only these lines are decoded as JSON."""
        for line in data.split(b"\n"):
            if b'"ping"' not in line and b'"error"' not in line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            kind = obj.get("type") if isinstance(obj, dict) else None
            if kind == "ping":
                self._send(c, json.dumps({"type": "pong", "n": obj.get("n")}).encode() + b"\n")
            elif kind == "error":
                self.errors[str(obj.get("code"))] += 1
                if c.marker is not None and c.acked < c.sent:
                    c.acked += 1  # that say was refused: it will never echo
                    if self._window:
                        self._fill(c)

    def _drop(self, c: Client, *, counted: bool = True) -> None:
        if c.closed:
            return
        c.closed = True
        if counted:
            self.dropped += 1
        self._sel.unregister(c.sock)
        c.sock.close()


def warm_up(host: str, port: int, timeout: float = 10.0) -> None:
    """Log one client in and out (blocking), so that what a server builds lazily on its first
    login is built before its 0-client memory is measured."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_hello("warmup"))
        data = b""
        while b'"users"' not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
        sock.sendall(b'{"type":"quit"}\n')


def _hello(name: str) -> bytes:
    return json.dumps({"type": "hello", "protocol": 1, "name": name}).encode() + b"\n"
