"""The periodic-task scheduler against moto_server (SQS + DynamoDB), driven by fast or manual clocks.

Clocks: :class:`AcceleratedClock` runs cron minutes in (fractions of) real seconds for the
multi-instance tests, which use real leader elections; :class:`ManualClock` plus a stub election
makes single-scheduler scenarios exact (a test decides when time moves and who leads).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from asqsd.clients.dynamodb import TableUnavailableError
from asqsd.clients.sqs.botocore_impl import BotocoreSQS
from asqsd.errors import SQSError
from asqsd.message import MessageAttribute
from asqsd.periodic.cron_yaml import CronTask, parse_cron_yaml
from asqsd.periodic.leader import LeaderElection
from asqsd.periodic.registry import RegistryTable
from asqsd.periodic.scheduler import PeriodicScheduler, fifo_ids
from tests.support.dynamo import AcceleratedClock, ManualClock
from tests.support.polling import wait_until

# 2030-01-01T12:00:00Z: any fixed minute boundary works for the manual clock.
MINUTE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC).timestamp()
BODY = "elasticbeanstalk scheduled job"


def cron(*entries: tuple[str, str, str]) -> list[CronTask]:
    lines = ["version: 1", "cron:"]
    for name, url, schedule in entries:
        lines += [f'  - name: "{name}"', f'    url: "{url}"', f'    schedule: "{schedule}"']
    return parse_cron_yaml("\n".join(lines))


EVERY_MINUTE = cron(("tick", "/tick", "* * * * *"))


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
async def queue(sqs: Any) -> BotocoreSQS:
    """A fresh standard queue behind the SQSClient the scheduler uses."""
    response = await sqs.create_queue(QueueName=f"cron-{uuid.uuid4().hex[:12]}")
    return BotocoreSQS(sqs, response["QueueUrl"])


class StubElection:
    """A :class:`~asqsd.leader.Leadership` the test controls: leads from the start by default."""

    def __init__(self, identity: str, *, leading: bool = True) -> None:
        self.identity = identity
        self.term = 0
        self.step_downs: list[float] = []
        self._leading = asyncio.Event()
        self._not_leading = asyncio.Event()
        self.set_leader(leading)

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    def set_leader(self, leading: bool) -> None:
        if leading and not self._leading.is_set():
            self.term += 1
        (self._leading if leading else self._not_leading).set()
        (self._not_leading if leading else self._leading).clear()

    async def wait_for_leadership(self) -> None:
        await self._leading.wait()

    async def wait_for_loss(self) -> None:
        await self._not_leading.wait()

    async def step_down(self, cooldown_s: float) -> None:
        self.step_downs.append(cooldown_s)
        self.set_leader(False)


class FlakySQS:
    """Wraps a real queue client; SendMessage raises the scripted errors first."""

    def __init__(self, inner: BotocoreSQS, errors: list[SQSError]) -> None:
        self.inner = inner
        self.queue_url = inner.queue_url
        self.errors = errors
        self.calls = 0

    async def send_message(
        self,
        body: str,
        attributes: Mapping[str, MessageAttribute] | None = None,
        *,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        queue_url: str | None = None,
    ) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return await self.inner.send_message(
            body, attributes, group_id=group_id, deduplication_id=deduplication_id
        )


@contextlib.asynccontextmanager
async def running(*components: Any) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run schedulers/elections as tasks; on exit stop them (schedulers first) and await them."""
    tasks = [asyncio.create_task(component.run()) for component in components]
    try:
        yield tasks
    finally:
        for component in sorted(components, key=lambda c: isinstance(c, LeaderElection)):
            component.stop()
        async with asyncio.timeout(10):
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result


