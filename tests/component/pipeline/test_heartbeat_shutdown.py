"""Heartbeat (no second consumer during a long job) and the shutdown that loses nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from tests.component.conftest import SettingsFactory, queue_counts
from tests.support.polling import wait_until, wait_until_async
from tests.support.worker import Delivery, RecordingWorker


def gated(gate: asyncio.Event, status: int = 200) -> Any:
    async def handler(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        await gate.wait()
        return web.Response(status=status)

    return handler


async def test_heartbeat_keeps_a_long_job_leased(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """visibility_timeout=2 and a job held until the lease was extended 3 times (≥ 3 s, longer than
    the timeout): the message is delivered once and then deleted."""
    gate = asyncio.Event()
    worker.handler = gated(gate)
    await sqs.send_message(QueueUrl=queue_url, MessageBody="long")
    async with run_daemon(
        make_settings(visibility_timeout=2, inactivity_timeout=60, http_connections=2)
    ) as daemon:
        await wait_until(lambda: daemon.counters.extended >= 3, timeout_s=15, what="3 extensions")
        assert len(worker.deliveries) == 1
        gate.set()
        await wait_until(lambda: daemon.counters.deleted == 1, what="delete")
        assert daemon.counters.lease_lost == 0
    assert len(worker.deliveries) == 1


async def test_without_heartbeat_a_long_job_is_delivered_twice(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """Stock behaviour (heartbeat off): SQS hands the message out again while the job runs."""
    gate = asyncio.Event()
    worker.handler = gated(gate)
    msgid = (await sqs.send_message(QueueUrl=queue_url, MessageBody="long"))["MessageId"]
    try:
        async with run_daemon(
            make_settings(visibility_timeout=1, inactivity_timeout=60, heartbeat=False, http_connections=2)
        ) as daemon:
            await wait_until(lambda: len(worker.by_msgid(msgid)) == 2, timeout_s=15, what="second delivery")
            assert daemon.counters.extended == 0
            gate.set()
    finally:
        gate.set()


async def test_buffered_messages_are_released_at_shutdown(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """1. One connection busy on a held job, two more messages buffered (the buffer of 3 is only
    refilled once empty), one never received. 2. Stop. 3. The buffered ones are visible again at
    once (visibility 0); the in-flight one finishes within the grace period and is deleted.
    Nothing is lost: visible + deleted = sent."""
    gate = asyncio.Event()
    worker.handler = gated(gate)
    await sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(4)]
    )
    settings = make_settings(http_connections=1, channel_capacity=3, visibility_timeout=60)
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: worker.in_flight == 1, what="one in flight")
        await wait_until(lambda: daemon.pipeline.channel.stats().buffered == 2, what="2 buffered")
        daemon.request_stop()

        async def released() -> bool:
            return (await queue_counts(sqs, queue_url))[0] == 3

        await wait_until_async(released, what="buffered messages visible again")
        assert len(worker.deliveries) == 1
        gate.set()
    assert daemon.counters.released == 2
    assert daemon.counters.deleted == 1
    assert daemon.counters.abandoned == 0
    assert await queue_counts(sqs, queue_url) == (3, 0)


async def test_grace_period_over_leaves_in_flight_message_to_sqs(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A job still running when the grace period ends is abandoned: not deleted, not released."""
    gate = asyncio.Event()
    worker.handler = gated(gate)
    await sqs.send_message(QueueUrl=queue_url, MessageBody="slow")
    try:
        settings = make_settings(http_connections=1, shutdown_grace_s=0.5, visibility_timeout=60)
        async with run_daemon(settings) as daemon:
            await wait_until(lambda: worker.in_flight == 1, what="in flight")
        assert daemon.counters.abandoned == 1
        assert daemon.counters.deleted == 0
        assert daemon.counters.released == 0
        assert await queue_counts(sqs, queue_url) == (0, 1)
    finally:
        gate.set()


async def test_second_stop_request_forces_exit(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """With a 60 s grace period, a second request ends the wait at once; the job is abandoned."""
    gate = asyncio.Event()
    worker.handler = gated(gate)
    await sqs.send_message(QueueUrl=queue_url, MessageBody="slow")
    try:
        async with run_daemon(make_settings(http_connections=1, shutdown_grace_s=60)) as daemon:
            await wait_until(lambda: worker.in_flight == 1, what="in flight")
            daemon.request_stop()
            daemon.request_stop()
        assert daemon.forced
        assert daemon.counters.abandoned == 1
    finally:
        gate.set()


async def test_drain_mode_delivers_buffered_messages_within_grace(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """release_buffered_on_shutdown=false: the buffered message is delivered before exit instead of
    being released; the one never received stays in the queue."""
    gate = asyncio.Event()
    worker.handler = gated(gate)
    await sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(3)]
    )
    settings = make_settings(http_connections=1, channel_capacity=2, release_buffered_on_shutdown=False)
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: worker.in_flight == 1, what="one in flight")
        await wait_until(lambda: daemon.pipeline.channel.stats().buffered == 1, what="1 buffered")
        daemon.request_stop()
        gate.set()
    assert daemon.counters.deleted == 2
    assert daemon.counters.released == 0
    assert await queue_counts(sqs, queue_url) == (1, 0)


async def test_poll_outstanding_at_stop_is_released(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A long poll in progress at stop is allowed to finish; a message it brings back is released
    (visible again), not delivered."""
    async with run_daemon(make_settings(wait_time_s=5, receivers=1)) as daemon:
        await wait_until(lambda: daemon.pipeline.receivers_polling == 1, what="a poll outstanding")
        daemon.request_stop()
        await sqs.send_message(QueueUrl=queue_url, MessageBody="late")
    assert worker.deliveries == []
    assert daemon.counters.received == 1
    assert daemon.counters.released == 1
    assert await queue_counts(sqs, queue_url) == (1, 0)
