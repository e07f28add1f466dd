"""Worker faults (daemon and emulator in-process, a scriptable ledger worker): nothing is lost,
retries are paced by the settings, and a huge response never sits in memory."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import time
from pathlib import Path

import pytest

from asqsd.daemon import Daemon
from asqsd.emulator import Emulator
from asqsd.pipeline.outage import WorkerOutage
from tests.reliability.conftest import Record, Rig, daemon_running
from tests.support.ledger import (
    OK,
    Action,
    LedgerReport,
    LedgerWorker,
    always,
    at_rate,
    attempt_gaps,
    resends_within,
    sequence,
)
from tests.support.polling import wait_until

CLIENTS = pytest.mark.parametrize("client", ["lean", "aiohttp"])


def vm_rss_kb() -> int:
    """This process's resident set size in KiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS line")


async def test_worker_down_then_up(rig: Rig, record: Record) -> None:
    """Stock behaviour (worker_outage_hold off): connections refused (worker not listening yet)
    until every message failed twice, then it starts: every message is retried every
    ~error_visibility_timeout, then delivered; 0 lost, 0 duplicates."""
    await rig.worker.stop()
    rig.load(30)
    async with daemon_running(rig.settings(error_visibility_timeout=1, worker_outage_hold=False)) as daemon:
        await wait_until(lambda: daemon.counters.failed >= 60, timeout_s=10, what="refused deliveries")
        refused = daemon.counters.failed
        await rig.worker.start()
        started = time.monotonic()
        await rig.wait_done(timeout_s=20)
        first_ok = rig.worker.first_ok_after(started)
    report = rig.report()
    assert first_ok is not None
    record(report=report, refused_attempts=refused, recovery_s=round(first_ok - started, 2))
    report.assert_all_done()
    assert report.duplicated == 0
    # error_visibility_timeout=1 paces the refused attempts: no message was tried more than
    # once a second while the worker was down.
    assert refused <= 30 * 3, refused


async def test_worker_down_with_a_redrive_policy(emu: Emulator, worker: LedgerWorker, record: Record) -> None:
    """Stock behaviour (worker_outage_hold off): a redrive policy counts every refused delivery:
    with maxReceiveCount 2 and the worker down, the backlog moves to the dead-letter queue within
    seconds. Not lost (the ledger finds every message in the DLQ), but no longer delivered."""
    emu.create_queue("dead")
    policy = json.dumps({"deadLetterTargetArn": emu.store.arn("dead"), "maxReceiveCount": 2})
    emu.create_queue("jobs", {"VisibilityTimeout": "10", "RedrivePolicy": policy})
    rig = Rig(emu, "jobs", worker, dlq="dead")
    await worker.stop()
    rig.load(30)
    async with daemon_running(rig.settings(error_visibility_timeout=0, worker_outage_hold=False)):
        await wait_until(lambda: emu.counters("dead")["depth"] == 30, timeout_s=15, what="all in the DLQ")
    report = rig.report()
    record(report=report)
    report.assert_nothing_lost()
    assert report.in_dlq == 30 and report.done == 0


def redrive_rig(emu: Emulator, worker: LedgerWorker, max_receive_count: int) -> Rig:
    """Queue ``jobs`` (visibility 10 s) whose redrive policy sends to ``dead``."""
    emu.create_queue("dead")
    policy = json.dumps({"deadLetterTargetArn": emu.store.arn("dead"), "maxReceiveCount": max_receive_count})
    emu.create_queue("jobs", {"VisibilityTimeout": "10", "RedrivePolicy": policy})
    return Rig(emu, "jobs", worker, dlq="dead")


async def opened_outage(daemon: Daemon) -> WorkerOutage:
    """The daemon's worker outage, once it opened (its own event)."""
    assert daemon.pipeline is not None and daemon.pipeline.outage is not None
    outage = daemon.pipeline.outage
    await asyncio.wait_for(outage.opened.wait(), 15)
    return outage


