"""Small helpers for contract tests (they must work the same against moto and the emulator)."""

from __future__ import annotations

import json
from typing import Any

from tests.emulator.support import unique


async def new_queue(sqs: Any, suffix: str = "", **attributes: str) -> str:
    """Create a uniquely named queue; ``suffix=".fifo"`` makes a FIFO queue."""
    if suffix == ".fifo":
        attributes.setdefault("FifoQueue", "true")
    response = await sqs.create_queue(QueueName=unique("c") + suffix, Attributes=attributes)
    return str(response["QueueUrl"])


async def receive(sqs: Any, url: str, **kwargs: Any) -> list[dict[str, Any]]:
    response = await sqs.receive_message(QueueUrl=url, **kwargs)
    return list(response.get("Messages", []))


async def counts(sqs: Any, url: str) -> tuple[int, int, int]:
    """(visible, in flight, delayed) from GetQueueAttributes."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names))["Attributes"]
    visible, in_flight, delayed = (int(attributes[name]) for name in names)
    return visible, in_flight, delayed


async def queue_arn(sqs: Any, url: str) -> str:
    attributes = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def redrive_policy(arn: str, max_receive_count: int) -> str:
    return json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": max_receive_count})
