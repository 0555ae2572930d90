"""The threaded chat server: one acceptor thread, one thread per connection, one flusher.

A :class:`Server` owns all server state (no module globals): the listening socket, the hub,
the storage, the connections and their threads. It is a context manager; :meth:`Server.close`
is idempotent and returns once every thread it started has ended.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import logging
import secrets
import selectors
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from desktop_chat import paths
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.framing import DEFAULT_MAX_LINE
from desktop_chat.net.protocol.names import InvalidName, name_key, normalize_name
from desktop_chat.net.protocol.tls import TLS_MODES
from desktop_chat.net.server.accounts import AuthThrottle, hash_password, verify_password
from desktop_chat.net.server.connection import Connection
from desktop_chat.net.server.hub import Hub, LoginRefused
from desktop_chat.net.server.outbox import Flusher
from desktop_chat.net.server.refusal import Refuser
from desktop_chat.net.server.storage import Storage
from desktop_chat.net.server.tls import Certificate, ensure_certificate, server_context

if TYPE_CHECKING:
    from desktop_chat.net.discovery.mdns import Announcer

log = logging.getLogger(__name__)

DEFAULT_PORT = 5151


def _default_title() -> str:
    return f"{socket.gethostname()} chat"


@dataclass
class ServerConfig:
    """Everything a host can tune. Every field has a sensible default."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    data_dir: Path | None = None  # None: the platform's user data folder
    title: str = field(default_factory=_default_title)
    max_line: int = DEFAULT_MAX_LINE
    rate_burst: float = 10.0
    rate_per_sec: float = 5.0  # 0 turns flood control off
    max_connections: int = 2000
    max_per_address: int = 32
    registration_timeout: float = 60.0
    sniff_timeout: float = 1.0
    ping_interval: float = 30.0
    ping_timeout: float = 30.0
    outbox_limit: int = 1 << 20  # bytes buffered for a client that does not read
    session_ttl_days: float = 30.0
    announce: bool = False  # DNS-SD announcement (the GUI and the headless command turn it on)
    broadcast_port: int | None = 5152  # the UDP discovery fallback (None: off; 0: any port)
    tls: str = "offered"  # "off", "offered" (TLS and plain on the same port) or "required"
    password: str | None = None  # a private server: everyone needs this password
    admins: tuple[str, ...] = ()  # registered accounts that may moderate


