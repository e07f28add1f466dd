"""Batch calls: per-entry results, bogus handles, AWS's batch limits."""

from __future__ import annotations

from typing import Any

import pytest

from tests.contract.helpers import counts, new_queue, receive

BOGUS = "bogus-receipt-handle"


async def _received(sqs: Any, url: str, count: int) -> list[dict[str, Any]]:
    entries = [{"Id": f"m{index}", "MessageBody": f"body {index}"} for index in range(count)]
    await sqs.send_message_batch(QueueUrl=url, Entries=entries)
    return await receive(sqs, url, MaxNumberOfMessages=10, VisibilityTimeout=60)


async def test_delete_batch_with_bogus_handle_fails_that_entry_only(sqs: Any) -> None:
    url = await new_queue(sqs)
    messages = await _received(sqs, url, 3)
    entries = [{"Id": f"d{index}", "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(messages)]
    entries.append({"Id": "bogus", "ReceiptHandle": BOGUS})
    response = await sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    assert sorted(entry["Id"] for entry in response["Successful"]) == ["d0", "d1", "d2"]
    [failed] = response["Failed"]
    assert failed["Id"] == "bogus"
    assert failed["Code"] == "ReceiptHandleIsInvalid"
    assert failed["SenderFault"] is True
    assert await counts(sqs, url) == (0, 0, 0)


async def test_change_visibility_batch_with_bogus_handle(sqs: Any) -> None:
    url = await new_queue(sqs)
    messages = await _received(sqs, url, 2)
    entries = [
        {"Id": f"c{index}", "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
        for index, m in enumerate(messages)
    ]
    entries.append({"Id": "bogus", "ReceiptHandle": BOGUS, "VisibilityTimeout": 0})
    response = await sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
    assert sorted(entry["Id"] for entry in response["Successful"]) == ["c0", "c1"]
    assert [(entry["Id"], entry["SenderFault"]) for entry in response["Failed"]] == [("bogus", True)]
    assert len(await receive(sqs, url, MaxNumberOfMessages=10)) == 2  # visible again at once


_LENIENT = pytest.mark.aws_strict("accepts delete/visibility batches of more than 10 entries")


@pytest.mark.parametrize(
    "operation",
    [
        "send_message_batch",
        pytest.param("delete_message_batch", marks=_LENIENT),
        pytest.param("change_message_visibility_batch", marks=_LENIENT),
    ],
)
async def test_more_than_ten_entries_rejected(sqs: Any, operation: str) -> None:
    url = await new_queue(sqs)
    templates: dict[str, dict[str, Any]] = {
        "send_message_batch": {"MessageBody": "x"},
        "delete_message_batch": {"ReceiptHandle": BOGUS},
        "change_message_visibility_batch": {"ReceiptHandle": BOGUS, "VisibilityTimeout": 0},
    }
    entries = [{"Id": str(index), **templates[operation]} for index in range(11)]
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        await getattr(sqs, operation)(QueueUrl=url, Entries=entries)
    assert await counts(sqs, url) == (0, 0, 0)


async def test_empty_batch_rejected(sqs: Any) -> None:
    url = await new_queue(sqs)
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        await sqs.send_message_batch(QueueUrl=url, Entries=[])


async def test_batch_ids_must_be_distinct(sqs: Any) -> None:
    url = await new_queue(sqs)
    entries = [{"Id": "same", "MessageBody": "a"}, {"Id": "same", "MessageBody": "b"}]
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        await sqs.send_message_batch(QueueUrl=url, Entries=entries)


@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")
async def test_batch_total_size_limit(sqs: Any) -> None:
    url = await new_queue(sqs)
    entries = [{"Id": str(index), "MessageBody": "x" * 300_000} for index in range(4)]
    with pytest.raises(sqs.exceptions.BatchRequestTooLong):
        await sqs.send_message_batch(QueueUrl=url, Entries=entries)