async def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message in the queue (received once each, by one receiver)."""
    messages: list[dict[str, Any]] = []
    while True:
        response = await sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        )
        batch = response.get("Messages") or []
        if not batch:
            return messages
        messages += batch


def occurrences(messages: list[dict[str, Any]]) -> collections.Counter[tuple[str, str]]:
    """(task name, scheduled time) -> how many messages carry it."""
    return collections.Counter(
        (
            m["MessageAttributes"]["beanstalk.sqsd.task_name"]["StringValue"],
            m["MessageAttributes"]["beanstalk.sqsd.scheduled_time"]["StringValue"],
        )
        for m in messages
    )


def total(schedulers: list[PeriodicScheduler]) -> int:
    return sum(s.counters.enqueued for s in schedulers)


# --- construction ------------------------------------------------------------------------------


class NoIO:
    """Fails any attribute access except the queue URL: proof that constructors do no I/O."""

    queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/worker-queue"

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"touched {name} during construction")


async def test_constructors_do_no_io() -> None:
    """Building the registry, the election and the scheduler calls nothing and starts no task
    (so a daemon without cron.yaml, which builds none of them, makes no DynamoDB call either)."""
    before = asyncio.all_tasks()
    registry = RegistryTable(NoIO(), "table")
    election = LeaderElection(registry)
    scheduler = PeriodicScheduler(EVERY_MINUTE, NoIO(), election, registry)
    assert asyncio.all_tasks() == before
    assert not election.is_leader and not scheduler.fifo


async def test_scheduler_without_tasks_returns_at_once() -> None:
    """An empty ``cron:`` list: run() returns without touching anything."""
    registry = RegistryTable(NoIO(), "table")
    scheduler = PeriodicScheduler([], NoIO(), StubElection("a"), registry)
    async with asyncio.timeout(1):
        await scheduler.run()


# --- several instances, real elections ---------------------------------------------------------


def instances(
    n: int,
    tasks: list[CronTask],
    queue: Any,
    registry: RegistryTable,
    clock: AcceleratedClock,
    lease_s: float,
) -> tuple[list[LeaderElection], list[PeriodicScheduler]]:
    # Elections run on real time (their leases are short anyway); only the schedule is fast.
    elections = [
        LeaderElection(registry, lease_s=lease_s, check_interval_s=0.05, renew_timeout_s=0.4 * lease_s)
        for _ in range(n)
    ]
    return elections, [PeriodicScheduler(tasks, queue, e, registry, clock) for e in elections]


def check_task_message(message: dict[str, Any], paths: Mapping[str, str]) -> None:
    """The stock periodic-task message: fixed body, three String attributes."""
    assert message["Body"] == BODY
    attributes = message["MessageAttributes"]
    assert set(attributes) == {
        "beanstalk.sqsd.path",
        "beanstalk.sqsd.task_name",
        "beanstalk.sqsd.scheduled_time",
    }
    assert {a["DataType"] for a in attributes.values()} == {"String"}
    name = attributes["beanstalk.sqsd.task_name"]["StringValue"]
    assert attributes["beanstalk.sqsd.path"]["StringValue"] == paths[name]
    scheduled = datetime.strptime(
        attributes["beanstalk.sqsd.scheduled_time"]["StringValue"], "%Y-%m-%d %H:%M:%S UTC"
    )
    assert scheduled.second == 0


async def test_three_instances_enqueue_every_occurrence_exactly_once(
    sqs: Any, queue: BotocoreSQS, registry: RegistryTable
) -> None:
    """1. Three instances (election + scheduler each) share a table and a queue; a clock running
    60x makes a cron minute last one real second. 2. Let at least six occurrences pass. 3. Each
    is in the queue exactly once, consecutive, with the stock body and attributes."""
    tasks = cron(("tick", "/tick", "* * * * *"), ("even", "/jobs/even?x=1", "*/2 * * * *"))
    clock = AcceleratedClock(start=MINUTE - 10, speed=60)
    elections, schedulers = instances(3, tasks, queue, registry, clock, lease_s=2.0)
    async with running(*elections, *schedulers):
        await wait_until(lambda: total(schedulers) >= 6, timeout_s=15, what="six enqueued occurrences")
    messages = await drain(sqs, queue.queue_url)
    counts = occurrences(messages)
    assert len(messages) == total(schedulers)
    assert set(counts.values()) == {1}, counts
    ticks = sorted(t for name, t in counts if name == "tick")
    first = datetime.strptime(ticks[0], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC).timestamp()
    assert ticks == [stamp(first + 60 * i) for i in range(len(ticks))]  # no gap, no repeat
    assert all(int(t[14:16]) % 2 == 0 for name, t in counts if name == "even")
    for message in messages:
        check_task_message(message, {"tick": "/tick", "even": "/jobs/even?x=1"})


async def test_next_occurrence_is_enqueued_once_after_the_leader_dies(
    sqs: Any, queue: BotocoreSQS, registry: RegistryTable
) -> None:
    """1. Three instances; a minute lasts 3 real seconds. 2. Right after the leader enqueues an
    occurrence, kill it (cancel both tasks: no release). 3. Another instance takes over within
    the 1 s lease and enqueues the next occurrence exactly once."""
    clock = AcceleratedClock(start=MINUTE - 5, speed=20)
    elections, schedulers = instances(3, EVERY_MINUTE, queue, registry, clock, lease_s=1.0)
    async with running(*elections, *schedulers) as tasks:
        await wait_until(lambda: total(schedulers) >= 1, timeout_s=10, what="the first occurrence")
        dead = next(i for i, s in enumerate(schedulers) if s.counters.enqueued)
        killed_at = clock.time()
        for task in (tasks[dead], tasks[len(elections) + dead]):
            task.cancel()
        await asyncio.gather(tasks[dead], tasks[len(elections) + dead], return_exceptions=True)
        sent_by_dead = schedulers[dead].counters.enqueued
        await wait_until(lambda: total(schedulers) > sent_by_dead, timeout_s=10, what="the next occurrence")
        assert clock.time() - killed_at < 120  # it really was the very next minute
    survivors = [s for i, s in enumerate(schedulers) if i != dead]
    assert schedulers[dead].counters.enqueued == sent_by_dead
    assert total(survivors) >= 1
    counts = occurrences(await drain(sqs, queue.queue_url))
    assert set(counts.values()) == {1}, counts
    assert counts[("tick", stamp((killed_at // 60 + 1) * 60))] == 1


async def test_overlapping_leaders_never_enqueue_an_occurrence_twice(
    sqs: Any, queue: BotocoreSQS, registry: RegistryTable
) -> None:
    """Two schedulers that both believe they lead (split brain) both try every occurrence: the
    conditional claim lets exactly one of them send each.

    Their clocks differ by 6 s (0.1 s of real time), like two hosts' clocks: moto_server checks
    a condition and writes without a lock, so two *simultaneous* conditional writes can both
    succeed there (about 1 in 300 races, measured) -- DynamoDB makes them atomic.
    """
    clocks = [AcceleratedClock(start=MINUTE - 5 - skew, speed=60) for skew in (0, 6)]
    schedulers = [
        PeriodicScheduler(EVERY_MINUTE, queue, StubElection(name), registry, clock)
        for name, clock in zip(("a", "b"), clocks, strict=True)
    ]
    async with running(*schedulers):
        await wait_until(lambda: total(schedulers) >= 3, timeout_s=10, what="three occurrences")
    counts = occurrences(await drain(sqs, queue.queue_url))
    assert set(counts.values()) == {1}, counts
    assert sum(counts.values()) == total(schedulers)
    assert sum(s.counters.claimed_elsewhere for s in schedulers) >= total(schedulers) - 1


# --- one scheduler, manual clock ----------------------------------------------------------------


async def sent(sqs: Any, queue: BotocoreSQS) -> list[str]:
    """Scheduled times of the task messages in the queue, in order."""
    return sorted(t for _, t in occurrences(await drain(sqs, queue.queue_url)))


async def asleep(clock: ManualClock) -> None:
    """Wait until the scheduler has done everything due and sleeps for the next occurrence."""
    await wait_until(lambda: clock.sleepers == 1, timeout_s=5, what="the scheduler to sleep")


async def test_restarted_leader_does_not_enqueue_the_same_occurrence_again(
    sqs: Any, queue: BotocoreSQS, registry: RegistryTable
) -> None:
    """1. A leader enqueues 12:00 and stops. 2. A new leader starts at 12:00:30 (restart): the
    registry says 12:00 is done, so nothing is sent. 3. At 12:01 it sends 12:01."""
    clock = ManualClock(MINUTE - 1)
    first = PeriodicScheduler(EVERY_MINUTE, queue, StubElection("old"), registry, clock)
    async with running(first):
        await asleep(clock)
        await clock.advance(1)
        await wait_until(lambda: first.counters.enqueued == 1, what="12:00")
    await clock.advance(30)
    second = PeriodicScheduler(EVERY_MINUTE, queue, StubElection("new"), registry, clock)
    async with running(second):
        await asleep(clock)
        assert second.counters.enqueued == 0
        await clock.advance(30)
        await wait_until(lambda: second.counters.enqueued == 1, what="12:01")
    assert await sent(sqs, queue) == [stamp(MINUTE), stamp(MINUTE + 60)]
    item = await registry.get("tick")
    assert item is not None
    assert item["schedule_time"] == MINUTE + 60 and item["claimed_by"] == "new"
    assert isinstance(item["update_time"], Decimal) and "message_id" in item


async def test_missed_occurrence_is_recovered_once_stamped_with_its_own_time(
    sqs: Any, queue: BotocoreSQS, registry: RegistryTable
) -> None:
    """1. The registry says 11:58 was the last run; 11:59 and 12:00 were missed (no leader).
    2. A leader starting at 12:00:20 enqueues 12:00 once -- its own time, not stock's "next
    occurrence" stamp -- and not 11:59. 3. Another leader a moment later sends nothing more."""
    await registry.update("tick", "SET schedule_time = :t", {":t": int(MINUTE - 120)})
    clock = ManualClock(MINUTE + 20)
    first = PeriodicScheduler(EVERY_MINUTE, queue, StubElection("a"), registry, clock)
    async with running(first):
        await asleep(clock)
    second = PeriodicScheduler(EVERY_MINUTE, queue, StubElection("b"), registry, clock)
    async with running(second):
        await asleep(clock)
    assert await sent(sqs, queue) == [stamp(MINUTE)]
    assert (first.counters.enqueued, second.counters.enqueued) == (1, 0)


