"""Pure logic of the pipeline: channel, batching, decisions, backoff, leases, heartbeat timing."""

from __future__ import annotations

import asyncio
import random

import pytest

from asqsd.backoff import Backoff
from asqsd.clients.worker.base import DeliveryResult, parse_retry_after
from asqsd.errors import SQSError
from asqsd.message import BatchFailure, BatchResult, Message, Outcome
from asqsd.pipeline.batcher import BatchSender
from asqsd.pipeline.channel import Channel, ChannelClosed, GroupedChannel
from asqsd.pipeline.dispatcher import DeliveryPolicy, decide, is_expired
from asqsd.pipeline.heartbeat import timing
from asqsd.pipeline.leases import LeaseTable
from tests.support.polling import wait_until


def msg(n: int, leased_until: float = 0.0, first_ms: str | None = None) -> Message:
    attributes = {"ApproximateFirstReceiveTimestamp": first_ms} if first_ms else {}
    return Message(f"id{n}", f"rh{n}", f"body{n}", attributes=attributes, leased_until=leased_until)


class TestChannel:
    """Reservations bound what receivers may ask for; close semantics for shutdown."""

    async def test_reserve_never_exceeds_free_slots(self) -> None:
        """Capacity 5: a first reservation of 10 gets 5; the next waits until there is room."""
        channel = Channel(5)
        assert await channel.reserve(10) == 5
        waiter = asyncio.create_task(channel.reserve(10))
        await asyncio.sleep(0)
        assert not waiter.done()
        channel.fill([msg(1), msg(2)], reserved=5)  # 3 unused slots come back
        await asyncio.sleep(0)
        assert not waiter.done()  # 3 free < a batch of 5, and the buffer is not empty
        await channel.get()
        await channel.get()
        assert await asyncio.wait_for(waiter, 1) == 5
        assert channel.free_slots() == 0

    async def test_waits_for_a_batch_unless_the_buffer_is_empty(self) -> None:
        """Capacity 30: with 25 buffered a receiver waits for 10 free slots; with an empty buffer
        (slots held by another receiver's poll) any free slot is taken."""
        channel = Channel(30)
        channel.fill([msg(i) for i in range(25)], await channel.reserve(25))
        waiter = asyncio.create_task(channel.reserve(10))
        for _ in range(4):
            await channel.get()
        await asyncio.sleep(0)
        assert not waiter.done()  # 9 free
        await channel.get()
        assert await asyncio.wait_for(waiter, 1) == 10
        starving = Channel(12)
        assert await starving.reserve(10) == 10
        assert await asyncio.wait_for(starving.reserve(10), 1) == 2

    @pytest.mark.parametrize("grouped", [False, True])
    async def test_empty_waits_count_only_gets_that_found_nothing(self, grouped: bool) -> None:
        """The exit summary's channel_empty_waits: dispatchers idle for want of messages."""
        channel = GroupedChannel(5) if grouped else Channel(5)
        channel.fill([msg(1)], await channel.reserve(1))
        first = await channel.get()  # a message was there
        channel.done(first, failed=False)  # FIFO: its group is free again
        assert channel.empty_waits == 0
        waiter = asyncio.create_task(channel.get())
        await asyncio.sleep(0)
        assert channel.empty_waits == 1
        channel.fill([msg(2)], await channel.reserve(1))
        assert (await asyncio.wait_for(waiter, 1)).message_id == "id2"
        assert channel.empty_waits == 1

    async def test_get_is_fifo_and_frees_space(self) -> None:
        """Messages come out in order; each get frees a slot."""
        channel = Channel(2)
        reserved = await channel.reserve(2)
        channel.fill([msg(1), msg(2)], reserved)
        assert channel.free_slots() == 0
        assert (await channel.get()).message_id == "id1"
        assert channel.free_slots() == 1
        assert (await channel.get()).message_id == "id2"

    async def test_close_returns_buffered_and_ends_getters(self) -> None:
        """close() hands back unstarted messages; waiting getters and reservers see the end."""
        channel = Channel(3)
        getters = [asyncio.create_task(channel.get()) for _ in range(3)]
        await asyncio.sleep(0)
        reserved = await channel.reserve(3)
        channel.fill([msg(1)], reserved)
        await asyncio.sleep(0)
        reserved = await channel.reserve(1)
        channel.fill([msg(2)], reserved)
        # One getter took id1; id2 may or may not be taken yet; close and check the totals.
        buffered = channel.close()
        results = await asyncio.gather(*getters, return_exceptions=True)
        delivered = [r.message_id for r in results if isinstance(r, Message)]
        ended = [r for r in results if isinstance(r, ChannelClosed)]
        assert sorted(delivered + [m.message_id for m in buffered]) == ["id1", "id2"]
        assert len(ended) == 3 - len(delivered)
        with pytest.raises(ChannelClosed):
            await channel.reserve(1)

    async def test_close_keep_buffer_drains_then_ends(self) -> None:
        """Drain mode: getters still receive what was buffered, then the end."""
        channel = Channel(2)
        channel.fill([msg(1), msg(2)], await channel.reserve(2))
        channel.close_keep_buffer()
        assert (await channel.get()).message_id == "id1"
        assert (await channel.get()).message_id == "id2"
        with pytest.raises(ChannelClosed):
            await channel.get()


