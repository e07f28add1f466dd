"""Sending and receiving: attributes, MD5s, selections, delays, limits."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from asqsd.emulator.checksums import md5_of_json_attributes
from tests.contract.helpers import counts, new_queue, receive

ATTRIBUTES: dict[str, dict[str, Any]] = {
    "Text": {"DataType": "String", "StringValue": "héllo wörld"},
    "Count": {"DataType": "Number", "StringValue": "42.5"},
    "Blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe\xff"},
    "Custom": {"DataType": "String.uuid", "StringValue": "7f1c"},
}
COUNT = {"DataType": "Number", "StringValue": "42.5"}


def wire(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Attributes as they travel in JSON (binary base64-encoded): what the MD5 helper takes."""
    out = {}
    for name, value in attributes.items():
        if "BinaryValue" in value:
            out[name] = {
                "DataType": value["DataType"],
                "BinaryValue": base64.b64encode(value["BinaryValue"]).decode(),
            }
        else:
            out[name] = dict(value)
    return out


async def test_send_receive_with_attributes_and_md5s(sqs: Any) -> None:
    """Our MD5OfMessageAttributes algorithm agrees with moto's for the same attributes."""
    url = await new_queue(sqs)
    body = "payload ✓"
    sent = await sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=ATTRIBUTES)
    assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    assert sent["MD5OfMessageAttributes"] == md5_of_json_attributes(wire(ATTRIBUTES))
    [message] = await receive(sqs, url, MessageAttributeNames=["All"])
    assert message["Body"] == body
    assert message["MessageId"] == sent["MessageId"]
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["MessageAttributes"] == ATTRIBUTES


async def test_batch_send_md5s(sqs: Any) -> None:
    url = await new_queue(sqs)
    entries = [
        {"Id": f"e{index}", "MessageBody": f"body {index}", "MessageAttributes": {"n": COUNT}}
        for index in range(10)
    ]
    response = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert response.get("Failed", []) == []
    expected_md5 = md5_of_json_attributes({"n": COUNT})
    for entry in response["Successful"]:
        assert entry["MD5OfMessageBody"] == hashlib.md5(f"body {entry['Id'][1:]}".encode()).hexdigest()
        assert entry["MD5OfMessageAttributes"] == expected_md5
    messages = await receive(sqs, url, MaxNumberOfMessages=10)
    assert len(messages) == 10  # all ten in one receive on a shallow queue


async def test_system_attributes(sqs: Any) -> None:
    url = await new_queue(sqs)
    before = int(time.time() * 1000)
    await sqs.send_message(QueueUrl=url, MessageBody="x")
    [message] = await receive(sqs, url, MessageSystemAttributeNames=["All"], VisibilityTimeout=0)
    attributes = message["Attributes"]
    assert {
        "SenderId",
        "SentTimestamp",
        "ApproximateReceiveCount",
        "ApproximateFirstReceiveTimestamp",
    } <= set(attributes)
    assert attributes["ApproximateReceiveCount"] == "1"
    assert (
        before - 1000
        <= int(attributes["SentTimestamp"])
        <= int(attributes["ApproximateFirstReceiveTimestamp"])
    )
    [message] = await receive(sqs, url, AttributeNames=["ApproximateReceiveCount"])
    assert message["Attributes"] == {"ApproximateReceiveCount": "2"}
    await sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    [message] = await receive(sqs, url)
    assert "Attributes" not in message


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["All"], {"Text", "Count", "Blob", "Custom"}),
        ([".*"], {"Text", "Count", "Blob", "Custom"}),
        (["Count", "Blob"], {"Count", "Blob"}),
        (["Nothing"], set()),
    ],
)
async def test_message_attribute_selection(sqs: Any, names: list[str], expected: set[str]) -> None:
    url = await new_queue(sqs)
    await sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes=ATTRIBUTES)
    [message] = await receive(sqs, url, MessageAttributeNames=names)
    assert set(message.get("MessageAttributes", {})) == expected


async def test_delay_seconds(sqs: Any) -> None:
    url = await new_queue(sqs)
    await sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=1)
    assert await receive(sqs, url) == []
    assert await counts(sqs, url) == (0, 0, 1)
    started = time.monotonic()
    [message] = await receive(sqs, url, WaitTimeSeconds=4)
    assert message["Body"] == "delayed"
    assert time.monotonic() - started < 3.5


async def test_queue_delay_seconds(sqs: Any) -> None:
    url = await new_queue(sqs, DelaySeconds="1")
    await sqs.send_message(QueueUrl=url, MessageBody="x")
    assert await receive(sqs, url) == []
    assert len(await receive(sqs, url, WaitTimeSeconds=4)) == 1


@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")
async def test_message_size_limit(sqs: Any) -> None:
    url = await new_queue(sqs)
    await sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_576)
    with pytest.raises(ClientError) as excinfo:
        await sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_577)
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValue"


@pytest.mark.aws_strict("accepts control characters in message bodies")
async def test_invalid_characters_rejected(sqs: Any) -> None:
    url = await new_queue(sqs)
    with pytest.raises(sqs.exceptions.InvalidMessageContents):
        await sqs.send_message(QueueUrl=url, MessageBody="bell \x07")


@pytest.mark.parametrize("kwargs", [{"WaitTimeSeconds": 21}, {"MaxNumberOfMessages": 11}])
async def test_receive_parameters_validated(sqs: Any, kwargs: dict[str, int]) -> None:
    url = await new_queue(sqs)
    with pytest.raises(ClientError) as excinfo:
        await sqs.receive_message(QueueUrl=url, **kwargs)
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValue"
