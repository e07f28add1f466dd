"""The emulator through a real SDK (aiobotocore): protocol shape, modelled errors, AWS-strict limits."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError

from asqsd.emulator import Emulator
from asqsd.emulator.checksums import md5_of_json_attributes
from tests.emulator.support import sqs_client, unique
from tests.support.polling import wait_until

# aiohttp (inside aiobotocore) warns when it sends a request body over 1 MiB; these tests must.
LARGE_BODY_WARNING = "ignore:Sending a large body:ResourceWarning"


async def make_queue(sqs: Any, name: str | None = None, **attributes: str) -> str:
    response = await sqs.create_queue(QueueName=name or unique(), Attributes=attributes)
    return str(response["QueueUrl"])


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


async def test_queue_url_uses_the_request_host(emulator: Emulator) -> None:
    async with sqs_client(f"http://localhost:{emulator.port}") as sqs:
        url = await make_queue(sqs, "hosted")
    assert url == f"http://localhost:{emulator.port}/000000000000/hosted"
    assert emulator.queue_url("hosted") == f"http://127.0.0.1:{emulator.port}/000000000000/hosted"


async def test_queue_is_resolved_by_last_path_segment(sqs: Any, emulator: Emulator) -> None:
    await make_queue(sqs, "jobs")
    await sqs.send_message(QueueUrl="http://elsewhere.example/123456789012/jobs", MessageBody="x")
    assert emulator.counters("jobs")["visible"] == 1


@pytest.mark.parametrize(
    ("call", "exception"),
    [
        (lambda sqs, url: sqs.get_queue_url(QueueName="missing"), "QueueDoesNotExist"),
        (lambda sqs, url: sqs.send_message(QueueUrl=url + "-missing", MessageBody="x"), "QueueDoesNotExist"),
        (
            lambda sqs, url: sqs.delete_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": "h"} for i in range(11)]
            ),
            "TooManyEntriesInBatchRequest",
        ),
        (lambda sqs, url: sqs.delete_message_batch(QueueUrl=url, Entries=[]), "EmptyBatchRequest"),
        (
            lambda sqs, url: sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "1"}, {"Id": "a", "MessageBody": "2"}]
            ),
            "BatchEntryIdsNotDistinct",
        ),
        (
            lambda sqs, url: sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": "a b", "MessageBody": "1"}]
            ),
            "InvalidBatchEntryId",
        ),
        (
            lambda sqs, url: sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x" * 300_000} for i in range(4)]
            ),
            "BatchRequestTooLong",
        ),
        (lambda sqs, url: sqs.delete_message(QueueUrl=url, ReceiptHandle="junk"), "ReceiptHandleIsInvalid"),
        (
            lambda sqs, url: sqs.send_message(QueueUrl=url, MessageBody="bad \x00 char"),
            "InvalidMessageContents",
        ),
        (
            lambda sqs, url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Nope"]),
            "InvalidAttributeName",
        ),
        (
            lambda sqs, url: sqs.create_queue(
                QueueName=url.rsplit("/", 1)[1], Attributes={"DelaySeconds": "3"}
            ),
            "QueueNameExists",
        ),
    ],
)
@pytest.mark.filterwarnings(LARGE_BODY_WARNING)
async def test_errors_are_modelled_exceptions(sqs: Any, call: Any, exception: str) -> None:
    url = await make_queue(sqs)
    with pytest.raises(getattr(sqs.exceptions, exception)):
        await call(sqs, url)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"WaitTimeSeconds": 21},
        {"MaxNumberOfMessages": 11},
        {"MaxNumberOfMessages": 0},
        {"VisibilityTimeout": 43201},
    ],
)
async def test_receive_parameter_ranges(sqs: Any, kwargs: dict[str, int]) -> None:
    url = await make_queue(sqs)
    with pytest.raises(ClientError) as excinfo:
        await sqs.receive_message(QueueUrl=url, **kwargs)
    assert error_code(excinfo) == "InvalidParameterValue"


async def test_stale_handle_change_visibility_is_message_not_inflight(sqs: Any) -> None:
    url = await make_queue(sqs)
    await sqs.send_message(QueueUrl=url, MessageBody="x")
    first = (await sqs.receive_message(QueueUrl=url, VisibilityTimeout=0))["Messages"][0]
    second = (await sqs.receive_message(QueueUrl=url))["Messages"][0]
    with pytest.raises(sqs.exceptions.MessageNotInflight):
        await sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=5
        )
    await sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])  # accepted, no effect
    attributes = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
    await sqs.delete_message(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"])


@pytest.mark.filterwarnings(LARGE_BODY_WARNING)
async def test_message_size_limit_is_one_mebibyte(sqs: Any) -> None:
    url = await make_queue(sqs)
    await sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_576)
    with pytest.raises(ClientError) as excinfo:
        await sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_577)
    assert error_code(excinfo) == "InvalidParameterValue"
    attrs = {"a": {"DataType": "String", "StringValue": "x" * 10}}
    with pytest.raises(ClientError):
        await sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_570, MessageAttributes=attrs)


async def test_batch_entry_errors_are_per_entry(sqs: Any) -> None:
    url = await make_queue(sqs)
    response = await sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "ok", "MessageBody": "fine"},
            {"Id": "bad", "MessageBody": "\x01"},
            {
                "Id": "attr",
                "MessageBody": "x",
                "MessageAttributes": {"AWS.x": {"DataType": "String", "StringValue": "1"}},
            },
        ],
    )
    assert [entry["Id"] for entry in response["Successful"]] == ["ok"]
    failed = {entry["Id"]: entry for entry in response["Failed"]}
    assert failed["bad"]["Code"] == "InvalidMessageContents"
    assert failed["attr"]["Code"] == "InvalidParameterValue"
    assert all(entry["SenderFault"] for entry in failed.values())


async def test_message_attribute_selection_and_md5(sqs: Any) -> None:
    url = await make_queue(sqs)
    attributes: dict[str, dict[str, Any]] = {
        "trace.id": {"DataType": "String", "StringValue": "abc"},
        "trace.span": {"DataType": "Number", "StringValue": "12"},
        "blob": {"DataType": "Binary.gz", "BinaryValue": b"\x00\xff"},
    }
    sent = await sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes=attributes)
    wire: dict[str, dict[str, str]] = {
        name: {"DataType": value["DataType"], "BinaryValue": base64.b64encode(value["BinaryValue"]).decode()}
        if "BinaryValue" in value
        else value
        for name, value in attributes.items()
    }
    assert sent["MD5OfMessageAttributes"] == md5_of_json_attributes(wire)
    message = (
        await sqs.receive_message(QueueUrl=url, MessageAttributeNames=["trace.*"], VisibilityTimeout=0)
    )["Messages"][0]
    assert set(message["MessageAttributes"]) == {"trace.id", "trace.span"}
    subset = {name: wire[name] for name in ("trace.id", "trace.span")}
    assert message["MD5OfMessageAttributes"] == md5_of_json_attributes(subset)
    message = (await sqs.receive_message(QueueUrl=url, MessageAttributeNames=["blob"]))["Messages"][0]
    assert message["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\xff"


async def test_system_attribute_selection(sqs: Any) -> None:
    url = await make_queue(sqs, unique() + ".fifo", FifoQueue="true", ContentBasedDeduplication="true")
    await sqs.send_message(
        QueueUrl=url,
        MessageBody="x",
        MessageGroupId="g",
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-abc"}},
    )
    message = (
        await sqs.receive_message(
            QueueUrl=url, AttributeNames=["SentTimestamp"], MessageSystemAttributeNames=["SequenceNumber"]
        )
    )["Messages"][0]
    assert set(message["Attributes"]) == {"SentTimestamp", "SequenceNumber"}
    await sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    message = (await sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["All"]))["Messages"][0]
    assert message["Attributes"]["SenderId"] == "AIDAEMULATOR000000000"
    assert message["Attributes"]["AWSTraceHeader"] == "Root=1-abc"
    assert message["Attributes"]["MessageGroupId"] == "g"
    assert message["Attributes"]["ApproximateReceiveCount"] == "2"


async def test_list_queues_paginates(sqs: Any) -> None:
    prefix = unique("page")
    for index in range(3):
        await make_queue(sqs, f"{prefix}-{index}")
    first = await sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2)
    assert len(first["QueueUrls"]) == 2
    second = await sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2, NextToken=first["NextToken"])
    assert [url.rsplit("/", 1)[1] for url in second["QueueUrls"]] == [f"{prefix}-2"]
    assert "QueueUrls" not in await sqs.list_queues(QueueNamePrefix="nothing-matches")


async def test_tags_round_trip(sqs: Any) -> None:
    url = (await sqs.create_queue(QueueName=unique(), tags={"team": "a"}))["QueueUrl"]
    await sqs.tag_queue(QueueUrl=url, Tags={"env": "test"})
    await sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert (await sqs.list_queue_tags(QueueUrl=url))["Tags"] == {"env": "test"}


async def test_unknown_operation_is_rejected(emulator: Emulator) -> None:
    headers = {"X-Amz-Target": "AmazonSQS.AddPermission", "Content-Type": "application/x-amz-json-1.0"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(emulator.endpoint_url, data=b"{}", headers=headers) as resp,
    ):
        assert resp.status == 400
        assert resp.headers["x-amzn-query-error"].endswith(";Sender")
        assert (await resp.json(content_type=None))["__type"].endswith("UnknownOperationException")
        headers["X-Amz-Target"] = "AmazonSQS.ListQueues"
    async with (
        aiohttp.ClientSession() as session,
        session.post(emulator.endpoint_url, data=b"[", headers=headers) as resp,
    ):
        assert resp.status == 400


async def test_long_poll_wakes_one_waiter_per_message(sqs: Any, emulator: Emulator) -> None:
    url = await make_queue(sqs)
    started = time.monotonic()
    polls = [asyncio.create_task(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)) for _ in range(2)]
    await wait_until(lambda: emulator.poller.parked == 2, what="both receives parked")
    await sqs.send_message(QueueUrl=url, MessageBody="only one")
    done, pending = await asyncio.wait(polls, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(done.pop().result()["Messages"]) == 1
    assert time.monotonic() - started < 1.5
    loser = await pending.pop()
    assert "Messages" not in loser
    assert time.monotonic() - started >= 1.9  # the loser waited for its own deadline


async def test_long_poll_wakes_on_visibility_expiry_and_delay(sqs: Any) -> None:
    url = await make_queue(sqs)
    await sqs.send_message(QueueUrl=url, MessageBody="x")
    await sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)
    started = time.monotonic()
    again = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)
    assert again["Messages"] and time.monotonic() - started < 3
    await sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)
    started = time.monotonic()
    later = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)
    assert later["Messages"][0]["Body"] == "later"
    assert 0.8 < time.monotonic() - started < 3


async def test_queue_default_wait_time_applies(sqs: Any) -> None:
    url = await make_queue(sqs, ReceiveMessageWaitTimeSeconds="1")
    started = time.monotonic()
    assert "Messages" not in await sqs.receive_message(QueueUrl=url)
    assert time.monotonic() - started >= 0.9


async def test_stop_releases_parked_receives() -> None:
    emulator = Emulator()
    await emulator.start()
    async with sqs_client(emulator.endpoint_url) as sqs:
        url = await make_queue(sqs)
        poll = asyncio.create_task(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20))
        await wait_until(lambda: emulator.poller.parked == 1, what="receive parked")
        started = time.monotonic()
        await emulator.stop()
        assert "Messages" not in await poll
        assert time.monotonic() - started < 5
