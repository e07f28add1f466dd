"""OpenTelemetry spans for the daemon's own work (``otel_tracing``, the ``otel`` extra).

* ``receive <queue>`` and ``delete <queue>``: one span per ReceiveMessage / DeleteMessageBatch
  call, made from the report every SQS call already produces (its start and end times);
* ``deliver <queue>``: one per message, from the moment a dispatcher takes it until it is
  settled. Its parent is the producer's context (the W3C ``traceparent`` / ``tracestate``
  message attributes, else the X-Ray ``AWSTraceHeader`` with a ``Parent``), which it also links to;
* ``POST``: one per POST to the worker, a child of ``deliver``.

Spans go to the process's tracer provider (set up by the OpenTelemetry SDK, for example with
``opentelemetry-instrument``); without one they cost next to nothing. The daemon imports this
module, and with it OpenTelemetry, only when ``otel_tracing`` is on; the hot path then pays one
``if`` per message when it is off.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TraceState,
)

from asqsd import __version__
from asqsd.clients.worker.base import DeliveryResult, Request, WorkerPoster
from asqsd.message import Message
from asqsd.pipeline.trace_context import (
    TRACE_SYSTEM_ATTRIBUTE,
    TRACEPARENT_ATTR,
    TRACESTATE_ATTR,
    string_attribute,
    valid_traceparent,
    valid_xray_header,
)

INSTRUMENTATION_NAME = "asqsd"
# SQS calls that get a span: the hot path's receive and delete (not the heartbeat's extensions).
_SPAN_NAMES = {"ReceiveMessage": "receive", "DeleteMessageBatch": "delete"}
_HEX16 = frozenset("0123456789abcdef")


class HotPathTracing:
    """Makes the spans listed in the module docstring for one queue."""

    def __init__(self, tracer: Tracer, queue_name: str) -> None:
        self._tracer = tracer
        self._queue = queue_name
        self._base = {"messaging.system": "aws_sqs", "messaging.destination.name": queue_name}

    @classmethod
    def create(cls, queue_name: str) -> HotPathTracing:
        """Spans through the process's global tracer provider."""
        return cls(trace.get_tracer(INSTRUMENTATION_NAME, __version__), queue_name)

    @contextlib.contextmanager
    def deliver(self, message: Message) -> Iterator[None]:
        """The ``deliver`` span of one message, current while the body runs."""
        parent, links = self._producer(message)
        attributes = {**self._base, "messaging.message.id": message.message_id}
        name = f"deliver {self._queue}"
        with self._tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.CONSUMER, links=links, attributes=attributes
        ):
            yield

    def wrap_worker(self, worker: WorkerPoster) -> WorkerPoster:
        """``worker`` with a ``POST`` span around each POST."""
        return TracingWorker(worker, self._tracer)

    def sqs_call(self, operation: str, error: Exception | None, sent_at: float) -> None:
        """A span for a finished ReceiveMessage / DeleteMessageBatch (``sent_at``: monotonic)."""
        name = _SPAN_NAMES.get(operation)
        if name is None:
            return
        end_ns = time.time_ns()
        span = self._tracer.start_span(
            f"{name} {self._queue}",
            context=Context(),  # a root span: one call serves many messages, none in particular
            kind=SpanKind.CLIENT,
            attributes={**self._base, "rpc.system": "aws-api", "rpc.method": operation},
            start_time=end_ns - int((time.monotonic() - sent_at) * 1e9),
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end(end_time=end_ns)

    def _producer(self, message: Message) -> tuple[Context | None, list[Link]]:
        """The producer's context as a parent, and a link to it (None, []: no valid context)."""
        span_context = w3c_span_context(
            string_attribute(message, TRACEPARENT_ATTR), string_attribute(message, TRACESTATE_ATTR)
        ) or xray_span_context(message.attributes.get(TRACE_SYSTEM_ATTRIBUTE))
        if span_context is None:
            return None, []
        return trace.set_span_in_context(trace.NonRecordingSpan(span_context)), [Link(span_context)]


def w3c_span_context(traceparent: str | None, tracestate: str | None) -> SpanContext | None:
    """The span context of a valid W3C ``traceparent`` (and ``tracestate``), else None. Built
    directly from the fields :func:`valid_traceparent` checked: the propagator would parse again."""
    if traceparent is None or not valid_traceparent(traceparent):
        return None
    _version, trace_id, span_id, flags = traceparent.split("-")[:4]
    state = TraceState.from_header([tracestate]) if tracestate is not None else None
    return SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(flags, 16)),
        trace_state=state,
    )


def xray_span_context(header: str | None) -> SpanContext | None:
    """An X-Ray trace header as a span context, mapped as the AWS X-Ray propagator does (trace
    id: the Root's epoch and unique id; span id: Parent); None without a valid Root and Parent."""
    if header is None or not valid_xray_header(header):
        return None
    fields = dict(part.split("=", 1) for part in header.split(";") if "=" in part)
    parent = fields.get("Parent", "")
    if len(parent) != 16 or not set(parent) <= _HEX16:
        return None
    _version, epoch, unique = fields["Root"].split("-")
    flags = TraceFlags(TraceFlags.SAMPLED if fields.get("Sampled") == "1" else TraceFlags.DEFAULT)
    return SpanContext(int(epoch + unique, 16), int(parent, 16), is_remote=True, trace_flags=flags)


class TracingWorker:
    """A :class:`WorkerPoster` that puts a ``POST`` span (a child of the current span) around
    each POST, with the status the worker answered."""

    def __init__(self, inner: WorkerPoster, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` of the worker."""
        return self._inner.base_url

    async def post(self, request: Request) -> DeliveryResult:
        """Deliver, inside the span; no response or a status of 400 and up marks it failed."""
        attributes = {"http.request.method": "POST", "url.full": self._inner.base_url + request.path}
        with self._tracer.start_as_current_span("POST", kind=SpanKind.CLIENT, attributes=attributes) as span:
            result = await self._inner.post(request)
            if result.status is not None:
                span.set_attribute("http.response.status_code", result.status)
            if result.status is None or result.status >= 400:
                span.set_status(Status(StatusCode.ERROR, result.error or f"HTTP {result.status}"))
            return result
