"""An SQS client that reports every call it makes: one place counts calls, for every caller.

The daemon wraps its SQS client once; the receivers, the settler, the heartbeat, the backlog
poller, readiness and the periodic scheduler all share the wrapped client, so every SQS call
(and every failed one) reaches the counters behind ``/metrics`` and the exit summary, and every
refused credential reaches the daemon's credential status.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from asqsd.clients.sqs.base import DeleteEntry, SQSClient, VisibilityEntry
from asqsd.message import BatchResult, Message, MessageAttribute

# (operation, the error it raised or None, when it was sent on the time.monotonic clock)
OnCall = Callable[[str, Exception | None, float], None]
T = TypeVar("T")


class CountingSQS:
    """Wraps an :class:`~asqsd.clients.sqs.base.SQSClient`; ``on_call(operation, error, sent_at)``
    after each call, with the exception it raised or None and when it started (a long poll answers
    long after). A cancelled call (shutdown) is not reported."""

    def __init__(self, inner: SQSClient, on_call: OnCall) -> None:
        self.queue_url = inner.queue_url
        self._inner = inner
        self._on_call = on_call

    async def receive(
        self, *, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[Message]:
        """ReceiveMessage."""
        return await self._counted(
            "ReceiveMessage",
            self._inner.receive(
                max_messages=max_messages, wait_time_s=wait_time_s, visibility_timeout_s=visibility_timeout_s
            ),
        )

    async def delete_batch(self, entries: Sequence[DeleteEntry]) -> BatchResult:
        """DeleteMessageBatch."""
        return await self._counted("DeleteMessageBatch", self._inner.delete_batch(entries))

    async def change_visibility_batch(self, entries: Sequence[VisibilityEntry]) -> BatchResult:
        """ChangeMessageVisibilityBatch."""
        return await self._counted(
            "ChangeMessageVisibilityBatch", self._inner.change_visibility_batch(entries)
        )

    async def get_queue_attributes(self, names: Sequence[str]) -> dict[str, str]:
        """GetQueueAttributes."""
        return await self._counted("GetQueueAttributes", self._inner.get_queue_attributes(names))

    async def send_message(
        self,
        body: str,
        attributes: Mapping[str, MessageAttribute] | None = None,
        *,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        queue_url: str | None = None,
    ) -> str:
        """SendMessage."""
        return await self._counted(
            "SendMessage",
            self._inner.send_message(
                body, attributes, group_id=group_id, deduplication_id=deduplication_id, queue_url=queue_url
            ),
        )

    async def _counted(self, operation: str, call: Awaitable[T]) -> T:
        sent_at = time.monotonic()
        try:
            result = await call
        except Exception as exc:
            self._on_call(operation, exc, sent_at)
            raise
        self._on_call(operation, None, sent_at)
        return result
