"""CloudWatch Embedded Metric Format (EMF) lines, one batch per interval, for agents to ship.

Every ``interval_s`` the figures of :mod:`asqsd.observe.interval` become one JSON document per
line (more only if one would exceed the CloudWatch Logs event size), appended to a file the
CloudWatch agent or Elastic Beanstalk's log streaming tails, or written to stdout. CloudWatch Logs
extracts the metrics at no API cost. Nothing is written per message.

Worker processing time is a distribution: EMF takes at most 100 values per metric and computes
percentiles from them. The interval's latency histogram is turned into 100 values: each non-empty
bucket's representative value (its upper bound) repeated in proportion to its count, with at
least one value per non-empty bucket so a rare slow delivery is never rounded away. Below 100
deliveries the values are exact bucket counts. This costs nothing per delivery (the histogram is
kept anyway), always fits in one line, and its p99 errs on the high side by at most one bucket.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from asqsd.logs import get_logger
from asqsd.observe.interval import IntervalFigures, IntervalReader, LatencyBuckets, every_interval
from asqsd.observe.linefile import LineFile

log = get_logger("emf")

MAX_VALUES = 100  # values of one metric in one document
MAX_METRICS = 100  # metrics of one MetricDirective
MAX_DIMENSIONS = 30  # names in one dimension set
# The CloudWatch Logs event limit (256 KiB) counts the message plus 26 bytes of overhead.
MAX_EVENT_BYTES = 256 * 1024 - 26

PROCESSING_TIME = "ProcessingTime"
MESSAGE_AGE = "MessageAge"
ENVIRONMENT_DIMENSION = "EnvironmentName"
QUEUE_DIMENSION = "QueueName"


def spread_to_values(latency: LatencyBuckets, limit: int = MAX_VALUES, scale: float = 1000.0) -> list[float]:
    """At most ``limit`` values (seconds × ``scale``: milliseconds by default) whose distribution
    follows the buckets' counts."""
    buckets = [(value * scale, count) for value, count in latency.buckets]
    total = sum(count for _, count in buckets)
    if total <= limit:
        return [value for value, count in buckets for _ in range(count)]
    # Buckets too small for a proportional value get one each (a rare slow delivery must show);
    # the others share the rest by largest remainder.
    small = {i for i, (_, count) in enumerate(buckets) if count * limit < total}
    rest_total = total - sum(buckets[i][1] for i in small)
    shares = [
        0.0 if i in small else count * (limit - len(small)) / rest_total
        for i, (_, count) in enumerate(buckets)
    ]
    slots = [1 if i in small else max(1, int(share)) for i, share in enumerate(shares)]
    by_remainder = sorted(range(len(buckets)), key=lambda i: shares[i] - int(shares[i]), reverse=True)
    for index in by_remainder[: max(limit - sum(slots), 0)]:
        slots[index] += 1
    for _ in range(sum(slots) - limit):  # only when rounding up to one overshot
        slots[slots.index(max(slots))] -= 1
    return [value for (value, _), n in zip(buckets, slots, strict=True) for _ in range(n)]


def metric_members(figures: IntervalFigures) -> dict[str, tuple[str, float | list[float]]]:
    """Metric name -> (unit, value) for one interval; processing time only if anything was timed."""
    members: dict[str, tuple[str, float | list[float]]] = {
        name: ("Count", float(value)) for name, value in figures.counts.items()
    }
    members.update({name: ("Count", value) for name, value in figures.gauges.items()})
    values = spread_to_values(figures.latency)
    if values:
        members[PROCESSING_TIME] = ("Milliseconds", values)
    ages = spread_to_values(figures.age, scale=1.0)
    if ages:
        members[MESSAGE_AGE] = ("Seconds", ages)
    return members


def dimensions_of(environment_name: str | None, queue: str) -> dict[str, str]:
    """The dimension members: the environment (when known) and the queue."""
    dims = {ENVIRONMENT_DIMENSION: environment_name} if environment_name else {}
    dims[QUEUE_DIMENSION] = queue
    return dims


def emf_documents(
    members: Mapping[str, tuple[str, float | list[float]]],
    dimensions: Mapping[str, str],
    namespace: str,
    timestamp_ms: int,
    max_bytes: int = MAX_EVENT_BYTES,
) -> list[str]:
    """The EMF lines (without line feed) carrying ``members``: as few as the size limits allow."""
    names = list(members)
    chunks = [names[i : i + MAX_METRICS] for i in range(0, len(names), MAX_METRICS)]
    return [
        line
        for chunk in chunks
        for line in _fitting(chunk, members, dimensions, namespace, timestamp_ms, max_bytes)
    ]


def _fitting(
    names: Sequence[str],
    members: Mapping[str, tuple[str, float | list[float]]],
    dimensions: Mapping[str, str],
    namespace: str,
    timestamp_ms: int,
    max_bytes: int,
) -> Iterator[str]:
    document: dict[str, Any] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": members[name][0]} for name in names],
                }
            ],
        },
        **dimensions,
        **{name: members[name][1] for name in names},
    }
    line = json.dumps(document, separators=(",", ":"))
    if len(line.encode()) <= max_bytes or len(names) == 1:
        yield line  # one metric always fits: at most 100 numbers
        return
    half = len(names) // 2
    yield from _fitting(names[:half], members, dimensions, namespace, timestamp_ms, max_bytes)
    yield from _fitting(names[half:], members, dimensions, namespace, timestamp_ms, max_bytes)


class EmfReporter:
    """Writes the interval's EMF lines to ``target`` (a path, or ``-`` for stdout) until stopped.

    A write failure is logged once per streak (:class:`LineFile`); the daemon carries on.
    """

    def __init__(
        self,
        reader: IntervalReader,
        target: str,
        *,
        namespace: str,
        dimensions: Mapping[str, str],
        interval_s: float = 60.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if len(dimensions) > MAX_DIMENSIONS:
            raise ValueError(f"at most {MAX_DIMENSIONS} dimensions")
        self._reader = reader
        self._file = None if target == "-" else LineFile(Path(target), "emf")
        self._namespace = namespace
        self._dimensions = dict(dimensions)
        self._interval_s = interval_s
        self._clock = wall_clock
        self._stopped = asyncio.Event()
        self.lines = 0

    def stop(self) -> None:
        """End :meth:`run` after one last report of the interval so far."""
        self._stopped.set()

    async def run(self) -> None:
        """Report every interval until stopped."""
        await every_interval(self._interval_s, self._stopped, self._tick)

    async def _tick(self) -> None:
        self.report()

    def report(self) -> list[str]:
        """Write the figures since the previous report; returns the lines."""
        members = metric_members(self._reader.read())
        lines = emf_documents(members, self._dimensions, self._namespace, int(self._clock() * 1000))
        for line in lines:
            self._write(line + "\n")
        return lines

    def reopen(self) -> None:
        """SIGHUP: reopen the file (logrotate); nothing to do for stdout."""
        if self._file is not None:
            self._file.reopen()

    def close(self) -> None:
        """Close the file (safe to call twice)."""
        if self._file is not None:
            self._file.close()

    def _write(self, line: str) -> None:
        if self._file is not None:
            if self._file.write(line):
                self.lines += 1
            return
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (OSError, ValueError) as exc:  # a closed or broken stdout must not stop the daemon
            log.error("emf-write-failed", path="-", error=str(exc))
            return
        self.lines += 1
