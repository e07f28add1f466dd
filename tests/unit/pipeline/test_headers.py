"""Header building, including hostile attribute names and values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asqsd.message import Message, MessageAttribute
from asqsd.pipeline.request import (
    StaticHeaders,
    attempt_limit,
    build_request,
    iso_from_epoch_ms,
    iso_from_task_time,
    unsafe_value_reason,
    wire_name,
)

STATIC = StaticHeaders("application/json", "aws-sqsd/9.9", "my-queue", "/work")


def message(**attrs: MessageAttribute) -> Message:
    return Message(
        message_id="id-1",
        receipt_handle="rh",
        body="body",
        attributes={
            "ApproximateReceiveCount": "3",
            "ApproximateFirstReceiveTimestamp": "1692107873123",
            "SentTimestamp": "1692107872999",
            "SenderId": "AIDAEXAMPLE",
        },
        message_attributes=dict(attrs),
    )


def test_wire_name_capitalisation() -> None:
    """em-http-request munging: each part capitalised, the rest lower-cased."""
    assert wire_name("x-aws-sqsd-attr-vendorUserId") == "X-Aws-Sqsd-Attr-Vendoruserid"
    assert wire_name("X-Aws-Sqsd-Attr-my-attr") == "X-Aws-Sqsd-Attr-My-Attr"
    assert wire_name("x-aws-sqsd-attr-a.b_c") == "X-Aws-Sqsd-Attr-A.b_c"


def test_timestamps_whole_seconds_utc() -> None:
    """Epoch ms → ISO-8601 with whole seconds and Z; garbage → None."""
    assert iso_from_epoch_ms("1692107873123") == "2023-08-15T13:57:53Z"
    assert iso_from_epoch_ms("not-a-number") is None
    assert iso_from_epoch_ms(None) is None
    assert iso_from_task_time("2017-03-22 23:10:00 UTC") == "2017-03-22T23:10:00Z"
    assert iso_from_task_time("yesterday") is None


def test_standard_headers() -> None:
    """Values and names as the stock daemon sends them."""
    request = build_request(message(), STATIC)
    assert request.path == "/work"
    assert request.body == b"body"
    assert request.headers == {
        "Content-Type": "application/json",
        "User-Agent": "aws-sqsd/9.9",
        "Accept-Encoding": "gzip, compressed",
        "X-Aws-Sqsd-Msgid": "id-1",
        "X-Aws-Sqsd-Receive-Count": "3",
        "X-Aws-Sqsd-First-Received-At": "2023-08-15T13:57:53Z",
        "X-Aws-Sqsd-Sent-At": "2023-08-15T13:57:52Z",
        "X-Aws-Sqsd-Queue": "my-queue",
        "X-Aws-Sqsd-Path": "/work",
        "X-Aws-Sqsd-Sender-Id": "AIDAEXAMPLE",
    }
    assert request.skipped == []


def test_attribute_forwarding_rules() -> None:
    """String/Number (custom labels too) forwarded; Binary and beanstalk.sqsd.* dropped;
    a duplicate after case folding keeps the first."""
    request = build_request(
        message(
            vendorUserId=MessageAttribute("String", "u1"),
            count=MessageAttribute("Number.int", "7"),
            blob=MessageAttribute("Binary", binary_value=b"\x00"),
            **{
                "beanstalk.sqsd.path": MessageAttribute("String", "/x"),
                "VENDORUSERID": MessageAttribute("String", "u2"),
            },
        ),
        STATIC,
    )
    assert request.headers["X-Aws-Sqsd-Attr-Vendoruserid"] == "u1"
    assert request.headers["X-Aws-Sqsd-Attr-Count"] == "7"
    assert not any("Blob" in h or "Beanstalk" in h for h in request.headers)
    assert request.skipped == [("VENDORUSERID", "duplicate header X-Aws-Sqsd-Attr-Vendoruserid")]


def test_unsafe_values_are_skipped() -> None:
    """CR, LF, NUL, other controls and non-Latin-1 never reach the wire."""
    request = build_request(
        message(
            crlf=MessageAttribute("String", "a\r\nX-Injected: 1"),
            nul=MessageAttribute("String", "a\x00b"),
            bell=MessageAttribute("String", "a\x07"),
            emoji=MessageAttribute("String", "🙂"),
            latin=MessageAttribute("String", "café\tok"),
            **{"bad name": MessageAttribute("String", "v")},
        ),
        STATIC,
    )
    assert "X-Aws-Sqsd-Attr-Latin" in request.headers
    assert {name for name, _ in request.skipped} == {
        "X-Aws-Sqsd-Attr-Crlf",
        "X-Aws-Sqsd-Attr-Nul",
        "X-Aws-Sqsd-Attr-Bell",
        "X-Aws-Sqsd-Attr-Emoji",
        "bad name",
    }


def test_periodic_task_request() -> None:
    """Task messages: empty body, the task's path, Taskname and Scheduled-At."""
    request = build_request(
        message(
            **{
                "beanstalk.sqsd.path": MessageAttribute("String", "/cron/job"),
                "beanstalk.sqsd.task_name": MessageAttribute("String", "job"),
                "beanstalk.sqsd.scheduled_time": MessageAttribute("String", "2019-11-14 00:47:00 UTC"),
            }
        ),
        STATIC,
    )
    assert request.error is None
    assert (request.path, request.body) == ("/cron/job", b"")
    assert request.headers["X-Aws-Sqsd-Path"] == "/cron/job"
    assert request.headers["X-Aws-Sqsd-Taskname"] == "job"
    assert request.headers["X-Aws-Sqsd-Scheduled-At"] == "2019-11-14T00:47:00Z"


