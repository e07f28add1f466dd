"""The worker outage state machine: which results count, when it opens, holds, probes and closes."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from asqsd.clients.worker.base import DeliveryResult
from asqsd.message import Message
from asqsd.observe.counters import Counters
from asqsd.pipeline.outage import HOLD_LIMIT_S, WorkerOutage, is_unreachable

REFUSED = DeliveryResult(None, "connection failed: Connection refused", 0.0)
NOW_S = 1_700_000_000.0


def message(first_received_s: float = NOW_S) -> Message:
    return Message(
        "id", "handle", "body", {"ApproximateFirstReceiveTimestamp": str(int(first_received_s * 1000))}
    )


@pytest.mark.parametrize(
    "error",
    [
        "connection failed: Connection refused",
        "connection failed: Connect call failed ('127.0.0.1', 8080)",
        "connect timeout",
    ],
)
def test_unreachable_errors(error: str) -> None:
    """The worker clients' wording of 'no connection to the worker could be opened'."""
    assert is_unreachable(DeliveryResult(None, error, 0.0), frozenset())


@pytest.mark.parametrize(
    "error",
    [
        "inactivity timeout",
        "server disconnected before responding",
        "connection lost: [Errno 104] Connection reset by peer before responding",
        "ServerDisconnectedError: Server disconnected",
        "server disconnected mid-response",
        "protocol error: bad status line",
    ],
)
def test_failures_after_the_request_was_sent_are_not_unreachable(error: str) -> None:
    """The worker may have processed these (even a reset before any response byte): they are
    ordinary failures, never held and posted again at once."""
    assert not is_unreachable(DeliveryResult(None, error, 0.0), frozenset())


def test_statuses_count_only_when_listed() -> None:
    assert not is_unreachable(DeliveryResult(503, None, 0.0), frozenset())
    assert is_unreachable(DeliveryResult(503, None, 0.0), frozenset({502, 503}))
    assert not is_unreachable(DeliveryResult(500, None, 0.0), frozenset({502, 503}))


class Rig:
    """An outage with a scripted probe; spawned probe loops are kept to be awaited."""

    def __init__(self, threshold: int = 3, statuses: frozenset[int] = frozenset()) -> None:
        self.counters = Counters()
        self.probe_answers: asyncio.Queue[bool] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []
        self.outage = WorkerOutage(
            threshold=threshold,
            statuses=statuses,
            probe=self.probe_answers.get,
            spawn=self.spawn,
            counters=self.counters,
            wall_clock=lambda: NOW_S,
        )

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        self.tasks.append(asyncio.create_task(coro))
        return self.tasks[-1]


async def test_opens_after_threshold_unreachable_results_in_a_row() -> None:
    rig = Rig(threshold=3)
    outage = rig.outage
    assert not outage.record(REFUSED, message())
    assert not outage.record(DeliveryResult(500, None, 0.0), message())  # reached: streak ends
    assert not outage.record(REFUSED, message())
    assert not outage.record(REFUSED, message())
    assert not outage.is_open
    assert outage.record(REFUSED, message())  # the third in a row opens it and is held
    assert outage.is_open and outage.opened.is_set()
    assert rig.counters.worker_outages == 1
    assert outage.record(REFUSED, message())  # while open every unreachable result is held
    await stop(rig)


async def test_probe_closes_it_and_holders_post_again() -> None:
    rig = Rig(threshold=1)
    outage = rig.outage
    assert outage.record(REFUSED, message())
    holder = asyncio.create_task(outage.hold(message()))
    receiver = asyncio.create_task(outage.wait_until_closed())
    rig.probe_answers.put_nowait(False)
    rig.probe_answers.put_nowait(True)
    assert await asyncio.wait_for(holder, 30) is True
    await asyncio.wait_for(receiver, 1)
    assert not outage.is_open and outage.probes == 2 and outage.held == 1
    await asyncio.wait_for(rig.tasks[0], 1)  # the probe loop ended with the opening
    assert outage.active  # on trial until a delivery reaches the worker
    assert not outage.record(DeliveryResult(200, None, 0.0), message())
    assert not outage.active


async def test_a_failed_trial_holds_again_in_the_same_outage() -> None:
    """A worker that accepts connections but answers 503 (statuses on): the trial after the
    probe fails at once and holds again, without a new outage."""
    rig = Rig(threshold=1, statuses=frozenset({503}))
    outage = rig.outage
    unavailable = DeliveryResult(503, None, 0.0)
    assert outage.record(unavailable, message())
    rig.probe_answers.put_nowait(True)
    await asyncio.wait_for(outage.wait_until_closed(), 30)
    assert outage.active and not outage.is_open
    assert outage.record(unavailable, message())  # first trial result: held again
    assert outage.is_open and rig.counters.worker_outages == 1
    assert len(rig.tasks) == 2  # a new probe loop for the new opening
    await stop(rig)


async def test_shutdown_releases_held_messages_and_holds_nothing_more() -> None:
    rig = Rig(threshold=1)
    outage = rig.outage
    outage.record(REFUSED, message())
    holder = asyncio.create_task(outage.hold(message()))
    await asyncio.sleep(0)
    outage.stop()
    assert await asyncio.wait_for(holder, 1) is False
    assert not outage.record(REFUSED, message())  # stock treatment from now on
    await stop(rig)


async def test_message_near_the_12_hour_limit_is_not_held() -> None:
    """A message first received nearly 12 hours ago gets the stock treatment, not a hold."""
    rig = Rig(threshold=1)
    old = message(first_received_s=NOW_S - HOLD_LIMIT_S - 1)
    assert not rig.outage.record(REFUSED, old)
    assert not rig.outage.is_open
    assert await rig.outage.hold(old) is False  # and a held one is let go at the limit
    await stop(rig)


async def stop(rig: Rig) -> None:
    rig.outage.stop()
    await asyncio.wait_for(asyncio.gather(*rig.tasks, return_exceptions=True), 1)
    assert all(task.done() for task in rig.tasks)
