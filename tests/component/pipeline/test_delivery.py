"""The request the worker sees is the stock daemon's request."""

from __future__ import annotations

import re
from typing import Any

from tests.component.conftest import SettingsFactory, queue_counts
from tests.support.polling import wait_until, wait_until_async
from tests.support.worker import RecordingWorker

ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def send(sqs: Any, queue_url: str, body: str, **attributes: tuple[str, Any]) -> str:
    message_attributes = {}
    for name, (data_type, value) in attributes.items():
        key = "BinaryValue" if data_type.startswith("Binary") else "StringValue"
        message_attributes[name] = {"DataType": data_type, key: value}
    kwargs: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body}
    if message_attributes:
        kwargs["MessageAttributes"] = message_attributes
    return str((await sqs.send_message(**kwargs))["MessageId"])


async def test_post_carries_stock_headers_and_exact_body(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """1. A message with mixed attributes is sent. 2. The worker gets one POST with the body byte
    for byte and every stock header in the stock spelling; binary and reserved attributes are
    dropped. 3. The 200 deletes it."""
    body = '{"job": "résumé ☃ 𝄞", "n": 1}\r\n\ttrailing  '
    msgid = await send(
        sqs,
        queue_url,
        body,
        vendorUserId=("String", "u-42"),
        **{"my-attr": ("Number", "3.14"), "kind": ("String.custom", "x"), "blob": ("Binary", b"\x00\x01")},
        **{"beanstalk.sqsd.foo": ("String", "reserved")},
    )
    settings = make_settings(http_url="http://localhost", http_path="/jobs/run", mime_type="text/plain")
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="delete")
    assert len(worker.deliveries) == 1
    delivery = worker.deliveries[0]
    assert delivery.method == "POST"
    assert delivery.version == "1.1"
    assert delivery.path == "/jobs/run"
    assert delivery.body == body.encode("utf-8")
    names = [name for name, _ in delivery.headers]
    assert delivery.header("Host") == f"localhost:{worker.port}"
    assert delivery.header("Content-Type") == "text/plain"
    assert delivery.header("Content-Length") == str(len(body.encode("utf-8")))
    assert (delivery.header("User-Agent") or "").startswith("aws-sqsd/")
    assert delivery.header("Accept-Encoding") == "gzip, compressed"
    assert delivery.header("X-Aws-Sqsd-Msgid") == msgid
    assert delivery.header("X-Aws-Sqsd-Queue") == queue_url.rsplit("/", 1)[-1]
    assert delivery.header("X-Aws-Sqsd-Receive-Count") == "1"
    assert delivery.header("X-Aws-Sqsd-Path") == "/jobs/run"
    assert (delivery.header("X-Aws-Sqsd-Sender-Id") or "") != ""
    assert ISO_SECONDS.match(delivery.header("X-Aws-Sqsd-First-Received-At") or "")
    assert ISO_SECONDS.match(delivery.header("X-Aws-Sqsd-Sent-At") or "")
    # Wire spelling: each dash-separated part capitalised, the rest lower-case.
    assert "X-Aws-Sqsd-Attr-Vendoruserid" in names
    assert delivery.header("X-Aws-Sqsd-Attr-Vendoruserid") == "u-42"
    assert delivery.header("X-Aws-Sqsd-Attr-My-Attr") == "3.14"
    assert delivery.header("X-Aws-Sqsd-Attr-Kind") == "x"
    assert delivery.header("X-Aws-Sqsd-Attr-Blob") is None
    assert not any("beanstalk" in name.lower() for name in names)
    assert not any(n.lower().startswith(("x-aws-sqsd-receipt", "x-amzn-trace")) for n in names)
    assert delivery.header("Accept") is None
    assert await queue_counts(sqs, queue_url) == (0, 0)


async def test_empty_body_still_has_content_length(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A body of one space (SQS refuses empty bodies) and the default path/mime type."""
    await send(sqs, queue_url, " ")
    async with run_daemon(make_settings()) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="delete")
    delivery = worker.deliveries[0]
    assert delivery.body == b" "
    assert delivery.header("Content-Length") == "1"
    assert delivery.header("Content-Type") == "application/json"
    assert delivery.header("X-Aws-Sqsd-Path") == "/"
    assert delivery.header("Transfer-Encoding") is None


async def test_unsafe_attribute_value_is_skipped_not_fatal(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A header value outside Latin-1 is dropped (and counted); the message is still delivered."""
    await send(
        sqs, queue_url, "x", good=("String", "fine"), cjk=("String", "日本語"), latin=("String", "café")
    )
    async with run_daemon(make_settings()) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="delete")
        assert daemon.counters.headers_skipped == 1
    delivery = worker.deliveries[0]
    assert delivery.header("X-Aws-Sqsd-Attr-Good") == "fine"
    assert delivery.header("X-Aws-Sqsd-Attr-Cjk") is None
    assert delivery.header("X-Aws-Sqsd-Attr-Latin") is not None


async def test_periodic_task_message_posts_empty_body_to_task_path(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A message shaped like the stock cron enqueue is POSTed empty to its path with task headers."""
    await send(
        sqs,
        queue_url,
        "elasticbeanstalk scheduled job",
        **{
            "beanstalk.sqsd.path": ("String", "/tasks/backup"),
            "beanstalk.sqsd.task_name": ("String", "backup"),
            "beanstalk.sqsd.scheduled_time": ("String", "2017-03-22 23:10:00 UTC"),
        },
    )
    async with run_daemon(make_settings(mime_type="application/xml")) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="delete")
    delivery = worker.deliveries[0]
    assert delivery.path == "/tasks/backup"
    assert delivery.body == b""
    assert delivery.header("Content-Length") == "0"
    assert delivery.header("Content-Type") == "application/xml"
    assert delivery.header("X-Aws-Sqsd-Path") == "/tasks/backup"
    assert delivery.header("X-Aws-Sqsd-Taskname") == "backup"
    assert delivery.header("X-Aws-Sqsd-Scheduled-At") == "2017-03-22T23:10:00Z"
    assert delivery.header("X-Aws-Sqsd-Sender-Id")


async def test_receive_count_increments_on_redelivery(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A 500 then a 200: the second POST says Receive-Count 2 and the same First-Received-At."""
    answers = iter([500, 200])

    async def handler(_request: Any, _delivery: Any) -> Any:
        from aiohttp import web

        return web.Response(status=next(answers))

    worker.handler = handler
    await send(sqs, queue_url, "again")
    async with run_daemon(make_settings(error_visibility_timeout=0)) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="delete after retry")
    first, second = worker.deliveries
    assert first.header("X-Aws-Sqsd-Receive-Count") == "1"
    assert second.header("X-Aws-Sqsd-Receive-Count") == "2"
    assert first.header("X-Aws-Sqsd-First-Received-At") == second.header("X-Aws-Sqsd-First-Received-At")


async def test_many_messages_all_delivered_and_deleted(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """30 messages with 3 connections: each delivered once, all deleted in batches."""
    for start in range(0, 30, 10):
        await sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(start, start + 10)],
        )
    async with run_daemon(make_settings(http_connections=3)) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 30, what="30 deletes")
        assert daemon.counters.sqs_calls["DeleteMessageBatch"] < 30
    assert sorted(d.body for d in worker.deliveries) == sorted(f"m{i}".encode() for i in range(30))

    async def empty() -> bool:
        return await queue_counts(sqs, queue_url) == (0, 0)

    await wait_until_async(empty, what="queue empty")