def assert_no_attempt_spent(report: LedgerReport, daemon: Daemon, failed: int) -> None:
    """All delivered once, none dead-lettered, one outage; only the failures before it opened
    (threshold - 1) got the error visibility, so no message was received more than twice."""
    report.assert_all_done()
    assert report.in_dlq == 0 and report.duplicated == 0
    assert daemon.counters.worker_outages == 1
    assert failed <= daemon.settings.outage_threshold - 1, failed
    assert report.max_receive_count <= 2, report.summary()


# Probes of the down worker before it comes back: with the probe backoff (0.25 s doubling, half
# kept) that is at least ~4 s, four periods of the 1 s error visibility.
OUTAGE_PROBES = 5


@CLIENTS
async def test_worker_outage_costs_no_receive_attempts(
    emu: Emulator, worker: LedgerWorker, record: Record, client: str
) -> None:
    """maxReceiveCount 3, 10 messages, the worker refusing connections for several error
    visibility periods: the outage opens, receiving pauses, the worker is probed, and once it
    listens again every message is delivered once; none reaches the dead-letter queue."""
    rig = redrive_rig(emu, worker, 3)
    await worker.stop()
    rig.load(10)
    async with daemon_running(rig.settings(error_visibility_timeout=1, http_client=client)) as daemon:
        outage = await opened_outage(daemon)
        opened_at = time.monotonic()
        assert daemon.gauges()["worker_outage"] == 1
        receives_at_open = daemon.counters.receive_calls
        await wait_until(lambda: outage.probes >= OUTAGE_PROBES, timeout_s=60, what="probes of the worker")
        assert daemon.counters.receive_calls <= receives_at_open + daemon.settings.receiver_count
        down_s = round(time.monotonic() - opened_at, 2)
        await worker.start()
        await rig.wait_done(timeout_s=60)
        await wait_until(lambda: not outage.active, timeout_s=5, what="the outage ended")
        held, failed = outage.held, daemon.counters.failed
    report = rig.report()
    record(report=report, outage_s=down_s, probes=outage.probes, held=held, failed_settled=failed)
    assert_no_attempt_spent(report, daemon, failed)


async def test_worker_answering_503_with_outage_statuses(
    emu: Emulator, worker: LedgerWorker, record: Record
) -> None:
    """With ``outage_statuses: 502,503``, a worker that answers 503 for a while (port open, so
    the TCP probe passes and each trial fails) costs no receive attempts either."""
    rig = redrive_rig(emu, worker, 3)
    healthy = asyncio.Event()
    worker.script = lambda _n, _attempt: OK if healthy.is_set() else Action(status=503)
    rig.load(10)
    settings = rig.settings(error_visibility_timeout=1, outage_statuses="502,503")
    async with daemon_running(settings) as daemon:
        outage = await opened_outage(daemon)
        await wait_until(lambda: outage.probes >= OUTAGE_PROBES, timeout_s=60, what="probes of the worker")
        answered_503 = sum(1 for r in worker.records if r.status == 503)
        healthy.set()
        await rig.wait_done(timeout_s=60)
        failed = daemon.counters.failed
    report = rig.report()
    record(report=report, probes=outage.probes, answered_503=answered_503, failed_settled=failed)
    assert_no_attempt_spent(report, daemon, failed)


async def test_shutdown_during_an_outage_releases_held_messages(
    emu: Emulator, worker: LedgerWorker, record: Record
) -> None:
    """SIGTERM while an outage holds messages: they are released with visibility 0 (like buffered
    ones), so another consumer can take them at once; nothing is lost or left invisible."""
    rig = redrive_rig(emu, worker, 3)
    await worker.stop()
    rig.load(10)
    async with daemon_running(rig.settings(error_visibility_timeout=30)) as daemon:
        await opened_outage(daemon)
        assert daemon.pipeline is not None
        held = len(daemon.pipeline.leases)
        daemon.request_stop()
    report = rig.report()
    record(report=report, held_at_stop=held, released=daemon.counters.released)
    report.assert_nothing_lost()
    assert held >= 10 - daemon.settings.outage_threshold + 1
    # (A long poll outstanding at the stop may take the released messages again: released too.)
    assert daemon.counters.released >= held and daemon.counters.abandoned == 0
    # Invisible now: only the failures before the outage opened (error visibility 30 s).
    assert report.stuck == daemon.counters.retried <= daemon.settings.outage_threshold - 1, report.summary()
    assert report.pending == 10 - report.stuck and report.in_dlq == 0, report.summary()


