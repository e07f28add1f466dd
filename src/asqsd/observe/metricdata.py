"""Direct publishing of the interval figures through CloudWatch ``PutMetricData`` (``cloudwatch_metrics``).

The alternative to EMF lines for hosts without a CloudWatch agent: the same metrics, namespace
and dimensions, sent once per interval in as few calls as the API allows (1000 metric data per
call). Counts and gauges are single values; processing time is sent as the histogram's bucket
values with their exact counts (``Values``/``Counts``), so CloudWatch's percentiles see every
delivery, not a 100-value summary as in EMF. Each call is counted in the daemon's call counters.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import Any

from asqsd.logs import get_logger
from asqsd.observe.counters import Counters
from asqsd.observe.emf import MESSAGE_AGE, PROCESSING_TIME
from asqsd.observe.interval import IntervalFigures, IntervalReader, every_interval

log = get_logger("cloudwatch")

MAX_DATA_PER_CALL = 1000
OPERATION = "PutMetricData"


def metric_data(
    figures: IntervalFigures, dimensions: Mapping[str, str], timestamp: dt.datetime
) -> list[dict[str, Any]]:
    """The ``MetricData`` entries of one interval (processing time only if anything was timed)."""
    dims = [{"Name": name, "Value": value} for name, value in dimensions.items()]
    base = {"Dimensions": dims, "Timestamp": timestamp}
    data: list[dict[str, Any]] = [
        {**base, "MetricName": name, "Unit": "Count", "Value": float(value)}
        for name, value in (*figures.counts.items(), *figures.gauges.items())
    ]
    for name, unit, scale, buckets in (
        (PROCESSING_TIME, "Milliseconds", 1000.0, figures.latency.buckets),
        (MESSAGE_AGE, "Seconds", 1.0, figures.age.buckets),
    ):
        if buckets:
            data.append(
                {
                    **base,
                    "MetricName": name,
                    "Unit": unit,
                    "Values": [value * scale for value, _ in buckets],
                    "Counts": [float(count) for _, count in buckets],
                }
            )
    return data


def batches(data: list[dict[str, Any]], size: int = MAX_DATA_PER_CALL) -> list[list[dict[str, Any]]]:
    """``data`` cut into calls of at most ``size`` entries."""
    return [data[i : i + size] for i in range(0, len(data), size)]


class MetricDataPublisher:
    """Sends the interval figures with ``PutMetricData`` until stopped; never raises.

    ``cloudwatch_client`` is an aiobotocore ``cloudwatch`` client owned by the caller. A failed
    call is logged (once per streak) and its figures are not resent: the next interval carries
    its own.
    """

    def __init__(
        self,
        cloudwatch_client: Any,
        reader: IntervalReader,
        counters: Counters,
        *,
        namespace: str,
        dimensions: Mapping[str, str],
        interval_s: float = 60.0,
        put_timeout_s: float = 15.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = cloudwatch_client
        self._reader = reader
        self._counters = counters
        self._namespace = namespace
        self._dimensions = dict(dimensions)
        self._interval_s = interval_s
        self._put_timeout_s = put_timeout_s
        self._clock = wall_clock
        self._stopped = asyncio.Event()
        self._failing = False
        self.published = 0

    def stop(self) -> None:
        """End :meth:`run` after one last publish of the interval so far."""
        self._stopped.set()

    async def run(self) -> None:
        """Publish every interval until stopped."""
        await every_interval(self._interval_s, self._stopped, self.publish_once)

    async def publish_once(self) -> None:
        """Read the interval's figures and send them; errors are logged, not raised."""
        timestamp = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        for batch in batches(metric_data(self._reader.read(), self._dimensions, timestamp)):
            await self._put(batch)

    async def _put(self, batch: list[dict[str, Any]]) -> None:
        try:
            async with asyncio.timeout(self._put_timeout_s):
                await self._client.put_metric_data(Namespace=self._namespace, MetricData=batch)
        except Exception as exc:  # noqa: BLE001 - CloudWatch trouble must never stop the daemon
            self._counters.count_call(OPERATION, error=True)
            if not self._failing:
                log.warning("cloudwatch-metrics-failed", error=repr(exc), retry_in_s=self._interval_s)
            self._failing = True
            return
        self._counters.count_call(OPERATION)
        self.published += len(batch)
        if self._failing:
            self._failing = False
            log.info("cloudwatch-metrics-recovered")
