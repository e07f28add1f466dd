"""The SQS client interface the daemon needs, and the batch entries it sends.

Two implementations sit beside it: ``lean_impl`` (the default, signed JSON-protocol POSTs over
the shared HTTP/1.1 engine) and ``botocore_impl`` (aiobotocore, the reference). Both return the
same Message, BatchResult and SQSError values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from asqsd.message import (
    BatchResult,
    Message,
    MessageAttribute,
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
        queue_url: str | None = None,
    ) -> str:
        """SendMessage to this queue, or to ``queue_url`` (another queue); returns the MessageId."""
        ...
