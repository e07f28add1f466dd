"""What happened in one metrics interval, for the CloudWatch outputs (EMF lines, PutMetricData).

:class:`IntervalReader` reads the counters, delivery statistics and gauges the daemon keeps anyway
and returns the change since its previous read as :class:`IntervalFigures`. Nothing here runs per
message: one read per interval, a few dictionary lookups and one histogram snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from asqsd.observe.counters import Counters
from asqsd.observe.delivery import STATUS_CLASSES, DeliveryStats, HistogramSnapshot
from asqsd.observe.gauges import IN_FLIGHT, QUEUE_DELAYED, QUEUE_IN_FLIGHT, QUEUE_VISIBLE, WORKER_OUTAGE

RECEIVE_OPERATIONS = ("ReceiveMessage",)
DELETE_OPERATIONS = ("DeleteMessage", "DeleteMessageBatch")

# Gauge key -> metric name; a gauge absent from the daemon's mapping (backlog not polled) is skipped.
GAUGE_METRICS: Mapping[str, str] = {
    IN_FLIGHT: "InFlight",
    WORKER_OUTAGE: "WorkerOutage",
    QUEUE_VISIBLE: "QueueVisible",
    QUEUE_IN_FLIGHT: "QueueInFlight",
    QUEUE_DELAYED: "QueueDelayed",
}


@dataclass(slots=True, frozen=True)
class LatencyBuckets:
    """Worker response times of one interval: (representative seconds, count) per non-empty bucket.

    The representative value of a bucket is its upper bound (the overflow bucket takes the last
    finite bound): percentiles computed from it never understate the real ones, which is the safe
    side for an alarm on p99.
    """

    buckets: tuple[tuple[float, int], ...]
    total_s: float

    @property
    def count(self) -> int:
        """Number of timed deliveries."""
        return sum(count for _, count in self.buckets)


@dataclass(slots=True, frozen=True)
class IntervalFigures:
    """Counts since the previous interval (``counts``), current levels (``gauges``) and latency."""

    counts: Mapping[str, int]
    gauges: Mapping[str, float]
    latency: LatencyBuckets
    age: LatencyBuckets = LatencyBuckets((), 0.0)  # message age at delivery (now - SentTimestamp)


def latency_delta(now: HistogramSnapshot, before: HistogramSnapshot | None) -> LatencyBuckets:
    """Per-bucket counts observed between two cumulative snapshots of the same histogram."""
    previous = before.cumulative if before is not None else (0,) * len(now.cumulative)
    per_bucket: list[tuple[float, int]] = []
    below_now = below_before = 0
    for index, (cum_now, cum_before) in enumerate(zip(now.cumulative, previous, strict=True)):
        count = (cum_now - below_now) - (cum_before - below_before)
        below_now, below_before = cum_now, cum_before
        if count <= 0:
            continue
        value = now.bounds[min(index, len(now.bounds) - 1)]
        if per_bucket and per_bucket[-1][0] == value:  # the overflow joins the last finite bound
            count += per_bucket.pop()[1]
        per_bucket.append((value, count))
    total = now.total - (before.total if before is not None else 0.0)
    return LatencyBuckets(tuple(per_bucket), max(total, 0.0))


def delivery_metric(status_class: str) -> str:
    """Metric name of one outcome class: ``Deliveries2xx`` ... ``Deliveries5xx``, ``DeliveriesError``."""
    return f"Deliveries{status_class.capitalize()}"


def _cumulative_counts(counters: Counters, delivery: DeliveryStats) -> dict[str, int]:
    calls = counters.sqs_calls
    counts = {delivery_metric(cls): counters.by_status_class.get(cls, 0) for cls in STATUS_CLASSES}
    counts.update(
        DeliveriesSucceeded=counters.succeeded,
        DeliveriesFailed=counters.failed,
        DeadLetterBound=delivery.dead_letter_bound,
        ReceiveCalls=sum(calls.get(op, 0) for op in RECEIVE_OPERATIONS),
        DeleteCalls=sum(calls.get(op, 0) for op in DELETE_OPERATIONS),
        DeadLetteredStatus=counters.dead_lettered.get("status", 0),
        DeadLetteredMaxRetries=counters.dead_lettered.get("max_retries", 0),
        WorkerOutages=counters.worker_outages,
    )
    return counts


class IntervalReader:
    """Turns the daemon's running totals into per-interval figures; one instance per output."""

    def __init__(
        self, counters: Counters, delivery: DeliveryStats, gauges: Callable[[], Mapping[str, float]]
    ) -> None:
        self._counters = counters
        self._delivery = delivery
        self._gauges = gauges
        self._last_counts = _cumulative_counts(counters, delivery)
        self._last_latency: HistogramSnapshot | None = delivery.latency.snapshot()
        self._last_age: HistogramSnapshot | None = delivery.age.snapshot()

    def read(self) -> IntervalFigures:
        """The figures since the previous read (or since construction)."""
        counts = _cumulative_counts(self._counters, self._delivery)
        latency = self._delivery.latency.snapshot()
        age = self._delivery.age.snapshot()
        delta = {name: value - self._last_counts.get(name, 0) for name, value in counts.items()}
        figures = IntervalFigures(
            delta,
            self._read_gauges(),
            latency_delta(latency, self._last_latency),
            latency_delta(age, self._last_age),
        )
        self._last_counts, self._last_latency, self._last_age = counts, latency, age
        return figures

    def _read_gauges(self) -> dict[str, float]:
        values = self._gauges()
        return {name: float(values[key]) for key, name in GAUGE_METRICS.items() if key in values}


async def every_interval(
    interval_s: float, stopped: asyncio.Event, tick: Callable[[], Awaitable[None]]
) -> None:
    """Call ``tick`` every ``interval_s`` until ``stopped``, and once more on the way out, so the
    last partial interval is reported at shutdown."""
    while not stopped.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):
                await stopped.wait()
        await tick()