async def test_outage_hold_off_is_stock(emu: Emulator, worker: LedgerWorker, record: Record) -> None:
    """``worker_outage_hold: false``: each refused delivery gets the error visibility, the
    receive count climbs and the redrive policy dead-letters the messages (stock)."""
    rig = redrive_rig(emu, worker, 3)
    await worker.stop()
    rig.load(10)
    settings = rig.settings(error_visibility_timeout=1, worker_outage_hold=False)
    async with daemon_running(settings) as daemon:
        assert daemon.pipeline is not None and daemon.pipeline.outage is None
        await wait_until(lambda: emu.counters("dead")["depth"] == 10, timeout_s=30, what="all in the DLQ")
        assert daemon.counters.retried >= 20
    report = rig.report()
    record(report=report)
    report.assert_nothing_lost()
    assert report.in_dlq == 10 and daemon.counters.worker_outages == 0


@CLIENTS
async def test_resets_mid_request(rig: Rig, record: Record, client: str) -> None:
    """30 % of deliveries end in a connection reset (RST) after the worker read the request: the
    daemon treats each as a failure, never re-sent at once; 0 lost."""
    rig.load(60)
    rig.worker.script = at_rate(0.3, Action(kind="reset", delay_s=0.05), seed=1)
    async with daemon_running(rig.settings(http_client=client)) as daemon:
        await rig.wait_done(timeout_s=20)
    report = rig.report()
    resets = sum(1 for r in rig.worker.records if r.action == "reset")
    record(
        report=report,
        client=client,
        resets=resets,
        failed=daemon.counters.failed,
        stale_resends=daemon.counters.stale_resends,
        posts_not_counted_as_deliveries=len(rig.worker.records) - daemon.counters.delivered,
    )
    report.assert_all_done()
    assert report.duplicated == 0 and resets > 0
    assert daemon.counters.stale_resends == 0
    assert daemon.counters.failed == resets


@CLIENTS
async def test_reset_after_reading_is_retried_after_the_error_visibility(
    rig: Rig, record: Record, client: str
) -> None:
    """The chaos case of docs/http-client.md: on kept-alive connections the worker resets 3 % of
    connections right after reading the whole request. Each reset is a failed delivery (logged,
    counted) and comes back only through SQS after error_visibility_timeout (1 s): no message is
    sent again sooner. 0 lost; the worker reads a reset message once more per reset, no more."""
    rig.load(300)
    rig.worker.script = at_rate(0.03, Action(kind="reset"), seed=7)
    async with daemon_running(rig.settings(http_client=client, error_visibility_timeout=1)) as daemon:
        await rig.wait_done(timeout_s=30)
    report = rig.report()
    resets = sum(1 for r in rig.worker.records if r.action == "reset")
    immediate = resends_within(rig.worker, 0.9)
    record(
        report=report,
        client=client,
        resets=resets,
        failed=daemon.counters.failed,
        immediate_resends=immediate,
        reads_beyond_one_per_message=len(rig.worker.records) - report.expected,
    )
    report.assert_all_done()
    assert resets > 0
    assert immediate == 0 and daemon.counters.stale_resends == 0
    assert daemon.counters.failed == resets
    assert len(rig.worker.records) == report.expected + resets  # one more read per reset
    assert report.duplicated == 0


