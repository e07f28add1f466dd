"""Visibility timeouts, redelivery, receipt handles and ChangeMessageVisibility."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.contract.helpers import counts, new_queue, receive

ALL = ["All"]


async def test_redelivery_after_visibility_expiry(sqs: Any) -> None:
    """Receive count goes up, first-receive timestamp stays, the receipt handle is new."""
    url = await new_queue(sqs, VisibilityTimeout="1")
    await sqs.send_message(QueueUrl=url, MessageBody="x")
    [first] = await receive(sqs, url, MessageSystemAttributeNames=ALL)
    assert await receive(sqs, url) == []
    assert await counts(sqs, url) == (0, 1, 0)
    started = time.monotonic()
    [second] = await receive(sqs, url, MessageSystemAttributeNames=ALL, WaitTimeSeconds=5)
    assert time.monotonic() - started < 3  # the long poll woke when the visibility ended
    assert second["MessageId"] == first["MessageId"]
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    assert first["Attributes"]["ApproximateReceiveCount"] == "1"
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    first_receive = first["Attributes"]["ApproximateFirstReceiveTimestamp"]
    assert second["Attributes"]["ApproximateFirstReceiveTimestamp"] == first_receive
    await sqs.delete_message(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"])
    assert await counts(sqs, url) == (0, 0, 0)


async def test_change_visibility_extend_then_zero(sqs: Any) -> None:
    url = await new_queue(sqs, VisibilityTimeout="1")
    await sqs.send_message(QueueUrl=url, MessageBody="x")
    [message] = await receive(sqs, url)
    await sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=10
    )
    # Past the original 1 s the message must still be hidden: a 2 s long poll comes back empty.
    assert await receive(sqs, url, WaitTimeSeconds=2) == []
    await sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    [again] = await receive(sqs, url, AttributeNames=["ApproximateReceiveCount"])
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"


async def test_per_call_visibility_timeout(sqs: Any) -> None:
    url = await new_queue(sqs, VisibilityTimeout="600")
    await sqs.send_message(QueueUrl=url, MessageBody="x")
    assert len(await receive(sqs, url, VisibilityTimeout=0)) == 1
    assert len(await receive(sqs, url, VisibilityTimeout=600)) == 1
    assert await receive(sqs, url) == []


async def test_change_visibility_limit(sqs: Any) -> None:
    url = await new_queue(sqs)
    await sqs.send_message(QueueUrl=url, MessageBody="x")
    [message] = await receive(sqs, url)
    with pytest.raises(ClientError) as excinfo:
        await sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=43_201
        )
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValue"


async def test_garbage_receipt_handle(sqs: Any) -> None:
    url = await new_queue(sqs)
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        await sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-receipt-handle")


async def _stale_and_current(sqs: Any, url: str) -> tuple[str, str]:
    await sqs.send_message(QueueUrl=url, MessageBody="x")
    [first] = await receive(sqs, url, VisibilityTimeout=0)
    [second] = await receive(sqs, url, VisibilityTimeout=60)
    return first["ReceiptHandle"], second["ReceiptHandle"]


@pytest.mark.aws_strict("deletes the message even with a stale receipt handle")
async def test_stale_handle_delete_is_accepted_but_deletes_nothing(sqs: Any) -> None:
    url = await new_queue(sqs)
    stale, current = await _stale_and_current(sqs, url)
    await sqs.delete_message(QueueUrl=url, ReceiptHandle=stale)  # accepted...
    assert await counts(sqs, url) == (0, 1, 0)  # ...but the message is still there
    await sqs.delete_message(QueueUrl=url, ReceiptHandle=current)
    assert await counts(sqs, url) == (0, 0, 0)


@pytest.mark.aws_strict("applies ChangeMessageVisibility with a stale receipt handle")
async def test_stale_handle_change_visibility_fails(sqs: Any) -> None:
    url = await new_queue(sqs)
    stale, _current = await _stale_and_current(sqs, url)
    with pytest.raises(sqs.exceptions.MessageNotInflight):
        await sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=stale, VisibilityTimeout=0)
    assert await receive(sqs, url) == []