class FakeBatchAPI:
    """Scripted batch responses, recording every call (pure: no SQS, no sockets)."""

    def __init__(self, script: list[object]) -> None:
        self.script = script
        self.calls: list[list[str]] = []

    async def __call__(self, entries: list[tuple[str, Message]]) -> BatchResult:
        self.calls.append([m.message_id for _, m in entries])
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, SQSError):
            raise step
        if step == "ok":
            return BatchResult(succeeded=[entry_id for entry_id, _ in entries])
        assert callable(step)
        result: BatchResult = step(entries)
        return result


class TestBatchSender:
    """Deletes/visibility changes in batches of ≤10 with bounded waits and bounded retries."""

    async def run_sender(
        self, api: FakeBatchAPI, items: list[Message], **kwargs: float
    ) -> dict[str, str | None]:
        settled: dict[str, str | None] = {}
        sender: BatchSender[Message] = BatchSender(
            api, lambda m, reason: settled.__setitem__(m.message_id, reason), backoff_base_s=0.001, **kwargs
        )
        runner = asyncio.create_task(sender.run())
        for item in items:
            sender.add(item)
        assert await sender.close(runner, timeout_s=5) == 0
        return settled

    async def test_batches_of_at_most_ten(self) -> None:
        """25 items → calls of 10, 10, 5; all succeed."""
        api = FakeBatchAPI([])
        settled = await self.run_sender(api, [msg(i) for i in range(25)], max_wait_s=0.01)
        assert sorted(len(c) for c in api.calls) == [5, 10, 10]
        assert set(settled.values()) == {None}

    async def test_partial_failure_retries_only_server_faults(self) -> None:
        """Failed entries with SenderFault=false are retried; SenderFault=true are final."""

        def partial(entries: list[tuple[str, Message]]) -> BatchResult:
            return BatchResult(
                succeeded=[entries[0][0]],
                failed=[
                    BatchFailure(entries[1][0], "InternalError", sender_fault=False),
                    BatchFailure(entries[2][0], "ReceiptHandleIsInvalid", sender_fault=True),
                ],
            )

        api = FakeBatchAPI([partial])
        settled = await self.run_sender(api, [msg(0), msg(1), msg(2)], max_wait_s=0.01)
        assert settled == {"id0": None, "id1": None, "id2": "ReceiptHandleIsInvalid"}
        assert api.calls[1] == ["id1"]

    async def test_retryable_call_error_is_retried_then_given_up(self) -> None:
        """A throttled call is retried max_attempts times, then reported failed (left to SQS)."""
        throttled = SQSError("DeleteMessageBatch", "ThrottlingException", "slow down", retryable=True)
        api = FakeBatchAPI([throttled, throttled, throttled])
        settled = await self.run_sender(api, [msg(0)], max_wait_s=0)
        assert len(api.calls) == 3
        assert settled == {"id0": "ThrottlingException"}

    async def test_denied_call_is_final_and_reported_once_per_streak(self) -> None:
        """A call the IAM policy refuses is not retried (its messages are left to SQS); one
        permission-denied line names the permission until a call succeeds again."""
        from structlog.testing import capture_logs

        denied = SQSError("DeleteMessageBatch", "AccessDenied", "no", retryable=False, denied=True)
        api = FakeBatchAPI([denied, denied, "ok", denied])
        settled: dict[str, str | None] = {}
        sender: BatchSender[Message] = BatchSender(
            api, lambda m, reason: settled.__setitem__(m.message_id, reason), max_wait_s=0
        )
        runner = asyncio.create_task(sender.run())
        with capture_logs() as logs:
            for count in range(1, 5):  # one call each, in order
                sender.add(msg(count - 1))
                await wait_until(lambda n=count: len(settled) == n, what=f"{count} items settled")
            assert await sender.close(runner, timeout_s=5) == 0
        assert settled == {"id0": "AccessDenied", "id1": "AccessDenied", "id2": None, "id3": "AccessDenied"}
        assert len(api.calls) == 4
        reports = [e for e in logs if e["event"] == "permission-denied"]
        assert [(e["permission"], e["operation"]) for e in reports] == [
            ("sqs:DeleteMessage", "DeleteMessageBatch"),
            ("sqs:DeleteMessage", "DeleteMessageBatch"),
        ]

    async def test_missing_entries_are_not_assumed_deleted(self) -> None:
        """An entry in neither Successful nor Failed is retried, never counted as done."""
        api = FakeBatchAPI([lambda entries: BatchResult(), "ok"])
        settled = await self.run_sender(api, [msg(0)], max_wait_s=0)
        assert settled == {"id0": None}
        assert len(api.calls) == 2

    async def test_close_gives_up_after_timeout(self) -> None:
        """A flush that cannot finish in time reports its items as given up."""
        gate = asyncio.Event()

        async def stuck(entries: list[tuple[str, Message]]) -> BatchResult:
            await gate.wait()
            return BatchResult()

        settled: dict[str, str | None] = {}
        sender: BatchSender[Message] = BatchSender(stuck, lambda m, r: settled.__setitem__(m.message_id, r))
        runner = asyncio.create_task(sender.run())
        sender.add(msg(0))
        await sender.close(runner, timeout_s=0.2)
        assert settled == {"id0": "cancelled at shutdown"}


