"""The delivery rate limit (``max_messages_per_s``): a token bucket in front of the dispatchers.

Each POST to the worker takes one token; tokens come back at ``rate_per_s`` and at most
``burst`` of them are saved up while the worker is idle. Takers queue (first come, first served)
and each takes its token at the moment it POSTs, never on credit: an event loop that stalls
(a CPU-starved host) does not release the tokens its waiters were owed all at once, so no
one-second window of POSTs ever holds more than ``rate_per_s + burst``.

Receivers follow the bucket too: :meth:`TokenBucket.receivable` is how many messages the
bucket can pass within :data:`RECEIVE_HORIZON_S`, less those already waiting for a token, so a
message is received shortly before it can be delivered, never minutes early (its visibility
timeout runs while it waits). The clock and the sleep are injectable: tests drive the bucket on
a manual clock without sleeping.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

# A receive asks for at most what the bucket passes within this many seconds: messages wait about
# this long at most for their token, far less than any visibility timeout.
RECEIVE_HORIZON_S = 1.0
# Shortest and longest pause of a receiver waiting for the bucket: never a busy loop, and a
# change (a dispatcher took the buffered messages) is noticed within a second.
_MIN_WAIT_S = 0.005
_MAX_WAIT_S = 1.0
# Float slack: a token due now is not missed by a rounding error (a sleep ends a hair early).
_EPSILON = 1e-9


class TokenBucket:
    """``rate_per_s`` tokens a second, up to ``burst`` saved; starts full."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("need rate_per_s > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.sleep = sleep
        self._clock = clock
        # A taker that wakes a little late keeps up to this fraction of a token of credit, so the
        # loop's timer latency does not slow the rate down. Kept below what would let a whole
        # extra POST into a one-second window: floor(burst + slack + rate) == floor(burst + rate).
        self._cap = burst + (1.0 - rate_per_s % 1.0) / 2
        self._tokens = float(burst)
        self._at = clock()
        self._turn = asyncio.Lock()  # FIFO: the takers' order is the order they came in
        self.waiting = 0  # takers that have not got their token yet

    def level(self) -> float:
        """Tokens available now: 0 to ``burst``, plus under one token of credit (see ``_cap``)."""
        elapsed = max(0.0, self._clock() - self._at)
        return min(self._cap, self._tokens + elapsed * self.rate_per_s)

    def wait_s(self) -> float:
        """Seconds until a whole token is there; 0 if it is now."""
        missing = 1.0 - self.level()
        return 0.0 if missing <= _EPSILON else missing / self.rate_per_s

    def take_now(self) -> None:
        """Take a token that is there (:meth:`wait_s` is 0)."""
        self._tokens = max(0.0, self.level() - 1.0)
        self._at = self._clock()

    async def take(self) -> None:
        """Wait for a token in turn, then take it (a cancelled wait takes nothing)."""
        self.waiting += 1
        try:
            async with self._turn:
                while True:
                    delay = self.wait_s()
                    if delay == 0:
                        break
                    await self.sleep(delay)
                self.take_now()
        finally:
            self.waiting -= 1

    def receivable(self, pending: int) -> int:
        """Messages a receive may ask for now: what the bucket passes within
        :data:`RECEIVE_HORIZON_S`, less the takers waiting and ``pending`` (received or being
        received, not yet at a dispatcher)."""
        passes = math.floor(self.level() + self.rate_per_s * RECEIVE_HORIZON_S + _EPSILON)
        return passes - self.waiting - pending

    def receive_delay(self, pending: int) -> float:
        """Seconds until :meth:`receivable` is at least 1 (0 if it is now), bounded for re-checks."""
        missing = 1 - self.receivable(pending)
        if missing <= 0:
            return 0.0
        return min(_MAX_WAIT_S, max(_MIN_WAIT_S, missing / self.rate_per_s))
