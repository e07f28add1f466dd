"""The rate limit (``max_messages_per_s``) end to end: a daemon, the emulator and a ledger worker."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.reliability.conftest import Record, Rig, daemon_running
from tests.support.ledger import DeliveryRecord

RATE = 20
BURST = 1
COUNT = 200
# DeliveryRecord.started is monotonic; this turns it into wall-clock time.
_WALL_OFFSET_S = time.time() - time.monotonic()


def held_before_post(record: DeliveryRecord) -> float:
    """Seconds from the receive (X-Aws-Sqsd-First-Received-At, whole seconds) to the POST."""
    header = dict(record.raw_headers)[b"X-Aws-Sqsd-First-Received-At"].decode()
    received = datetime.strptime(header, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    return record.started + _WALL_OFFSET_S - received


def busiest_second(times: list[float]) -> int:
    """The most arrivals in any window [t, t + 1 s) (windows start at an arrival: that is where
    a maximum is reached)."""
    times = sorted(times)
    most, end = 0, 0
    for start, at in enumerate(times):
        while end < len(times) and times[end] < at + 1.0:
            end += 1
        most = max(most, end - start)
    return most


@pytest.mark.slow
async def test_20_per_second_spreads_200_messages_over_10_seconds(rig: Rig, record: Record) -> None:
    """200 messages queued, 20/s with burst 1, two receivers and ten connections: the worker sees
    no one-second window with more than 21 POSTs, the run lasts 10 s within 10 %, and the ledger
    shows every message delivered and deleted once. Receiving follows the bucket, so no message
    waits in the daemon longer than a couple of seconds."""
    rig.load(COUNT)
    settings = rig.settings(max_messages_per_s=RATE, rate_limit_burst=BURST, receivers=2, http_connections=50)
    async with daemon_running(settings):
        await rig.wait_done(timeout_s=30)
    arrivals = [r.started for r in rig.worker.records]
    duration_s = max(arrivals) - min(arrivals)
    held_s = max(held_before_post(r) for r in rig.worker.records)
    report = rig.report()
    busiest = busiest_second(arrivals)
    record(report=report, busiest_second=busiest, duration_s=round(duration_s, 2), held_s=held_s)
    report.assert_all_done()
    assert report.duplicated == 0 and len(arrivals) == COUNT
    assert busiest <= RATE + BURST
    assert 9.0 <= duration_s <= 11.0  # (200 - burst) / 20 = 9.95 s
    # Receiving everything the 50 connections and the buffer could take would hold messages ~5 s
    # before their POST; following the bucket holds them about 1 s (the header has whole seconds).
    assert held_s <= 3
