"""Long polling: park empty ReceiveMessage calls and wake them as messages become receivable.

One future per parked call, in arrival order.  When n messages become available (sent, visibility expired,
delay ended, FIFO group unblocked) the first n waiters are woken; each retries its receive and, if another
consumer got there first, parks again until its own deadline (as moto and AWS behave).  A per-queue timer
fires when the earliest in-flight or delayed message is due, but only while someone is waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from asqsd.emulator.messages import Message
from asqsd.emulator.queues import Queue
from asqsd.emulator.store import Store

_TIMER_SLACK = 0.001


class LongPoller:
    """The store's listener: owns parked receives and the visibility/delay timers that wake them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiters: dict[int, deque[asyncio.Future[None]]] = {}
        self._timers: dict[int, tuple[float, asyncio.TimerHandle]] = {}
        self._closed = False

    @property
    def parked(self) -> int:
        """Receives currently waiting (all queues)."""
        return sum(len(waiters) for waiters in self._waiters.values())

    def available(self, queue: Queue, count: int) -> None:
        waiters = self._waiters.get(queue.uid)
        while waiters and count > 0:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)
                count -= 1

    def scheduled(self, queue: Queue, when: float) -> None:
        if self._waiters.get(queue.uid):
            self._arm(queue, when)

    def deleted(self, queue: Queue) -> None:
        self._wake_all(queue.uid)

    def reopen(self) -> None:
        """Accept parked receives again after :meth:`close` (an emulator restarted in place)."""
        self._closed = False

    def close(self) -> None:
        """Release every parked receive (they return empty) and stop all timers."""
        self._closed = True
        for uid in list(self._waiters):
            self._wake_all(uid)

    def _wake_all(self, uid: int) -> None:
        for future in self._waiters.pop(uid, ()):
            if not future.done():
                future.set_result(None)
        timer = self._timers.pop(uid, None)
        if timer is not None:
            timer[1].cancel()

    async def wait(self, queue: Queue, seconds: float, attempt: Callable[[], list[Message]]) -> list[Message]:
        """Retry ``attempt`` whenever woken until it returns messages or ``seconds`` have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._closed and not queue.deleted:
            future: asyncio.Future[None] = loop.create_future()
            waiters = self._waiters.setdefault(queue.uid, deque())
            waiters.append(future)
            due = self._store.next_due(queue)
            if due is not None:
                self._arm(queue, due)
            timer = loop.call_at(deadline, _resolve, future)
            try:
                await future
            finally:
                timer.cancel()
                self._discard(queue, future)
            messages = attempt()
            if messages or loop.time() >= deadline:
                return messages
        return []

    def _discard(self, queue: Queue, future: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(queue.uid)
        if waiters is None:
            return
        with contextlib.suppress(ValueError):  # already popped by available()
            waiters.remove(future)
        if not waiters:
            del self._waiters[queue.uid]
            timer = self._timers.pop(queue.uid, None)
            if timer is not None:
                timer[1].cancel()

    def _arm(self, queue: Queue, due: float) -> None:
        current = self._timers.get(queue.uid)
        if current is not None:
            if current[0] <= due:
                return
            current[1].cancel()
        delay = max(0.0, due - self._store.clock()) + _TIMER_SLACK
        handle = asyncio.get_running_loop().call_later(delay, self._fire, queue)
        self._timers[queue.uid] = (due, handle)

    def _fire(self, queue: Queue) -> None:
        self._timers.pop(queue.uid, None)
        if queue.deleted:
            return
        self._store.reap(queue)  # wakes waiters through available()
        if self._waiters.get(queue.uid):
            due = self._store.next_due(queue)
            if due is not None:
                self._arm(queue, due)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
