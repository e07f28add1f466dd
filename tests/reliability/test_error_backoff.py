"""Retries that back off (``error_backoff`` "exponential") and the attempt headers, end to end:
daemon and emulator in-process, a scripted ledger worker recording arrival times and headers."""

from __future__ import annotations

import itertools
import json
import math

from asqsd.emulator import Emulator
from tests.reliability.conftest import Record, Rig, daemon_running
from tests.support.ledger import OK, Action, LedgerWorker, sequence
from tests.support.polling import wait_until

BASE_S = 1  # error_visibility_timeout


def lower_bound_s(receive_count: int) -> int:
    """The least delay after a failure of receive ``receive_count``: half the doubled base, rounded
    up to whole seconds as the visibility change is."""
    return math.ceil(BASE_S * 2 ** (receive_count - 1) / 2)


async def test_gaps_between_attempts_grow(emu: Emulator, worker: LedgerWorker, record: Record) -> None:
    """A message the worker fails four times (500) and then accepts, on a queue whose redrive
    policy allows 5 receives: each gap is at least half its doubled delay (1, 1, 2, 4 s), every gap
    is longer than the one before, and only the fifth POST says it is the last attempt."""
    emu.create_queue("dead")
    policy = json.dumps({"deadLetterTargetArn": emu.store.arn("dead"), "maxReceiveCount": 5})
    emu.create_queue("jobs", {"VisibilityTimeout": "10", "RedrivePolicy": policy})
    rig = Rig(emu, "jobs", worker, dlq="dead")
    rig.load(1)
    worker.script = sequence(500, 500, 500, 500, OK)
    settings = rig.settings(error_visibility_timeout=BASE_S, error_backoff="exponential")
    async with daemon_running(settings):
        await wait_until(lambda: len(worker.records) >= 5, timeout_s=40, what="the fifth attempt")
        await rig.wait_done(timeout_s=10)
    records = worker.records
    gaps = [b.started - a.started for a, b in itertools.pairwise(records)]
    report = rig.report()
    record(report=report, gaps_s=[round(g, 2) for g in gaps])
    report.assert_all_done()
    assert [r.receive_count for r in records] == [1, 2, 3, 4, 5]
    for receive_count, gap in enumerate(gaps, start=1):
        assert gap >= lower_bound_s(receive_count) - 0.02, (receive_count, gaps)
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    last = [dict(r.raw_headers).get(b"X-Asqsd-Last-Attempt") for r in records]
    assert last == [b"false"] * 4 + [b"true"]
    assert all(dict(r.raw_headers).get(b"X-Asqsd-Max-Receive-Count") == b"5" for r in records)


async def test_failing_then_succeeding_loses_nothing(rig: Rig, record: Record) -> None:
    """30 messages, message n failing n % 4 times (500 or 502) before a 200, with
    error_backoff exponential (base 1 s, cap 4 s): every message is delivered and deleted;
    0 lost, 0 duplicated; no retry came sooner than half its doubled delay."""
    rig.load(30)

    def script(n: int, attempt: int) -> Action:
        if attempt > n % 4:
            return OK
        return Action(status=500 if attempt % 2 else 502)

    rig.worker.script = script
    settings = rig.settings(
        error_visibility_timeout=BASE_S, error_backoff="exponential", error_backoff_max_s=4
    )
    async with daemon_running(settings) as daemon:
        await rig.wait_done(timeout_s=40)
    report = rig.report()
    shortest: dict[int, float] = {}
    for n in rig.numbers:
        for a, b in itertools.pairwise(rig.worker.of(n)):
            gap = b.started - a.started
            shortest[a.receive_count] = min(gap, shortest.get(a.receive_count, gap))
    record(
        report=report,
        failed=daemon.counters.failed,
        shortest_gap_by_receive_count_s={k: round(v, 2) for k, v in sorted(shortest.items())},
    )
    report.assert_all_done()
    assert report.duplicated == 0
    assert daemon.counters.failed == sum(n % 4 for n in rig.numbers)
    for receive_count, gap in shortest.items():
        assert gap >= min(lower_bound_s(receive_count), 2) - 0.02, shortest
