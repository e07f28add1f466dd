"""The SQS JSON protocol (awsJson1_0): operation names, request decoding, response and error encoding.

Requests are ``POST`` with ``X-Amz-Target: AmazonSQS.<Operation>`` and a JSON body; signatures are not
checked.  Errors carry ``__type`` (the smithy shape) and ``x-amzn-query-error: <code>;<Sender|Receiver>``,
which is what makes botocore raise its modelled exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from asqsd.emulator import errors, message_ops, queue_ops
from asqsd.emulator.context import Context
from asqsd.emulator.validation import Params

CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "AmazonSQS."
RECEIVE = "ReceiveMessage"

Result = dict[str, Any]
Handler = Callable[[Context, Params], Result]

# Every operation but ReceiveMessage is synchronous; ReceiveMessage may park (long polling).
HANDLERS: dict[str, Handler] = {
    "CreateQueue": queue_ops.create_queue,
    "GetQueueUrl": queue_ops.get_queue_url,
    "GetQueueAttributes": queue_ops.get_queue_attributes,
    "SetQueueAttributes": queue_ops.set_queue_attributes,
    "ListQueues": queue_ops.list_queues,
    "DeleteQueue": queue_ops.delete_queue,
    "PurgeQueue": queue_ops.purge_queue,
    "TagQueue": queue_ops.tag_queue,
    "UntagQueue": queue_ops.untag_queue,
    "ListQueueTags": queue_ops.list_queue_tags,
    "ListDeadLetterSourceQueues": queue_ops.list_dead_letter_source_queues,
    "SendMessage": message_ops.send_message,
    "SendMessageBatch": message_ops.send_message_batch,
    "DeleteMessage": message_ops.delete_message,
    "DeleteMessageBatch": message_ops.delete_message_batch,
    "ChangeMessageVisibility": message_ops.change_message_visibility,
    "ChangeMessageVisibilityBatch": message_ops.change_message_visibility_batch,
}
OPERATIONS = frozenset(HANDLERS) | {RECEIVE}

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def operation_of(target: str | None) -> str:
    """The operation named by ``X-Amz-Target`` ("" when the header is missing or not SQS)."""
    if target is None or not target.startswith(TARGET_PREFIX):
        return ""
    return target[len(TARGET_PREFIX) :]


def check_operation(target: str | None, operation: str) -> None:
    if operation not in OPERATIONS:
        raise errors.unknown_operation(target or "(missing X-Amz-Target)")


def decode(body: bytes) -> Params:
    if not body:
        return {}
    try:
        params = json.loads(body)
    except ValueError:
        raise errors.serialization_error("Request body is not valid JSON") from None
    if not isinstance(params, dict):
        raise errors.serialization_error("Request body must be a JSON object")
    return params


def encode(result: Result) -> bytes:
    # Bodies were checked for lone surrogates on the way in, so UTF-8 encoding cannot fail here.
    return _ENCODER.encode(result).encode("utf-8")


def error_payload(error: errors.SqsError) -> tuple[bytes, dict[str, str]]:
    """Body and headers of an error response (the status is ``error.status``)."""
    body = encode({"__type": f"com.amazonaws.sqs#{error.shape}", "message": error.message})
    headers = {"Content-Type": CONTENT_TYPE, "x-amzn-query-error": f"{error.code};{error.fault}"}
    return body, headers
