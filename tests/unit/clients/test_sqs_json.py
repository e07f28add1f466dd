"""The lean SQS client's JSON: request bodies (orjson) and response decoding, with their errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asqsd.clients.sqs.lean_impl import LeanSQS, decode_body, encode_body
from asqsd.errors import SQSError

# Text SQS accepts in a message: XML 1.0 characters (no surrogates, no U+FFFE/U+FFFF).
sqs_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\ufffe\uffff"), max_size=40
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | sqs_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(sqs_text, inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(sqs_text, json_values, max_size=6))
def test_body_is_compact_utf8_json_of_the_payload(payload: dict[str, object]) -> None:
    """Any payload: valid JSON meaning the same, no spaces outside strings, non-ASCII as UTF-8."""
    body = encode_body("SendMessage", payload)
    assert json.loads(body) == payload
    assert body == json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def test_non_ascii_is_sent_as_utf8_not_escaped() -> None:
    """Where botocore writes \\u escapes, the lean client sends the UTF-8 bytes (the same JSON)."""
    body = encode_body("SendMessage", {"MessageBody": "Grüße ✓ 🎉"})
    assert body == '{"MessageBody":"Grüße ✓ 🎉"}'.encode()


def test_unencodable_text_is_the_error_sqs_would_give() -> None:
    """A lone surrogate cannot be sent: a non-retryable SQSError naming the operation, no crash."""
    with pytest.raises(SQSError) as caught:
        encode_body("SendMessage", {"MessageBody": "broken \ud800 text"})
    error = caught.value
    assert (error.operation, error.code, error.retryable) == ("SendMessage", "InvalidParameterValue", False)


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        (b"", {}),
        (b'{"Messages":[]}', {"Messages": []}),
        ('{"Body":"Grüße ✓"}'.encode(), {"Body": "Grüße ✓"}),
        (b'{"Body":"\\u00e9\\ud83d\\ude00"}', {"Body": "é😀"}),
    ],
)
def test_decode_body(raw: bytes, decoded: dict[str, object]) -> None:
    """Empty is an empty object; UTF-8 and \\u escapes (pairs for astral characters) both decode."""
    assert decode_body("ReceiveMessage", 200, raw) == decoded


@pytest.mark.parametrize(
    "raw",
    [
        b"<html>oops</html>",
        b'{"Messages":[',
        b"[1, 2]",
        b'"just a string"',
        b"\xff\xfe{}",
        b'{"Body":"\\ud800"}',  # a lone surrogate: text SQS can never have sent
    ],
)
def test_undecodable_response_is_a_retryable_error(raw: bytes) -> None:
    """Anything but a JSON object is InvalidResponse, retryable: the messages stay in SQS."""
    with pytest.raises(SQSError) as caught:
        decode_body("ReceiveMessage", 200, raw)
    error = caught.value
    assert (error.operation, error.code, error.retryable) == ("ReceiveMessage", "InvalidResponse", True)
    assert "HTTP 200" in str(error)


def _lean(queue_url: str) -> LeanSQS:
    async def no_credentials() -> None:
        return None

    return LeanSQS(
        None,
        queue_url,
        endpoint_url="http://127.0.0.1:9324",
        region="us-east-1",
        credentials=no_credentials,
        transport="lean",
    )


def test_receive_body_is_the_json_botocore_would_send() -> None:
    """The formatted ReceiveMessage body parses to the request's parameters, queue URL included."""
    queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/qüeue"
    body = _lean(queue_url).receive_body(max_messages=7, wait_time_s=20, visibility_timeout_s=45)
    assert json.loads(body) == {
        "QueueUrl": queue_url,
        "MaxNumberOfMessages": 7,
        "WaitTimeSeconds": 20,
        "VisibilityTimeout": 45,
        "MessageSystemAttributeNames": [
            "ApproximateReceiveCount",
            "ApproximateFirstReceiveTimestamp",
            "SentTimestamp",
            "SenderId",
            "MessageGroupId",
            "MessageDeduplicationId",
            "AWSTraceHeader",
        ],
        "MessageAttributeNames": ["All"],
    }


def test_a_queue_url_that_is_not_text_is_refused_up_front() -> None:
    """A lone surrogate (e.g. undecodable bytes in an environment variable) is a ValueError at once."""
    with pytest.raises(ValueError, match="not valid Unicode text"):
        _lean("https://sqs.us-east-1.amazonaws.com/1/q\udcff")
