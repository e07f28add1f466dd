"""Duplicate suppression on a DynamoDB table: the stock 2.0 daemon's ``dedup`` option.

With ``dedup`` on, a dispatcher claims each message in ``dedup_table`` before it POSTs it and
records the outcome afterwards, so a message SQS hands out again (a duplicate delivery, or a
redelivery after a delete that did not take effect) is not POSTed a second time. The item layout
and the rules are the stock daemon's (``lib/aws-sqsd/dynamodb_dedup.rb``), so a table the stock
daemon wrote keeps its meaning:

* key: ``partition`` (number) = CRC-32 of the message id mod 10, and ``id`` (string) =
  ``<message id>-<queue_url>``; attributes ``status`` (``processing`` or ``processed``), ``time``
  (epoch seconds: when the attempt started, or when its success was recorded) and ``ttl`` (epoch
  seconds, now + ``retention_period``, for DynamoDB's time-to-live).
* before the POST: put ``processing`` unless an item exists. If one exists: ``processed`` → a
  duplicate, deleted without a POST; ``processing`` for at most ``visibility_timeout`` → another
  consumer is on it, left to SQS without a POST; longer → that attempt is presumed dead, and this
  one takes over and POSTs.
* after a success the item becomes ``processed``; after a failure it is deleted, so the retry is
  POSTed.

Where asqsd differs (docs/daemon.md): a DynamoDB failure never holds a message back (after a few
tries it is POSTed unchecked); a takeover and the removal after a failure are conditional writes,
so they only ever replace the claim that was read, or remove this attempt's own; reads are
strongly consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from asqsd.backoff import Backoff
from asqsd.clients.dynamodb import DynamoDBError, DynamoDBTable, decode_item, encode_value, open_dynamodb
from asqsd.config import Settings
from asqsd.logs import get_logger
from asqsd.message import Message
from asqsd.observe.counters import Counters

log = get_logger("dedup")

PARTITIONS = 10
PROCESSING = "processing"
PROCESSED = "processed"

# Tries per table call for throttling, 5xx and connection errors; the pauses stay under a second
# because a dispatcher slot waits for them.
_ATTEMPTS = 3
_NAMES = {"#status": "status", "#time": "time"}  # both are DynamoDB reserved words

T = TypeVar("T")


class Verdict(enum.Enum):
    """What the dedup table says about a message."""

    DELIVER = "deliver"  # claimed (or the table could not be asked): POST it
    DUPLICATE = "duplicate"  # processed before: delete it without a POST
    IN_PROGRESS = "in-progress"  # another consumer is on it: leave it to SQS without a POST


@dataclass(slots=True, frozen=True)
class Claim:
    """The verdict, and the start time of this attempt's claim (None when there is none)."""

    verdict: Verdict
    started_at: float | None = None


@dataclass(slots=True, frozen=True)
class DedupRecord:
    """An item found in the table; ``started_at`` is ``time`` exactly as stored."""

    status: str | None
    started_at: Decimal | None


class DedupStore(Protocol):
    """The table calls :class:`Deduplicator` makes; they raise :class:`DynamoDBError`."""

    async def claim(self, message_id: str, started_at: float, expires_at: int) -> bool:
        """Put ``processing`` unless an item exists; False if one does."""

    async def read(self, message_id: str) -> DedupRecord | None:
        """The item, None if there is none."""

    async def take_over(self, message_id: str, seen: Decimal, started_at: float, expires_at: int) -> bool:
        """Replace a ``processing`` claim started at ``seen``; False if it changed meanwhile."""

    async def mark_processed(self, message_id: str, finished_at: float, expires_at: int) -> None:
        """Record a success."""

    async def forget(self, message_id: str, started_at: float) -> None:
        """Remove the claim started at ``started_at``, if it is still there."""


def dedup_key(message_id: str, queue_url: str) -> dict[str, dict[str, str]]:
    """The stock item key of a message on a queue."""
    partition = zlib.crc32(message_id.encode()) % PARTITIONS
    return {"partition": {"N": str(partition)}, "id": {"S": f"{message_id}-{queue_url}"}}


