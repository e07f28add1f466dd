"""SQS wire helpers shared by both SQS clients: messages, batch results, error codes, queue names.

Everything above the clients sees :class:`~asqsd.message.Message`, :class:`~asqsd.message.BatchResult`
and :class:`~asqsd.errors.SQSError`; the wire's dictionaries and error codes stay in here. What a
queue URL says about the region and endpoint is in :mod:`asqsd.clients.sqs.endpoint`.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Mapping
from typing import Any

from asqsd.clients.sqs.credentials import EXPIRED_CODES
from asqsd.errors import SQSError
from asqsd.message import (
    BatchFailure,
    BatchResult,
    Message,
    MessageAttribute,
)

# Error codes that mean "try again later"; everything 5xx or transport-level is retryable too.
_RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KmsThrottled",
        "RequestTimeout",
    }
)


_QUERY_PREFIX = "AWS.SimpleQueueService."


_CODE_ALIASES = {"NonExistentQueue": "QueueDoesNotExist"}


# "The credentials are valid, the policy does not allow this call": AccessDenied (query protocol,
# and the JSON protocol's x-amzn-query-error), AccessDeniedException (JSON __type), the older
# AccessFailure and the common NotAuthorized. Credential problems (InvalidClientTokenId,
# SignatureDoesNotMatch, ExpiredToken...) are not denials: no policy change fixes them.
_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "AccessFailure", "NotAuthorized"})


# An XML error document where the JSON protocol expects JSON: what an authorisation layer in front
# of the service may send (moto's IAM check does, with HTTP 403).
_XML_ERROR_FIELD = re.compile(r"<(Code|Message)>([^<]*)</\1>")


def normalise_error_code(code: str) -> str:
    """Map the several spellings servers use for one error to a single code."""
    if code.startswith(_QUERY_PREFIX):
        code = code[len(_QUERY_PREFIX) :]
    return _CODE_ALIASES.get(code, code)


def is_retryable(code: str, http_status: int) -> bool:
    """Whether an SQS error is worth retrying after a pause.

    Expired credentials count: role credentials refresh themselves, so the daemon waits for them
    instead of exiting. A key SQS does not know (InvalidClientTokenId) does not.
    """
    return http_status >= 500 or http_status == 429 or code in _RETRYABLE_CODES or code in EXPIRED_CODES


def server_error(operation: str, code: str, message: str, http_status: int) -> SQSError:
    """The :class:`SQSError` for an error response, as either client read its code and message.

    A client that could not parse the body reports the HTTP status as the code and the raw body
    as the message; when that body is an XML error document its own code and message are used.
    """
    if code == str(http_status) and message.lstrip().startswith("<"):
        fields = {name: html.unescape(value) for name, value in _XML_ERROR_FIELD.findall(message)}
        code, message = fields.get("Code", code), fields.get("Message", message)
    code = normalise_error_code(code)
    return SQSError(
        operation, code, message, retryable=is_retryable(code, http_status), denied=code in _DENIED_CODES
    )


def queue_name(queue_url: str) -> str:
    """The queue name: the last path segment of the queue URL (X-Aws-Sqsd-Queue)."""
    return queue_url.rstrip("/").rsplit("/", 1)[-1]


def parse_message(raw: Mapping[str, Any]) -> Message:
    """Turn one entry of a ReceiveMessage response into a :class:`Message`."""
    attributes = {str(k): str(v) for k, v in (raw.get("Attributes") or {}).items()}
    message_attributes: dict[str, MessageAttribute] = {}
    for name, value in (raw.get("MessageAttributes") or {}).items():
        binary = value.get("BinaryValue")
        message_attributes[str(name)] = MessageAttribute(
            data_type=str(value.get("DataType", "")),
            string_value=value.get("StringValue"),
            binary_value=bytes(binary) if binary is not None else None,
        )
    return Message(
        message_id=str(raw.get("MessageId", "")),
        receipt_handle=str(raw.get("ReceiptHandle", "")),
        body=str(raw.get("Body", "")),
        attributes=attributes,
        message_attributes=message_attributes,
        group_id=attributes.get("MessageGroupId"),
    )


def attributes_to_wire(attributes: Mapping[str, MessageAttribute]) -> dict[str, dict[str, Any]]:
    """Message attributes in the shape SendMessage takes."""
    wire: dict[str, dict[str, Any]] = {}
    for name, attr in attributes.items():
        entry: dict[str, Any] = {"DataType": attr.data_type}
        if attr.binary_value is not None:
            entry["BinaryValue"] = attr.binary_value
        else:
            entry["StringValue"] = attr.string_value or ""
        wire[name] = entry
    return wire


def send_message_params(
    queue_url: str,
    body: str,
    attributes: Mapping[str, MessageAttribute] | None,
    group_id: str | None,
    deduplication_id: str | None,
    encode_attributes: Callable[[Mapping[str, MessageAttribute]], dict[str, dict[str, Any]]],
) -> dict[str, Any]:
    """SendMessage parameters; ``encode_attributes`` differs between botocore and raw JSON."""
    params: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body}
    if attributes:
        params["MessageAttributes"] = encode_attributes(attributes)
    if group_id is not None:
        params["MessageGroupId"] = group_id
    if deduplication_id is not None:
        params["MessageDeduplicationId"] = deduplication_id
    return params


def batch_result(response: Mapping[str, Any]) -> BatchResult:
    """Read the Successful/Failed lists of a batch response."""
    result = BatchResult(succeeded=[str(e["Id"]) for e in response.get("Successful") or []])
    for entry in response.get("Failed") or []:
        result.failed.append(
            BatchFailure(
                entry_id=str(entry.get("Id", "")),
                code=normalise_error_code(str(entry.get("Code", ""))),
                sender_fault=bool(entry.get("SenderFault", False)),
                message=str(entry.get("Message", "")),
            )
        )
    return result


def decode_binary_attributes(raw_message: dict[str, Any]) -> None:
    """Turn base64 BinaryValue strings of a JSON-protocol message into bytes, in place."""
    # JSON carries blobs as base64; botocore's parser turns them into bytes before the caller sees
    # them, so do the same (in place: the dict is ours, freshly decoded) before parse_message.
    attributes = raw_message.get("MessageAttributes")
    if not attributes:
        return
    for value in attributes.values():
        binary = value.get("BinaryValue")
        if isinstance(binary, str):
            value["BinaryValue"] = base64.b64decode(binary)
