"""Dead-lettering by asqsd against moto: dead_letter_statuses, max_retries, a failed send, the refusal."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from aiohttp import web

from asqsd.daemon import Daemon
from asqsd.errors import StartupError
from tests.component.conftest import SettingsFactory, queue_counts
from tests.component.pipeline.test_outcomes import status_handler
from tests.support.polling import wait_until
from tests.support.worker import Delivery, RecordingWorker

BODY = 'héllo ✓ \u2603 😀 <x a="1"/>\n\ttabs & "quotes"'
ATTRIBUTES = {
    "text": {"DataType": "String", "StringValue": "wörld"},
    "count": {"DataType": "Number", "StringValue": "42.5"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff\x10bytes\x80"},
    "typed": {"DataType": "String.custom", "StringValue": "kind"},
}


async def make_queue(sqs: Any, fifo: bool, **attributes: str) -> tuple[str, str]:
    """(url, arn) of a fresh queue."""
    name = f"dl-{uuid.uuid4().hex[:12]}" + (".fifo" if fifo else "")
    if fifo:
        attributes["FifoQueue"] = "true"
    url = str((await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"])
    arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    return url, str(arn)


async def source_with_redrive(sqs: Any, fifo: bool) -> tuple[str, str]:
    """(source url, dead-letter queue url): the source's redrive policy targets the DLQ (10 receives)."""
    dlq_url, dlq_arn = await make_queue(sqs, fifo)
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "10"})
    source_url, _ = await make_queue(sqs, fifo, RedrivePolicy=redrive)
    return source_url, dlq_url


async def receive_one(sqs: Any, queue_url: str) -> dict[str, Any]:
    response = await sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    )
    messages = response.get("Messages") or []
    assert len(messages) == 1, messages
    return dict(messages[0])


@pytest.mark.parametrize("sqs_client", ["lean", "botocore"])
@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
async def test_a_dead_letter_status_moves_the_message_at_once(
    fifo: bool,
    sqs_client: str,
    sqs: Any,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
) -> None:
    """422 with dead_letter_statuses=400,422: one delivery, then the redrive target holds the message
    byte for byte with its attributes and asqsd's reasons, FIFO ids kept; the source is empty.
    Both SQS clients send to the other queue (Binary attributes included)."""
    source_url, dlq_url = await source_with_redrive(sqs, fifo)
    worker.handler = status_handler(422)
    fifo_ids = {"MessageGroupId": "group-1", "MessageDeduplicationId": "dedup-1"} if fifo else {}
    await sqs.send_message(QueueUrl=source_url, MessageBody=BODY, MessageAttributes=ATTRIBUTES, **fifo_ids)
    settings = make_settings(
        queue_url=source_url,
        dead_letter_statuses="400,422",
        error_visibility_timeout=0,
        sqs_client=sqs_client,
    )
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="the source delete")
        assert daemon.counters.dead_lettered == {"status": 1, "max_retries": 0}
        assert daemon.counters.sqs_calls["SendMessage"] == 1
    assert len(worker.deliveries) == 1
    assert await queue_counts(sqs, source_url) == (0, 0)
    moved = await receive_one(sqs, dlq_url)
    assert moved["Body"] == BODY
    attributes = moved["MessageAttributes"]
    for name, value in ATTRIBUTES.items():
        assert attributes[name] == value
    assert attributes["asqsd.dead_letter.reason"] == {"DataType": "String", "StringValue": "status"}
    assert attributes["asqsd.dead_letter.status"] == {"DataType": "Number", "StringValue": "422"}
    assert attributes["asqsd.dead_letter.source_queue"]["StringValue"] == source_url
    assert attributes["asqsd.dead_letter.receive_count"]["StringValue"] == "1"
    assert attributes["asqsd.dead_letter.time"]["StringValue"].endswith("Z")
    if fifo:
        assert moved["Attributes"]["MessageGroupId"] == "group-1"
        assert moved["Attributes"]["MessageDeduplicationId"] == "dedup-1"


