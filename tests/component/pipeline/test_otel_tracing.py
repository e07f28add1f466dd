"""``otel_tracing`` end to end: a running daemon's spans (receive, deliver → POST, delete) reach
the OpenTelemetry SDK's in-memory exporter, with the producer's context as the parent."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.component.conftest import SettingsFactory
from tests.support.polling import wait_until
from tests.support.worker import RecordingWorker

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """The process's tracer provider (set once: OpenTelemetry allows no second one), exporting
    to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    span_exporter.clear()
    return span_exporter


def named(spans: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.name.startswith(prefix)]


async def test_spans_follow_each_message_from_its_producer(
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    spans: InMemorySpanExporter,
) -> None:
    """1. One message carries a W3C traceparent, one an X-Ray header, one nothing. 2. Each gets a
    deliver span (CONSUMER) whose parent is its producer's span, with a POST child carrying the
    status; the untraced one starts a trace of its own. 3. Receive and delete spans are there."""
    queue = queue_url.rsplit("/", 1)[-1]
    w3c = await sqs.send_message(
        QueueUrl=queue_url,
        MessageBody="w3c",
        MessageAttributes={"traceparent": {"DataType": "String", "StringValue": PARENT}},
    )
    xray = await sqs.send_message(
        QueueUrl=queue_url,
        MessageBody="xray",
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": XRAY}},
    )
    plain = await sqs.send_message(QueueUrl=queue_url, MessageBody="plain")
    async with run_daemon(make_settings(otel_tracing=True)) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 3, what="all deleted")
        await wait_until(lambda: named(spans, "delete ") != [], what="a delete span")
    delivers = {span.attributes["messaging.message.id"]: span for span in named(spans, f"deliver {queue}")}
    assert set(delivers) == {w3c["MessageId"], xray["MessageId"], plain["MessageId"]}
    expected_parents = {
        w3c["MessageId"]: (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331),
        xray["MessageId"]: (0x5759E988BD862E3FE1BE46A994272793, 0x53995C3F42CD8AD8),
    }
    for msgid, (trace_id, span_id) in expected_parents.items():
        span = delivers[msgid]
        assert span.kind is SpanKind.CONSUMER
        assert span.parent is not None and (span.parent.trace_id, span.parent.span_id) == (trace_id, span_id)
        assert span.context.trace_id == trace_id
        assert [link.context.span_id for link in span.links] == [span_id]
    assert delivers[plain["MessageId"]].parent is None
    posts = named(spans, "POST")
    assert len(posts) == 3
    deliver_ids = {span.context.span_id for span in delivers.values()}
    for post in posts:
        assert post.kind is SpanKind.CLIENT
        assert post.parent is not None and post.parent.span_id in deliver_ids
        assert post.attributes["http.response.status_code"] == 200
    assert named(spans, f"receive {queue}")
    assert all(span.kind is SpanKind.CLIENT for span in named(spans, "delete "))


async def test_a_failed_post_is_an_error_span(
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    spans: InMemorySpanExporter,
) -> None:
    """A 500 from the worker marks the POST span as an error with the status."""

    async def fail(_request: Any, _delivery: Any) -> web.Response:
        return web.Response(status=500)

    worker.handler = fail
    await sqs.send_message(QueueUrl=queue_url, MessageBody="fails")
    async with run_daemon(make_settings(otel_tracing=True, error_visibility_timeout=30)) as daemon:
        await wait_until(lambda: daemon.counters.failed == 1, what="a failed delivery")
    [post] = named(spans, "POST")
    assert post.status.status_code is StatusCode.ERROR
    assert post.attributes["http.response.status_code"] == 500
    assert len(named(spans, "deliver ")) == 1