class Server:
    """A chat server. ``with Server(config) as server:`` starts it; leaving the block stops it."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.data_dir = Path(self.config.data_dir or paths.data_dir())
        self.storage: Storage | None = None
        self.hub = Hub(title=self.config.title)
        self.flusher = Flusher()
        self.hub.flusher = self.flusher
        self._lock = threading.Lock()
        self._connections: dict[Connection, threading.Thread] = {}
        self._per_address: Counter[str] = Counter()
        self._refuser = Refuser(first_bytes_within=min(self.config.sniff_timeout, 1.0))
        self._listener: socket.socket | None = None
        self.certificate: Certificate | None = None
        self.owner_token = secrets.token_urlsafe(24)  # the hosting app's key to admin rights
        self.throttle = AuthThrottle()
        self.announcer: Announcer | None = None
        self._password_hash: str | None = None
        self.tls_context: ssl.SSLContext | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._acceptor: threading.Thread | None = None
        self._started = False
        self._closed = False
        self.address: tuple[str, int] = (self.config.host, self.config.port)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Server:
        """Open the database, bind the port and start the threads. Raises OSError if taken."""
        if self._started:
            return self
        self._started = True
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.storage = Storage(self.data_dir / "chat.sqlite3")
            self.storage.expire_sessions(self.config.session_ttl_days * 86400)
            self.hub.storage = self.storage
            self.flusher.before_send = self.storage.commit
            self.hub.load_registered()  # also builds the look-alike table, before any login
            if self.config.password:
                self._password_hash = hash_password(self.config.password)
            for admin in self.config.admins:
                if not self.storage.set_role(name_key(admin), "admin"):
                    log.warning("--admin %s: no such registered account", admin)
            if self.config.tls not in TLS_MODES:
                raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}")
            if self.config.tls != "off":
                self.certificate = ensure_certificate(self.data_dir)
                self.tls_context = server_context(self.certificate)
            self._listener = self._bind()
        except BaseException:
            self._closed = True
            self._release()
            raise
        host, port = self._listener.getsockname()[:2]
        self.address = (host, port)
        self.flusher.start()
        if self.config.announce:
            self._start_announcer()
        self._acceptor = threading.Thread(target=self._accept_loop, name="dc-acceptor", daemon=True)
        self._acceptor.start()
        log.info("listening on %s:%d (data in %s)", host, port, self.data_dir)
        return self

    def _start_announcer(self) -> None:
        from desktop_chat.net.discovery.mdns import (
            Announcer,  # zeroconf starts threads: only when announcing
        )

        self.announcer = Announcer(
            self.port,
            self.config.host,
            self.config.title,
            tls=self.config.tls,
            password=self._password_hash is not None,
            fingerprint=self.fingerprint,
            broadcast_port=self.config.broadcast_port,
        )
        self.announcer.start()
        announcer = self.announcer
        self.hub.on_people_changed = lambda n: announcer.update(people=n)
        for problem in self.announcer.problems:
            log.warning("announcing on the network: %s", problem)

    def _bind(self) -> socket.socket:
        host = self.config.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server(
            (host, self.config.port),
            family=family,
            backlog=512,
            dualstack_ipv6=(
                family == socket.AF_INET6 and host in ("::", "") and socket.has_dualstack_ipv6()
            ),
        )
        sock.setblocking(False)
        return sock

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, tell everyone, close every connection, join every thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        if self.announcer is not None:
            self.announcer.close()  # withdraw first: nobody should find a closing server
        self.hub.closing = True
        if self.storage is not None:
            told = self.hub.announce_shutdown()
            # Let the goodbye reach everyone who reads (half a second for all, at most).
            deadline = time.monotonic() + 0.5
            for member in told:
                if not member.outbox.wait_drained(max(0.0, deadline - time.monotonic())):
                    break
        with self._lock:
            conns = list(self._connections.items())
        for conn, _thread in conns:
            conn.abort("shutdown")
        for _conn, thread in conns:
            thread.join(timeout=5)
        self._refuser.close()
        self.flusher.close()
        self._release()
        log.info("server stopped")

    def _release(self) -> None:
        self.flusher.close()  # safe whether or not it started
        for s in (self._listener, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        if self.storage is not None:
            self.storage.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # already closed

    # -- accepting --------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._closed:
                for key, _ in sel.select(timeout=1.0):
                    if key.fileobj is self._wake_r:
                        return
                    self._accept_ready()
        finally:
            sel.close()

    def _accept_ready(self) -> None:
        assert self._listener is not None
        while not self._closed:
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("cannot accept more connections: %s", exc)
                    return
                raise
            self._admit(sock, addr)

    def _admit(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        ip = addr[0]
        with self._lock:
            refusal = None
            if len(self._connections) >= self.config.max_connections:
                refusal = "the server is full"
            elif self._per_address[ip] >= self.config.max_per_address:
                refusal = "too many connections from your address"
            if refusal is None:
                conn = Connection(self, sock, (ip, addr[1]))
                thread = threading.Thread(
                    target=conn.run, name=f"dc-conn-{ip}:{addr[1]}", daemon=True
                )
                self._connections[conn] = thread
                self._per_address[ip] += 1
        if refusal is not None:
            # Answered in the peer's terms by a small bounded pool (or just closed in a flood).
            self._refuser.refuse(sock, refusal)
            log.warning("refused %s: %s", ip, refusal)
            return
        try:
            thread.start()
        except RuntimeError:
            log.exception("could not start a thread for %s", ip)
            conn.abort("disconnected")
            self.forget(conn)
            sock.close()

    def forget(self, conn: Connection) -> None:
        """A connection's thread is ending."""
        with self._lock:
            if self._connections.pop(conn, None) is not None:
                ip = conn.address[0]
                self._per_address[ip] -= 1
                if self._per_address[ip] <= 0:
                    del self._per_address[ip]

    def needs_password(self, name: str) -> bool:
        """Would logging in as ``name`` need a password (registered name, private server)?"""
        if self._password_hash is not None:
            return True
        try:
            assert self.storage is not None
            return self.storage.account(name_key(normalize_name(name))) is not None
        except InvalidName:
            return False

    def authenticate(self, conn: Connection, hello: p.Hello) -> bool:
        """Check bans and passwords before the hub admits ``hello``; True for an admin.

        A registered name needs its account password; otherwise a private server needs the
        server password. Failures are counted per address and per account; past the limit an
        attempt fails without being checked. Every failure says the same thing.
        """
        if self._closed:
            raise LoginRefused(p.SERVER_FULL, "the server is shutting down")
        storage = self.storage
        assert storage is not None
        address = conn.address[0]
        if storage.is_banned("address", address):
            raise LoginRefused(p.BANNED, "you are banned from this server")
        try:
            key: str | None = name_key(normalize_name(hello.name))
        except InvalidName:
            key = None  # the hub refuses the name itself
        if key is not None and storage.is_banned("name", key):
            raise LoginRefused(p.BANNED, "this name is banned from this server")
        account = storage.account(key) if key is not None else None
        owner = hello.owner is not None and hmac.compare_digest(hello.owner, self.owner_token)
        needed = account[1] if account is not None else self._password_hash
        if needed is not None and not owner:
            if not self.throttle.allowed(address, key):
                raise LoginRefused(p.AUTH_FAILED, "wrong name or password; wait a minute")
            if hello.password is None or not verify_password(needed, hello.password):
                self.throttle.failed(address, key)
                log.warning("failed login for %r from %s", hello.name[:40], address)
                raise LoginRefused(p.AUTH_FAILED, "wrong name or password")
        return owner or (account is not None and account[2] == "admin")

    # -- information ------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str | None:
        """The TLS certificate's SHA-256 fingerprint (lowercase hex), or None with TLS off."""
        return None if self.certificate is None else self.certificate.fingerprint

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def title(self) -> str:
        return self.config.title

    def people_count(self) -> int:
        return self.hub.people_count()

    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def join_addresses(self) -> list[str]:
        """What people can type to join: ``host:port`` for each usable address."""
        return [_host_port(a, self.port) for a in local_addresses(self.address[0])]


def _host_port(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def local_addresses(bound: str) -> list[str]:
    """The addresses others can reach a server bound to ``bound`` on: for a wildcard bind,
    every non-loopback, non-link-local address of the machine (loopback only when there is
    nothing else); else the bound address itself."""
    if bound not in ("0.0.0.0", "::", ""):
        return [bound]
    found: list[str] = []
    try:
        import ifaddr

        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                raw = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
                try:
                    parsed = ipaddress.ip_address(raw)
                except ValueError:
                    continue
                if parsed.is_loopback or parsed.is_link_local or parsed.is_multicast:
                    continue
                if bound == "0.0.0.0" and parsed.version != 4:
                    continue
                found.append(str(parsed))
    except (ImportError, OSError):
        log.warning("could not list network interfaces")
    found.sort(key=lambda a: (":" in a, a))
    return found or ["127.0.0.1"]