async def test_other_failures_are_not_dead_lettered(
    sqs: Any, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A 500 is not listed: retried as usual, nothing sent to the dead-letter queue."""
    source_url, dlq_url = await source_with_redrive(sqs, fifo=False)
    worker.handler = status_handler(500)
    await sqs.send_message(QueueUrl=source_url, MessageBody="job")
    settings = make_settings(queue_url=source_url, dead_letter_statuses="422", error_visibility_timeout=0)
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: len(worker.deliveries) >= 2, what="a retry")
        assert daemon.counters.dead_lettered == {"status": 0, "max_retries": 0}
    assert await queue_counts(sqs, dlq_url) == (0, 0)


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
async def test_max_retries_dead_letters_without_a_redrive_policy(
    fifo: bool, sqs: Any, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """max_retries=2 on a queue without redrive policy, dead_letter_queue_url set: two deliveries,
    then the message is in the dead-letter queue (receive count 2) and gone from the source."""
    source_url, _ = await make_queue(sqs, fifo)
    dlq_url, _ = await make_queue(sqs, fifo)
    worker.handler = status_handler(503)
    fifo_ids = {"MessageGroupId": "g", "MessageDeduplicationId": "d"} if fifo else {}
    await sqs.send_message(QueueUrl=source_url, MessageBody=BODY, **fifo_ids)
    settings = make_settings(
        queue_url=source_url, max_retries=2, dead_letter_queue_url=dlq_url, error_visibility_timeout=0
    )
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="the source delete")
        assert daemon.counters.dead_lettered == {"status": 0, "max_retries": 1}
    assert len(worker.deliveries) == 2
    assert await queue_counts(sqs, source_url) == (0, 0)
    moved = await receive_one(sqs, dlq_url)
    assert moved["Body"] == BODY
    attributes = moved["MessageAttributes"]
    assert attributes["asqsd.dead_letter.reason"]["StringValue"] == "max_retries"
    assert attributes["asqsd.dead_letter.status"]["StringValue"] == "503"
    assert attributes["asqsd.dead_letter.receive_count"]["StringValue"] == "2"
    if fifo:
        assert moved["Attributes"]["MessageGroupId"] == "g"


async def test_a_failed_dead_letter_send_leaves_the_message(
    moto_url: str, sqs: Any, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A dead-letter queue that does not exist: the send fails, nothing is deleted, the message
    comes back (error visibility path) and is still in the source queue after the daemon stops."""
    source_url, _ = await make_queue(sqs, fifo=False)
    worker.handler = status_handler(422)
    await sqs.send_message(QueueUrl=source_url, MessageBody="job")
    missing = f"{moto_url}/123456789012/no-such-queue-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        queue_url=source_url,
        dead_letter_statuses="422",
        dead_letter_queue_url=missing,
        error_visibility_timeout=0,
    )
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.counters.dead_letter_failed >= 2, what="two failed sends")
        assert daemon.counters.deleted == 0
        assert daemon.counters.dead_lettered == {"status": 0, "max_retries": 0}
    visible, in_flight = await queue_counts(sqs, source_url)
    assert visible + in_flight == 1


async def test_max_retries_without_a_known_dead_letter_queue_refuses_to_start(
    sqs: Any, make_settings: SettingsFactory
) -> None:
    """No redrive policy, no dead_letter_queue_url: start-up fails naming the setting, nothing is
    received (so nothing can be deleted)."""
    source_url, _ = await make_queue(sqs, fifo=False)
    await sqs.send_message(QueueUrl=source_url, MessageBody="job")
    daemon = Daemon(make_settings(queue_url=source_url, max_retries=3))
    with pytest.raises(
        StartupError, match=r"max_retries need a dead-letter queue.*set dead_letter_queue_url"
    ):
        await daemon.run()
    assert daemon.counters.received == 0
    assert await queue_counts(sqs, source_url) == (1, 0)


async def test_a_fifo_group_goes_on_after_its_message_was_dead_lettered(
    sqs: Any, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """Group g holds a (answered 422) then b (200): a is moved, then b is delivered, in order."""
    source_url, dlq_url = await source_with_redrive(sqs, fifo=True)

    async def handler(request: web.Request, delivery: Delivery) -> web.StreamResponse:
        return await status_handler(422 if delivery.body == b"a" else 200)(request, delivery)

    worker.handler = handler
    for body in ("a", "b"):
        await sqs.send_message(
            QueueUrl=source_url, MessageBody=body, MessageGroupId="g", MessageDeduplicationId=body
        )
    settings = make_settings(queue_url=source_url, dead_letter_statuses="422", error_visibility_timeout=0)
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 2, what="both deleted")
    assert [d.body for d in worker.deliveries] == [b"a", b"b"]
    assert (await receive_one(sqs, dlq_url))["Body"] == "a"
