"""UDP broadcast discovery: the fallback for networks that filter multicast (mDNS).

A client broadcasts a query on UDP port `BROADCAST_PORT` (5152); every Desktop
Chat server that hears it answers by unicast to the sender. Both packets are one
compact JSON object, at most `MAX_PACKET` (1 KiB) of UTF-8:

    query:  {"magic":"desktop-chat","v":1,"op":"query","nonce":"<32 lowercase hex>","pad":"…"}
    answer: {"magic":"desktop-chat","v":1,"op":"answer","nonce":"<echoed>","port":5151,
             "protocol":"1","title":"…","tls":"offered","password":"no","people":"3","fp":"…"}

The answer carries the TXT fields of the mDNS record with the same string values,
plus the TCP port and the echoed nonce; the server's address is the answer's
source address. Every packet is validated strictly (size, UTF-8, JSON object,
no duplicate keys, magic, version, op, field types); anything else is dropped
without a reply, and neither the responder nor a probe ever stops for it. A
client keeps only answers that echo the nonce of its own query, so unsolicited
or spoofed answers are dropped. Unknown extra fields are ignored.

The responder answers at most a few times a second per sender (and overall), so
spoofed queries cannot turn it into a traffic amplifier, and never to a
privileged source port. Nor is an answer ever larger than its query: a query is
padded (``pad``) to `MAX_PACKET` bytes, and a shorter query whose answer would be
larger is not answered. Only senders on the machine's own subnets are answered
(loopback included): a query from elsewhere, spoofed or routed, gets nothing.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

from desktop_chat.net.discovery.advert import (
    Advert,
    FoundServer,
    ipv4_of,
    is_wildcard,
    local_addresses,
    networks_for,
)

log = logging.getLogger(__name__)

BROADCAST_PORT = 5152
"""UDP port of the broadcast query/answer (the TCP chat port's neighbour)."""

MAGIC = "desktop-chat"
VERSION = 1
MAX_PACKET = 1024
NONCE_HEX_LEN = 32

_ANSWERS_PER_SOURCE_PER_SEC = 5
_ANSWERS_PER_SEC = 50
_WSAEMSGSIZE = 10040


class PacketError(ValueError):
    """A discovery packet that breaks the format: the peer's mistake, dropped."""


# --- packet format -------------------------------------------------------------------------


def new_nonce() -> str:
    return secrets.token_hex(NONCE_HEX_LEN // 2)


def encode_query(nonce: str) -> bytes:
    """A query padded to `MAX_PACKET` bytes, so that no answer is larger than it."""
    _check_nonce(nonce)
    fields: dict[str, object] = {"magic": MAGIC, "v": VERSION, "op": "query", "nonce": nonce}
    bare = _dump({**fields, "pad": ""})
    return _dump({**fields, "pad": " " * (MAX_PACKET - len(bare))})


def encode_answer(nonce: str, tcp_port: int, advert: Advert) -> bytes:
    _check_nonce(nonce)
    fields: dict[str, object] = {
        "magic": MAGIC,
        "v": VERSION,
        "op": "answer",
        "nonce": nonce,
        "port": tcp_port,
    }
    fields.update(advert.to_txt())
    data = _dump(fields)
    if len(data) > MAX_PACKET:
        # Advert titles are capped at 200 bytes, so only a broken Advert gets here.
        raise ValueError(f"answer is {len(data)} bytes, over {MAX_PACKET}")
    return data


def parse_query(data: bytes) -> str:
    """The nonce of a valid query; PacketError otherwise."""
    obj = _load(data, "query")
    return _nonce_of(obj)


def parse_answer(data: bytes, expected_nonce: str) -> tuple[int, Advert]:
    """(tcp_port, advert) of a valid answer to our query; PacketError otherwise."""
    obj = _load(data, "answer")
    if _nonce_of(obj) != expected_nonce:
        raise PacketError("nonce does not match our query")
    port = obj.get("port")
    if type(port) is not int or not 1 <= port <= 65535:
        raise PacketError("bad port")
    try:
        advert = Advert.from_txt(obj)
    except ValueError as exc:
        raise PacketError(str(exc)) from exc
    return port, advert


def _dump(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _load(data: bytes, op: str) -> dict[str, Any]:
    if len(data) > MAX_PACKET:
        raise PacketError("oversized")
    if not data.startswith(b"{"):
        raise PacketError("not a JSON object")
    try:
        obj = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError) as exc:
        raise PacketError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise PacketError("not a JSON object")
    if obj.get("magic") != MAGIC:
        raise PacketError("bad magic")
    version = obj.get("v")
    if type(version) is not int or version != VERSION:
        raise PacketError("unsupported version")
    if obj.get("op") != op:
        raise PacketError(f"not a {op}")
    return obj


def _nonce_of(obj: dict[str, Any]) -> str:
    nonce = obj.get("nonce")
    if type(nonce) is not str:
        raise PacketError("bad nonce")
    try:
        _check_nonce(nonce)
    except ValueError as exc:
        raise PacketError(str(exc)) from exc
    return nonce


def _check_nonce(nonce: str) -> None:
    if len(nonce) != NONCE_HEX_LEN or any(c not in "0123456789abcdef" for c in nonce):
        raise ValueError("nonce must be 32 lowercase hex digits")


# --- responder -----------------------------------------------------------------------------


class BroadcastResponder:
    """Answers broadcast queries for one server, on its own thread.

    `bind_host` is the chat server's bind address. With a wildcard it answers
    senders on any of the machine's subnets; with a specific address (127.0.0.1,
    192.168.1.5) it answers only senders on that address's subnet, so a server
    bound to 127.0.0.1 is never revealed to the LAN. The socket itself is bound
    to the wildcard address because, on Linux and macOS, a socket bound to a
    unicast address does not receive broadcasts. `port=0` picks a free port (tests); see `address`.
    """

    def __init__(
        self,
        tcp_port: int,
        advert: Advert,
        *,
        bind_host: str = "",
        port: int = BROADCAST_PORT,
        interfaces: Sequence[str] | None = None,
    ) -> None:
        self._tcp_port = tcp_port
        self._advert = advert
        self._port = port
        self._allowed: list[ipaddress.IPv4Network] | None = None
        if interfaces is not None:
            self._allowed = networks_for(interfaces)
        elif not is_wildcard(bind_host):
            self._allowed = networks_for([ipv4_of(bind_host)])
        else:  # the subnets of every interface of this machine, and loopback
            self._allowed = [a.network for a in local_addresses()]
            self._allowed.append(ipaddress.IPv4Network("127.0.0.0/8"))
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._recent: dict[str, list[float]] = {}
        self._recent_all: list[float] = []
        self.dropped = 0
        """Packets dropped as invalid, unwanted or over the rate limit (for tests and checks)."""
        self.answered = 0
        """Answers sent (counted just before sending)."""

    @property
    def address(self) -> tuple[str, int]:
        """The bound UDP address (after start; port 0 becomes the real port)."""
        if self._sock is None:
            raise RuntimeError("responder not started")
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind the socket and start answering; OSError if the port cannot be bound."""
        with self._lock:
            if self._closed or self._sock is not None:
                raise RuntimeError("responder already started or closed")
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                # Several servers on one machine may each run a responder: with
                # SO_REUSEADDR/SO_REUSEPORT every one of them gets the broadcast.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if hasattr(socket, "SO_REUSEPORT"):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind(("", self._port))
            except OSError:
                sock.close()
                raise
            self._sock = sock
            self._wake_r, self._wake_w = socket.socketpair()
            self._thread = threading.Thread(
                target=self._run, name=f"broadcast-responder-{self.address[1]}", daemon=True
            )
            self._thread.start()

    def update(self, advert: Advert) -> None:
        """Answer with new facts from now on (people count, title)."""
        with self._lock:
            self._advert = advert

    def close(self) -> None:
        """Stop answering, close the socket and join the thread; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread, wake = self._thread, self._wake_w
        if wake is not None:
            wake.send(b"x")
        if thread is not None:
            thread.join()
        for sock in (self._sock, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()

    def __enter__(self) -> BroadcastResponder:
        if self._sock is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        sock, wake = self._sock, self._wake_r
        assert sock is not None
        assert wake is not None
        while True:
            readable, _, _ = select.select([sock, wake], [], [])
            if wake in readable:
                return
            try:
                data, sender = sock.recvfrom(MAX_PACKET + 1)
            except (ConnectionResetError, BlockingIOError):
                # Windows reports an earlier answer's ICMP "port unreachable" here.
                continue
            except OSError as exc:
                if exc.errno in (errno.EMSGSIZE, _WSAEMSGSIZE):
                    self.dropped += 1  # Windows: datagram larger than our buffer
                    continue
                log.warning("broadcast responder stopped: %s", exc)
                return
            self._handle(sock, data, (str(sender[0]), int(sender[1])))

    def _handle(self, sock: socket.socket, data: bytes, sender: tuple[str, int]) -> None:
        try:
            nonce = parse_query(data)
        except PacketError as exc:
            self.dropped += 1
            log.debug("dropped discovery packet from %s: %s", sender, exc)
            return
        if not self._wanted(sender):
            self.dropped += 1
            return
        with self._lock:
            advert = self._advert
        answer = encode_answer(nonce, self._tcp_port, advert)
        if len(answer) > len(data):
            self.dropped += 1  # never an amplifier: a short (perhaps spoofed) query gets nothing
            return
        self.answered += 1
        try:
            sock.sendto(answer, sender)
        except OSError as exc:
            log.debug("could not answer %s: %s", sender, exc)

    @property
    def allowed_networks(self) -> list[ipaddress.IPv4Network]:
        """The subnets whose senders are answered."""
        return list(self._allowed or ())

    def _wanted(self, sender: tuple[str, int]) -> bool:
        host, port = sender
        if port < 1024:
            return False  # a spoofed query aimed at a service port
        if self._allowed is not None:
            ip = ipaddress.IPv4Address(host)
            if not any(ip in net for net in self._allowed):
                return False
        now = time.monotonic()
        self._recent_all = [t for t in self._recent_all if now - t < 1.0]
        if len(self._recent_all) >= _ANSWERS_PER_SEC:
            return False
        if len(self._recent) > 1024:
            self._recent.clear()
        times = [t for t in self._recent.get(host, ()) if now - t < 1.0]
        if len(times) >= _ANSWERS_PER_SOURCE_PER_SEC:
            self._recent[host] = times
            return False
        times.append(now)
        self._recent[host] = times
        self._recent_all.append(now)
        return True


# --- probing -------------------------------------------------------------------------------


class BroadcastProbe:
    """One query sent to some broadcast addresses and the valid answers to it.

    `send()` then `collect(deadline)`; `fileno()` lets a caller wait on the
    socket together with other things. Always `close()` (or use `with`).
    """

    def __init__(self, targets: Iterable[str], port: int = BROADCAST_PORT) -> None:
        self.targets = list(targets)
        self.port = port
        self.nonce = new_nonce()
        self.errors: list[str] = []
        """Send errors, in words (for the network check)."""
        self.dropped = 0
        self._found: dict[tuple[str, int], FoundServer] = {}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            self._sock.bind(("", 0))
        except OSError:
            self._sock.close()
            raise

    def send(self) -> int:
        """Send the query to every target; the number of targets it went to."""
        query = encode_query(self.nonce)
        sent = 0
        for target in self.targets:
            try:
                self._sock.sendto(query, (target, self.port))
                sent += 1
            except OSError as exc:
                self.errors.append(f"{target}: {exc.strerror or exc}")
        return sent

    def fileno(self) -> int:
        return self._sock.fileno()

    def read_one(self) -> FoundServer | None:
        """Read one datagram (the socket must be readable): the server, or None if dropped."""
        try:
            data, sender = self._sock.recvfrom(MAX_PACKET + 1)
        except OSError:
            # ICMP errors (Windows) and oversized datagrams (WSAEMSGSIZE): not an answer.
            self.dropped += 1
            return None
        host, sport = str(sender[0]), int(sender[1])
        if sport != self.port:
            self.dropped += 1  # answers come from the responder's well-known port
            return None
        try:
            tcp_port, advert = parse_answer(data, self.nonce)
        except PacketError as exc:
            self.dropped += 1
            log.debug("dropped discovery answer from %s: %s", host, exc)
            return None
        found = FoundServer.from_advert(f"{host}:{tcp_port}", advert, [host], tcp_port, "broadcast")
        self._found[(host, tcp_port)] = found
        return found

    def collect(
        self,
        deadline: float,
        stop: threading.Event | None = None,
        on_found: Callable[[FoundServer], None] | None = None,
    ) -> list[FoundServer]:
        """Read answers until time.monotonic() reaches `deadline` (or `stop` is set).

        `on_found` is called with each valid answer as it arrives.
        """
        while not (stop is not None and stop.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Short waits so a set `stop` ends the probe promptly.
            readable, _, _ = select.select([self._sock], [], [], min(remaining, 0.05))
            if readable:
                found = self.read_one()
                if found is not None and on_found is not None:
                    on_found(found)
        return self.found

    @property
    def found(self) -> list[FoundServer]:
        return list(self._found.values())

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> BroadcastProbe:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def probe_broadcast(
    timeout: float = 1.0,
    address: str | Sequence[str] = "255.255.255.255",
    port: int = BROADCAST_PORT,
) -> list[FoundServer]:
    """Broadcast one query and return the servers that answered within `timeout` seconds.

    `address` may be one address or several (e.g. `advert.broadcast_targets()`).
    Never raises for network trouble: a target that cannot be reached is skipped.
    """
    targets = [address] if isinstance(address, str) else list(address)
    deadline = time.monotonic() + timeout
    try:
        probe = BroadcastProbe(targets, port)
    except OSError as exc:
        log.warning("broadcast probe impossible: %s", exc)
        return []
    with probe:
        probe.send()
        return probe.collect(deadline)
