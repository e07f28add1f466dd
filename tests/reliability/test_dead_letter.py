"""Ledger runs with asqsd's own dead-lettering: every message is answered 200 once or is in the DLQ
once, never lost, never stored twice (dead_letter_statuses, max_retries, a DLQ that refuses sends)."""

from __future__ import annotations

import pytest

from asqsd.config import Settings
from asqsd.emulator import Emulator
from asqsd.observe.counters import Counters
from tests.reliability.conftest import Record, Rig, daemon_running
from tests.support.ledger import OK, Action, LedgerReport, LedgerWorker, at_rate
from tests.support.polling import wait_until


@pytest.fixture
def dl_rig(emu: Emulator, worker: LedgerWorker) -> Rig:
    """Queue ``jobs`` without a redrive policy, and ``dead`` as asqsd's dead-letter queue."""
    emu.create_queue("jobs", {"VisibilityTimeout": "10"})
    emu.create_queue("dead")
    return Rig(emu, "jobs", worker, dlq="dead")


async def run_until_drained(rig: Rig, settings: Settings, record: Record) -> tuple[LedgerReport, Counters]:
    """Run a daemon until the source queue is empty (each message answered 200 or moved to the
    DLQ); record the ledger report and check that nothing was lost, duplicated or stored twice."""
    async with daemon_running(settings) as daemon:
        await wait_until(lambda: rig.depth() == 0, timeout_s=30, what="the source queue drained")
    report = rig.report()
    record(report=report, dead_lettered=daemon.counters.dead_lettered)
    report.assert_nothing_lost()
    assert report.duplicated == 0 and report.stored_twice == 0
    return report, daemon.counters


async def test_dead_letter_statuses_under_load(dl_rig: Rig, record: Record) -> None:
    """60 messages, 30 % of deliveries answered 422 (a dead-letter status): those are in the DLQ
    once, the rest answered 200 once; 0 lost, 0 duplicated, 0 stored twice."""
    rig = dl_rig
    rig.load(60)
    rig.worker.script = at_rate(0.3, Action(status=422), seed=7)
    settings = rig.settings(dead_letter_statuses="422", dead_letter_queue_url=rig.emu.queue_url("dead"))
    report, counters = await run_until_drained(rig, settings, record)
    assert report.in_dlq == counters.dead_lettered["status"] > 0
    assert report.done + report.in_dlq == 60


async def test_max_retries_under_load(dl_rig: Rig, record: Record) -> None:
    """Every third message always fails (500); max_retries=3 moves each after exactly three
    deliveries; the others are answered 200 once. 0 lost, 0 duplicated, 0 stored twice."""
    rig = dl_rig
    failing = {n for n in rig.load(45) if n % 3 == 0}
    rig.worker.script = lambda n, _attempt: Action(status=500) if n in failing else OK
    settings = rig.settings(max_retries=3, dead_letter_queue_url=rig.emu.queue_url("dead"))
    report, counters = await run_until_drained(rig, settings, record)
    assert report.in_dlq == len(failing) == counters.dead_lettered["max_retries"]
    attempts = [r.attempt for r in rig.worker.records if r.n in failing]
    assert max(attempts) == 3 and len(attempts) == 3 * len(failing)


async def test_a_dead_letter_queue_that_refuses_sends_loses_nothing(dl_rig: Rig, record: Record) -> None:
    """The DLQ URL names no queue: every send fails, so nothing is deleted; after the daemon
    stops, each message is still in the source queue."""
    rig = dl_rig
    rig.load(20)
    rig.worker.script = lambda _n, _attempt: Action(status=422)
    missing = rig.emu.queue_url("dead").replace("/dead", "/no-such-queue")
    settings = rig.settings(dead_letter_statuses="422", dead_letter_queue_url=missing)
    async with daemon_running(settings) as daemon:
        await wait_until(lambda: daemon.counters.dead_letter_failed >= 40, timeout_s=30, what="failed sends")
        assert daemon.counters.deleted == 0
    report = rig.report()
    record(report=report, dead_letter_failed=daemon.counters.dead_letter_failed)
    report.assert_nothing_lost()
    assert report.in_dlq == 0 and report.done == 0 and report.stored_twice == 0
    assert report.pending + report.stuck == 20
