"""The aiobotocore SQS client (``sqs_client: botocore``): the reference implementation.

Slower per call than the lean client but exactly botocore's behaviour; errors are translated to
SQSError with the same codes and retryability as the lean client's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from asqsd.clients.sqs.base import DeleteEntry, VisibilityEntry
from asqsd.clients.sqs.wire import (
    attributes_to_wire,
    batch_result,
    parse_message,
    send_message_params,
    server_error,
)
from asqsd.errors import SQSError
from asqsd.message import (
    RECEIVE_SYSTEM_ATTRIBUTE_NAMES,
    BatchResult,
    Message,
    MessageAttribute,
)


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
                MessageSystemAttributeNames=list(RECEIVE_SYSTEM_ATTRIBUTE_NAMES),
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
        queue_url: str | None = None,
    ) -> str:
        """SendMessage, to this queue or to ``queue_url`` (the dead-letter queue)."""
        kwargs = send_message_params(
            queue_url or self.queue_url, body, attributes, group_id, deduplication_id, attributes_to_wire
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
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            code, message = str(error.get("Code", "Unknown")), str(error.get("Message", ""))
            raise server_error(operation, code, message, status) from exc
        except (BotoCoreError, OSError, TimeoutError) as exc:
            # Transport problems (endpoint down, connection reset, read timeout): always retryable.
            raise SQSError(operation, type(exc).__name__, str(exc), retryable=True) from exc
