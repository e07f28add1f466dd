"""Worker outages: while the worker cannot be reached, stop spending the messages' receive attempts.

Every failed delivery normally gets the error visibility and costs a receive attempt, so a worker
restarting for half a minute sends a queue's backlog to its dead-letter queue. :class:`WorkerOutage`
watches delivery results: after ``threshold`` unreachable results in a row (no connection could be
opened: refused, connect timeout; optionally some statuses) it opens.
While open, dispatchers hold their message (leased, so the heartbeat keeps it invisible) and
receivers pause; a probe loop checks the worker with backoff and, when it answers, lets the held
messages be posted again (they are already in the dispatchers, so they go before anything new);
the first result that reaches the worker ends the outage. A message is
never held past :data:`HOLD_LIMIT_S` after its first receive (SQS refuses visibility beyond 12
hours), and shutdown releases the held messages like buffered ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from asqsd.backoff import Backoff
from asqsd.clients.worker.base import DeliveryResult
from asqsd.logs import get_logger
from asqsd.message import Message
from asqsd.observe.counters import Counters

log = get_logger("outage")

# SQS keeps a message invisible at most 12 hours after the receive that returned its handle; a
# held message is let go this long after its *first* receive (never later than its current one),
# leaving a quarter of an hour for the release itself.
HOLD_LIMIT_S = 12 * 3600 - 900

# DeliveryResult.error of both worker clients when no connection to the worker could be opened
# (clients/worker/lean_impl.py, clients/worker/aiohttp_impl.py). A connection closed or reset
# after the request was written does not count, even before any response byte: the worker may
# have processed the message, and posting it again at once would process it twice.
_UNREACHABLE_PREFIXES = ("connection failed:", "connect timeout")

# Probe pacing: about 0.25, 0.5, 1, 2, 4, 5, 5 ... seconds (half of each kept, so it grows).
PROBE_BASE_S = 0.25
PROBE_CAP_S = 5.0


def is_unreachable(result: DeliveryResult, statuses: frozenset[int]) -> bool:
    """True for a failure that says the worker is not there (or answered one of ``statuses``)."""
    if result.status is not None:
        return result.status in statuses
    return (result.error or "").startswith(_UNREACHABLE_PREFIXES)


class WorkerOutage:
    """The outage state machine.

    closed --(``threshold`` unreachable results in a row)--> open --(probe answers)--> trial
    --(a result that reached the worker)--> closed; trial --(an unreachable result)--> open again,
    the same outage (a TCP probe cannot tell a worker answering 503 from a healthy one, so the
    held messages themselves are the test). While open, messages are held and receivers wait;
    in trial both go on. ``probe`` checks the worker (the ``healthcheck`` setting); ``spawn``
    starts the probe loop as a task of the pipeline. :meth:`stop` (shutdown) ends it for good:
    holders are woken to release their messages and nothing is held any more.
    """

    def __init__(
        self,
        *,
        threshold: int,
        statuses: frozenset[int],
        probe: Callable[[], Awaitable[bool]],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        counters: Counters,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._threshold = threshold
        self._statuses = statuses
        self._probe = probe
        self._spawn = spawn
        self._counters = counters
        self._clock = clock
        self._wall_clock = wall_clock
        self._streak = 0
        self._closed = asyncio.Event()
        self._closed.set()
        self._stopped = False
        self._started_at = 0.0
        self._generation = 0  # which opening a probe loop belongs to
        self._probe_task: asyncio.Task[None] | None = None
        # Kept across trials, so a worker that keeps failing is probed less and less often.
        self._backoff = Backoff(PROBE_BASE_S, PROBE_CAP_S, jitter=0.5)
        self.is_open = False  # holding messages and pausing receivers now
        self.active = False  # an outage is open or on trial (the gauge, readiness)
        self.opened = asyncio.Event()  # set while open: for observers and tests
        self.probes = 0  # probes made in the current (or last) outage
        self.held = 0  # holds in the current (or last) outage

    def record(self, result: DeliveryResult, message: Message) -> bool:
        """Note a delivery result; True means hold ``message`` instead of settling it. A result
        that reached the worker ends the streak of unreachable ones (and an outage on trial)."""
        if not is_unreachable(result, self._statuses):
            self._streak = 0
            if self.active:
                self._end("worker-answered")
            return False
        if self._stopped or self._hold_left(message) <= 0:
            return False
        if self.is_open:
            return True
        if self.active:
            self._open()  # the trial failed: same outage, held again
            return True
        self._streak += 1
        if self._streak < self._threshold:
            return False
        self._start(result)
        return True

    async def hold(self, message: Message) -> bool:
        """Keep ``message`` until the outage is no longer open: True to post it again, False to
        release it (shutdown, or it reached the hold limit)."""
        self.held += 1
        left = self._hold_left(message)
        try:
            if left <= 0:
                raise TimeoutError
            async with asyncio.timeout(left):
                await self._closed.wait()
        except TimeoutError:
            log.warning("worker-outage-hold-limit", message_id=message.message_id, detail="released")
            return False
        return not self._stopped

    async def wait_until_closed(self) -> None:
        """Return once no outage is open (at once when none is)."""
        await self._closed.wait()

    def stop(self) -> None:
        """Shutdown: wake every holder (they release their messages) and hold nothing more."""
        self._stopped = True
        if self.active:
            self._end("shutdown")
        if self._probe_task is not None:
            self._probe_task.cancel()  # a probe in progress is only a connect: nothing to finish

    def _hold_left(self, message: Message) -> float:
        first = message.attributes.get("ApproximateFirstReceiveTimestamp", "")
        if not first.isdigit():
            return HOLD_LIMIT_S  # no timestamp: counted from now
        return int(first) / 1000 + HOLD_LIMIT_S - self._wall_clock()

    def _start(self, result: DeliveryResult) -> None:
        self.active = True
        self._started_at = self._clock()
        self.probes = 0
        self.held = 0
        self._backoff.reset()
        self._counters.worker_outages += 1
        log.warning(
            "worker-outage-started",
            error=result.error,
            status=result.status,
            failures=self._streak,
            detail="receiving paused; held messages keep their receive count",
        )
        self._open()

    def _open(self) -> None:
        self.is_open = True
        self._generation += 1
        self._closed.clear()
        self.opened.set()
        self._probe_task = self._spawn(self._probe_until_up(self._generation))

    def _trial(self) -> None:
        # The probe answered: held messages are posted again and receivers go on; the first
        # result tells whether the outage is over.
        self.is_open = False
        self.opened.clear()
        self._closed.set()

    def _end(self, reason: str) -> None:
        if self.is_open:
            self._trial()
        self.active = False
        self._streak = 0
        log.info(
            "worker-outage-ended",
            reason=reason,
            duration_s=round(self._clock() - self._started_at, 3),
            messages_held=self.held,
            probes=self.probes,
        )

    async def _probe_until_up(self, generation: int) -> None:
        # Bounded by the outage: ends when a probe answers or this opening is over.
        while self.is_open and generation == self._generation:
            try:
                async with asyncio.timeout(self._backoff.next_delay()):
                    await self._closed.wait()
                return  # no longer open (shutdown, or a delivery reached the worker)
            except TimeoutError:
                pass
            self.probes += 1
            if await self._probe():
                if self.is_open and generation == self._generation:
                    self._trial()
                return
