"""``trace_headers`` end to end: a producer's trace context reaches the worker through moto and a
running daemon, with either HTTP client."""

from __future__ import annotations

from typing import Any

import pytest

from tests.component.conftest import SettingsFactory
from tests.support.polling import wait_until
from tests.support.worker import RecordingWorker

XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STATE = "rojo=00f067aa0ba902b7"


def string_attrs(**values: str) -> dict[str, dict[str, str]]:
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
async def test_trace_context_reaches_the_worker(
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    client: str,
) -> None:
    """1. One message carries an AWSTraceHeader and W3C attributes, one a garbage traceparent.
    2. With trace_headers on, the first arrives with X-Amzn-Trace-Id, traceparent and tracestate;
    the second with no trace header but its stock X-Aws-Sqsd-Attr-Traceparent. 3. Both are deleted."""
    traced = await sqs.send_message(
        QueueUrl=queue_url,
        MessageBody="traced",
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": XRAY}},
        MessageAttributes=string_attrs(traceparent=PARENT, tracestate=STATE),
    )
    garbage = await sqs.send_message(
        QueueUrl=queue_url, MessageBody="garbage", MessageAttributes=string_attrs(traceparent="not-a-trace")
    )
    async with run_daemon(make_settings(trace_headers=True, http_client=client)) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 2, what="both deleted")
    [good] = worker.by_msgid(traced["MessageId"])
    assert good.header("X-Amzn-Trace-Id") == XRAY
    assert good.header("traceparent") == PARENT
    assert good.header("tracestate") == STATE
    assert good.header("X-Aws-Sqsd-Attr-Traceparent") == PARENT
    [bad] = worker.by_msgid(garbage["MessageId"])
    assert bad.header("traceparent") is None
    assert bad.header("X-Amzn-Trace-Id") is None
    assert bad.header("X-Aws-Sqsd-Attr-Traceparent") == "not-a-trace"


async def test_off_by_default_sends_stock_headers_only(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """Without trace_headers the worker sees no X-Amzn-Trace-Id and no W3C headers (stock)."""
    await sqs.send_message(
        QueueUrl=queue_url,
        MessageBody="traced",
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": XRAY}},
        MessageAttributes=string_attrs(traceparent=PARENT),
    )
    async with run_daemon(make_settings()) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="delete")
    [delivery] = worker.deliveries
    assert delivery.header("X-Amzn-Trace-Id") is None
    assert delivery.header("traceparent") is None
    assert delivery.header("X-Aws-Sqsd-Attr-Traceparent") == PARENT
