"""Heartbeat: extend the visibility of every held message before its lease lapses.

While a message is buffered or being delivered, SQS must not hand it to another consumer. Every
tick the heartbeat asks the lease table which leases end within the margin and extends them in
batches of 10. A refusal (the handle is stale, the message was redelivered) marks the lease lost:
the message may then be processed twice, which is logged and counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from asqsd.clients.sqs.base import SQSClient, VisibilityEntry
from asqsd.errors import SQSError
from asqsd.logs import get_logger
from asqsd.message import Message
from asqsd.observe.counters import Counters
from asqsd.pipeline.batcher import MAX_BATCH, MISSING_FROM_RESPONSE, EntryFate, classify_entries
from asqsd.pipeline.leases import LeaseTable

log = get_logger("heartbeat")


def timing(visibility_timeout_s: int) -> tuple[float, float]:
    """(tick interval, extension margin): extend once less than half the timeout remains."""
    margin = visibility_timeout_s / 2
    tick = min(max(visibility_timeout_s / 4, 0.2), 5.0)
    return tick, margin


class Heartbeat:
    """Extends leases in the background until :meth:`stop`."""

    def __init__(
        self,
        sqs: SQSClient,
        leases: LeaseTable,
        visibility_timeout_s: int,
        counters: Counters,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sqs = sqs
        self._leases = leases
        self._visibility_timeout_s = visibility_timeout_s
        self._counters = counters
        self._clock = clock
        self._tick_s, self._margin_s = timing(visibility_timeout_s)
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        """End the loop after the current tick."""
        self._stopped.set()

    async def run(self) -> None:
        """Tick until stopped."""
        while not self._stopped.is_set():
            try:
                async with asyncio.timeout(self._tick_s):
                    await self._stopped.wait()
            except TimeoutError:
                await self.beat()

    async def beat(self) -> None:
        """One tick: extend every lease that is about to lapse."""
        due = self._leases.due(self._clock(), self._margin_s)
        for start in range(0, len(due), MAX_BATCH):
            await self._extend(due[start : start + MAX_BATCH])

    async def _extend(self, batch: list[Message]) -> None:
        sent_at = self._clock()
        entries = [
            VisibilityEntry(str(i), m.receipt_handle, self._visibility_timeout_s) for i, m in enumerate(batch)
        ]
        try:
            result = await self._sqs.change_visibility_batch(entries)
        except Exception as exc:  # noqa: BLE001 - SQSError or a client bug: retried next tick either way
            # Try again next tick: the margin leaves several ticks before the lease ends.
            code = exc.code if isinstance(exc, SQSError) else type(exc).__name__
            log.warning("heartbeat-failed", code=code, error=str(exc), messages=len(batch))
            return
        pairs = [(entry.entry_id, message) for entry, message in zip(entries, batch, strict=True)]
        for (_entry_id, message), (fate, failure) in zip(pairs, classify_entries(result, pairs), strict=True):
            if fate is EntryFate.DONE:
                self._counters.extended += 1
                self._leases.extended(message, sent_at + self._visibility_timeout_s)
            elif fate is EntryFate.FAILED:
                self._lost(message, failure or "failed")
            elif failure != MISSING_FROM_RESPONSE:  # missing: simply try again next tick
                log.warning("heartbeat-entry-failed", message_id=message.message_id, code=failure)

    def _lost(self, message: Message, code: str) -> None:
        if message not in self._leases:
            return  # settled while the call was in flight: nothing was lost
        self._counters.lease_lost += 1
        self._leases.mark_lost(message)
        log.warning(
            "lease-lost",
            message_id=message.message_id,
            code=code,
            detail="SQS refused to extend visibility; the message may be delivered again",
        )
