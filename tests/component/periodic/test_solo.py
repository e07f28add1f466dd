"""`asqsd local`'s periodic tasks: the lone-instance scheduler sends each occurrence once, with the
stock task message, to a real emulator over HTTP; a manual clock drives the minutes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from asqsd.cli.local_defaults import LOCAL_REGION
from asqsd.cli.send import Route, open_client
from asqsd.clients.sqs.lean_impl import LeanSQS
from asqsd.emulator import Emulator
from asqsd.message import TASK_NAME_ATTR, TASK_TIME_ATTR
from asqsd.periodic.cron_yaml import parse_cron_yaml
from asqsd.periodic.solo import SoloScheduler
from tests.support.dynamo import ManualClock
from tests.support.polling import wait_until

MINUTE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC).timestamp()
CRON = parse_cron_yaml(
    """\
version: 1
cron:
  - name: "tick"
    url: "/tick"
    schedule: "* * * * *"
  - name: "even"
    url: "/even"
    schedule: "*/2 * * * *"
"""
)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(host="127.0.0.1", port=0) as emu:
        yield emu


@pytest.fixture
async def sqs(emulator: Emulator, request: pytest.FixtureRequest) -> AsyncIterator[LeanSQS]:
    """The lean client on a fresh queue (FIFO when the test's name says so)."""
    fifo = "fifo" in request.node.name
    url = emulator.create_queue("cron.fifo" if fifo else "cron", {"FifoQueue": "true"} if fifo else None)
    async with open_client(Route(url, emulator.endpoint_url, LOCAL_REGION)) as client:
        yield client


async def run_minutes(scheduler: SoloScheduler, clock: ManualClock, counts: list[int]) -> None:
    """Run the scheduler from 11:59:59 through one more minute per entry of ``counts``, expecting
    that many messages sent in total after each; then stop it."""
    running = asyncio.create_task(scheduler.run())
    try:
        for step, expected in zip([1.0] + [60.0] * len(counts), counts, strict=False):
            await wait_until(lambda: clock.sleepers == 1, timeout_s=5, what="the scheduler asleep")
            await clock.advance(step)
            await wait_until(lambda e=expected: scheduler.enqueued == e, timeout_s=5, what=f"{expected} sent")
        await wait_until(lambda: clock.sleepers == 1, timeout_s=5, what="the scheduler asleep")
        scheduler.stop()
        await asyncio.wait_for(running, timeout=2)
    finally:
        running.cancel()


async def test_each_occurrence_is_sent_once_on_schedule(sqs: LeanSQS) -> None:
    """12:00 sends tick and even; 12:01 only tick; the messages are the stock task messages."""
    clock = ManualClock(MINUTE - 1)
    await run_minutes(SoloScheduler(CRON, sqs, clock), clock, [2, 3])
    received = await sqs.receive(max_messages=10, wait_time_s=0, visibility_timeout_s=30)
    attributes = [m.message_attributes for m in received]
    runs = sorted(f"{a[TASK_NAME_ATTR].string_value} {a[TASK_TIME_ATTR].string_value}" for a in attributes)
    assert runs == [
        "even 2030-01-01 12:00:00 UTC",
        "tick 2030-01-01 12:00:00 UTC",
        "tick 2030-01-01 12:01:00 UTC",
    ]


async def test_fifo_queues_get_group_and_deduplication_ids(sqs: LeanSQS) -> None:
    clock = ManualClock(MINUTE - 1)
    await run_minutes(SoloScheduler(CRON[:1], sqs, clock), clock, [1])
    (message,) = await sqs.receive(max_messages=10, wait_time_s=0, visibility_timeout_s=30)
    assert message.group_id == "tick"