@CLIENTS
async def test_slow_headers(rig: Rig, record: Record, client: str) -> None:
    """Headers trickling in (a piece every 0.4 s, 1.2 s in all, inactivity timeout 1 s) succeed:
    the idle timer restarts on every byte. Headers stalled for 1.3 s fail, and the retry succeeds."""
    rig.load(6)
    trickle = Action(
        kind="raw",
        pieces=((0.4, b"HTTP/1.1 200 OK\r\n"), (0.4, b"Content-Length: 2\r\n"), (0.4, b"\r\nok")),
    )
    stalled = Action(
        kind="raw", pieces=((0.1, b"HTTP/1.1 200 OK\r\n"), (1.3, b"Content-Length: 2\r\n\r\nok"))
    )
    rig.worker.script = lambda n, attempt: trickle if n % 2 == 0 else (stalled if attempt == 1 else OK)
    async with daemon_running(rig.settings(inactivity_timeout=1, http_client=client)) as daemon:
        await rig.wait_done(timeout_s=20)
    report = rig.report()
    record(report=report, client=client, failed=daemon.counters.failed)
    assert all(len(rig.worker.of(n)) == 1 for n in (0, 2, 4)), "trickled headers should succeed first time"
    assert daemon.counters.failed == 3
    report.assert_all_done()


GARBAGE = (
    b"\x00\xff\xfeNOT HTTP\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header Line\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ntruncated",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n",
)


@CLIENTS
async def test_garbage_responses(rig: Rig, record: Record, client: str) -> None:
    """Malformed responses (binary junk, a 4-digit status, a header line without a colon, a body
    cut short, a bad chunk size, conflicting Content-Length, a 100 kB header) are failures, never
    a delete; the retry is delivered; 0 lost."""
    rig.load(len(GARBAGE) * 2)
    rig.worker.script = lambda n, attempt: (
        Action(kind="garbage", raw=GARBAGE[n % len(GARBAGE)]) if attempt == 1 else OK
    )
    async with daemon_running(rig.settings(http_client=client)) as daemon:
        await rig.wait_done(timeout_s=20)
    report = rig.report()
    record(report=report, client=client, failed=daemon.counters.failed)
    report.assert_all_done()
    assert daemon.counters.deleted == len(rig.numbers)
    assert all(len(rig.worker.of(n)) >= 2 for n in rig.numbers), "a malformed answer was taken as success"


@CLIENTS
async def test_oversized_response_is_streamed(rig: Rig, record: Record, client: str) -> None:
    """A 50 MB response body is read and discarded chunk by chunk: the delivery succeeds and the
    process's memory does not grow by anything near 50 MB."""
    size = 50 * 1024 * 1024
    rig.load(1)
    rig.worker.script = always(Action(kind="big", body_bytes=size))
    baseline = vm_rss_kb()
    peak = baseline
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, vm_rss_kb())
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    try:
        async with daemon_running(rig.settings(http_client=client)):
            await rig.wait_done(timeout_s=30)
            elapsed = time.monotonic() - started
    finally:
        done.set()
        await sampler
    report = rig.report()
    growth_mb = (peak - baseline) / 1024
    record(
        report=report,
        client=client,
        body_mb=50,
        rss_growth_mb=round(growth_mb, 1),
        elapsed_s=round(elapsed, 2),
    )
    report.assert_all_done()
    assert growth_mb < 25, f"RSS grew by {growth_mb:.1f} MB while streaming a 50 MB response"