async def test_missed_occurrence_older_than_the_grace_period_is_skipped(
    sqs: Any, queue: BotocoreSQS, registry: RegistryTable
) -> None:
    """An hourly task whose 12:00 run was missed is not sent at 12:06:40 (older than 300 s)."""
    hourly = cron(("hourly", "/h", "0 * * * *"))
    await registry.update("hourly", "SET schedule_time = :t", {":t": int(MINUTE - 3600)})
    clock = ManualClock(MINUTE + 400)
    scheduler = PeriodicScheduler(hourly, queue, StubElection("a"), registry, clock)
    async with running(scheduler):
        await asleep(clock)
    assert scheduler.counters.skipped_late == 1
    assert await sent(sqs, queue) == []


async def test_task_without_registry_item_recovers_nothing(
    sqs: Any, queue: BotocoreSQS, registry: RegistryTable
) -> None:
    """A task never run before (no item) does not fire for the minute already begun."""
    clock = ManualClock(MINUTE + 20)
    scheduler = PeriodicScheduler(EVERY_MINUTE, queue, StubElection("a"), registry, clock)
    async with running(scheduler):
        await asleep(clock)
        await clock.advance(40)
        await wait_until(lambda: scheduler.counters.enqueued == 1, what="12:01")
    assert await sent(sqs, queue) == [stamp(MINUTE + 60)]


