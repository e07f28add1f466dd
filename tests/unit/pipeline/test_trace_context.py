"""Trace context headers (``trace_headers``): what is forwarded, and what is refused."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from asqsd.message import Message, MessageAttribute
from asqsd.pipeline.request import StaticHeaders, build_request
from asqsd.pipeline.trace_context import valid_traceparent, valid_tracestate, valid_xray_header

TRACING = StaticHeaders("application/json", "aws-sqsd/9.9", "q", "/", trace_headers=True)
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def message(xray: str | None = None, **attrs: str) -> Message:
    system = {"ApproximateReceiveCount": "1"} | ({"AWSTraceHeader": xray} if xray is not None else {})
    return Message(
        message_id="m-1",
        receipt_handle="rh",
        body="{}",
        attributes=system,
        message_attributes={name: MessageAttribute("String", value) for name, value in attrs.items()},
    )


def test_all_three_headers_are_forwarded() -> None:
    """AWSTraceHeader → X-Amzn-Trace-Id; traceparent/tracestate as W3C headers and stock headers."""
    headers = build_request(message(XRAY, traceparent=PARENT, tracestate=STATE), TRACING).headers
    assert headers["X-Amzn-Trace-Id"] == XRAY
    assert headers["traceparent"] == PARENT
    assert headers["tracestate"] == STATE
    assert headers["X-Aws-Sqsd-Attr-Traceparent"] == PARENT
    assert headers["X-Aws-Sqsd-Attr-Tracestate"] == STATE


def test_off_by_default() -> None:
    """Without trace_headers only the stock attribute headers appear."""
    static = StaticHeaders("application/json", "aws-sqsd/9.9", "q", "/")
    headers = build_request(message(XRAY, traceparent=PARENT), static).headers
    assert "X-Amzn-Trace-Id" not in headers
    assert "traceparent" not in headers
    assert headers["X-Aws-Sqsd-Attr-Traceparent"] == PARENT


def test_garbage_traceparent_only_in_the_stock_header() -> None:
    """A malformed traceparent is not forwarded as traceparent (nor its tracestate), is logged at
    debug, and still travels as X-Aws-Sqsd-Attr-Traceparent."""
    with capture_logs() as logs:
        headers = build_request(message(traceparent="garbage", tracestate=STATE), TRACING).headers
    assert "traceparent" not in headers
    assert "tracestate" not in headers
    assert headers["X-Aws-Sqsd-Attr-Traceparent"] == "garbage"
    assert [(e["event"], e["log_level"], e["source"]) for e in logs] == [
        ("trace-context-invalid", "debug", "traceparent")
    ]


def test_bad_xray_and_tracestate_are_dropped_alone() -> None:
    """A malformed AWSTraceHeader or tracestate is dropped; the valid traceparent still goes."""
    headers = build_request(message("Root=nonsense", traceparent=PARENT, tracestate="a=b=c"), TRACING).headers
    assert "X-Amzn-Trace-Id" not in headers
    assert "tracestate" not in headers
    assert headers["traceparent"] == PARENT


def test_binary_traceparent_attribute_is_ignored() -> None:
    """Only String attributes carry trace context."""
    msg = message()
    msg.message_attributes["traceparent"] = MessageAttribute("Binary", None, PARENT.encode())
    assert "traceparent" not in build_request(msg, TRACING).headers


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (PARENT, True),
        ("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future", True),  # later version
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", False),  # 00 has 4 fields
        ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", False),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", False),
        ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", False),
        ("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", False),  # upper case
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX: 1", False),
        ("", False),
    ],
)
def test_traceparent_forms(value: str, valid: bool) -> None:
    """W3C Trace Context §3.2 rules."""
    assert valid_traceparent(value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (STATE, True),
        ("vendor@tenant=x, other=y", True),
        ("a=1,,b=2", True),  # empty members are allowed
        ("", False),
        ("a=b=c", False),
        ("A=1", False),  # keys are lower case
        (",".join(f"k{i}=v" for i in range(33)), False),  # more than 32 members
        ("k=" + "v" * 600, False),
    ],
)
def test_tracestate_forms(value: str, valid: bool) -> None:
    """W3C Trace Context §3.3 list rules."""
    assert valid_tracestate(value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (XRAY, True),
        ("Root=1-5759e988-bd862e3fe1be46a994272793", True),
        ("Self=1-abc;Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0", True),
        ("Root=1-5759e988-bd862e3fe1be46a99427279", False),  # 23 hex digits
        ("Parent=53995c3f42cd8ad8", False),  # no Root
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Note=a b", False),  # space
        ("Root=1-5759e988-bd862e3fe1be46a994272793;P=" + "x" * 300, False),  # too long
    ],
)
def test_xray_header_forms(value: str, valid: bool) -> None:
    """X-Ray trace header: a Root field and key=value fields without spaces."""
    assert valid_xray_header(value) is valid
