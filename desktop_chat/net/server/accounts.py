"""Passwords: hashing (argon2id), the server password, and brute-force throttling.

Passwords are hashed with argon2id (``argon2-cffi``) at t=3, m=19 MiB, p=1: above OWASP's
minimum (t=2, m=19 MiB, p=1). They are never logged and never stored in the clear; the optional
server password is held only as a hash too.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD = 8
MAX_PASSWORD = 1024

_hasher = PasswordHasher(time_cost=3, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(pw_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(pw_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_PASSWORD:
        return f"a password needs at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"a password can have at most {MAX_PASSWORD} characters"
    return None


class AuthThrottle:
    """At most ``limit`` failed logins per ``window`` seconds for one address and for one
    account; past that, attempts fail without even checking the password."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def allowed(self, address: str, account: str | None) -> bool:
        now = time.monotonic()
        with self._lock:
            keys = [f"ip:{address}"] + ([f"acct:{account}"] if account else [])
            return all(len(self._recent(k, now)) < self.limit for k in keys)

    def failed(self, address: str, account: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            for key in [f"ip:{address}"] + ([f"acct:{account}"] if account else []):
                self._recent(key, now).append(now)
            if len(self._failures) > 10_000:  # forget idle entries so memory stays bounded
                for key in [k for k, v in self._failures.items() if not self._recent(k, now)]:
                    del self._failures[key]
