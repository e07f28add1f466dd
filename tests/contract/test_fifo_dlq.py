"""FIFO queues (ordering, groups, deduplication) and dead-letter redrive."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.contract.helpers import new_queue, queue_arn, receive, redrive_policy


async def test_fifo_group_ordering_and_blocking(sqs: Any) -> None:
    url = await new_queue(sqs, ".fifo", ContentBasedDeduplication="true", VisibilityTimeout="60")
    for body, group in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("a3", "a")):
        await sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group)
    [a1] = await receive(sqs, url)
    assert a1["Body"] == "a1"
    others = await receive(sqs, url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in others] == ["b1"]  # group a is blocked while a1 is in flight
    assert await receive(sqs, url, MaxNumberOfMessages=10) == []
    await sqs.delete_message(QueueUrl=url, ReceiptHandle=a1["ReceiptHandle"])
    rest = await receive(sqs, url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in rest] == ["a2", "a3"]  # in order, both in one receive


async def test_fifo_explicit_deduplication(sqs: Any) -> None:
    url = await new_queue(sqs, ".fifo")
    for _ in range(2):
        await sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d1")
    await sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d2")
    messages = await receive(sqs, url, MaxNumberOfMessages=10, AttributeNames=["MessageDeduplicationId"])
    assert [m["Attributes"]["MessageDeduplicationId"] for m in messages] == ["d1", "d2"]


async def test_fifo_content_based_deduplication(sqs: Any) -> None:
    url = await new_queue(sqs, ".fifo", ContentBasedDeduplication="true")
    for body in ("same", "same", "other"):
        await sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId="g")
    assert [m["Body"] for m in await receive(sqs, url, MaxNumberOfMessages=10)] == ["same", "other"]


async def test_fifo_batch_with_explicit_ids_has_sequence_numbers(sqs: Any) -> None:
    url = await new_queue(sqs, ".fifo")
    entries = [
        {"Id": str(i), "MessageBody": f"m{i}", "MessageGroupId": "g", "MessageDeduplicationId": f"d{i}"}
        for i in range(3)
    ]
    response = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
    sent = {entry["Id"]: entry["SequenceNumber"] for entry in response["Successful"]}
    assert len(sent) == 3
    messages = await receive(sqs, url, MaxNumberOfMessages=10, AttributeNames=["SequenceNumber"])
    assert [m["Body"] for m in messages] == ["m0", "m1", "m2"]
    assert [m["Attributes"]["SequenceNumber"] for m in messages] == [sent[str(i)] for i in range(3)]


@pytest.mark.aws_strict("sequence numbers are random rather than increasing within a group")
async def test_fifo_sequence_numbers_increase(sqs: Any) -> None:
    url = await new_queue(sqs, ".fifo")
    numbers = []
    for index in range(10):  # 10 random numbers come out sorted by chance once in 3.6 million runs
        sent = await sqs.send_message(
            QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId=str(index)
        )
        numbers.append(int(sent["SequenceNumber"]))
    assert numbers == sorted(numbers)


@pytest.mark.aws_strict("omits SequenceNumber for messages deduplicated by content")
async def test_fifo_content_dedup_has_sequence_numbers(sqs: Any) -> None:
    url = await new_queue(sqs, ".fifo", ContentBasedDeduplication="true")
    sent = await sqs.send_message(QueueUrl=url, MessageBody="single", MessageGroupId="g")
    assert sent.get("SequenceNumber")
    entries = [{"Id": str(i), "MessageBody": f"m{i}", "MessageGroupId": "g"} for i in range(3)]
    response = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert all(entry.get("SequenceNumber") for entry in response["Successful"])


async def test_fifo_rejects_per_message_delay_and_missing_group(sqs: Any) -> None:
    url = await new_queue(sqs, ".fifo", ContentBasedDeduplication="true")
    with pytest.raises(ClientError) as excinfo:
        await sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", DelaySeconds=2)
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as excinfo:
        await sqs.send_message(QueueUrl=url, MessageBody="x")
    assert excinfo.value.response["Error"]["Code"] == "MissingParameter"


async def test_dead_letter_redrive(sqs: Any) -> None:
    dlq = await new_queue(sqs)
    source = await new_queue(sqs, RedrivePolicy=redrive_policy(await queue_arn(sqs, dlq), 2))
    await sqs.send_message(QueueUrl=source, MessageBody="poison")
    for expected in ("1", "2"):
        [message] = await receive(
            sqs, source, VisibilityTimeout=0, AttributeNames=["ApproximateReceiveCount"]
        )
        assert message["Attributes"]["ApproximateReceiveCount"] == expected
    assert await receive(sqs, source, VisibilityTimeout=0) == []  # the third attempt moves it
    [moved] = await receive(sqs, dlq, MessageSystemAttributeNames=["All"])
    assert moved["Body"] == "poison"
    assert moved["MessageId"] == message["MessageId"]
