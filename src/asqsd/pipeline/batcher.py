"""Batch settle calls (DeleteMessageBatch, ChangeMessageVisibilityBatch) off the hot path.

Dispatchers hand over a message synchronously with :meth:`BatchSender.add`; a flusher sends up to
10 entries per call, waiting at most ``max_wait_s`` to fill a batch. Entries SQS fails with a
server-side fault (or whole calls that fail with a retryable error) are retried with backoff;
after ``max_attempts`` they are reported as failed: the message is then left to SQS, which
redelivers it (at-least-once), never lost. A call the IAM policy refuses is not retried; one
``permission-denied`` line names the missing permission until a call succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from asqsd.backoff import Backoff
from asqsd.errors import SQSError
from asqsd.logs import get_logger
from asqsd.message import BatchResult
from asqsd.tasks import StopDeadline

log = get_logger("daemon")  # beside the settle lines (delete-failed ...) it explains

MAX_BATCH = 10
T = TypeVar("T")

SendBatch = Callable[[list[tuple[str, T]]], Awaitable[BatchResult]]
OnSettled = Callable[[T, str | None], None]  # (item, None on success or the failure reason)


class EntryFate(enum.Enum):
    """What a batch response says of one entry."""

    DONE = "done"  # listed as successful
    RETRY = "retry"  # a server-side failure, or missing from the response: worth another try
    FAILED = "failed"  # a sender fault: trying again cannot help


MISSING_FROM_RESPONSE = "missing from the batch response"


def classify_entries(
    result: BatchResult, entries: Sequence[tuple[str, object]]
) -> list[tuple[EntryFate, str | None]]:
    """Each entry's fate and failure code, in the order of ``entries`` ((id, item) pairs).

    One reading of a batch response for every batch caller (the settle batchers and the
    heartbeat): an entry that is neither successful nor failed is never assumed to have worked.
    """
    failed = {f.entry_id: f for f in result.failed}
    succeeded = set(result.succeeded)
    fates: list[tuple[EntryFate, str | None]] = []
    for entry_id, _item in entries:
        failure = failed.get(entry_id)
        if failure is None:
            if entry_id in succeeded:
                fates.append((EntryFate.DONE, None))
            else:
                fates.append((EntryFate.RETRY, MISSING_FROM_RESPONSE))
        elif failure.sender_fault:
            fates.append((EntryFate.FAILED, failure.code))
        else:
            fates.append((EntryFate.RETRY, failure.code))
    return fates


@dataclass(slots=True)
class BatchStats:
    """What a sender did, for tests and the summary."""

    calls: int = 0
    call_errors: int = 0
    entries_ok: int = 0
    entries_failed: int = 0
    retries: int = 0


class BatchSender(Generic[T]):
    """Accumulates items and sends them in batches of at most 10."""

    def __init__(
        self,
        send: SendBatch[T],
        on_settled: OnSettled[T],
        *,
        max_wait_s: float = 0.05,
        max_in_flight: int = 8,
        max_attempts: int = 3,
        backoff_base_s: float = 0.2,
    ) -> None:
        self._send = send
        self._on_settled = on_settled
        self._max_wait_s = max_wait_s
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._pending: deque[T] = deque()
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._flushes: dict[asyncio.Task[None], list[T]] = {}  # flush task → the items it carries
        self._closing = False
        self._denied = False  # the last call was refused by the IAM policy (already logged)
        self.stats = BatchStats()

    def __len__(self) -> int:
        """Items waiting for a call (not counting calls in flight)."""
        return len(self._pending)

    @property
    def unsent(self) -> int:
        """Items waiting for a call or carried by a call in flight."""
        return len(self._pending) + sum(len(batch) for batch in self._flushes.values())

    def items(self) -> list[T]:
        """A snapshot of the unsent items: waiting for a call, or carried by a call in flight."""
        return [*self._pending, *(item for batch in self._flushes.values() for item in batch)]

    def add(self, item: T) -> None:
        """Queue an item; never blocks (the number of held messages is bounded upstream)."""
        self._pending.append(item)
        self._wakeup.set()
        if len(self._pending) >= MAX_BATCH:
            self._full.set()

    async def run(self) -> None:
        """Flush loop; returns once :meth:`close` was called and everything queued was sent."""
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if len(self._pending) < MAX_BATCH and not self._closing and self._max_wait_s > 0:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._max_wait_s):
                        await self._full.wait()
            batch = [self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))]
            await self._slots.acquire()
            task = asyncio.create_task(self._flush(batch))
            self._flushes[task] = batch
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._flushes.pop(task, None)

    async def close(
        self, runner: asyncio.Task[None], timeout_s: float, deadline: StopDeadline | None = None
    ) -> int:
        """Send everything queued within ``timeout_s`` (and ``deadline``'s forced bound); returns how
        many items were given up on."""
        deadline = deadline or StopDeadline(asyncio.Event(), 0)
        self._closing = True
        self._wakeup.set()
        self._full.set()
        end = deadline.end_after(timeout_s)
        if not await deadline.wait([runner], end):
            # The runner has ended, so no new flush starts: wait for the ones it started.
            await deadline.wait(set(self._flushes), end)
        return await self._abort(runner, deadline)

    async def _abort(self, runner: asyncio.Task[None], deadline: StopDeadline) -> int:
        """Cancel what is still running; report every unsent item (left to SQS)."""
        runner.cancel()
        in_flight = dict(self._flushes)
        for task in in_flight:
            task.cancel()
        if in_flight:
            await deadline.wait(in_flight, deadline.end_after(1.0))
        given_up = len(self._pending) + sum(len(batch) for batch in in_flight.values())
        while self._pending:
            self._on_settled(self._pending.popleft(), "shutdown flush timed out")
        return given_up

    async def _flush(self, batch: list[T]) -> None:
        try:
            await self._send_with_retries(batch)
        except asyncio.CancelledError:
            for item in batch:
                self._on_settled(item, "cancelled at shutdown")
            raise
        finally:
            self._slots.release()

    async def _send_with_retries(self, batch: list[T]) -> None:
        backoff = Backoff(base_s=self._backoff_base_s, cap_s=5.0)
        remaining = batch
        for attempt in range(1, self._max_attempts + 1):
            remaining, reasons = await self._attempt(remaining)
            if not remaining:
                return
            if attempt < self._max_attempts:
                self.stats.retries += len(remaining)
                await asyncio.sleep(backoff.next_delay())
        for item in remaining:
            self.stats.entries_failed += 1
            self._on_settled(item, reasons.get(id(item), "failed"))

    async def _attempt(self, batch: list[T]) -> tuple[list[T], dict[int, str]]:
        """One call. Returns the items worth retrying and the reason for each failure."""
        entries = [(str(index), item) for index, item in enumerate(batch)]
        self.stats.calls += 1
        try:
            result = await self._send(entries)
        except SQSError as exc:
            self.stats.call_errors += 1
            if exc.retryable:
                return batch, {id(item): exc.code for item in batch}
            if exc.denied:
                self._report_denied(exc, len(batch))
            self._settle_all(batch, exc.code)
            return [], {}
        except Exception as exc:  # noqa: BLE001 - an unexpected client error is retried like a 5xx
            self.stats.call_errors += 1
            return batch, {id(item): type(exc).__name__ for item in batch}
        self._denied = False
        retry: list[T] = []
        reasons: dict[int, str] = {}
        for (_entry_id, item), (fate, code) in zip(entries, classify_entries(result, entries), strict=True):
            if fate is EntryFate.DONE:
                self.stats.entries_ok += 1
                self._on_settled(item, None)
            elif fate is EntryFate.FAILED:
                self.stats.entries_failed += 1
                self._on_settled(item, code)
            else:
                retry.append(item)
                reasons[id(item)] = code or MISSING_FROM_RESPONSE
        return retry, reasons

    def _report_denied(self, exc: SQSError, entries: int) -> None:
        """Once per streak of refused calls: a log line per call would say nothing new."""
        if self._denied:
            return
        self._denied = True
        log.warning(
            "permission-denied",
            operation=exc.operation,
            permission=exc.permission,
            code=exc.code,
            entries=entries,
            detail="not retried: the messages are left to SQS, which makes them visible again when "
            "their visibility timeout ends; logged once until such a call succeeds",
        )

    def _settle_all(self, batch: list[T], reason: str) -> None:
        for item in batch:
            self.stats.entries_failed += 1
            self._on_settled(item, reason)
