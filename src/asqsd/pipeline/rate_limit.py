"""The delivery rate limit (``max_messages_per_s``): a token bucket in front of the dispatchers.

Each POST to the worker takes one token; tokens come back at ``rate_per_s`` and at most
``burst`` of them are saved up while the worker is idle. A token taken from an empty bucket is
owed: the taker learns how long to wait before its POST, and the next taker queues behind it
(the level goes negative), so waiters are served in order and none of them polls.

Receivers follow the bucket too: :meth:`TokenBucket.receivable` is how many messages the
bucket can pass within :data:`RECEIVE_HORIZON_S`, less those already waiting for a token, so a
message is received shortly before it can be delivered, never minutes early (its visibility
timeout runs while it waits). Pure logic on an injectable clock: tests drive it without sleeping.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

# A receive asks for at most what the bucket passes within this many seconds: messages wait about
# this long at most for their token, far less than any visibility timeout.
RECEIVE_HORIZON_S = 1.0
# Shortest and longest pause of a receiver waiting for the bucket: never a busy loop, and a
# change (a dispatcher took the buffered messages) is noticed within a second.
_MIN_WAIT_S = 0.005
_MAX_WAIT_S = 1.0


class TokenBucket:
    """``rate_per_s`` tokens a second, up to ``burst`` saved; starts full."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("need rate_per_s > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def level(self) -> float:
        """Tokens available now; negative while takers wait for tokens still to come."""
        elapsed = max(0.0, self._clock() - self._at)
        return min(float(self.burst), self._tokens + elapsed * self.rate_per_s)

    def reserve(self) -> float:
        """Take one token now; the seconds to wait before using it (0 if it was there)."""
        now = self._clock()
        self._tokens = self.level() - 1.0
        self._at = max(now, self._at)
        return max(0.0, -self._tokens / self.rate_per_s)

    async def take(self) -> None:
        """Take one token, waiting until it is due (a cancelled wait forfeits the token)."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)

    def receivable(self, pending: int) -> int:
        """Messages a receive may ask for now: what the bucket passes within
        :data:`RECEIVE_HORIZON_S`, less ``pending`` (received or being received, no token yet)."""
        return math.floor(self.level() + self.rate_per_s * RECEIVE_HORIZON_S + 1e-9) - pending

    def receive_delay(self, pending: int) -> float:
        """Seconds until :meth:`receivable` is at least 1 (0 if it is now), bounded for re-checks."""
        missing = 1 - self.receivable(pending)
        if missing <= 0:
            return 0.0
        return min(_MAX_WAIT_S, max(_MIN_WAIT_S, missing / self.rate_per_s))