class DedupTable:
    """:class:`DedupStore` on a DynamoDB table in the stock layout."""

    def __init__(self, client: Any, table_name: str, queue_url: str) -> None:
        self._table = DynamoDBTable(
            client,
            table_name,
            setting="dedup_table",
            actions="dynamodb:GetItem, PutItem and DeleteItem",
            key="partition (number, hash key) and id (string, range key)",
        )
        self._queue_url = queue_url
        self.name = table_name

    async def check_access(self) -> None:
        """Read a key no message has: :class:`~asqsd.clients.dynamodb.TableUnavailableError` if
        the table is missing, access is denied or its key is not the stock one; a transient error
        is logged (the first messages then find out)."""
        try:
            await self._table.call("get_item", Key=dedup_key("asqsd-start-up-check", self._queue_url))
        except DynamoDBError as exc:
            if not exc.retryable:
                raise
            log.warning("dedup-table-check-failed", table=self.name, code=exc.code, error=str(exc))

    async def claim(self, message_id: str, started_at: float, expires_at: int) -> bool:
        """Conditional put of ``processing``."""
        item = self._item(message_id, PROCESSING, started_at, expires_at)
        response = await self._table.call(
            "put_item", Item=item, ConditionExpression="attribute_not_exists(id)"
        )
        return response is not None

    async def read(self, message_id: str) -> DedupRecord | None:
        """Strongly consistent GetItem."""
        response = await self._table.call(
            "get_item", Key=dedup_key(message_id, self._queue_url), ConsistentRead=True
        )
        item = (response or {}).get("Item")
        if item is None:
            return None
        values = decode_item(item)
        status, started_at = values.get("status"), values.get("time")
        return DedupRecord(
            status if isinstance(status, str) else None,
            started_at if isinstance(started_at, Decimal) else None,
        )

    async def take_over(self, message_id: str, seen: Decimal, started_at: float, expires_at: int) -> bool:
        """Put ``processing`` only where the stale claim that was read is still in place."""
        response = await self._table.call(
            "put_item",
            Item=self._item(message_id, PROCESSING, started_at, expires_at),
            ConditionExpression="#status = :processing AND #time = :seen",
            ExpressionAttributeNames=_NAMES,
            ExpressionAttributeValues={":processing": {"S": PROCESSING}, ":seen": encode_value(seen)},
        )
        return response is not None

    async def mark_processed(self, message_id: str, finished_at: float, expires_at: int) -> None:
        """Unconditional put of ``processed`` (stock)."""
        await self._table.call("put_item", Item=self._item(message_id, PROCESSED, finished_at, expires_at))

    async def forget(self, message_id: str, started_at: float) -> None:
        """Delete the item if it is still this attempt's ``processing`` claim."""
        await self._table.call(
            "delete_item",
            Key=dedup_key(message_id, self._queue_url),
            ConditionExpression="#status = :processing AND #time = :mine",
            ExpressionAttributeNames=_NAMES,
            ExpressionAttributeValues={":processing": {"S": PROCESSING}, ":mine": encode_value(started_at)},
        )

    def _item(self, message_id: str, status: str, at: float, expires_at: int) -> dict[str, Any]:
        return {
            **dedup_key(message_id, self._queue_url),
            "status": {"S": status},
            "time": encode_value(at),
            "ttl": encode_value(expires_at),
        }


