"""The queue backlog gauge: polls the queue's approximate message counts for autoscalers.

One GetQueueAttributes call per interval (with jittered backoff on errors), only while the
health server is on; its values are exposed as gauges on /metrics. When the IAM policy refuses
``sqs:GetQueueAttributes`` the poller says so once and stops asking: another call every interval
would only fill the account's audit log with denials.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asqsd.backoff import backoff_delay
from asqsd.errors import SQSError
from asqsd.logs import get_logger
from asqsd.observe.gauges import QUEUE_DELAYED, QUEUE_IN_FLIGHT, QUEUE_VISIBLE

log = get_logger("prometheus")


BACKLOG_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


# --- queue backlog ------------------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class QueueBacklog:
    """The queue's approximate counts at one moment (``polled_at`` on the monotonic clock)."""

    visible: int
    in_flight: int
    delayed: int
    polled_at: float


GetAttributes = Callable[[list[str]], Awaitable[dict[str, str]]]


class QueueBacklogPoller:
    """Polls GetQueueAttributes for the backlog every ``interval_s``; never raises.

    Failures are logged (a warning for the first of a streak, then debug) and back off
    exponentially up to ``max_backoff_s``. Values older than ``stale_after_s`` are dropped from
    :meth:`gauges` so a scraper sees "unknown" instead of a stale number.
    """

    def __init__(
        self,
        get_attributes: GetAttributes,
        interval_s: float = 5.0,
        *,
        max_backoff_s: float = 60.0,
        timeout_s: float = 10.0,
        stale_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._get_attributes = get_attributes
        self._interval_s = interval_s
        self._max_backoff_s = max(max_backoff_s, interval_s)
        self._timeout_s = timeout_s
        self._stale_after_s = stale_after_s if stale_after_s is not None else max(60.0, 3 * interval_s)
        self._clock = clock
        self._rng = rng or random.Random()
        self._failures = 0
        self._stopped = asyncio.Event()
        self.latest: QueueBacklog | None = None
        self.denied = False  # the policy refused GetQueueAttributes: no more polls

    @property
    def failures(self) -> int:
        """Consecutive failed polls."""
        return self._failures

    def stop(self) -> None:
        """End :meth:`run` (at once if it is sleeping)."""
        self._stopped.set()

    async def run(self) -> None:
        """Poll until :meth:`stop`, or until the permission to poll is refused."""
        while not self._stopped.is_set():
            ok = await self.poll_once()
            if self.denied:
                return
            await self._sleep(self._interval_s if ok else self.backoff_delay(self._failures))

    async def poll_once(self) -> bool:
        """One poll; True if it updated :attr:`latest`."""
        try:
            async with asyncio.timeout(self._timeout_s):
                attributes = await self._get_attributes(list(BACKLOG_ATTRIBUTES))
            visible, in_flight, delayed = (int(attributes[name]) for name in BACKLOG_ATTRIBUTES)
        except Exception as exc:  # noqa: BLE001 - a metrics poller must outlive any SQS or client error
            if isinstance(exc, SQSError) and exc.denied:
                self._refused(exc)
            else:
                self._failed(exc)
            return False
        if self._failures:
            log.info("backlog-poll-recovered", after_failures=self._failures)
        self._failures = 0
        self.latest = QueueBacklog(visible, in_flight, delayed, self._clock())
        return True

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        level = log.warning if self._failures == 1 else log.debug
        level("backlog-poll-failed", error=repr(exc), failures=self._failures)

    def _refused(self, exc: SQSError) -> None:
        self.denied = True
        log.warning(
            "backlog-poll-denied",
            permission=exc.permission,
            code=exc.code,
            detail="polling stopped: the backlog gauges stay empty until asqsd restarts with it granted",
        )

    def gauges(self) -> dict[str, float]:
        """The latest counts under the :data:`QUEUE_VISIBLE` ... keys; empty if none or stale."""
        latest = self.latest
        if latest is None or self._clock() - latest.polled_at > self._stale_after_s:
            return {}
        return {
            QUEUE_VISIBLE: latest.visible,
            QUEUE_IN_FLIGHT: latest.in_flight,
            QUEUE_DELAYED: latest.delayed,
        }

    def backoff_delay(self, failures: int) -> float:
        """Pause after ``failures`` consecutive failures: doubling from the interval, capped, jittered."""
        # Half jitter: many instances must not poll in step, yet each waits at least half the ceiling.
        return backoff_delay(failures, self._interval_s, self._max_backoff_s, self._rng, jitter=0.5)

    async def _sleep(self, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._stopped.wait()