async def test_retries_are_paced(rig: Rig, record: Record) -> None:
    """Retries follow the settings and the worker, never faster (error_visibility_timeout=1):

    * 500 then 502 then 200: attempts >= 1 s apart;
    * a worker that never answers: the inactivity timeout (1 s) fails the POST, then 1 s of error
      visibility: attempts >= 2 s apart;
    * 429 with ``Retry-After: 2`` and 503 with ``Retry-After`` as an HTTP date ~3 s ahead: the
      header wins over error_visibility_timeout.
    """
    rig.load(12)
    statuses = sequence(500, 502, 200)
    hang = sequence(Action(kind="hang", hang_s=20), OK)

    def retry_after(_n: int, attempt: int) -> Action:
        if attempt == 1:
            return Action(status=429, retry_after="2")
        if attempt == 2:  # the date is computed when answering: ~3 s ahead, whole seconds
            return Action(status=503, retry_after=email.utils.formatdate(time.time() + 3, usegmt=True))
        return OK

    scripts = (statuses, hang, retry_after)
    rig.worker.script = lambda n, attempt: scripts[n % 3](n, attempt)
    async with daemon_running(rig.settings(error_visibility_timeout=1, inactivity_timeout=1)):
        await rig.wait_done(timeout_s=20)
    report = rig.report()
    gaps: dict[str, list[float]] = {
        kind: [] for kind in ("status", "hang", "retry_after_2", "retry_after_date")
    }
    for n in sorted(rig.numbers):
        times = [r.started for r in rig.worker.of(n)]
        steps = [b - a for a, b in itertools.pairwise(times)]
        if n % 3 == 0:
            gaps["status"] += steps
        elif n % 3 == 1:
            gaps["hang"] += steps
        else:
            gaps["retry_after_2"].append(steps[0])
            gaps["retry_after_date"].append(steps[1])
    record(report=report, **{f"min_gap_{k}_s": round(min(v), 2) for k, v in gaps.items()})
    report.assert_all_done()
    assert min(gaps["status"]) >= 0.9, gaps
    assert min(gaps["hang"]) >= 1.8, gaps
    assert all(1.9 <= g < 5 for g in gaps["retry_after_2"]), gaps
    assert all(1.9 <= g < 6 for g in gaps["retry_after_date"]), gaps


async def test_worker_restart_mid_run(rig: Rig, record: Record) -> None:
    """The worker stops (in-flight requests cut) for 0.5 s mid-run and comes back on the same port:
    every message is delivered; 0 lost."""
    rig.load(200)
    rig.worker.script = always(Action(delay_s=0.05))
    async with daemon_running(rig.settings(error_visibility_timeout=1)) as daemon:
        await wait_until(lambda: rig.worker.ok_count() >= 40, timeout_s=20, what="40 delivered")
        await rig.worker.stop()
        await asyncio.sleep(0.5)  # the down window itself
        await rig.worker.start()
        restarted = time.monotonic()
        await rig.wait_done(timeout_s=30)
        first_ok = rig.worker.first_ok_after(restarted)
    report = rig.report()
    assert first_ok is not None
    record(report=report, failed=daemon.counters.failed, recovery_s=round(first_ok - restarted, 2))
    report.assert_all_done()


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
async def test_reset_on_a_new_connection_is_not_resent_at_once(rig: Rig, client: str) -> None:
    """A worker that takes the request, works 0.3 s, then resets the connection (a crash) may have
    done the work: that is an ordinary failure, paced by error_visibility_timeout (1 s), not an
    immediate re-send. Every response says Connection: close, so no connection is ever reused."""
    rig.load(3)
    rig.worker.script = sequence(Action(kind="reset", delay_s=0.3), Action(close=True))
    async with daemon_running(rig.settings(error_visibility_timeout=1, http_client=client)) as daemon:
        await rig.wait_done(timeout_s=20)
    gaps = attempt_gaps(rig.worker)
    assert daemon.counters.stale_resends == 0
    assert min(gaps) >= 0.9, gaps


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
async def test_every_post_is_counted(rig: Rig, client: str) -> None:
    """Each POST the worker receives is a counted delivery. One connection; even messages are
    answered 200 (the connection stays open), odd ones are reset 0.1 s after the worker read them:
    on the reused connection that is a failure, not re-sent at once; the retry gets garbage; the
    third attempt succeeds."""
    rig.load(10)
    odd = sequence(Action(kind="reset", delay_s=0.1), Action(kind="garbage"), OK)
    rig.worker.script = lambda n, attempt: odd(n, attempt) if n % 2 else OK
    async with daemon_running(rig.settings(http_client=client, http_connections=1)) as daemon:
        await rig.wait_done(timeout_s=20)
    counters = daemon.counters
    assert counters.stale_resends == 0
    assert len(rig.worker.records) == counters.delivered + counters.stale_resends