POLICY = DeliveryPolicy(frozenset({200}), 2, 60, 43200)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (DeliveryResult(200, None, 0.1), (Outcome.DELETE, None)),
        (DeliveryResult(204, None, 0.1), (Outcome.RETRY, 2)),
        (DeliveryResult(None, "connect timeout", 5), (Outcome.RETRY, 2)),
        (DeliveryResult(503, None, 0.1, retry_after_s=30), (Outcome.RETRY, 30)),
        (DeliveryResult(429, None, 0.1, retry_after_s=99999), (Outcome.RETRY, 43200)),
    ],
)
def test_decide(result: DeliveryResult, expected: tuple[Outcome, int | None]) -> None:
    """Only success statuses delete; Retry-After (capped) wins over error visibility."""
    assert decide(result, POLICY) == expected


def test_decide_without_error_visibility_leaves() -> None:
    """error_visibility_timeout unset → leave the message to its lease."""
    policy = DeliveryPolicy(frozenset({200}), None, 60, 43200)
    assert decide(DeliveryResult(500, None, 0.1), policy) == (Outcome.LEAVE, None)


def test_expiry_counts_from_first_receive() -> None:
    """Retention is measured from ApproximateFirstReceiveTimestamp; missing or bad → not expired."""
    now = 1_000_000.0
    assert is_expired(msg(1, first_ms=str(int((now - 61) * 1000))), 60, now)
    assert not is_expired(msg(1, first_ms=str(int((now - 59) * 1000))), 60, now)
    assert not is_expired(msg(1), 60, now)
    assert not is_expired(msg(1, first_ms="garbage"), 60, now)


