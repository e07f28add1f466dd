"""The emulator's minimal S3 (payload offloading), through a real S3 SDK client, path-style."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import botocore.exceptions
import pytest
from aiobotocore.session import get_session
from botocore.config import Config

from asqsd.emulator import Emulator
from asqsd.emulator.s3 import _decode_aws_chunked
from tests.emulator.support import NO_RETRIES, sqs_client

PATH_STYLE = Config(s3={"addressing_style": "path"})


@pytest.fixture
async def s3(emulator: Emulator) -> AsyncIterator[Any]:
    """An S3 client for the emulator, path-style, no retries."""
    async with sqs_client(emulator.endpoint_url, NO_RETRIES.merge(PATH_STYLE), service="s3") as client:
        yield client


async def test_put_get_head_delete(s3: Any, emulator: Emulator) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    await s3.create_bucket(Bucket="payloads")
    put = await s3.put_object(Bucket="payloads", Key="a/b c.bin", Body=data)
    assert put["ETag"] == f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'
    assert emulator.s3.buckets["payloads"]["a/b c.bin"] == data
    head = await s3.head_object(Bucket="payloads", Key="a/b c.bin")
    assert head["ContentLength"] == len(data)
    got = await s3.get_object(Bucket="payloads", Key="a/b c.bin")
    async with got["Body"] as body:
        assert await body.read() == data
    await s3.delete_object(Bucket="payloads", Key="a/b c.bin")
    await s3.delete_object(Bucket="payloads", Key="a/b c.bin")  # missing: still a success, as S3
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        await s3.get_object(Bucket="payloads", Key="a/b c.bin")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"


async def test_bucket_created_implicitly_and_missing_bucket_named(s3: Any) -> None:
    await s3.put_object(Bucket="implicit", Key="k", Body=b"x")
    assert (await s3.head_object(Bucket="implicit", Key="k"))["ContentLength"] == 1
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        await s3.get_object(Bucket="nobucket", Key="k")
    assert missing.value.response["Error"]["Code"] == "NoSuchBucket"


async def test_sqs_still_served_beside_it(emulator: Emulator, s3: Any) -> None:
    url = emulator.create_queue("beside")
    async with sqs_client(emulator.endpoint_url) as sqs:
        await sqs.send_message(QueueUrl=url, MessageBody="m")
        assert emulator.counters("beside")["depth"] == 1


def test_aws_chunked_body_is_decoded() -> None:
    body = b"5;chunk-signature=ab\r\nhello\r\n1\r\n!\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n"
    assert _decode_aws_chunked(body) == b"hello!"


async def test_daemon_s3_client_reads_it(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's own S3 client finds the emulator through AWS_ENDPOINT_URL_S3, path-style."""
    from asqsd.clients.s3 import open_s3
    from asqsd.config import load_settings

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", emulator.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    emulator.s3.put("local-bucket", "key", b"z" * 100_000)
    settings = load_settings({"queue_url": emulator.queue_url("q")}, env={}).settings
    async with contextlib.AsyncExitStack() as stack:
        objects = await open_s3(get_session(), settings, "us-east-1", stack)
        obj = await objects.open("local-bucket", "key")
        try:
            assert obj.length == 100_000
            assert b"".join([chunk async for chunk in obj.chunks()]) == b"z" * 100_000
        finally:
            obj.close()
        await objects.delete("local-bucket", "key")
    assert emulator.s3.buckets["local-bucket"] == {}
