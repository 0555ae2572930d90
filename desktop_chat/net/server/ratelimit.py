"""Flood control: a token bucket per connection."""

from __future__ import annotations

import time


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; each request takes one.

    A rate of 0 or less turns the limit off (used by benchmarks that saturate the server).
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, burst: float, rate: float) -> None:
        self.burst = float(burst)
        self.rate = float(rate)
        self._tokens = self.burst
        self._stamp = time.monotonic()

    def take(self, cost: float = 1.0) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False
