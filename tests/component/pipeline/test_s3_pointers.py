"""S3 pointers (``resolve_s3_pointers``) against moto_server's S3: the payload is POSTed in full in
place of the pointer, S3 failures are failed deliveries with one clear line, and the object is
deleted after success only when asked."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiobotocore.session
import pytest
from structlog.testing import LogCapture

from tests.component.conftest import SettingsFactory, queue_counts
from tests.component.pipeline.test_delivery_logs import events
from tests.support.iam import IamMoto, allow, as_moto_checks
from tests.support.polling import wait_until, wait_until_async
from tests.support.worker import RecordingWorker

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"


@pytest.fixture
async def s3(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """An S3 client on moto_server; the daemon finds the same endpoint in AWS_ENDPOINT_URL_S3."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_url)
    session = aiobotocore.session.get_session()
    async with session.create_client("s3", endpoint_url=moto_url, region_name="us-east-1") as client:
        yield client


@pytest.fixture
async def bucket(s3: Any) -> str:
    name = f"payloads-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(Bucket=name)
    return name


def pointer_body(bucket: str, key: str, cls: str = POINTER_CLASS) -> str:
    return json.dumps([cls, {"s3BucketName": bucket, "s3Key": key}])


def size_attribute(size: int, name: str = "ExtendedPayloadSize") -> dict[str, Any]:
    return {name: {"DataType": "Number", "StringValue": str(size)}}


async def send_pointer(
    sqs: Any, queue_url: str, bucket: str, key: str, size: int, attribute: str = "ExtendedPayloadSize"
) -> str:
    response = await sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=pointer_body(bucket, key),
        MessageAttributes={
            **size_attribute(size, attribute),
            "Kind": {"DataType": "String", "StringValue": "big"},
        },
    )
    return str(response["MessageId"])


@pytest.mark.parametrize(
    ("http_client", "attribute"), [("lean", "ExtendedPayloadSize"), ("aiohttp", "SQSLargePayloadSize")]
)
async def test_pointer_resolved_and_posted_in_full(
    sqs: Any,
    s3: Any,
    bucket: str,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    http_client: str,
    attribute: str,
) -> None:
    """The worker gets the object's bytes (hash-checked) with its Content-Length, the message's
    other attributes, and not the size attribute; the message is deleted, the object kept."""
    payload = os.urandom(1024 * 1024 + 17)
    await s3.put_object(Bucket=bucket, Key="big/1", Body=payload)
    msgid = await send_pointer(sqs, queue_url, bucket, "big/1", len(payload), attribute)
    settings = make_settings(resolve_s3_pointers=True, http_client=http_client)
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="delivered and deleted")
    [delivery] = worker.by_msgid(msgid)
    assert hashlib.sha256(delivery.body).digest() == hashlib.sha256(payload).digest()
    assert delivery.header("Content-Length") == str(len(payload))
    assert delivery.header("Transfer-Encoding") is None
    assert delivery.header("X-Aws-Sqsd-Attr-Kind") == "big"
    assert delivery.header(f"X-Aws-Sqsd-Attr-{attribute}") is None
    assert (await s3.head_object(Bucket=bucket, Key="big/1"))["ContentLength"] == len(payload)


async def test_object_deleted_after_the_message_when_asked(
    sqs: Any,
    s3: Any,
    bucket: str,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
) -> None:
    """delete_s3_payload_after_success: the object goes once SQS deleted its message."""
    await s3.put_object(Bucket=bucket, Key="k", Body=b"payload")
    msgid = await send_pointer(sqs, queue_url, bucket, "k", 7)
    settings = make_settings(resolve_s3_pointers=True, delete_s3_payload_after_success=True)

    async def gone() -> bool:
        listed = await s3.list_objects_v2(Bucket=bucket)
        return listed.get("KeyCount", 0) == 0

    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="message deleted")
        await wait_until_async(gone, what="object deleted")
    assert [d.body for d in worker.by_msgid(msgid)] == [b"payload"]


