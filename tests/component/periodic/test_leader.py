"""Leader election on the DynamoDB registry table: moto_server for the protocol, a scripted fake
client for the failure paths moto cannot produce (throttling, access denied, hanging calls)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from asqsd.clients.dynamodb import DynamoDBError, TableUnavailableError
from asqsd.errors import StartupError
from asqsd.periodic.leader import LEADER_RECORD_ID, LeaderElection
from asqsd.periodic.registry import RegistryTable
from tests.support.dynamo import ManualClock, dynamodb_client, unique_table_name
from tests.support.polling import wait_until

# Short leases keep the suite quick; the proportions match stock's 10 s / 5 s / 1 s.
LEASE_S = 2.0


def fast(registry: RegistryTable, **overrides: Any) -> LeaderElection:
    """An election with a 2 s lease (renewed every 1 s within 0.7 s) checking every 0.1 s."""
    options: dict[str, Any] = {"lease_s": LEASE_S, "check_interval_s": 0.1, "renew_timeout_s": 0.7}
    return LeaderElection(registry, **(options | overrides))


@pytest.fixture
async def running() -> AsyncIterator[Callable[[LeaderElection], asyncio.Task[None]]]:
    """Start elections as tasks; whatever is still running at the end is stopped and awaited."""
    started: list[tuple[LeaderElection, asyncio.Task[None]]] = []

    def start(election: LeaderElection) -> asyncio.Task[None]:
        task = asyncio.create_task(election.run())
        started.append((election, task))
        return task

    yield start
    for election, _ in started:
        election.stop()
    await asyncio.gather(*(task for _, task in started), return_exceptions=True)


def leaders(elections: list[LeaderElection]) -> list[LeaderElection]:
    return [election for election in elections if election.is_leader]


async def first_leader(elections: list[LeaderElection], timeout_s: float = 5.0) -> LeaderElection:
    await wait_until(lambda: bool(leaders(elections)), timeout_s, interval_s=0.005, what="a leader")
    (leader,) = leaders(elections)
    return leader


# --- against moto_server ----------------------------------------------------------------------


@pytest.fixture
async def dynamodb(serial_moto_url: str) -> AsyncIterator[Any]:
    """The registry's DynamoDB on a one-request-at-a-time moto_server: contenders race conditional
    writes here, and the threaded server can let two ``attribute_not_exists`` writes both win."""
    async with dynamodb_client(serial_moto_url) as client:
        yield client


async def test_three_contenders_elect_exactly_one_leader_at_a_time(
    registry: RegistryTable, running: Callable[[LeaderElection], asyncio.Task[None]]
) -> None:
    """1. Three elections contend for one table. 2. Sampled every few ms while they renew, at
    most one ever leads, and one does. 3. The record names it, with a future expiry."""
    elections = [fast(registry) for _ in range(3)]
    for election in elections:
        running(election)
    leader = await first_leader(elections)
    deadline = time.monotonic() + 1.2 * LEASE_S  # spans at least two renewals
    while time.monotonic() < deadline:
        assert leaders(elections) == [leader]
        await asyncio.sleep(0.005)
    record = await registry.get(LEADER_RECORD_ID)
    assert record is not None
    assert record["leader_id"] == leader.identity
    expiry = record["leader_timestamp"]
    assert isinstance(expiry, Decimal)
    assert time.time() < float(expiry) <= time.time() + LEASE_S
    assert leader.term == 1 and all(e.term == 0 for e in elections if e is not leader)


async def test_crashed_leader_is_replaced_within_the_lease(
    registry: RegistryTable, running: Callable[[LeaderElection], asyncio.Task[None]]
) -> None:
    """1. Elect a leader. 2. Cancel its task -- no release, like a crash. 3. It stops leading at
    once; another takes over after the lease expires but within one lease plus a check, and
    never while the old lease is still valid."""
    elections = [fast(registry) for _ in range(3)]
    tasks = {election: running(election) for election in elections}
    old = await first_leader(elections)
    tasks[old].cancel()
    await asyncio.gather(tasks[old], return_exceptions=True)
    assert not old.is_leader
    record = await registry.get(LEADER_RECORD_ID)
    assert record is not None and record["leader_id"] == old.identity
    old_expiry = float(record["leader_timestamp"])  # type: ignore[arg-type]
    started = time.monotonic()
    new = await first_leader(elections, timeout_s=LEASE_S + 2)
    assert new is not old
    assert time.monotonic() - started <= LEASE_S + 0.5
    assert time.time() >= old_expiry  # taken over only once the old lease had run out
    record = await registry.get(LEADER_RECORD_ID)
    assert record is not None and record["leader_id"] == new.identity


async def test_released_lease_is_taken_over_quickly(
    registry: RegistryTable, running: Callable[[LeaderElection], asyncio.Task[None]]
) -> None:
    """1. Elect a leader with a long (10 s) lease. 2. Stop it: it writes -1. 3. Another instance
    leads within about a check interval, far sooner than the lease."""
    elections = [LeaderElection(registry, lease_s=10.0, check_interval_s=0.1) for _ in range(2)]
    tasks = {election: running(election) for election in elections}
    old = await first_leader(elections)
    started = time.monotonic()
    old.stop()
    await tasks[old]
    new = await first_leader(elections, timeout_s=3)
    assert new is not old
    assert time.monotonic() - started < 1.0


async def test_stop_writes_the_released_marker(
    registry: RegistryTable, running: Callable[[LeaderElection], asyncio.Task[None]]
) -> None:
    """A stopped leader leaves the stock "released" record: its id and ``leader_timestamp = -1``."""
    election = fast(registry)
    task = running(election)
    await first_leader([election])
    election.stop()
    await task
    assert not election.is_leader
    record = await registry.get(LEADER_RECORD_ID)
    assert record == {"id": LEADER_RECORD_ID, "leader_id": election.identity, "leader_timestamp": -1}


async def test_leader_that_loses_the_record_steps_down_at_the_next_renewal(
    registry: RegistryTable, running: Callable[[LeaderElection], asyncio.Task[None]]
) -> None:
    """1. Elect a leader. 2. Another writer takes the record (leader_id changes). 3. The
    conditional renewal is refused and the leader stops leading within a renew interval."""
    election = fast(registry)
    running(election)
    await first_leader([election])
    await registry.update(
        LEADER_RECORD_ID,
        "SET leader_id = :intruder, leader_timestamp = :expiry",
        {":intruder": "someone-else", ":expiry": time.time() + 60},
    )
    async with asyncio.timeout(LEASE_S):
        await election.wait_for_loss()
    assert not election.is_leader
    record = await registry.get(LEADER_RECORD_ID)
    assert record is not None and record["leader_id"] == "someone-else"  # not released by us


async def test_missing_table_is_a_clear_startup_error(dynamodb: Any) -> None:
    """1. Point an election at a table that does not exist. 2. run() raises at once (no
    retrying), with an error that names the table and the setting to check."""
    name = unique_table_name()
    election = fast(RegistryTable(dynamodb, name))
    async with asyncio.timeout(5):
        with pytest.raises(TableUnavailableError) as caught:
            await election.run()
    assert isinstance(caught.value, StartupError)
    assert caught.value.code == "ResourceNotFoundException"
    assert name in str(caught.value) and "registry_table" in str(caught.value)
    assert not election.is_leader


async def test_table_is_created_only_when_asked(dynamodb: Any) -> None:
    """With ``create_table_if_missing`` the first round creates the table and then leads."""
    name = unique_table_name()
    election = fast(RegistryTable(dynamodb, name), create_table_if_missing=True)
    await election.step()
    assert election.is_leader
    described = await dynamodb.describe_table(TableName=name)
    assert described["Table"]["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert described["Table"]["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    await election.release()


# --- scripted fake client (failure paths) ------------------------------------------------------

Step = dict[str, Any] | BaseException | Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def client_error(code: str, status: int = 400) -> ClientError:
    """A botocore ClientError as aiobotocore raises it for an error response."""
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"scripted {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "Scripted",
    )


class ScriptedDynamoDB:
    """Stands in for an aiobotocore DynamoDB client: each operation answers from its own script
    (a response dict, an exception to raise, or a coroutine function); an exhausted script
    answers ``{}`` (success, no item). Every call is recorded."""

    def __init__(self, **scripts: list[Step]) -> None:
        self.scripts = scripts
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    async def _answer(self, op: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((op, kwargs))
        script = self.scripts.get(op) or []
        step: Step = script.pop(0) if script else {}
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return await step(kwargs)
        return step

    async def get_item(self, **kwargs: Any) -> dict[str, Any]:
        return await self._answer("get_item", kwargs)

    async def put_item(self, **kwargs: Any) -> dict[str, Any]:
        return await self._answer("put_item", kwargs)

    async def update_item(self, **kwargs: Any) -> dict[str, Any]:
        return await self._answer("update_item", kwargs)


async def hang(_kwargs: dict[str, Any]) -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_throttling_and_5xx_are_retried_with_jittered_backoff() -> None:
    """1. GetItem is throttled twice and then fails with a 500. 2. Each round returns a backoff
    delay drawn from a growing ceiling (full jitter) instead of raising. 3. The fourth round
    creates the record and takes the lease with ``leader_timestamp = :old`` (-1)."""
    fake = ScriptedDynamoDB(
        get_item=[
            client_error("ProvisionedThroughputExceededException"),
            client_error("ThrottlingException"),
            client_error("InternalServerError", 500),
        ]
    )
    clock = ManualClock(1000.0)
    election = LeaderElection(
        RegistryTable(fake, "t"), lease_s=10, check_interval_s=1.0, clock=clock, rng=random.Random(3)
    )
    delays = [await election.step() for _ in range(3)]
    for attempt, delay in enumerate(delays):
        assert 0.1 <= delay <= 2**attempt
    assert not election.is_leader
    assert await election.step() == pytest.approx(5.0)  # now leading: renew in lease / 2
    assert election.is_leader
    assert fake.ops() == ["get_item"] * 4 + ["put_item", "update_item"]
    update = fake.calls[-1][1]
    assert update["ConditionExpression"] == "leader_timestamp = :old"
    assert update["ExpressionAttributeValues"][":old"] == {"N": "-1"}
    assert update["ExpressionAttributeValues"][":expiry"] == {"N": "1010.000000"}
    assert fake.calls[0][1]["ConsistentRead"] is True


async def test_run_keeps_retrying_throttling_until_it_leads() -> None:
    """run() itself never raises on throttling: it backs off and eventually leads."""
    fake = ScriptedDynamoDB(get_item=[client_error("ThrottlingException")] * 4)
    election = LeaderElection(RegistryTable(fake, "t"), lease_s=10, check_interval_s=0.01)
    task = asyncio.create_task(election.run())
    async with asyncio.timeout(5):
        await election.wait_for_leadership()
    election.stop()
    await task
    assert fake.ops()[:4] == ["get_item"] * 4
    assert fake.ops()[-1] == "update_item"  # the release
    assert fake.calls[-1][1]["ExpressionAttributeValues"][":released"] == {"N": "-1"}


@pytest.mark.parametrize("code", ["AccessDeniedException", "ResourceNotFoundException"])
async def test_access_denied_or_missing_table_raises_after_one_call(code: str) -> None:
    """A permanent error on first use raises a StartupError-type error; nothing spins."""
    fake = ScriptedDynamoDB(get_item=[client_error(code)])
    election = LeaderElection(RegistryTable(fake, "registry"), check_interval_s=0.01)
    with pytest.raises(TableUnavailableError, match=code) as caught:
        await election.run()
    assert isinstance(caught.value, StartupError)
    assert fake.ops() == ["get_item"]


async def test_failed_renewal_drops_leadership_at_once_and_releases() -> None:
    """1. Lead. 2. The renewal is throttled. 3. Leadership ends immediately (no retry) and the
    lease is handed back with ``-1`` where ``leader_id = :me``."""
    fake = ScriptedDynamoDB(update_item=[{}, client_error("ThrottlingException")])
    clock = ManualClock(1000.0)
    election = LeaderElection(RegistryTable(fake, "t"), clock=clock)
    await election.step()
    assert election.is_leader
    await clock.advance(5)
    await election.step()
    assert not election.is_leader
    op, release = fake.calls[-1]
    assert op == "update_item"
    assert release["ConditionExpression"] == "leader_id = :me"
    assert release["ExpressionAttributeValues"][":released"] == {"N": "-1"}
    assert release["ExpressionAttributeValues"][":me"] == {"S": election.identity}


async def test_renewal_that_hangs_is_cut_off_by_the_timeout() -> None:
    """A renewal that does not answer within ``renew_timeout_s`` ends leadership."""
    fake = ScriptedDynamoDB(update_item=[{}, hang, hang])
    clock = ManualClock(1000.0)
    election = LeaderElection(RegistryTable(fake, "t"), clock=clock, renew_timeout_s=0.05)
    await election.step()
    await clock.advance(5)
    async with asyncio.timeout(2):
        await election.step()  # the renewal and the release attempt each time out
    assert not election.is_leader
    assert fake.ops().count("update_item") == 3


async def test_refused_renewal_drops_leadership_without_release() -> None:
    """If another instance holds the record, the renewal's condition fails: stop leading, and
    do not write anything more."""
    fake = ScriptedDynamoDB(update_item=[{}, client_error("ConditionalCheckFailedException")])
    clock = ManualClock(1000.0)
    election = LeaderElection(RegistryTable(fake, "t"), clock=clock)
    await election.step()
    await clock.advance(5)
    await election.step()
    assert not election.is_leader
    assert fake.ops().count("update_item") == 2


async def test_leader_stops_leading_when_less_than_the_margin_remains() -> None:
    """1. Lead with a 10 s lease. 2. Let the clock run without renewals: at 9 s (1 s left) it no
    longer leads, without any call. 3. The next round hands the lease back."""
    fake = ScriptedDynamoDB()
    clock = ManualClock(1000.0)
    election = LeaderElection(RegistryTable(fake, "t"), clock=clock)
    await election.step()
    calls = len(fake.calls)
    await clock.advance(8.9)
    assert election.is_leader
    await clock.advance(0.1)
    assert not election.is_leader
    assert len(fake.calls) == calls
    await election.step()
    await asyncio.wait_for(election.wait_for_loss(), 1)
    assert fake.calls[-1][1]["ExpressionAttributeValues"][":released"] == {"N": "-1"}


async def test_lease_is_not_taken_while_valid_nor_after_step_down_cooldown() -> None:
    """1. A record held by someone else until t=1010 is not contested before then. 2. After
    it expires the lease is taken. 3. ``step_down(15)`` releases and keeps out for 15 s."""
    held = {
        "Item": {
            "id": {"S": LEADER_RECORD_ID},
            "leader_id": {"S": "other"},
            "leader_timestamp": {"N": "1010"},
        }
    }
    fake = ScriptedDynamoDB(get_item=[held, held])
    clock = ManualClock(1000.0)
    election = LeaderElection(RegistryTable(fake, "t"), clock=clock, check_interval_s=1.0)
    await election.step()
    assert fake.ops() == ["get_item"]
    await clock.advance(10.5)
    await election.step()
    assert election.is_leader
    assert fake.calls[-1][1]["ExpressionAttributeValues"][":old"] == {"N": "1010"}
    await election.step_down(15)
    assert not election.is_leader
    before = len(fake.calls)
    assert await election.step() == pytest.approx(15)
    assert len(fake.calls) == before  # no contest during the cooldown
    await clock.advance(15)
    await election.step()
    assert election.is_leader


async def test_transport_errors_are_retryable_registry_errors() -> None:
    """Connection problems surface as retryable :class:`DynamoDBError` (not fatal)."""
    fake = ScriptedDynamoDB(get_item=[ConnectionResetError("reset by peer")])
    with pytest.raises(DynamoDBError) as caught:
        await RegistryTable(fake, "t").get("x")
    assert caught.value.retryable
    assert not isinstance(caught.value, TableUnavailableError)


def test_bad_timings_are_refused() -> None:
    """A renew interval that does not leave the margin before expiry is a programming error."""
    with pytest.raises(ValueError, match="renew_interval_s"):
        LeaderElection(RegistryTable(object(), "t"), lease_s=2, renew_interval_s=1.9)
    with pytest.raises(ValueError, match="registry_table"):
        RegistryTable(object(), "")
