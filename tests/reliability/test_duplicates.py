"""Duplicates: jobs longer than the visibility timeout are delivered once thanks to the heartbeat;
without it (stock behaviour), or when the heartbeat cannot reach SQS for longer than the lease,
they are not.

Every other remaining source of duplicates is measured where its fault is injected (see
docs/reliability.md, "Where duplicates come from").
"""

from __future__ import annotations

import asyncio

from tests.reliability.conftest import Record, Rig, daemon_running
from tests.support.ledger import Action, always, sequence
from tests.support.polling import wait_until


async def test_long_jobs_are_delivered_once_with_the_heartbeat(rig: Rig, record: Record) -> None:
    """Visibility timeout 1 s, jobs of 3 s (3x longer): the heartbeat extends every lease, so no
    second consumer ever sees a running message: 0 duplicates (worker and emulator agree)."""
    rig.load(10)
    rig.worker.script = always(Action(delay_s=3.0))
    async with daemon_running(rig.settings(visibility_timeout=1, http_connections=10)) as daemon:
        await rig.wait_done(timeout_s=20)
    report = rig.report()
    extended = daemon.counters.extended
    record(report=report, extended=extended, emulator_duplicates=rig.gauges()["duplicates"])
    report.assert_all_done()
    assert report.duplicated == 0 and report.redelivered == 0
    assert rig.gauges()["duplicates"] == 0
    assert extended >= 10 * 3, extended  # roughly every half lease, for each job


async def test_without_the_heartbeat_long_jobs_run_twice(rig: Rig, record: Record) -> None:
    """The stock behaviour (``heartbeat: false``): a job longer than the visibility timeout is
    handed out again while it runs. This is the duplicate source the heartbeat removes. (Here the
    second run is short; if every run outlived the lease, each delete would use an outdated handle
    and the message would circulate for ever.)"""
    rig.load(5)
    rig.worker.script = sequence(Action(delay_s=2.0), Action(delay_s=0.2))
    settings = rig.settings(visibility_timeout=1, http_connections=10, heartbeat=False)
    async with daemon_running(settings):
        await rig.wait_done(timeout_s=20)
    report = rig.report()
    record(report=report, stale_deletes=rig.gauges()["stale_deletes"])
    report.assert_all_done()
    assert report.duplicated == 5
    assert rig.gauges()["stale_deletes"] == 5  # the first runs' deletes used outdated handles


async def test_heartbeat_failing_for_longer_than_the_lease(rig: Rig, record: Record) -> None:
    """Jobs of 3.5 s, visibility 2 s, and every ChangeMessageVisibilityBatch failing (503) for
    2.5 s just after they start (an SQS outage seen by the heartbeat): the leases lapse, SQS hands
    the messages out again while the first runs go on, and each job runs twice. The first runs'
    deletes use outdated handles (accepted, nothing deleted); the daemon logs ``lease-lost``.
    Nothing is lost. (With the whole endpoint down, whether the second copy starts before the first
    ends depends on the receive backoff; test_sqs_faults measures that case.)"""
    rig.load(5)
    rig.worker.script = sequence(Action(delay_s=3.5), Action(delay_s=0.2))
    async with daemon_running(rig.settings(visibility_timeout=2, http_connections=10)) as daemon:
        await wait_until(lambda: rig.worker.in_flight == 5, timeout_s=10, what="jobs running")
        rig.emu.faults.set("ChangeMessageVisibilityBatch", error_rate=1.0, error="unavailable")
        await asyncio.sleep(2.5)  # the fault window itself
        rig.emu.faults.clear()
        await rig.wait_done(timeout_s=30)
    report = rig.report()
    record(report=report, lease_lost=daemon.counters.lease_lost, stale_deletes=rig.gauges()["stale_deletes"])
    report.assert_all_done()
    assert report.duplicated == 5
    assert rig.gauges()["stale_deletes"] == 5
