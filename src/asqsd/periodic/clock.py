"""The clock periodic tasks run on, as an interface, so tests can drive time.

:class:`SystemClock` is wall time and ``asyncio.sleep``; tests pass a controllable clock to the
election and the scheduler instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time and sleeping on it; injectable so tests can run minutes in seconds.

    The lease and the schedule are wall-clock facts shared between hosts (epoch seconds in
    DynamoDB), so this is ``time.time()``, not the monotonic clock.
    """

    def time(self) -> float:
        """Now, in epoch seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` of this clock have passed."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        """``time.time()``."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(max(0.0, seconds))


async def wait_first(*awaitables: Awaitable[object]) -> None:
    """Wait until the first of ``awaitables`` finishes (e.g. a sleep, or an event being set).

    The others are cancelled and awaited, so nothing is left running; callers then look at the
    state they care about rather than at which awaitable won.
    """
    waiters = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    for waiter in done:
        waiter.result()  # a failure of the one that finished is the caller's to see
