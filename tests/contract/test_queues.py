"""Queue life cycle: create, look up, attributes, list, purge, delete."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.contract.helpers import counts, new_queue, receive
from tests.emulator.support import unique


async def test_create_get_url_and_idempotent_create(sqs: Any) -> None:
    name = unique("c")
    url = (await sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "7"}))["QueueUrl"]
    assert url.endswith(f"/{name}")
    assert (await sqs.get_queue_url(QueueName=name))["QueueUrl"] == url
    again = await sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "7"})
    assert again["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueNameExists):
        await sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "8"})


async def test_missing_queue_raises_modelled_exception(sqs: Any) -> None:
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as excinfo:
        await sqs.get_queue_url(QueueName=unique("missing"))
    assert excinfo.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    url = await new_queue(sqs)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        await sqs.send_message(QueueUrl=url + "-missing", MessageBody="x")


async def test_queue_attributes(sqs: Any) -> None:
    url = await new_queue(sqs, VisibilityTimeout="45", DelaySeconds="0", MessageRetentionPeriod="3600")
    attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))["Attributes"]
    name = url.rsplit("/", 1)[1]
    assert attributes["QueueArn"].startswith("arn:aws:sqs:us-east-1:")
    assert attributes["QueueArn"].endswith(f":{name}")
    assert attributes["VisibilityTimeout"] == "45"
    assert attributes["MessageRetentionPeriod"] == "3600"
    assert attributes["MaximumMessageSize"] == "1048576"
    await sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "5"})
    selected = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"]))[
        "Attributes"
    ]
    assert selected == {"VisibilityTimeout": "5"}


async def test_approximate_counts(sqs: Any) -> None:
    url = await new_queue(sqs)
    await sqs.send_message(QueueUrl=url, MessageBody="a")
    await sqs.send_message(QueueUrl=url, MessageBody="b")
    await sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    assert len(await receive(sqs, url, VisibilityTimeout=60)) == 1
    assert await counts(sqs, url) == (1, 1, 1)


async def test_list_purge_delete(sqs: Any) -> None:
    prefix = unique("list")
    urls = [(await sqs.create_queue(QueueName=f"{prefix}-{index}"))["QueueUrl"] for index in range(2)]
    listed = (await sqs.list_queues(QueueNamePrefix=prefix))["QueueUrls"]
    assert sorted(listed) == sorted(urls)
    await sqs.send_message(QueueUrl=urls[0], MessageBody="x")
    await sqs.purge_queue(QueueUrl=urls[0])
    assert await receive(sqs, urls[0]) == []
    await sqs.delete_queue(QueueUrl=urls[0])
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        await sqs.get_queue_url(QueueName=f"{prefix}-0")
    assert (await sqs.list_queues(QueueNamePrefix=prefix))["QueueUrls"] == [urls[1]]


@pytest.mark.aws_strict("accepts out-of-range queue attribute values")
@pytest.mark.parametrize("attribute", [{"VisibilityTimeout": "43201"}, {"MessageRetentionPeriod": "10"}])
async def test_invalid_attribute_values_rejected(sqs: Any, attribute: dict[str, str]) -> None:
    with pytest.raises(ClientError):
        await sqs.create_queue(QueueName=unique("c"), Attributes=attribute)
