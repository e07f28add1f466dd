"""async_ack under the ledger: jobs longer than a proxy's read timeout, acknowledged later.

The issue's scenario: nginx in front of the worker ends any request after 60 s (a 504), and a job
takes 90 s. With async_ack the worker answers 202 at once, runs the job in the background and
reports its outcome to the acknowledgement URL; asqsd keeps the message leased meanwhile.
"""

from __future__ import annotations

import itertools

import aiohttp

from asqsd.observe.counters import Counters
from tests.reliability.conftest import Record, Rig, daemon_running
from tests.support.ledger import Action, DeliveryRecord, LedgerWorker
from tests.support.reverse_proxy import TimeoutProxy

# The 60 s / 90 s scenario scaled by 1/60: proxy read timeout 1.0 s, job 1.5 s. The visibility
# timeout (1 s, the smallest SQS takes) is shorter than the job, so the heartbeat is what keeps
# a held job invisible.
PROXY_READ_TIMEOUT_S = 1.0
JOB_S = 1.5
VISIBILITY_TIMEOUT_S = 1
DEADLINE_S = 2.0


def script(n: int, attempt: int) -> Action:
    """Four kinds of message, by number: done after the long job; fail, then done on redelivery;
    never acknowledged (the deadline releases it), then done; an ordinary 200 at once."""
    kind = n % 4
    if kind == 0:
        return Action("accept", ack="done", ack_after_s=JOB_S)
    if kind == 1:
        return Action(
            "accept", ack="fail" if attempt == 1 else "done", ack_after_s=0.2 if attempt == 1 else JOB_S
        )
    if kind == 2:
        return Action("accept", ack=None if attempt == 1 else "done", ack_after_s=0.2)
    return Action()


async def test_a_slow_job_through_a_proxy_read_timeout_is_a_504_without_async_ack(
    worker: LedgerWorker,
) -> None:
    """The problem, shown: answering only when the job ends, the POST is cut off by the proxy."""
    worker.script = lambda _n, _attempt: Action(status=200, delay_s=JOB_S)
    async with TimeoutProxy(worker.port, PROXY_READ_TIMEOUT_S) as proxy, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{proxy.port}/"
        async with http.post(url, data=b"ledger 0000001") as response:
            assert response.status == 504
    assert proxy.timeouts == 1


async def test_long_jobs_are_held_until_acknowledged_nothing_lost_no_duplicate_while_held(
    rig: Rig, record: Record
) -> None:
    """The 60 s / 90 s scenario scaled by 1/60 (see the constants), 40 messages of four kinds.

    Nothing is lost, nothing is done twice, and no message is delivered again while a job for it
    is held: a redelivery comes only after the failure was acknowledged or the deadline passed.
    """
    rig.worker.script = script
    numbers = rig.load(40)
    async with TimeoutProxy(rig.worker.port, PROXY_READ_TIMEOUT_S) as proxy:
        settings = rig.settings(
            http_port=proxy.port,
            visibility_timeout=VISIBILITY_TIMEOUT_S,
            async_ack=True,
            health_server=True,
            health_port=0,
            async_ack_deadline_s=DEADLINE_S,
            max_async_jobs=50,
        )
        async with daemon_running(settings) as daemon:
            await rig.wait_done(timeout_s=30)
            counters = daemon.counters
            held_at_end = daemon.gauges()["async_jobs_held"]
        report = rig.report()
    record(report=report, extended=counters.extended, expired=counters.async_jobs_expired)
    report.assert_all_done()
    assert report.duplicated == 0, report.summary()
    assert proxy.timeouts == 0 and proxy.forwarded == len(rig.worker.records)
    assert held_at_end == 0
    _assert_no_redelivery_while_held(rig.worker)
    _assert_counts(counters, numbers)


def _assert_no_redelivery_while_held(worker: LedgerWorker) -> None:
    by_number: dict[int, list[DeliveryRecord]] = {}
    for delivery in worker.records:
        assert delivery.n is not None
        by_number.setdefault(delivery.n, []).append(delivery)
    for n, deliveries in by_number.items():
        for held, again in itertools.pairwise(deliveries):
            if held.status != 202:
                continue
            if held.ack is None:  # never acknowledged: released only at its deadline
                assert again.started - held.started >= DEADLINE_S, (n, held, again)
            else:
                assert held.ack_sent is not None and again.started >= held.ack_sent, (n, held, again)
        done = [d for d in deliveries if d.status == 202 and d.ack == "done"]
        assert all(d.ack_status == 200 for d in done), (n, deliveries)


def _assert_counts(counters: Counters, numbers: range) -> None:
    per_kind = len(numbers) // 4
    # done: kinds 0, 1 (on redelivery) and 2 (on redelivery); fail: kind 1's first attempt.
    assert counters.async_acks == {"done": 3 * per_kind, "fail": per_kind, "extend": 0}
    assert counters.async_jobs_expired == per_kind
    assert counters.lease_lost == 0
    # Jobs outlive the 1 s visibility timeout: only the heartbeat kept them invisible.
    assert counters.extended >= per_kind
