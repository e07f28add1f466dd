"""SNS envelope unwrapping: exact shape required, never raises on anything."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asqsd.pipeline.request import unwrap_sns


def envelope(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:my-topic",
        "Subject": "hello",
        "Message": '{"job": "resize", "id": 42}',
        "Timestamp": "2024-01-01T00:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def test_unwraps_notification() -> None:
    """A notification envelope yields the inner Message, verbatim."""
    assert unwrap_sns(json.dumps(envelope())) == '{"job": "resize", "id": 42}'


def test_leading_whitespace_and_empty_message() -> None:
    """Whitespace before the object is fine; an empty Message is still a message."""
    assert unwrap_sns("  \n" + json.dumps(envelope(Message=""))) == ""


@pytest.mark.parametrize(
    "body",
    [
        "",
        "plain text",
        '{"job": "resize"}',  # ordinary JSON body
        json.dumps(envelope(Type="SubscriptionConfirmation")),
        json.dumps(envelope(Type=...)),
        json.dumps(envelope(TopicArn=...)),
        json.dumps(envelope(MessageId=...)),
        json.dumps(envelope(Message=...)),
        json.dumps(envelope(Message={"not": "a string"})),
        json.dumps(envelope(TopicArn=42)),
        json.dumps([envelope()]),
        "{" + json.dumps(envelope())[1:-1],  # truncated
        '{"a":' * 50000 + "1" + "}" * 50000,  # deep nesting: RecursionError inside json
        '{"Type": "Notification", "n": ' + "9" * 10000 + "}",  # int longer than the digit limit
    ],
)
def test_not_an_envelope(body: str) -> None:
    """Anything other than exactly a Notification envelope is left alone (None)."""
    assert unwrap_sns(body) is None


@given(st.text())
def test_arbitrary_text_never_raises(body: str) -> None:
    """Garbage never raises; the answer is None or a string."""
    result = unwrap_sns(body)
    assert result is None or isinstance(result, str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_arbitrary_json_never_raises(value: object) -> None:
    """Any JSON document is either recognised or None, never an exception."""
    result = unwrap_sns(json.dumps(value))
    assert result is None or isinstance(result, str)


@given(st.text(), st.dictionaries(st.text(), json_values, max_size=3))
def test_any_message_round_trips(message: str, extra: dict[str, object]) -> None:
    """Whatever was published comes back exactly, whatever extra keys the envelope carries."""
    body = json.dumps({**extra, **envelope(Message=message)})
    assert unwrap_sns(body) == message
