"""SQS faults (in-process emulator with fault injection, daemon in-process): nothing is lost.

Every run preloads numbered messages, lets the daemon deliver them to a ledger worker while the
emulator injects faults, and checks the ledger: 0 lost, duplicates reported (docs/reliability.md
explains each), the daemon never exits and never spins.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from asqsd.daemon import Daemon
from tests.reliability.conftest import Record, Rig, daemon_running
from tests.support.ledger import OK, Action, Script, at_rate
from tests.support.polling import wait_until

# Visibility 2 s: leases lapse quickly after a persistent delete failure, so runs stay short, and
# the heartbeat has work to do (jobs of 1.2 s outlive half the lease).
FAST = {"visibility_timeout": 2, "http_connections": 10}


def mixed_jobs(seed: int) -> Script:
    """Every tenth job takes 1.2 s (heartbeat extensions); 20 % of first answers are 500
    (ChangeMessageVisibilityBatch); the rest answer 200 at once."""
    failing = at_rate(0.2, Action(status=500), seed=seed)

    def script(n: int, attempt: int) -> Action:
        if n % 10 == 0 and attempt == 1:
            return Action(delay_s=1.2)
        return failing(n, attempt) if attempt == 1 else OK

    return script


def why_duplicates(rig: Rig, daemon: Daemon) -> dict[str, int]:
    """The counters that explain duplicates: deletes that failed for good, leases lost or left to
    lapse (heartbeat calls that failed), and deletes SQS accepted with an outdated handle."""
    counters = daemon.counters
    return {
        "delete_failed": counters.delete_failed,
        "lease_lost": counters.lease_lost,
        "heartbeat_call_errors": counters.sqs_errors.get("ChangeMessageVisibilityBatch", 0),
        "stale_deletes": int(rig.gauges()["stale_deletes"]),
        "emulator_duplicates": int(rig.gauges()["duplicates"]),
    }


def receive_calls(rig: Rig) -> int:
    """ReceiveMessage calls the emulator has seen (errors included)."""
    return int(rig.emu.stats.get("ReceiveMessage").calls)


@pytest.mark.parametrize(
    ("error", "rate"),
    [("internal", 0.1), ("throttling", 0.1), ("unavailable", 0.5), ("request_throttled", 0.5)],
)
async def test_errors_on_every_operation(rig: Rig, record: Record, error: str, rate: float) -> None:
    """500/503 and throttling (400 ThrottlingException, 403 RequestThrottled) on every operation,
    GetQueueAttributes at start-up included, at 10 % and 50 %: all delivered, 0 lost."""
    rig.load(60 if rate < 0.5 else 40)
    rig.worker.script = mixed_jobs(seed=7)
    rig.emu.faults.set("*", error_rate=rate, error=error)
    started = time.monotonic()
    # Four receivers: at 50 % a run of failures can back one receiver off for up to 20 s (the
    # backoff cap); the others keep receiving.
    async with daemon_running(rig.settings(**FAST, receivers=4)) as daemon:
        await rig.wait_done(timeout_s=45)
        elapsed = time.monotonic() - started
        injected = {op: c.errors_injected for op, c in rig.emu.stats._ops.items() if c.errors_injected}
    report = rig.report()
    record(
        report=report,
        error=error,
        rate=rate,
        elapsed_s=round(elapsed, 2),
        injected=injected,
        **why_duplicates(rig, daemon),
    )
    report.assert_all_done()
    for operation in (
        "GetQueueAttributes",
        "ReceiveMessage",
        "DeleteMessageBatch",
        "ChangeMessageVisibilityBatch",
    ):
        assert rig.emu.stats.get(operation).calls > 0, f"{operation} was never exercised"
    assert sum(injected.values()) > 0


async def test_added_latency(rig: Rig, record: Record) -> None:
    """0.05–0.25 s added to every SQS call: slower, nothing lost, nothing duplicated."""
    rig.load(60)
    rig.worker.script = mixed_jobs(seed=3)
    rig.emu.faults.set("*", latency=0.05, latency_jitter=0.2)
    started = time.monotonic()
    async with daemon_running(rig.settings(**FAST, receivers=2)):
        await rig.wait_done(timeout_s=40)
        elapsed = time.monotonic() - started
    report = rig.report()
    record(report=report, elapsed_s=round(elapsed, 2))
    report.assert_all_done()
    assert report.duplicated == 0


async def test_partial_batch_failures(rig: Rig, record: Record) -> None:
    """30 % of DeleteMessageBatch and ChangeMessageVisibilityBatch entries fail (server fault):
    entries are retried; what still fails after 3 attempts is redelivered (a duplicate), never lost."""
    rig.load(100)
    rig.worker.script = mixed_jobs(seed=5)
    for operation in ("DeleteMessageBatch", "ChangeMessageVisibilityBatch"):
        rig.emu.faults.set(operation, batch_failure_rate=0.3)
    async with daemon_running(rig.settings(**FAST)) as daemon:
        await rig.wait_done(timeout_s=40)
    report = rig.report()
    failed = {
        op: rig.emu.stats.get(op).batch_entries_failed
        for op in ("DeleteMessageBatch", "ChangeMessageVisibilityBatch")
    }
    record(report=report, entries_failed=failed, **why_duplicates(rig, daemon))
    report.assert_all_done()
    assert failed["DeleteMessageBatch"] > 0
    # A duplicate needs a delete that failed three times in a row.
    assert report.duplicated <= daemon.counters.delete_failed + daemon.counters.lease_lost


async def test_dropped_connections(rig: Rig, record: Record) -> None:
    """15 % of SQS connections closed without a response before the call is applied (drop_rate),
    15 % after it took effect (drop_after_rate: e.g. a receive whose messages never arrive, a
    delete that happened but looks failed): everything is delivered once its lease ends, 0 lost."""
    rig.load(60)
    rig.worker.script = mixed_jobs(seed=11)
    rig.emu.faults.set("*", drop_rate=0.15, drop_after_rate=0.15)
    async with daemon_running(rig.settings(**FAST)) as daemon:
        await rig.wait_done(timeout_s=40)
    report = rig.report()
    dropped = {op: c.connections_dropped for op, c in rig.emu.stats._ops.items() if c.connections_dropped}
    record(report=report, dropped=dropped, **why_duplicates(rig, daemon))
    report.assert_all_done()
    assert sum(dropped.values()) > 0


@pytest.mark.parametrize(("mode", "outage_s"), [("error", 3.0), ("drop", 2.0)])
async def test_endpoint_outage_then_back(rig: Rig, record: Record, mode: str, outage_s: float) -> None:
    """The whole endpoint is down for a few seconds mid-run (every call 503, or every connection
    dropped), then back: the daemon does not exit, does not spin (receive calls bounded by the
    backoff), recovers by itself, and loses nothing. (Soak mode: the 30 s version.)"""
    rig.load(120)
    rig.worker.script = lambda _n, _attempt: Action(delay_s=0.05)
    async with daemon_running(rig.settings(**FAST)) as daemon:
        await wait_until(lambda: rig.worker.ok_count() >= 50, timeout_s=20, what="50 messages delivered")
        calls_before = receive_calls(rig)
        rig.emu.faults.set_unavailable(mode)
        await asyncio.sleep(outage_s)  # the fault window itself, not a wait for state
        calls_during = receive_calls(rig) - calls_before
        assert not daemon.stopping, "the daemon gave up during the outage"
        rig.emu.faults.set_unavailable(None)
        cleared = time.monotonic()
        await wait_until(
            lambda: rig.worker.first_ok_after(cleared) is not None, timeout_s=30, what="first delivery after"
        )
        first_ok = rig.worker.first_ok_after(cleared)
        assert first_ok is not None
        recovery_s = first_ok - cleared
        await rig.wait_done(timeout_s=40)
    report = rig.report()
    record(
        report=report,
        mode=mode,
        outage_s=outage_s,
        receive_calls_during_outage=calls_during,
        recovery_s=round(recovery_s, 2),
        **why_duplicates(rig, daemon),
    )
    report.assert_all_done()
    # One receiver; backoff 0.5 s doubling (full jitter, floor 0.05 s): a handful of calls, not a spin.
    assert calls_during <= 12 * daemon.settings.receiver_count, calls_during
    # Recovery is bounded by the receive backoff: at most its 20 s cap (typically 1-2 s here).
    assert recovery_s < 21.0, recovery_s


async def test_endpoint_down_at_start_up(rig: Rig, record: Record) -> None:
    """SQS unreachable when the daemon starts: GetQueueAttributes is retried with backoff (no exit,
    no crash loop); once the endpoint is back the daemon becomes ready and delivers everything."""
    rig.load(50)
    rig.emu.faults.set_unavailable("error")
    daemon_task_settings = rig.settings(**FAST)
    from asqsd.daemon import Daemon

    daemon = Daemon(daemon_task_settings)
    task = asyncio.create_task(daemon.run())
    try:
        await wait_until(
            lambda: rig.emu.stats.get("GetQueueAttributes").calls >= 2, timeout_s=10, what="start-up retried"
        )
        assert not task.done() and not daemon.ready.is_set()
        calls_down = rig.emu.stats.get("GetQueueAttributes").calls
        rig.emu.faults.set_unavailable(None)
        cleared = time.monotonic()
        await asyncio.wait_for(daemon.ready.wait(), timeout=25)
        ready_s = time.monotonic() - cleared
        await rig.wait_done(timeout_s=20)
    finally:
        daemon.request_stop()
        async with asyncio.timeout(30):
            await task
    assert daemon.failure is None
    report = rig.report()
    record(report=report, start_up_calls_while_down=calls_down, ready_after_clear_s=round(ready_s, 2))
    report.assert_all_done()
