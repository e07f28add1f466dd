"""Periodic tasks end to end: three daemons, one DynamoDB registry (moto), one queue."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

import pytest

from asqsd.daemon import Daemon
from asqsd.periodic.cron_yaml import parse_cron_yaml
from tests.component.conftest import SettingsFactory
from tests.support.dynamo import AcceleratedClock, dynamodb_client, new_registry
from tests.support.polling import wait_until
from tests.support.worker import RecordingWorker

CRON = 'version: 1\ncron:\n  - name: "tick"\n    url: "/tasks/tick"\n    schedule: "* * * * *"\n'


def task_occurrences(worker: RecordingWorker) -> Counter[str]:
    """Scheduled-At of every 200-answered task delivery (the recording worker answers 200)."""
    return Counter(
        d.header("X-Aws-Sqsd-Scheduled-At") or "?" for d in worker.deliveries if d.path == "/tasks/tick"
    )


async def test_three_daemons_enqueue_each_occurrence_once_and_survive_a_dead_leader(
    moto_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1. Three daemons share a registry table and a queue; cron minutes pass every 3 s.
    2. Each occurrence is delivered exactly once. 3. The leader's periodic tasks die without
    releasing the lease: another daemon leads within the lease time and later occurrences are
    still enqueued exactly once."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_url)
    async with dynamodb_client(moto_url) as client:
        registry = await new_registry(client)
    tasks = parse_cron_yaml(CRON)
    start = (time.time() // 60 + 1) * 60 - 1  # a second before a whole minute
    clock = AcceleratedClock(start, speed=20)
    settings = make_settings(registry_table=registry.name, http_connections=2)
    daemons = [Daemon(settings, tasks=tasks, periodic_clock=clock) for _ in range(3)]
    runs = [asyncio.create_task(d.run()) for d in daemons]
    try:
        await wait_until(lambda: len(task_occurrences(worker)) >= 3, timeout_s=30, what="3 occurrences")
        leaders = [d for d in daemons if d.periodic and d.periodic.election and d.periodic.election.is_leader]
        assert len(leaders) == 1
        leader = leaders[0]
        assert leader.periodic is not None
        for task in leader.periodic._running:  # die without releasing the lease
            task.cancel()
        others = [d for d in daemons if d is not leader]
        lost_at = time.monotonic()
        await wait_until(
            lambda: any(d.periodic and d.periodic.election and d.periodic.election.is_leader for d in others),
            timeout_s=10,
            what="a new leader",
        )
        takeover_s = time.monotonic() - lost_at
        seen = len(task_occurrences(worker))
        await wait_until(
            lambda: len(task_occurrences(worker)) >= seen + 2, timeout_s=30, what="2 more occurrences"
        )
    finally:
        for daemon in daemons:
            daemon.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 40)
    occurrences = task_occurrences(worker)
    assert all(count == 1 for count in occurrences.values()), occurrences
    assert takeover_s < 10 / 20 + 5  # lease (10 clock-s) plus a few check rounds, in real seconds
    deliveries = [d for d in worker.deliveries if d.path == "/tasks/tick"]
    assert all(d.header("X-Aws-Sqsd-Taskname") == "tick" and d.body == b"" for d in deliveries)


async def test_no_cron_yaml_means_no_dynamodb_call(
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without tasks the daemon opens no connection to the DynamoDB endpoint."""
    connections = 0

    async def count(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{port}")
    try:
        await sqs.send_message(QueueUrl=queue_url, MessageBody="plain")
        async with run_daemon(make_settings(registry_table="some-table")) as daemon:
            await wait_until(lambda: daemon.counters.deleted == 1, what="delivery")
            assert daemon.periodic is None
    finally:
        server.close()
    assert connections == 0
