"""The dedup rules (stock dynamodb_dedup.rb) on an in-memory store: verdicts, outcomes, errors."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from asqsd.clients.dynamodb import DynamoDBError, TableUnavailableError
from asqsd.message import Message
from asqsd.observe.counters import Counters
from asqsd.pipeline.dedup import (
    PROCESSED,
    PROCESSING,
    Claim,
    Deduplicator,
    DedupRecord,
    Verdict,
    dedup_key,
)

WINDOW_S = 30.0
RETENTION_S = 345600


class MemoryStore:
    """A DedupStore in a dict, with the conditions DynamoDB applies; ``fail`` scripts errors."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, Decimal, int]] = {}
        self.calls: list[str] = []
        self.fail: dict[str, list[DynamoDBError]] = {}
        self.before_read: Callable[[], None] | None = None

    def _call(self, name: str) -> None:
        self.calls.append(name)
        errors = self.fail.get(name)
        if errors:
            raise errors.pop(0)

    async def claim(self, message_id: str, started_at: float, expires_at: int) -> bool:
        self._call("claim")
        if message_id in self.items:
            return False
        self.items[message_id] = (PROCESSING, Decimal(f"{started_at:.6f}"), expires_at)
        return True

    async def read(self, message_id: str) -> DedupRecord | None:
        self._call("read")
        if self.before_read is not None:
            self.before_read()
        item = self.items.get(message_id)
        return None if item is None else DedupRecord(item[0], item[1])

    async def take_over(self, message_id: str, seen: Decimal, started_at: float, expires_at: int) -> bool:
        self._call("take_over")
        item = self.items.get(message_id)
        if item is None or item[0] != PROCESSING or item[1] != seen:
            return False
        self.items[message_id] = (PROCESSING, Decimal(f"{started_at:.6f}"), expires_at)
        return True

    async def mark_processed(self, message_id: str, finished_at: float, expires_at: int) -> None:
        self._call("mark_processed")
        self.items[message_id] = (PROCESSED, Decimal(f"{finished_at:.6f}"), expires_at)

    async def forget(self, message_id: str, started_at: float) -> None:
        self._call("forget")
        item = self.items.get(message_id)
        if item is not None and item[0] == PROCESSING and item[1] == Decimal(f"{started_at:.6f}"):
            del self.items[message_id]