class Deduplicator:
    """Decides, per message, whether to POST it, and records the outcome. Never raises for a
    DynamoDB problem: at-least-once delivery comes first, so the message is POSTed unchecked."""

    def __init__(
        self,
        store: DedupStore,
        *,
        window_s: float,
        retention_s: int,
        counters: Counters,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._window_s = window_s  # visibility_timeout: how long a claim means "someone is on it"
        self._retention_s = retention_s
        self._counters = counters
        self._clock = wall_clock

    async def check(self, message: Message) -> Claim:
        """Claim ``message`` for this attempt, or say why it must not be POSTed."""
        started = self._clock()
        try:
            verdict = await self._claim(message.message_id, started)
        except DynamoDBError as exc:
            self._unchecked(message.message_id, exc.code, str(exc))
            return Claim(Verdict.DELIVER)
        self._report(message, verdict)
        return Claim(verdict, started if verdict is Verdict.DELIVER else None)

    async def finished(self, message: Message, claim: Claim, *, succeeded: bool) -> None:
        """After the POST: ``processed`` on success; on failure remove this attempt's claim so the
        retry is POSTed. A failure to record is logged and counted, never raised."""
        message_id, now = message.message_id, self._clock()
        started_at = claim.started_at
        try:
            if succeeded:
                expires = int(now) + self._retention_s
                await self._retry(lambda: self._store.mark_processed(message_id, now, expires))
            elif started_at is not None:
                await self._retry(lambda: self._store.forget(message_id, started_at))
        except DynamoDBError as exc:
            self._counters.dedup_errors += 1
            log.warning(
                "dedup-record-failed",
                message_id=message_id,
                succeeded=succeeded,
                code=exc.code,
                error=str(exc),
                detail="a later copy may be POSTed again"
                if succeeded
                else "its retry waits until the claim is older than visibility_timeout",
            )

    async def _claim(self, message_id: str, started: float) -> Verdict:
        expires = int(started) + self._retention_s
        # Two rounds: the item found by a failed claim can be gone by the time it is read (that
        # attempt failed and removed it); then the message is free to claim again.
        for _round in range(2):
            if await self._retry(lambda: self._store.claim(message_id, started, expires)):
                return Verdict.DELIVER
            record = await self._retry(lambda: self._store.read(message_id))
            if record is not None:
                return await self._judge(message_id, record, started, expires)
        return Verdict.DELIVER

    async def _judge(self, message_id: str, record: DedupRecord, started: float, expires: int) -> Verdict:
        if record.status == PROCESSED:
            return Verdict.DUPLICATE
        seen = record.started_at
        if record.status != PROCESSING or seen is None:
            self._unchecked(message_id, "UnreadableItem", f"status {record.status!r}, time {seen}")
            return Verdict.DELIVER
        if started - float(seen) <= self._window_s:
            return Verdict.IN_PROGRESS
        if await self._retry(lambda: self._store.take_over(message_id, seen, started, expires)):
            log.info(
                "dedup-reprocessing", message_id=message_id, claimed_s_ago=round(started - float(seen), 1)
            )
            return Verdict.DELIVER
        return Verdict.IN_PROGRESS  # another consumer took it over (or finished it) first

    def _unchecked(self, message_id: str, code: str, error: str) -> None:
        self._counters.dedup_errors += 1
        log.warning(
            "dedup-error",
            message_id=message_id,
            code=code,
            error=error,
            detail="delivered without the duplicate check",
        )

    def _report(self, message: Message, verdict: Verdict) -> None:
        if verdict is Verdict.DUPLICATE:
            self._counters.duplicates_suppressed += 1
            log.info(
                "duplicate-suppressed", message_id=message.message_id, receive_count=message.receive_count
            )
        elif verdict is Verdict.IN_PROGRESS:
            self._counters.duplicates_in_progress += 1
            log.info(
                "duplicate-in-progress",
                message_id=message.message_id,
                receive_count=message.receive_count,
                detail="left to SQS: another consumer is processing it",
            )

    async def _retry(self, call: Callable[[], Awaitable[T]]) -> T:
        backoff = Backoff(base_s=0.1, cap_s=1.0)
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await call()
            except DynamoDBError as exc:
                if not exc.retryable or attempt == _ATTEMPTS:
                    raise
            await asyncio.sleep(backoff.next_delay())
        raise AssertionError("unreachable")


async def open_deduplicator(
    session: Any,
    settings: Settings,
    region: str | None,
    stack: contextlib.AsyncExitStack,
    counters: Counters,
    wall_clock: Callable[[], float],
) -> Deduplicator | None:
    """The dedup table's client and a first read of it; without ``dedup``, no DynamoDB call.

    A missing table, denied access or a key that is not the stock layout ends start-up (exit 3).
    """
    if not settings.dedup or settings.dedup_table is None or settings.queue_url is None:
        return None
    table = DedupTable(await open_dynamodb(session, region, stack), settings.dedup_table, settings.queue_url)
    await table.check_access()
    log.info("dedup-on", table=table.name, in_progress_window_s=settings.visibility_timeout)
    return Deduplicator(
        table,
        window_s=settings.visibility_timeout,
        retention_s=settings.retention_period,
        counters=counters,
        wall_clock=wall_clock,
    )
