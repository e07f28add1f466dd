"""Trace context headers (``trace_headers``): continue the producer's trace in the worker.

Two independent sources, each forwarded only when it is well formed:

* the SQS system attribute ``AWSTraceHeader`` (set by X-Ray-instrumented producers) becomes
  ``X-Amzn-Trace-Id``;
* the message attributes ``traceparent`` and ``tracestate`` (written by OpenTelemetry's W3C
  propagator) become the W3C Trace Context headers of the same names. ``tracestate`` goes only
  with a valid ``traceparent``, as the W3C specification requires.

A malformed value is not forwarded under the trace header's name (the worker's tracing middleware
would fail on it or, worse, start from a broken parent); the stock ``X-Aws-Sqsd-Attr-*`` header
still carries the attribute as it came. Such a value is logged at debug only: it is the producer's
problem, not an operational one.
"""

from __future__ import annotations

import re

from asqsd.clients.worker.base import Request
from asqsd.logs import get_logger
from asqsd.message import Message

log = get_logger("trace")

TRACE_SYSTEM_ATTRIBUTE = "AWSTraceHeader"
TRACEPARENT_ATTR = "traceparent"
TRACESTATE_ATTR = "tracestate"

# X-Ray trace header: a Root=1-<8 hex epoch>-<24 hex> field plus optional Parent/Sampled/other
# key=value fields separated by ';' (printable ASCII, no spaces or commas).
_XRAY_FIELD = r"[A-Za-z0-9_-]+=[!#-+\--:<-~]*"
_XRAY = re.compile(rf"(?:{_XRAY_FIELD};)*Root=1-[0-9a-f]{{8}}-[0-9a-f]{{24}}(?:;{_XRAY_FIELD})*")
# W3C traceparent: version-traceid-parentid-flags, lower-case hex. Version ff is invalid; a later
# version may append fields after another '-' (W3C Trace Context §3.2.4).
_TRACEPARENT = re.compile(r"(?!ff)([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-[!-~]*)?")
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
# W3C tracestate: at most 32 comma-separated key=value members, 512 characters in all is the
# size a vendor must propagate; printable ASCII without '=' or ',' in values.
_TRACESTATE_MEMBER = re.compile(
    r"[ \t]*(?:[a-z0-9][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    r"=[ !-+\--<>-~]{0,255}[!-+\--<>-~][ \t]*"
)
_TRACESTATE_MAX_MEMBERS = 32
_TRACESTATE_MAX_CHARS = 512


def valid_xray_header(value: str) -> bool:
    """An X-Ray trace header with a well-formed ``Root`` field, within 256 characters."""
    return len(value) <= 256 and _XRAY.fullmatch(value) is not None


def valid_traceparent(value: str) -> bool:
    """A W3C ``traceparent`` this daemon may forward (non-zero trace and parent ids)."""
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return False
    version, trace_id, parent_id, extra = match.groups()
    if version == "00" and extra is not None:
        return False  # version 00 has exactly four fields
    return trace_id != _ZERO_TRACE_ID and parent_id != _ZERO_PARENT_ID


def valid_tracestate(value: str) -> bool:
    """A W3C ``tracestate`` list (empty members allowed, at most 32 members, 512 characters)."""
    if len(value) > _TRACESTATE_MAX_CHARS:
        return False
    members = [member for member in value.split(",") if member.strip(" \t")]
    if not members or len(members) > _TRACESTATE_MAX_MEMBERS:
        return False
    return all(_TRACESTATE_MEMBER.fullmatch(member) is not None for member in members)


def add_trace_headers(request: Request, message: Message) -> None:
    """Add ``X-Amzn-Trace-Id``, ``traceparent`` and ``tracestate`` for the message's trace context."""
    xray = message.attributes.get(TRACE_SYSTEM_ATTRIBUTE)
    if xray is not None:
        if valid_xray_header(xray):
            request.headers["X-Amzn-Trace-Id"] = xray
        else:
            _log_invalid(message, TRACE_SYSTEM_ATTRIBUTE, xray)
    traceparent = string_attribute(message, TRACEPARENT_ATTR)
    if traceparent is None:
        return
    if not valid_traceparent(traceparent):
        _log_invalid(message, TRACEPARENT_ATTR, traceparent)
        return
    request.headers["traceparent"] = traceparent
    tracestate = string_attribute(message, TRACESTATE_ATTR)
    if tracestate is not None:
        if valid_tracestate(tracestate):
            request.headers["tracestate"] = tracestate
        else:
            _log_invalid(message, TRACESTATE_ATTR, tracestate)


def string_attribute(message: Message, name: str) -> str | None:
    """The value of a String (or String.*) message attribute, or None."""
    attr = message.message_attributes.get(name)
    if attr is None or not attr.data_type.startswith("String"):
        return None
    return attr.string_value


def _log_invalid(message: Message, source: str, value: str) -> None:
    # The first 64 characters say enough to find the producer; repr keeps control characters visible.
    log.debug("trace-context-invalid", message_id=message.message_id, source=source, value=repr(value[:64]))
