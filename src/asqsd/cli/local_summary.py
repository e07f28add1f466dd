"""``asqsd local``'s live summary: a ``queue-summary`` line every few seconds while the queue changes.

The figures are the embedded emulator's own exact counts for the work queue: messages sent,
deleted (delivered and done), waiting (visible or delayed), in flight (received, not yet settled)
and moved to the dead-letter queue by the redrive policy. A quiet queue logs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from asqsd.emulator import Emulator
from asqsd.logs import get_logger

SUMMARY_INTERVAL_S = 5.0

log = get_logger("local")


def queue_figures(emulator: Emulator, queue: str) -> dict[str, int]:
    """The summary's figures for ``queue``, from the emulator's counters."""
    counts = emulator.counters(queue)
    return {
        "sent": counts["sent"],
        "deleted": counts["deleted"],
        "waiting": counts["visible"] + counts["delayed"],
        "in_flight": counts["in_flight"],
        "dead_lettered": counts["redriven_out"],
    }


async def log_summaries(
    emulator: Emulator, queue: str, last: dict[str, int], interval_s: float = SUMMARY_INTERVAL_S
) -> None:
    """Every ``interval_s``, one ``queue-summary`` line if a figure differs from ``last`` (then the
    new ``last``); runs until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        figures = queue_figures(emulator, queue)
        if figures != last:
            log.info("queue-summary", queue=queue, **figures)
            last = figures


@contextlib.asynccontextmanager
async def queue_summaries(
    emulator: Emulator, queue: str, interval_s: float = SUMMARY_INTERVAL_S
) -> AsyncIterator[None]:
    """Summaries while inside, of the changes from the figures on entry."""
    task = asyncio.create_task(log_summaries(emulator, queue, queue_figures(emulator, queue), interval_s))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
