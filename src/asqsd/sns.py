"""Unwrap SNS → SQS notification envelopes (contract §6).

Without raw message delivery, SNS wraps what was published in a JSON envelope (``Type``,
``MessageId``, ``TopicArn``, ``Message``, ...) and that envelope becomes the SQS body. The stock
daemon had an unwrap option (``via_sns``) but never exposed it; asqsd offers it as an opt-in.
"""

from __future__ import annotations

import json

_REQUIRED_STRINGS = ("Message", "TopicArn", "MessageId")


def unwrap_sns(body: str) -> str | None:
    """The published message if ``body`` is an SNS notification envelope, else None.

    Anything that is not exactly that shape (other SNS types such as ``SubscriptionConfirmation``,
    JSON that is not an object, non-string fields, invalid or absurdly nested JSON) yields None
    so the caller delivers the body unchanged. Never raises.
    """
    # Cheap pre-filter: most bodies are not JSON objects, and json.loads is the costly part.
    if not isinstance(body, str) or not body.lstrip().startswith("{"):
        return None
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and over-long integer literals; RecursionError a
        # body of thousands of nested brackets.
        return None
    if not isinstance(envelope, dict) or envelope.get("Type") != "Notification":
        return None
    if not all(isinstance(envelope.get(key), str) for key in _REQUIRED_STRINGS):
        return None
    message: str = envelope["Message"]
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        return None  # a lone surrogate (JSON "\ud800"): not deliverable as bytes; keep the envelope
    return message
