"""Where a password may travel and what checking one may cost.

- :class:`PlainPasswordRule`: passwords (account, server, room) and ``register`` are accepted
  only over TLS or from loopback, unless the host allowed plain passwords
  (``--allow-plain-passwords``). Whoever sends one over a plain connection from elsewhere gets
  ``tls_required`` with a line saying how to connect securely.
- :class:`ArgonPool`: every argon2 hash and check runs here, at most one per core at a time,
  with a short queue behind; beyond it a request is refused (``rate_limited``) at once. Each
  check costs ~44 ms of a core on purpose, so unbounded guessing would starve the chat.
- :class:`Guard` bundles them with the failure throttle and checks a ``hello`` (bans, owner
  token, passwords) before the hub admits it; the server gives it to the hub.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.names import InvalidName, name_key, normalize_name
from desktop_chat.net.server.accounts import (
    SERVER_PASSWORD,
    AuthThrottle,
    hash_password,
    verify_password,
)
from desktop_chat.net.server.storage_api import ChatStore

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4-mapped loopback (::ffff:127.0.0.1)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@dataclass
class PlainPasswordRule:
    """May a password cross this connection?"""

    allow_plain: bool = False  # the host's --allow-plain-passwords
    trust_loopback: bool = True  # loopback never leaves the machine (tests turn this off)
    tls_on: bool = True  # the server offers TLS at all
    where: str = "<address>:<port>"  # host:port people reach this server at
    fingerprint: str | None = None  # colon-separated, as people compare it

    def refusal(self, secure: bool, address: str) -> str | None:
        """None when a password may be sent; else the words telling the user what to do."""
        if secure or self.allow_plain or (self.trust_loopback and is_loopback(address)):
            return None
        if not self.tls_on:
            return (
                "passwords are not accepted over an unencrypted connection, and this server "
                "has encryption (TLS) turned off: ask the host to turn it on"
            )
        check = f" (certificate fingerprint {self.fingerprint})" if self.fingerprint else ""
        return (
            "passwords are not accepted over an unencrypted connection: connect securely with "
            f"the Desktop Chat app, a browser at https://{self.where}/{check}, or "
            f"`openssl s_client -quiet -connect {self.where}` from a terminal"
        )


class LoginRefused(Exception):
    """A ``hello`` is refused: ``code`` and ``message`` go into the ``error`` reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Busy(Exception):
    """The argon2 pool and its queue are full: refuse now (``rate_limited``)."""


class ArgonPool:
    """At most ``workers`` argon2 computations at once (default: one per core), at most
    ``queue`` more waiting; anything beyond is refused with :class:`Busy`.

    The work runs on the calling connection's thread; the pool only gates it, so it owns no
    threads of its own."""

    def __init__(self, workers: int | None = None, queue: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 2
        self.queue = self.workers * 4 if queue is None else queue
        self._slots = threading.BoundedSemaphore(self.workers)
        self._lock = threading.Lock()
        self._admitted = 0  # running + waiting
        self._running = 0
        self.peak = 0  # most computations ever running at once (for tests and logs)

    def run(self, work: Callable[[], _T]) -> _T:
        with self._lock:
            if self._admitted >= self.workers + self.queue:
                raise Busy("the server is busy checking passwords; try again in a moment")
            self._admitted += 1
        try:
            with self._slots:
                with self._lock:
                    self._running += 1
                    self.peak = max(self.peak, self._running)
                try:
                    return work()
                finally:
                    with self._lock:
                        self._running -= 1
        finally:
            with self._lock:
                self._admitted -= 1

    def hash(self, password: str) -> str:
        return self.run(lambda: hash_password(password))

    def verify(self, pw_hash: str, password: str) -> bool:
        return self.run(lambda: verify_password(pw_hash, password))


@dataclass
class Guard:
    """The server's password rules, shared by the server's login check and the hub."""

    rule: PlainPasswordRule = field(default_factory=PlainPasswordRule)
    pool: ArgonPool = field(default_factory=ArgonPool)
    throttle: AuthThrottle = field(default_factory=AuthThrottle)
    owner_token: str = ""
    password_hash: str | None = None  # the server password's, on a private server

    def is_owner(self, hello: p.Hello) -> bool:
        """Does ``hello`` carry the hosting app's owner token? (Compared as bytes: any text
        a peer sends is compared in constant time, never raising.)"""
        if hello.owner is None or not self.owner_token:
            return False
        given = hello.owner.encode("utf-8", "surrogatepass")
        return hmac.compare_digest(given, self.owner_token.encode("ascii"))

    def authenticate(
        self, storage: ChatStore, hello: p.Hello, *, address: str, secure: bool, owner: bool
    ) -> bool:
        """Check bans and passwords before the hub admits ``hello``; True for an admin (or
        the owner). Raises :class:`LoginRefused`.

        The owner passes bans. A registered name needs its account password; otherwise a
        private server needs the server password; either only over TLS or loopback (see
        :class:`PlainPasswordRule`). Failures go through the throttle; every failure says
        the same thing.
        """
        try:
            key: str | None = name_key(normalize_name(hello.name))
        except InvalidName:
            key = None  # the hub refuses the name itself
        if not owner:
            if storage.is_banned("address", address):
                raise LoginRefused(p.BANNED, "you are banned from this server")
            if key is not None and storage.is_banned("name", key):
                raise LoginRefused(p.BANNED, "this name is banned from this server")
        account = storage.account(key) if key is not None else None
        needed = account[1] if account is not None else self.password_hash
        if hello.password is not None or (needed is not None and not owner):
            refusal = self.rule.refusal(secure, address)
            if refusal is not None:
                raise LoginRefused(p.TLS_REQUIRED, refusal)
        if needed is not None and not owner:
            which = key if account is not None and key is not None else SERVER_PASSWORD
            wait = self.throttle.wait(address, which, trusted=self._resuming(storage, hello, key))
            if wait > 0:
                raise LoginRefused(
                    p.AUTH_FAILED, f"wrong name or password; wait {math.ceil(wait)} s"
                )
            try:
                ok = hello.password is not None and self.pool.verify(needed, hello.password)
            except Busy as exc:
                raise LoginRefused(p.RATE_LIMITED, str(exc)) from exc
            if not ok:
                self.throttle.failed(address, which)
                log.warning("failed login for %r from %s", hello.name[:40], address)
                raise LoginRefused(p.AUTH_FAILED, "wrong name or password")
            self.throttle.succeeded(address, which)
        return owner or (account is not None and account[2] == "admin")

    @staticmethod
    def _resuming(storage: ChatStore, hello: p.Hello, key: str | None) -> bool:
        """A resume of a live session of this name: someone who got in before."""
        if hello.resume is None or key is None:
            return False
        stored = storage.load_session(hello.resume.session)
        return stored is not None and stored.name_key == key