class Clock:
    """A settable wall clock."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def message(message_id: str = "m-1") -> Message:
    return Message(message_id, f"rh-{message_id}", "body", attributes={"ApproximateReceiveCount": "2"})


def throttled() -> DynamoDBError:
    return DynamoDBError("PutItem", "t", "ThrottlingException", "slow down", retryable=True)


def denied() -> TableUnavailableError:
    return TableUnavailableError("PutItem", "t", "AccessDeniedException", "no", retryable=False)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def counters() -> Counters:
    return Counters()


@pytest.fixture
def dedup(store: MemoryStore, clock: Clock, counters: Counters) -> Deduplicator:
    return Deduplicator(
        store, window_s=WINDOW_S, retention_s=RETENTION_S, counters=counters, wall_clock=clock
    )


def test_key_is_the_stock_layout() -> None:
    """partition = CRC-32 of the message id mod 10 (Ruby's Zlib.crc32 is the same CRC), id =
    ``<message id>-<queue url>``."""
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"
    key = dedup_key("4c3f0f50-4c28-433e-81f8-c9c79bf22f0b", url)
    assert key == {
        "partition": {"N": str(zlib.crc32(b"4c3f0f50-4c28-433e-81f8-c9c79bf22f0b") % 10)},
        "id": {"S": f"4c3f0f50-4c28-433e-81f8-c9c79bf22f0b-{url}"},
    }
    assert zlib.crc32(b"123456789") == 0xCBF43926  # the standard CRC-32 check value


async def test_first_sight_is_claimed_and_a_success_recorded(
    dedup: Deduplicator, store: MemoryStore, clock: Clock, counters: Counters
) -> None:
    """1. A new message is claimed (processing, started now, ttl = now + retention) and delivered.
    2. After a success the item says processed. 3. A later copy is a duplicate, counted."""
    claim = await dedup.check(message())
    assert claim == Claim(Verdict.DELIVER, clock.now)
    assert store.items["m-1"] == (PROCESSING, Decimal(f"{clock.now:.6f}"), int(clock.now) + RETENTION_S)
    clock.now += 5
    await dedup.finished(message(), claim, succeeded=True)
    assert store.items["m-1"][0] == PROCESSED
    with capture_logs() as logs:
        copy = await dedup.check(message())
    assert copy.verdict is Verdict.DUPLICATE and copy.started_at is None
    assert [e["event"] for e in logs] == ["duplicate-suppressed"]
    assert counters.duplicates_suppressed == 1


async def test_a_claim_younger_than_the_window_is_in_progress(
    dedup: Deduplicator, clock: Clock, counters: Counters
) -> None:
    """A copy that arrives while the first attempt's claim is at most visibility_timeout old is
    left alone (stock: 'is in progress. skipping')."""
    await dedup.check(message())
    clock.now += WINDOW_S
    assert (await dedup.check(message())).verdict is Verdict.IN_PROGRESS
    assert counters.duplicates_in_progress == 1


async def test_an_older_claim_is_taken_over_once(
    dedup: Deduplicator, store: MemoryStore, clock: Clock
) -> None:
    """1. A claim older than the window means that attempt died: the next copy takes it over
    (stock: 'failed earlier. reprocessing'). 2. The takeover is conditional on the claim read, so
    a second consumer that read the same stale claim does not also take over."""
    await dedup.check(message())
    clock.now += WINDOW_S + 1
    stale = store.items["m-1"][1]
    taken = await dedup.check(message())
    assert taken == Claim(Verdict.DELIVER, clock.now)
    assert await store.take_over("m-1", stale, clock.now, 0) is False


async def test_a_failure_removes_only_this_attempts_claim(
    dedup: Deduplicator, store: MemoryStore, clock: Clock
) -> None:
    """1. After a failed delivery the claim is removed, so the retry is delivered at once (stock
    deletes the item). 2. A claim that is not this attempt's (taken over meanwhile) stays."""
    first = await dedup.check(message())
    await dedup.finished(message(), first, succeeded=False)
    assert "m-1" not in store.items
    again = await dedup.check(message())
    assert again.verdict is Verdict.DELIVER
    clock.now += WINDOW_S + 1
    await dedup.check(message())  # another consumer takes over the (stale) claim
    await dedup.finished(message(), again, succeeded=False)
    assert store.items["m-1"][1] == Decimal(f"{clock.now:.6f}")


async def test_a_claim_that_vanished_before_the_read_is_claimed_again(
    dedup: Deduplicator, store: MemoryStore
) -> None:
    """The item a failed claim ran into is gone when read (that attempt failed): claim again."""
    store.items["m-1"] = (PROCESSING, Decimal("1"), 0)
    store.before_read = lambda: store.items.pop("m-1", None)
    assert (await dedup.check(message())).verdict is Verdict.DELIVER
    assert store.calls == ["claim", "read", "claim"]


async def test_throttling_is_retried(dedup: Deduplicator, store: MemoryStore) -> None:
    """Two throttled claims, then success: three calls, no error counted."""
    store.fail["claim"] = [throttled(), throttled()]
    assert (await dedup.check(message())).verdict is Verdict.DELIVER
    assert store.calls == ["claim"] * 3


@pytest.mark.parametrize(
    ("errors", "calls"),
    [([throttled(), throttled(), throttled()], 3), ([denied()], 1)],
    ids=["still-throttled", "access-denied"],
)
async def test_a_table_that_cannot_answer_never_holds_a_message_back(
    dedup: Deduplicator,
    store: MemoryStore,
    counters: Counters,
    errors: list[DynamoDBError],
    calls: int,
) -> None:
    """Transient errors after three tries, or a permanent one at once: the message is delivered
    unchecked (at-least-once; stock skipped it when its read failed), counted and logged, and
    nothing of it is recorded afterwards as this attempt's claim."""
    store.fail["claim"] = list(errors)
    with capture_logs() as logs:
        claim = await dedup.check(message())
    assert claim == Claim(Verdict.DELIVER, None)
    assert store.calls == ["claim"] * calls
    assert counters.dedup_errors == 1
    assert [e["event"] for e in logs] == ["dedup-error"]
    await dedup.finished(message(), claim, succeeded=False)
    assert store.calls.count("forget") == 0


async def test_a_failed_read_delivers(dedup: Deduplicator, store: MemoryStore, counters: Counters) -> None:
    """The claim found an item, but reading it fails: delivered unchecked."""
    store.items["m-1"] = (PROCESSING, Decimal("1"), 0)
    store.fail["read"] = [denied()]
    assert (await dedup.check(message())).verdict is Verdict.DELIVER
    assert counters.dedup_errors == 1


async def test_an_unreadable_item_delivers(
    dedup: Deduplicator, store: MemoryStore, counters: Counters
) -> None:
    """An item with neither known status nor time (not written by asqsd or stock): delivered."""
    store.items["m-1"] = ("weird", Decimal("1"), 0)
    assert (await dedup.check(message())).verdict is Verdict.DELIVER
    assert counters.dedup_errors == 1


async def test_a_failure_to_record_is_logged_not_raised(
    dedup: Deduplicator, store: MemoryStore, counters: Counters
) -> None:
    """Recording the success fails three times: counted and logged as dedup-record-failed."""
    claim = await dedup.check(message())
    store.fail["mark_processed"] = [throttled(), throttled(), throttled()]
    with capture_logs() as logs:
        await dedup.finished(message(), claim, succeeded=True)
    assert counters.dedup_errors == 1
    assert [e["event"] for e in logs] == ["dedup-record-failed"]