def test_retry_after_parsing() -> None:
    """Delta seconds and HTTP dates; junk is ignored."""
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412500.0) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_with_jitter_and_never_reaches_zero() -> None:
    """Full jitter, capped, with a floor so a run of errors can never spin."""
    backoff = Backoff(base_s=0.5, cap_s=4.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(50)]
    assert all(0.05 <= d <= 4.0 for d in delays)
    assert max(delays[10:]) > 2.0
    backoff.reset()
    assert backoff.attempt == 0


def test_lease_table_due_and_lost() -> None:
    """due() lists leases ending within the margin, oldest first, skipping lost ones."""
    table = LeaseTable()
    a, b, c = msg(1, leased_until=10), msg(2, leased_until=5), msg(3, leased_until=100)
    table.add([a, b, c])
    assert table.due(now=0, margin_s=20) == [b, a]
    table.mark_lost(b)
    assert table.due(now=0, margin_s=20) == [a]
    table.extended(a, 200)
    assert table.due(now=0, margin_s=20) == []
    assert table.remove(c) and not table.remove(c)
    assert len(table) == 2


@pytest.mark.parametrize("visibility", [1, 2, 30, 300, 43200])
def test_heartbeat_timing_leaves_several_ticks_before_expiry(visibility: int) -> None:
    """The margin (half the timeout) spans at least two ticks, so one failed call is survivable."""
    tick, margin = timing(visibility)
    assert margin >= 2 * tick
    assert tick <= 5.0


def gmsg(group: str, n: int) -> Message:
    return Message(f"{group}{n}", f"rh-{group}{n}", "b", group_id=group)


class TestGroupedChannel:
    """FIFO groups: one message per group at a time, release on failure."""

    async def test_one_per_group_in_order(self) -> None:
        """Two groups: gets alternate between idle groups; a busy group waits for done()."""
        channel = GroupedChannel(10)
        channel.fill([gmsg("a", 0), gmsg("a", 1), gmsg("b", 0)], await channel.reserve(10))
        first, second = await channel.get(), await channel.get()
        assert {first.message_id, second.message_id} == {"a0", "b0"}
        waiter = asyncio.create_task(channel.get())
        await asyncio.sleep(0)
        assert not waiter.done()  # a1 waits for a0
        assert channel.done(first if first.group_id == "a" else second, failed=False) == []
        assert (await asyncio.wait_for(waiter, 1)).message_id == "a1"

    async def test_failure_hands_back_the_rest_of_the_group(self) -> None:
        """After a failure the group's buffered messages come back for release; others stay."""
        channel = GroupedChannel(10)
        channel.fill([gmsg("a", 0), gmsg("a", 1), gmsg("a", 2), gmsg("b", 0)], await channel.reserve(10))
        a0 = await channel.get()
        assert a0.message_id == "a0"
        released = channel.done(a0, failed=True)
        assert [m.message_id for m in released] == ["a1", "a2"]
        assert (await channel.get()).message_id == "b0"
        assert channel.stats().buffered == 0

    async def test_close_returns_everything_buffered(self) -> None:
        """close() drains every group and ends the getters."""
        channel = GroupedChannel(10)
        channel.fill([gmsg("a", 0), gmsg("a", 1), gmsg("b", 0)], await channel.reserve(10))
        await channel.get()
        assert sorted(m.message_id for m in channel.close()) in (["a1", "b0"], ["a0", "b0"], ["a0", "a1"])
        with pytest.raises(ChannelClosed):
            await channel.get()