async def test_losing_leadership_stops_enqueueing_and_regaining_recovers(
    sqs: Any, queue: BotocoreSQS, registry: RegistryTable
) -> None:
    """1. Lead and enqueue 12:00. 2. Lose leadership: 12:01 passes unsent. 3. Regain at
    12:01:10: the missed 12:01 is recovered once; 12:02 follows on time."""
    election = StubElection("a")
    clock = ManualClock(MINUTE - 1)
    scheduler = PeriodicScheduler(EVERY_MINUTE, queue, election, registry, clock)
    async with running(scheduler):
        await asleep(clock)
        await clock.advance(1)
        await wait_until(lambda: scheduler.counters.enqueued == 1, what="12:00")
        await asleep(clock)
        election.set_leader(False)
        await wait_until(lambda: clock.sleepers == 0, what="the scheduler to stop waiting")
        await clock.advance(70)
        await asyncio.sleep(0.05)
        assert scheduler.counters.enqueued == 1
        election.set_leader(True)
        await wait_until(lambda: scheduler.counters.enqueued == 2, what="recovered 12:01")
        await asleep(clock)
        await clock.advance(50)
        await wait_until(lambda: scheduler.counters.enqueued == 3, what="12:02")
    assert await sent(sqs, queue) == [stamp(MINUTE + 60 * i) for i in range(3)]


async def test_stop_interrupts_the_wait_for_a_distant_occurrence(
    queue: BotocoreSQS, registry: RegistryTable
) -> None:
    """A scheduler sleeping until next year stops promptly."""
    clock = ManualClock(MINUTE + 1)
    scheduler = PeriodicScheduler(
        cron(("yearly", "/y", "@yearly")), queue, StubElection("a"), registry, clock
    )
    task = asyncio.create_task(scheduler.run())
    await asleep(clock)
    scheduler.stop()
    async with asyncio.timeout(1):
        await task


# --- send failures -----------------------------------------------------------------------------


def throttled() -> SQSError:
    return SQSError("SendMessage", "ThrottlingException", "slow down", retryable=True)


async def test_retryable_send_error_is_retried(sqs: Any, queue: BotocoreSQS, registry: RegistryTable) -> None:
    """One throttled SendMessage, then success: one message, no step-down."""
    flaky = FlakySQS(queue, [throttled()])
    election = StubElection("a")
    clock = ManualClock(MINUTE - 1)
    scheduler = PeriodicScheduler(EVERY_MINUTE, flaky, election, registry, clock, retry_base_s=0.01)  # type: ignore[arg-type]
    async with running(scheduler):
        await asleep(clock)
        await clock.advance(1)
        await wait_until(lambda: scheduler.counters.enqueued == 1, what="12:00")
    assert flaky.calls == 2 and election.step_downs == []
    assert await sent(sqs, queue) == [stamp(MINUTE)]


