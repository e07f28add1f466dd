"""FIFO queues: per-group order, one at a time per group, groups in parallel, no overtaking."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

from aiohttp import web

from tests.component.conftest import SettingsFactory, queue_counts
from tests.support.polling import wait_until
from tests.support.worker import Delivery, RecordingWorker


async def fifo_queue(sqs: Any) -> str:
    response = await sqs.create_queue(
        QueueName=f"f-{uuid.uuid4().hex[:10]}.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )
    return str(response["QueueUrl"])


async def send_groups(sqs: Any, url: str, groups: str, per_group: int) -> None:
    for group in groups:
        await sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": f"{group}{i}", "MessageGroupId": group}
                for i in range(per_group)
            ],
        )


class GroupTracker:
    """Worker handler: records per-group order and concurrency; holds each request briefly."""

    def __init__(self, fail_once: set[str] | None = None) -> None:
        self.order: dict[str, list[str]] = defaultdict(list)
        self.active: dict[str, int] = defaultdict(int)
        self.max_active_per_group = 0
        self.max_active = 0
        self.fail_once = set(fail_once or ())
        self.gate = asyncio.Event()

    async def __call__(self, _request: web.Request, delivery: Delivery) -> web.StreamResponse:
        body = delivery.body.decode()
        group = body[0]
        self.order[group].append(body)
        self.active[group] += 1
        self.max_active_per_group = max(self.max_active_per_group, self.active[group])
        self.max_active = max(self.max_active, sum(self.active.values()))
        try:
            # Hold until several groups are in flight together (or briefly, once released).
            if not self.gate.is_set():
                async with asyncio.timeout(2):
                    await self.gate.wait()
        except TimeoutError:
            pass
        finally:
            self.active[group] -= 1
        if body in self.fail_once:
            self.fail_once.discard(body)
            return web.Response(status=500)
        return web.Response(status=200)


async def test_groups_in_order_one_at_a_time_and_in_parallel(
    sqs: Any, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """3 groups × 4 messages, 6 connections: each group in send order with never two of a group
    in flight; different groups overlap."""
    url = await fifo_queue(sqs)
    await send_groups(sqs, url, "ABC", 4)
    tracker = GroupTracker()
    worker.handler = tracker
    async with run_daemon(make_settings(queue_url=url, http_connections=6)) as daemon:
        assert daemon.fifo
        await wait_until(lambda: tracker.max_active >= 2, what="two groups in flight together")
        tracker.gate.set()
        await wait_until(lambda: daemon.counters.deleted == 12, timeout_s=20, what="all deleted")
    assert tracker.max_active_per_group == 1
    for group in "ABC":
        assert tracker.order[group] == [f"{group}{i}" for i in range(4)]
    assert await queue_counts(sqs, url) == (0, 0)


async def test_failed_message_is_not_overtaken_by_its_group(
    sqs: Any, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A1 fails once: A2 and A3 (already received) are released, not delivered before A1's
    retry; the group's successes stay in order. Group B is unaffected."""
    url = await fifo_queue(sqs)
    await send_groups(sqs, url, "AB", 4)
    tracker = GroupTracker(fail_once={"A1"})
    tracker.gate.set()
    worker.handler = tracker
    settings = make_settings(queue_url=url, http_connections=4, error_visibility_timeout=1)
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 8, timeout_s=30, what="all deleted")
        assert daemon.counters.released >= 1
    assert tracker.order["A"] == ["A0", "A1", "A1", "A2", "A3"]
    assert tracker.order["B"] == ["B0", "B1", "B2", "B3"]
