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


SERVER_PASSWORD = "\x00server"  # the throttle's account for the server password
# (control characters are never in a name key, so these cannot clash with a real account)


def room_account(room_key: str) -> str:
    """The throttle's account for a room's password."""
    return f"\x00room:{room_key}"


class AuthThrottle:
    """Failed password checks, throttled so that guessing is slow and nobody can lock out
    someone else.

    - Per (address, account): ``free`` failures, then each further attempt must wait
      ``base * 2**k`` seconds after the last failure (k = failures past ``free``), at most
      ``max_wait``. A success from that address clears it.
    - Per account (an account name key, :data:`SERVER_PASSWORD`, or :func:`room_account`), from
      all addresses together: at most ``budget`` failures per ``window`` seconds. Past it,
      attempts are refused unchecked, except from an address that succeeded for that account
      before, or from someone resuming a session of it (``trusted``): strangers' failures never
      block them.
    """

    def __init__(
        self,
        free: int = 5,
        base: float = 2.0,
        max_wait: float = 900.0,
        budget: int = 20,
        window: float = 60.0,
    ) -> None:
        self.free, self.base, self.max_wait = free, base, max_wait
        self.budget, self.window = budget, window
        self._lock = threading.Lock()
        self._pairs: dict[tuple[str, str], tuple[int, float]] = {}  # -> (failures, last)
        self._recent: dict[str, deque[float]] = {}  # account -> failure times in the window
        self._trusted: dict[tuple[str, str], None] = {}  # (address, account), oldest first

    def wait(self, address: str, account: str, *, trusted: bool = False) -> float:
        """Seconds before ``address`` may try a password for ``account`` (0: now)."""
        now = time.monotonic()
        with self._lock:
            count, last = self._pairs.get((address, account), (0, 0.0))
            pair_wait = 0.0
            if count >= self.free:
                delay = min(self.max_wait, self.base * 2 ** (count - self.free))
                pair_wait = max(0.0, last + delay - now)
            if pair_wait > 0 or trusted or (address, account) in self._trusted:
                return pair_wait
            recent = self._window(account, now)
            if len(recent) >= self.budget:
                return max(0.0, recent[0] + self.window - now)
            return 0.0

    def failed(self, address: str, account: str) -> None:
        now = time.monotonic()
        with self._lock:
            count, _last = self._pairs.get((address, account), (0, 0.0))
            self._pairs[(address, account)] = (count + 1, now)
            self._window(account, now).append(now)
            if len(self._pairs) > 10_000:  # forget idle entries so memory stays bounded
                horizon = now - max(self.max_wait, self.window)
                for pair in [k for k, (_n, t) in self._pairs.items() if t < horizon]:
                    del self._pairs[pair]
                for acct in [a for a in self._recent if not self._window(a, now)]:
                    del self._recent[acct]

    def succeeded(self, address: str, account: str) -> None:
        with self._lock:
            self._pairs.pop((address, account), None)
            self._trusted.pop((address, account), None)
            self._trusted[(address, account)] = None
            if len(self._trusted) > 10_000:
                del self._trusted[next(iter(self._trusted))]

    def _window(self, account: str, now: float) -> deque[float]:
        times = self._recent.setdefault(account, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times
