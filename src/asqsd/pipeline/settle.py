"""The settler: every delete, retry delay and release of a held message goes through here.

It owns the two batchers (DeleteMessageBatch and ChangeMessageVisibilityBatch), turns their
per-message results into counters and log lines, and flushes them at shutdown within a bound.
A message reaches the settler only after the dispatcher has decided its fate (the lease is
already dropped), except :meth:`Settler.release`, which also drops the lease. What the settler
could not send is left to SQS, which redelivers it when its visibility ends: never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from asqsd.clients.sqs.base import DeleteEntry, SQSClient, VisibilityEntry
from asqsd.logs import get_logger
from asqsd.message import BatchResult, Message, VisibilityChange
from asqsd.observe.counters import Counters
from asqsd.pipeline.batcher import BatchSender
from asqsd.pipeline.leases import LeaseTable
from asqsd.tasks import StopDeadline, TaskSet

log = get_logger("daemon")  # the settle log lines predate this module; their logger name stays


class Settler:
    """Batches settles to SQS and accounts for their results. Start, use, then :meth:`flush`."""

    def __init__(self, sqs: SQSClient, leases: LeaseTable, counters: Counters, max_wait_s: float) -> None:
        self._sqs = sqs
        self._leases = leases
        self._counters = counters
        self.deleter: BatchSender[Message] = BatchSender(
            self._send_deletes, self._deleted, max_wait_s=max_wait_s
        )
        self.changer: BatchSender[VisibilityChange] = BatchSender(
            self._send_visibility, self._visibility_changed, max_wait_s=max_wait_s
        )
        # Told of each delete's result (message, None or the failure): S3 payload deletes.
        self.on_deleted: Callable[[Message, str | None], None] | None = None
        self._delete_task: asyncio.Task[None] | None = None
        self._change_task: asyncio.Task[None] | None = None

    def start(self, tasks: TaskSet) -> None:
        """Start both batchers' flush loops as tasks of ``tasks``."""
        self._delete_task = tasks.spawn(self.deleter.run())
        self._change_task = tasks.spawn(self.changer.run())

    def delete(self, message: Message) -> None:
        """Delete (the worker succeeded, or the message is past the retention period)."""
        self.deleter.add(message)

    def retry_in(self, message: Message, delay_s: int) -> None:
        """Make a failed message visible again after ``delay_s`` seconds."""
        self.changer.add(VisibilityChange(message, delay_s))

    def release(self, messages: list[Message]) -> None:
        """Make unstarted messages visible again at once (visibility 0), batched."""
        for message in messages:
            self._leases.remove(message)
            self.changer.add(VisibilityChange(message, 0, release=True))

    def unsettled(self) -> list[Message]:
        """The messages whose delete or visibility change SQS has not answered yet (``/inflight``)."""
        return [*self.deleter.items(), *(change.message for change in self.changer.items())]

    @property
    def pending(self) -> int:
        """Deletes and visibility changes not yet answered by SQS."""
        return self.deleter.unsent + self.changer.unsent

    async def flush(self, timeout_s: float, deadline: StopDeadline | None = None) -> int:
        """Send what is queued within ``timeout_s`` (and ``deadline``'s forced bound); returns how
        many settles were given up on."""
        deadline = deadline or StopDeadline(asyncio.Event(), 0)
        given_up = 0
        if self._delete_task is not None:
            given_up += await self.deleter.close(self._delete_task, timeout_s, deadline)
        if self._change_task is not None:
            given_up += await self.changer.close(self._change_task, timeout_s, deadline)
        if given_up:
            log.warning("flush-incomplete", entries=given_up, detail="left to SQS for redelivery")
        return given_up

    # --- the batchers' calls and results ---------------------------------------------------------
    async def _send_deletes(self, entries: list[tuple[str, Message]]) -> BatchResult:
        return await self._sqs.delete_batch([DeleteEntry(i, m.receipt_handle) for i, m in entries])

    async def _send_visibility(self, entries: list[tuple[str, VisibilityChange]]) -> BatchResult:
        return await self._sqs.change_visibility_batch(
            [VisibilityEntry(i, c.message.receipt_handle, c.timeout_s) for i, c in entries]
        )

    def _deleted(self, message: Message, failure: str | None) -> None:
        if self.on_deleted is not None:
            self.on_deleted(message, failure)
        if failure is None:
            self._counters.deleted += 1
            return
        self._counters.delete_failed += 1
        log.warning(
            "delete-failed", message_id=message.message_id, code=failure, detail="will be redelivered"
        )

    def _visibility_changed(self, change: VisibilityChange, failure: str | None) -> None:
        counters = self._counters
        if failure is None:
            if change.release:
                counters.released += 1
            else:
                counters.retried += 1
            return
        if change.release:
            counters.release_failed += 1
        else:
            counters.retry_failed += 1
        log.warning(
            "visibility-change-failed",
            message_id=change.message.message_id,
            code=failure,
            timeout_s=change.timeout_s,
            detail="the message reappears when its current visibility timeout ends",
        )