def test_periodic_task_with_bad_path_is_an_error() -> None:
    """A task path that is not a clean absolute path is never requested."""
    request = build_request(
        message(
            **{
                "beanstalk.sqsd.path": MessageAttribute("String", "http://evil/\r\n"),
                "beanstalk.sqsd.scheduled_time": MessageAttribute("String", "2019-11-14 00:47:00 UTC"),
            }
        ),
        STATIC,
    )
    assert request.error is not None


@given(
    name=st.text(min_size=1, max_size=40),
    value=st.text(max_size=200),
    body=st.text(max_size=300),
)
def test_any_attribute_yields_only_wire_safe_headers(name: str, value: str, body: str) -> None:
    """Property: whatever the attribute, every emitted header name is a token and every value is
    free of CR/LF/NUL/controls and Latin-1 encodable; the body is the UTF-8 of the message body."""
    msg = message(**{name: MessageAttribute("String", value)})
    msg.body = body
    request = build_request(msg, STATIC)
    for header, header_value in request.headers.items():
        assert header.isascii() and " " not in header and ":" not in header
        assert unsafe_value_reason(header_value) is None
        header_value.encode("latin-1")
    if not name.startswith("beanstalk.sqsd."):
        forwarded = wire_name("X-Aws-Sqsd-Attr-" + name) in request.headers
        assert forwarded or request.skipped
    assert request.body == body.encode("utf-8", "surrogatepass")


def test_no_attempt_headers_without_a_known_limit() -> None:
    """No redrive policy (nor retry cap): the worker is told nothing about a last attempt."""
    headers = build_request(message(), STATIC).headers
    assert not [name for name in headers if name.startswith("X-Asqsd-")]


@given(receive_count=st.integers(1, 50), limit=st.integers(1, 50))
def test_attempt_headers_say_whether_this_is_the_last_attempt(receive_count: int, limit: int) -> None:
    """With a limit: X-Asqsd-Max-Receive-Count, and X-Asqsd-Last-Attempt true exactly when SQS
    dead-letters the message if this delivery fails too (receive count >= maxReceiveCount)."""
    static = StaticHeaders("application/json", "aws-sqsd/9.9", "my-queue", "/work", limit)
    m = message()
    m.attributes["ApproximateReceiveCount"] = str(receive_count)
    headers = build_request(m, static).headers
    assert headers["X-Asqsd-Max-Receive-Count"] == str(limit)
    assert headers["X-Asqsd-Last-Attempt"] == ("true" if receive_count >= limit else "false")


def test_last_attempt_left_out_when_the_receive_count_is_unknown() -> None:
    """SQS did not say the receive count: the limit is sent, the last-attempt guess is not."""
    m = message()
    del m.attributes["ApproximateReceiveCount"]
    headers = build_request(m, StaticHeaders("a/b", "ua", "q", "/", 3)).headers
    assert headers["X-Asqsd-Max-Receive-Count"] == "3"
    assert "X-Asqsd-Last-Attempt" not in headers


def test_attempt_limit_takes_the_smallest_known_limit() -> None:
    """The one place the limit is decided: unknown (None) and nonsense (<= 0) limits are ignored."""
    assert attempt_limit() is None
    assert attempt_limit(None) is None
    assert attempt_limit(0, None) is None
    assert attempt_limit(5) == 5
    assert attempt_limit(5, None, 3) == 3
