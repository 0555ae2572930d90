"""The threaded chat server: one acceptor thread, one thread per connection, one flusher.

A :class:`Server` owns all server state (no module globals): the listening socket, the hub,
the storage, the connections and their threads. It is a context manager; :meth:`Server.close`
is idempotent and returns once every thread it started has ended.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
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
from desktop_chat.net.server.accounts import hash_password
from desktop_chat.net.server.connection import Connection
from desktop_chat.net.server.fanout import Member
from desktop_chat.net.server.files import FileStore, default_quota
from desktop_chat.net.server.guard import ArgonPool, Guard, PlainPasswordRule
from desktop_chat.net.server.hub import Hub, LoginRefused
from desktop_chat.net.server.outbox import Flusher
from desktop_chat.net.server.refusal import Refuser
from desktop_chat.net.server.storage_api import ChatStore, open_store
from desktop_chat.net.server.tls import Certificate, ensure_certificate, server_context
from desktop_chat.net.server.transport import Transport

if TYPE_CHECKING:
    from desktop_chat.net.discovery.mdns import Announcer

log = logging.getLogger(__name__)

DEFAULT_PORT = 5151
_JOIN_TIMEOUT = 5.0  # seconds a thread gets to end once told to; more is a bug


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
    allow_plain_passwords: bool = False  # accept passwords over unencrypted connections too
    trust_loopback: bool = True  # loopback counts as safe for passwords (tests turn it off)
    argon_workers: int | None = None  # argon2 checks at once (None: one per core)
    argon_queue: int | None = None  # argon2 checks waiting (None: 4 per worker)

    max_file_size: int = 2 << 30  # bytes per shared file
    files_quota: int | None = None  # bytes for all files; None: min(20 GiB, half the free disk)
    upload_ttl: float = 6 * 3600.0  # seconds an unfinished upload is kept without progress
    # The chat database: None is SQLite in the data folder; a postgresql:// URL is that
    # PostgreSQL database (shared by several server processes).
    database: str | None = None
    # How long a process of a cluster may miss its heartbeat before the others count it dead
    # (they notice within a third more: 7.5 s -> its people are shown leaving within 10 s).
    heartbeat_ttl: float = 7.5

    # Several processes, one chat (see server_workers.py and docs/deploy.md):
    backplane: str | None = None  # redis://… : the fan-out between processes (None: one process)
    reuse_port: bool = False  # bind with SO_REUSEPORT: several processes share the port
    worker: int | None = None  # this process's number among --workers (None: the only one)
    owner_token: str | None = None  # the same host key in every worker (None: a fresh one)


class Server:
    """A chat server. ``with Server(config) as server:`` starts it; leaving the block stops it."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.data_dir = Path(self.config.data_dir or paths.data_dir())
        self.storage: ChatStore | None = None
        self.flusher = Flusher()
        self.hub: Hub  # made by start(), once the storage it needs is open
        self.files: FileStore  # made by start(), beside the storage
        self._file_store: FileStore | None = None
        self._lock = threading.Lock()
        self._connections: dict[Connection, threading.Thread] = {}
        self._per_address: Counter[str] = Counter()
        self._refuser = Refuser(first_bytes_within=min(self.config.sniff_timeout, 1.0))
        self._listener: socket.socket | None = None
        self.certificate: Certificate | None = None
        # The hosting app's key to admin rights (one for all workers when they share it).
        self.owner_token = self.config.owner_token or secrets.token_urlsafe(24)
        self.guard = Guard(
            rule=PlainPasswordRule(
                allow_plain=self.config.allow_plain_passwords,
                trust_loopback=self.config.trust_loopback,
            ),
            pool=ArgonPool(self.config.argon_workers, self.config.argon_queue),
            owner_token=self.owner_token,
        )
        self.announcer: Announcer | None = None
        self._password_hash: str | None = None
        self.tls_context: ssl.SSLContext | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._acceptor: threading.Thread | None = None
        self._started = False
        self._closed = False
        self.stuck_threads: list[str] = []  # threads that did not end when closed (a bug)
        self._own_names_cache: frozenset[str] | None = None
        self.address: tuple[str, int] = (self.config.host, self.config.port)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Server:
        """Open the database, bind the port and start the threads. Raises OSError if the port is
        taken, :class:`~desktop_chat.net.server.storage_api.StorageError` if the database
        cannot be opened."""
        if self._started:
            return self
        self._started = True
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.data_dir, 0o700)  # every DM and password hash is in here
            self.storage = open_store(self.config.database, self.data_dir)
            self.storage.session_ttl = self.config.session_ttl_days * 86400
            self.storage.expire_sessions(self.storage.session_ttl)
            self.hub = Hub(self.config.title, self.storage, self.flusher, guard=self.guard)
            self.flusher.before_send = self.storage.commit
            self.files = self._open_files(self.storage)
            self.hub.load_registered()  # also builds the look-alike table, before any login
            if self.config.backplane:
                self._start_cluster(self.config.backplane)
            if self.config.password:
                self._password_hash = hash_password(self.config.password)
                self.guard.password_hash = self._password_hash
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
        self.guard.rule.where = self.join_addresses()[0]  # named when refusing plain passwords
        self.guard.rule.tls_on = self.certificate is not None
        if self.certificate is not None:
            self.guard.rule.fingerprint = self.certificate.fingerprint_colons
        self.flusher.start()
        if self.config.announce:
            self._start_announcer()
        self._acceptor = threading.Thread(target=self._accept_loop, name="dc-acceptor")
        self._acceptor.start()
        log.info("listening on %s:%d (data in %s)", host, port, self.data_dir)
        return self

    def _start_cluster(self, url: str) -> None:
        from desktop_chat.net.server.backplane import Backplane
        from desktop_chat.net.server.cluster import Cluster

        self.hub.cluster = Cluster(self.hub, Backplane(url, ttl=self.config.heartbeat_ttl))
        self.hub.cluster.start()

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
            reuse_port=self.config.reuse_port,
        )
        sock.setblocking(False)
        return sock

    def _open_files(self, storage: ChatStore) -> FileStore:
        folder = self.data_dir / "files"
        quota = self.config.files_quota
        files = FileStore(
            folder,
            max_file_size=self.config.max_file_size,
            quota=default_quota(folder) if quota is None else quota,
            upload_ttl=self.config.upload_ttl,
            on_expired=storage.mark_file_expired,
        )
        self._file_store = files
        files.start_sweeping()
        return files

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
        """Stop accepting, tell everyone, close every connection, join every thread.

        Storage is closed only once every thread that uses it has ended; a thread that does
        not end is logged as an error and listed in :attr:`stuck_threads` (tests fail on it).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake()
        self._join(self._acceptor)
        if self.announcer is not None:
            self.announcer.close()  # withdraw first: nobody should find a closing server
        if self.storage is not None:  # else start() failed before the hub was made
            self.hub.closing = True
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
            self._join(thread)
        self._refuser.close()
        self.flusher.close()
        if self.flusher.alive:
            self.stuck_threads.append(self.flusher.thread_name)
        self._release()
        log.info("server stopped")

    def _join(self, thread: threading.Thread | None) -> None:
        if thread is None or not thread.is_alive():
            return
        thread.join(timeout=_JOIN_TIMEOUT)
        if thread.is_alive():
            log.error("thread %s did not stop within %.0f s", thread.name, _JOIN_TIMEOUT)
            self.stuck_threads.append(thread.name)

    def _release(self) -> None:
        self.flusher.close()  # safe whether or not it started
        if getattr(self, "hub", None) is not None and self.hub.cluster is not None:
            self.hub.cluster.stop()
        for s in (self._listener, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        if self._file_store is not None:
            self._file_store.stop_sweeping()
            if not self.stuck_threads:
                self._file_store.close()
        if self.storage is not None:
            if self.stuck_threads:
                # Never close the database under a running thread; stop its own background
                # work all the same, so the process can still exit.
                log.error("storage left open: threads still running %s", self.stuck_threads)
                self.storage.stop_background()
            else:
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
                # ECONNABORTED, EPERM (a firewall), …: that one connection is gone, the
                # acceptor is not.
                log.info("accept failed: %s", exc)
                continue
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
                transport = Transport(
                    sock, (ip, addr[1]), self.flusher, outbox_limit=self.config.outbox_limit
                )
                conn = Connection(self, transport)
                thread = threading.Thread(target=conn.run, name=f"dc-conn-{ip}:{addr[1]}")
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

    def is_registered(self, name: str) -> bool:
        try:
            key = name_key(normalize_name(name))
        except InvalidName:
            return False
        assert self.storage is not None
        return self.storage.account(key) is not None

    def authenticate(self, member: Member, hello: p.Hello) -> bool:
        """Check bans and passwords before the hub admits ``hello``; True for an admin (see
        :meth:`Guard.authenticate`). Marks the member as the owner's when it is."""
        if self._closed:
            raise LoginRefused(p.SERVER_FULL, "the server is shutting down")
        assert self.storage is not None
        member.is_owner = self.guard.is_owner(hello)
        return self.guard.authenticate(
            self.storage,
            hello,
            address=member.address[0],
            secure=member.secure,
            owner=member.is_owner,
        )

    def plain_password_refusal(self, member: Member) -> str | None:
        """Why ``member`` may not send a password (it is not encrypted), or None."""
        return self.guard.rule.refusal(member.secure, member.address[0])

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
        return self.hub.people_count() if self.storage is not None else 0

    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def is_own_host(self, host: str, local_host: str) -> bool:
        """Is ``host`` (a ``Host`` header: name or address, port optional) one of ours?

        Ours: the address the request arrived on, every address of this machine, ``localhost``,
        the machine's name and its ``.local`` name. A port, when given, must be ours.
        """
        name, port = _split_host(host)
        if name is None or (port is not None and port != self.port):
            return False
        return name in self._own_names() or name == _bare(local_host)

    def _own_names(self) -> frozenset[str]:
        if self._own_names_cache is None:
            hostname = socket.gethostname().lower().rstrip(".")
            names = {"localhost", "127.0.0.1", "::1", hostname, f"{hostname}.local"}
            short = hostname.split(".", 1)[0]
            names |= {short, f"{short}.local"}
            names.add(_bare(self.address[0]))
            names.update(_bare(a) for a in local_addresses("0.0.0.0"))
            names.update(_bare(a) for a in local_addresses("::"))
            self._own_names_cache = frozenset(n for n in names if n)
        return self._own_names_cache

    def join_addresses(self) -> list[str]:
        """What people can type to join: ``host:port`` for each usable address."""
        return [_host_port(a, self.port) for a in local_addresses(self.address[0])]


def _bare(addr: str) -> str:
    """An address or name as compared: lowercase, no brackets, no zone, no trailing dot."""
    addr = addr.strip().lower().strip("[]").split("%", 1)[0].rstrip(".")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:192.0.2.1 on a dual-stack socket
    return str(mapped or ip)


def _split_host(host: str) -> tuple[str | None, int | None]:
    """``name[:port]`` or ``[v6][:port]`` → (name, port); (None, None) if malformed."""
    host = host.strip()
    port: int | None = None
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None, None
        name, rest = host[1:end], host[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None, None
            rest = rest[1:]
    elif host.count(":") == 1:
        name, rest = host.split(":")
    else:
        name, rest = host, ""
    if rest:
        if not (rest.isascii() and rest.isdigit()) or len(rest) > 5:
            return None, None
        port = int(rest)
    if not name:
        return None, None
    return _bare(name), port


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