async def test_missing_object_or_wrong_size_is_a_failed_delivery_left_to_sqs(
    sqs: Any,
    s3: Any,
    bucket: str,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    info_logs: LogCapture,
) -> None:
    """NoSuchKey, and an object of another size than the attribute announces (overwritten?): no
    POST, one s3-pointer-fetch-failed line each naming bucket, key, status and code; both messages
    stay in the queue for a retry."""
    missing = await send_pointer(sqs, queue_url, bucket, "missing", 10)
    await s3.put_object(Bucket=bucket, Key="k", Body=b"12345")
    mismatched = await send_pointer(sqs, queue_url, bucket, "k", 6)
    settings = make_settings(resolve_s3_pointers=True, error_visibility_timeout=60)
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.counters.retried == 2, what="both failed and retried later")
    assert worker.deliveries == []
    lines = {line["message_id"]: line for line in events(info_logs, "s3-pointer-fetch-failed")}
    assert len(lines) == 2
    fields = ("bucket", "key", "status", "code")
    assert tuple(lines[missing][f] for f in fields) == (bucket, "missing", 404, "NoSuchKey")
    assert tuple(lines[mismatched][f] for f in fields) == (bucket, "k", 200, "SizeMismatch")
    assert "the object is 5 bytes" in lines[mismatched]["error"]
    assert await queue_counts(sqs, queue_url) == (0, 2)  # invisible for their retry delay, not deleted


NOT_POINTERS: list[tuple[str, dict[str, Any]]] = [
    (pointer_body("b", "k"), {}),  # no size attribute: a producer's own JSON
    (json.dumps(["other.Class", {"s3BucketName": "b", "s3Key": "k"}]), size_attribute(3)),
    (json.dumps([POINTER_CLASS, {"s3BucketName": "b"}]), size_attribute(3)),
    (json.dumps([POINTER_CLASS, {"s3BucketName": "b", "s3Key": "k"}, 1]), size_attribute(3)),
    ("[not json", size_attribute(3)),
]


async def test_other_messages_are_posted_unchanged(
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
) -> None:
    """Only the exact pointer shape with its size attribute is resolved; no S3 call otherwise."""
    sent = {}
    for body, attributes in NOT_POINTERS:
        kwargs: dict[str, Any] = {"MessageAttributes": attributes} if attributes else {}
        response = await sqs.send_message(QueueUrl=queue_url, MessageBody=body, **kwargs)
        sent[response["MessageId"]] = (body, attributes)
    async with run_daemon(make_settings(resolve_s3_pointers=True)) as daemon:
        await wait_until(lambda: daemon.counters.deleted == len(sent), what="all delivered and deleted")
    for msgid, (body, attributes) in sent.items():
        [delivery] = worker.by_msgid(msgid)
        assert delivery.body == body.encode()
        for name in attributes:
            assert delivery.header(f"X-Aws-Sqsd-Attr-{name}") == "3"


async def test_pointer_posted_as_is_when_the_feature_is_off(
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
) -> None:
    """Stock behaviour by default: the pointer itself, size attribute included."""
    msgid = await send_pointer(sqs, queue_url, "b", "k", 3)
    async with run_daemon(make_settings()) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="delivered and deleted")
    [delivery] = worker.by_msgid(msgid)
    assert delivery.body == pointer_body("b", "k").encode()
    assert delivery.header("X-Aws-Sqsd-Attr-ExtendedPayloadSize") == "3"


async def test_denied_read_is_a_failed_delivery(
    iam_moto: IamMoto,
    worker: RecordingWorker,
    run_daemon: Any,
    info_logs: LogCapture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A role without s3:GetObject: AccessDenied (403) logged, no POST, the message left to SQS."""
    from asqsd.config import load_settings

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", iam_moto.url)
    name = uuid.uuid4().hex[:12]
    async with iam_moto.client("sqs") as sqs, iam_moto.client("s3") as s3:
        queue_url = (await sqs.create_queue(QueueName=f"q-{name}"))["QueueUrl"]
        await s3.create_bucket(Bucket=f"b-{name}")
        await s3.put_object(Bucket=f"b-{name}", Key="k", Body=b"abc")
        await send_pointer(sqs, queue_url, f"b-{name}", "k", 3)
        actions = as_moto_checks(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"])
        key = await iam_moto.create_user([allow([*actions, "sqs:GetQueueAttributes"])])
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key.secret_access_key)
        settings = load_settings(
            {
                "queue_url": queue_url,
                "endpoint_url": iam_moto.url,
                "http_url": "http://127.0.0.1",
                "http_port": worker.port,
                "wait_time_s": 1,
                "visibility_timeout": 30,
                "delete_batch_wait_s": 0.01,
                "error_visibility_timeout": 60,
                "resolve_s3_pointers": True,
            },
            env={},
        ).settings
        async with run_daemon(settings) as daemon:
            await wait_until(lambda: daemon.counters.retried == 1, what="failed and retried later")
    assert worker.deliveries == []
    [line] = events(info_logs, "s3-pointer-fetch-failed")
    assert (line["status"], line["code"]) == (403, "AccessDenied")