@pytest.mark.parametrize(
    ("errors", "calls"),
    [
        pytest.param([throttled(), throttled(), throttled()], 3, id="retries-exhausted"),
        pytest.param([SQSError("SendMessage", "AccessDenied", "no", retryable=False)], 1, id="not-retryable"),
    ],
)
async def test_persistent_send_failure_unclaims_steps_down_and_next_leader_recovers(
    sqs: Any, queue: BotocoreSQS, registry: RegistryTable, errors: list[SQSError], calls: int
) -> None:
    """1. SendMessage keeps failing for the leader at 12:00. 2. It rolls its claim back and steps
    down for the cooldown (stock gives up leadership). 3. The next leader, moments later, sends
    the 12:00 occurrence once, stamped 12:00."""
    flaky = FlakySQS(queue, errors)
    failing = StubElection("failing")
    clock = ManualClock(MINUTE - 1)
    scheduler = PeriodicScheduler(EVERY_MINUTE, flaky, failing, registry, clock, retry_base_s=0.01)  # type: ignore[arg-type]
    async with running(scheduler):
        await asleep(clock)
        await clock.advance(1)
        await wait_until(lambda: failing.step_downs == [15.0], what="the step-down")
    assert flaky.calls == calls and scheduler.counters.step_downs == 1
    item = await registry.get("tick")
    assert item is not None and item["schedule_time"] == 0 and "claimed_by" not in item
    await clock.advance(5)
    successor = PeriodicScheduler(EVERY_MINUTE, queue, StubElection("next"), registry, clock)
    async with running(successor):
        await wait_until(lambda: successor.counters.enqueued == 1, what="the recovered 12:00")
    assert await sent(sqs, queue) == [stamp(MINUTE)]


async def test_missing_registry_table_is_a_clear_error(queue: BotocoreSQS, dynamodb: Any) -> None:
    """A scheduler whose table does not exist raises a StartupError-type error, not a retry loop."""
    scheduler = PeriodicScheduler(
        EVERY_MINUTE, queue, StubElection("a"), RegistryTable(dynamodb, "no-such-table"), ManualClock(MINUTE)
    )
    async with asyncio.timeout(5):
        with pytest.raises(TableUnavailableError, match="no-such-table"):
            await scheduler.run()


# --- FIFO queues -------------------------------------------------------------------------------


async def test_fifo_queue_gets_group_and_deduplication_ids(sqs: Any, registry: RegistryTable) -> None:
    """1. A FIFO queue without content-based deduplication (so SQS demands the ids). 2. Two
    tasks, one with a name SQS would refuse as a group id. 3. Every message carries group id =
    task name (hashed when needed) and dedup id = ``<group>-<epoch>``."""
    url = (
        await sqs.create_queue(
            QueueName=f"cron-{uuid.uuid4().hex[:8]}.fifo", Attributes={"FifoQueue": "true"}
        )
    )["QueueUrl"]
    queue = BotocoreSQS(sqs, url)
    tasks = cron(("tick", "/tick", "* * * * *"), ("nightly backup é", "/backup", "* * * * *"))
    clock = ManualClock(MINUTE - 1)
    scheduler = PeriodicScheduler(tasks, queue, StubElection("a"), registry, clock)
    assert scheduler.fifo
    async with running(scheduler):
        await asleep(clock)
        await clock.advance(1)
        await wait_until(lambda: scheduler.counters.enqueued == 2, what="both tasks")
    messages = await drain(sqs, url)
    assert len(messages) == 2
    for message in messages:
        name = message["MessageAttributes"]["beanstalk.sqsd.task_name"]["StringValue"]
        group, dedup = fifo_ids(name, MINUTE)
        assert message["Attributes"]["MessageGroupId"] == group
        assert message["Attributes"]["MessageDeduplicationId"] == dedup
    assert fifo_ids("tick", MINUTE) == ("tick", f"tick-{int(MINUTE)}")
    assert fifo_ids("nightly backup é", MINUTE)[0].startswith("task-")


def test_fifo_ids_fit_sqs_limits() -> None:
    """Long names are hashed so both ids stay within 128 characters."""
    group, dedup = fifo_ids("x" * 128, MINUTE)
    assert group == "x" * 128
    assert len(dedup) <= 128 and dedup.endswith(f"-{int(MINUTE)}")
    assert fifo_ids("x" * 128, MINUTE) == (group, dedup)  # stable across leaders
