"""Duplicate suppression (``dedup`` / ``dedup_table``) in running daemons.

SQS is the project's emulator where the test needs AWS's rule for a delete with an outdated
receipt handle (accepted, nothing deleted; moto deletes the message); DynamoDB is moto_server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiobotocore.session
import pytest
from aiohttp import web

from asqsd.clients.dynamodb import TableUnavailableError
from asqsd.daemon import Daemon
from asqsd.emulator import Emulator
from asqsd.errors import StartupError
from tests.component.conftest import SettingsFactory
from tests.support.dynamo import new_dedup_table, new_registry
from tests.support.polling import wait_until
from tests.support.worker import Delivery, RecordingWorker


@pytest.fixture
def dedup_endpoint(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The daemons' DynamoDB client goes to moto_server (botocore reads the variable)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_url)
    return moto_url


@pytest.fixture
async def emulator_sqs() -> AsyncIterator[tuple[Emulator, Any]]:
    """An emulator on 127.0.0.1 with a queue ``jobs``, and an SQS client on it for the test."""
    async with Emulator(host="127.0.0.1", port=0) as emu:
        emu.create_queue("jobs")
        session = aiobotocore.session.get_session()
        async with session.create_client(
            "sqs", endpoint_url=emu.endpoint_url, region_name="us-east-1"
        ) as client:
            yield emu, client


def total(daemons: list[Daemon], counter: str) -> int:
    """A counter summed over the daemons."""
    return sum(int(getattr(d.counters, counter)) for d in daemons)


async def test_two_daemons_post_a_message_once(
    emulator_sqs: tuple[Emulator, Any],
    dynamodb: Any,
    dedup_endpoint: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
) -> None:
    """1. Two daemons with dedup on share a queue and a dedup table; one message is sent.
    2. The daemon that receives it claims it and POSTs; the worker holds that POST.
    3. The test makes the message visible again (ChangeMessageVisibility 0 with the holder's
       receipt handle), as SQS's occasional second delivery of a message would. A daemon
       receives the copy, finds the fresh claim, and leaves it unsent (in progress).
    4. The worker answers 200: the holder records ``processed`` and deletes with its receipt
       handle, which is outdated now, so nothing is deleted (AWS's rule).
    5. When the copy's visibility timeout ends, a daemon receives it again, finds it processed,
       and deletes it without a POST.
    The worker saw one POST and the queue is empty. Not covered: two claims racing each other
    (DynamoDB lets one conditional write win; moto's conditional writes are not atomic)."""
    emu, client = emulator_sqs
    release = asyncio.Event()

    async def hold_the_first(_request: web.Request, delivery: Delivery) -> web.StreamResponse:
        if len(worker.deliveries) == 1:
            await release.wait()
        return web.Response(status=200, text="ok")

    worker.handler = hold_the_first
    settings = make_settings(
        queue_url=emu.queue_url("jobs"),
        endpoint_url=emu.endpoint_url,
        dedup=True,
        dedup_table=await new_dedup_table(dynamodb),
        visibility_timeout=4,
    )
    async with run_daemon(settings) as first, run_daemon(settings) as second:
        daemons = [first, second]
        await client.send_message(QueueUrl=emu.queue_url("jobs"), MessageBody="once")
        await wait_until(lambda: len(worker.deliveries) == 1, what="the first POST")
        held = [m for d in daemons if d.pipeline for m in d.pipeline.leases.held()]
        assert len(held) == 1
        await client.change_message_visibility(
            QueueUrl=emu.queue_url("jobs"), ReceiptHandle=held[0].receipt_handle, VisibilityTimeout=0
        )
        await wait_until(lambda: total(daemons, "duplicates_in_progress") == 1, what="the copy left alone")
        assert len(worker.deliveries) == 1
        release.set()
        await wait_until(
            lambda: total(daemons, "duplicates_suppressed") == 1, timeout_s=20, what="the copy suppressed"
        )
        await wait_until(lambda: emu.counters("jobs")["depth"] == 0, what="an empty queue")
    assert len(worker.deliveries) == 1
    queue = emu.counters("jobs")
    assert (queue["received"], queue["stale_deletes"], queue["deleted"]) == (3, 1, 1)
    assert total(daemons, "dedup_errors") == 0


async def test_a_failing_dedup_table_never_holds_a_message_back(
    sqs: Any,
    queue_url: str,
    dynamodb: Any,
    dedup_endpoint: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
) -> None:
    """1. A daemon starts with dedup on. 2. Its table is deleted: every dedup call now fails.
    3. A message is still POSTed and deleted; the failed claim and the failed record of the
    success are counted (at-least-once comes before duplicate suppression)."""
    table = await new_dedup_table(dynamodb)
    async with run_daemon(make_settings(dedup=True, dedup_table=table)) as daemon:
        await dynamodb.delete_table(TableName=table)
        await sqs.send_message(QueueUrl=queue_url, MessageBody="deliver me anyway")
        await wait_until(lambda: daemon.counters.deleted == 1, what="delivery and delete")
    assert len(worker.deliveries) == 1
    assert daemon.counters.dedup_errors == 2


@pytest.mark.parametrize("table", ["missing", "registry-layout"])
async def test_an_unusable_dedup_table_ends_start_up(
    table: str,
    sqs: Any,
    queue_url: str,
    dynamodb: Any,
    dedup_endpoint: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
) -> None:
    """dedup_table naming no table, or a table whose key is not the stock one (here: the registry
    table's single ``id`` key): start-up fails with an error naming the setting (the CLI exits
    3), before any message is received."""
    name = "no-such-dedup-table" if table == "missing" else (await new_registry(dynamodb)).name
    await sqs.send_message(QueueUrl=queue_url, MessageBody="not yet")
    daemon = Daemon(make_settings(dedup=True, dedup_table=name))
    async with asyncio.timeout(15):
        with pytest.raises(TableUnavailableError) as caught:
            await daemon.run()
    assert isinstance(caught.value, StartupError)
    assert name in str(caught.value) and "check dedup_table" in str(caught.value)
    assert caught.value.code == ("ResourceNotFoundException" if table == "missing" else "ValidationException")
    assert daemon.counters.received == 0 and worker.deliveries == []
