"""The SQS operations asqsd uses, as a Protocol, and its aiobotocore implementation.

Everything above this module sees :class:`~asqsd.message.Message`, :class:`BatchResult` and
:class:`~asqsd.errors.SQSError`; botocore's dictionaries and exceptions stay in here.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from asqsd.errors import SQSError
from asqsd.message import (
    SYSTEM_ATTRIBUTE_NAMES,
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
_REGION_FROM_URL = re.compile(
    r"^https?://(?:sqs[.-](?P<a>[a-z0-9-]+)\.amazonaws\.com|(?P<b>[a-z0-9-]+)\.queue\.amazonaws\.com)",
    re.IGNORECASE,
)


@dataclass(slots=True, frozen=True)
class DeleteEntry:
    """One entry of a DeleteMessageBatch call."""

    entry_id: str
    receipt_handle: str


@dataclass(slots=True, frozen=True)
class VisibilityEntry:
    """One entry of a ChangeMessageVisibilityBatch call."""

    entry_id: str
    receipt_handle: str
    visibility_timeout_s: int


class SQSClient(Protocol):
    """The SQS calls the daemon makes, bound to one queue."""

    queue_url: str

    async def receive(
        self, *, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[Message]:
        """ReceiveMessage with the stock daemon's attribute selection."""
        ...

    async def delete_batch(self, entries: Sequence[DeleteEntry]) -> BatchResult:
        """DeleteMessageBatch (1-10 entries)."""
        ...

    async def change_visibility_batch(self, entries: Sequence[VisibilityEntry]) -> BatchResult:
        """ChangeMessageVisibilityBatch (1-10 entries)."""
        ...

    async def get_queue_attributes(self, names: Sequence[str]) -> dict[str, str]:
        """GetQueueAttributes for this queue."""
        ...

    async def send_message(
        self,
        body: str,
        attributes: Mapping[str, MessageAttribute] | None = None,
        *,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """SendMessage; returns the MessageId."""
        ...


def normalise_error_code(code: str) -> str:
    """Map the several spellings servers use for one error to a single code."""
    if code.startswith(_QUERY_PREFIX):
        code = code[len(_QUERY_PREFIX) :]
    return _CODE_ALIASES.get(code, code)


def is_retryable(code: str, http_status: int) -> bool:
    """Whether an SQS error is worth retrying after a pause."""
    return http_status >= 500 or http_status == 429 or code in _RETRYABLE_CODES


def region_from_queue_url(queue_url: str) -> str | None:
    """The region a standard SQS queue URL names (``sqs.<region>.amazonaws.com``), if any."""
    match = _REGION_FROM_URL.match(queue_url)
    if match is None:
        return None
    return match.group("a") or match.group("b")


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


class BotocoreSQS:
    """:class:`SQSClient` on an aiobotocore client (the client is created and closed elsewhere)."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self.queue_url = queue_url

    async def receive(
        self, *, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[Message]:
        """ReceiveMessage: long poll, stock system attributes, all message attributes."""
        async with self._translate("ReceiveMessage"):
            response = await self._client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=wait_time_s,
                VisibilityTimeout=visibility_timeout_s,
                MessageSystemAttributeNames=[*SYSTEM_ATTRIBUTE_NAMES, "MessageGroupId"],
                MessageAttributeNames=["All"],
            )
        return [parse_message(raw) for raw in response.get("Messages") or []]

    async def delete_batch(self, entries: Sequence[DeleteEntry]) -> BatchResult:
        """DeleteMessageBatch."""
        async with self._translate("DeleteMessageBatch"):
            response = await self._client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": e.entry_id, "ReceiptHandle": e.receipt_handle} for e in entries],
            )
        return batch_result(response)

    async def change_visibility_batch(self, entries: Sequence[VisibilityEntry]) -> BatchResult:
        """ChangeMessageVisibilityBatch."""
        async with self._translate("ChangeMessageVisibilityBatch"):
            response = await self._client.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {
                        "Id": e.entry_id,
                        "ReceiptHandle": e.receipt_handle,
                        "VisibilityTimeout": e.visibility_timeout_s,
                    }
                    for e in entries
                ],
            )
        return batch_result(response)

    async def get_queue_attributes(self, names: Sequence[str]) -> dict[str, str]:
        """GetQueueAttributes."""
        async with self._translate("GetQueueAttributes"):
            response = await self._client.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=list(names)
            )
        return {str(k): str(v) for k, v in (response.get("Attributes") or {}).items()}

    async def send_message(
        self,
        body: str,
        attributes: Mapping[str, MessageAttribute] | None = None,
        *,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """SendMessage."""
        kwargs = send_message_params(
            self.queue_url, body, attributes, group_id, deduplication_id, attributes_to_wire
        )
        async with self._translate("SendMessage"):
            response = await self._client.send_message(**kwargs)
        return str(response.get("MessageId", ""))

    @contextlib.asynccontextmanager
    async def _translate(self, operation: str) -> Any:
        """Turn botocore/aiohttp failures into :class:`SQSError`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = normalise_error_code(str(error.get("Code", "Unknown")))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            raise SQSError(
                operation, code, str(error.get("Message", "")), retryable=is_retryable(code, status)
            ) from exc
        except (BotoCoreError, OSError, TimeoutError) as exc:
            # Transport problems (endpoint down, connection reset, read timeout): always retryable.
            raise SQSError(operation, type(exc).__name__, str(exc), retryable=True) from exc
