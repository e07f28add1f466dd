"""Per-delivery figures the counters do not hold: worker latency, message age, last-attempt failures.

:class:`LatencyHistogram` has fixed buckets and an O(log buckets) ``observe``; the dispatcher
records each worker response time into :class:`DeliveryStats`, which also counts failures on a
message's last receive before the redrive policy dead-letters it.
"""

from __future__ import annotations

import itertools
import json
import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

# 5 ms to 5 min: the fast end separates "handled in memory" from "did I/O"; the slow end reaches
# the stock VisibilityTimeout (300 s), beyond which a message is redelivered anyway.
DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


# 50 ms to 14 days (the longest SQS retention): a fresh queue, a backlog of minutes or hours, and
# messages that sat in retries for days each land in their own buckets.
MESSAGE_AGE_BUCKETS: tuple[float, ...] = (
    *(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),  # up to a minute
    *(300.0, 900.0, 3600.0, 14400.0, 43200.0),  # 5 and 15 minutes, 1, 4 and 12 hours
    *(86400.0, 345600.0, 1209600.0),  # 1, 4 and 14 days
)

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")


# --- value objects ----------------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class HistogramSnapshot:
    """A consistent copy of a histogram: upper bounds, cumulative counts (last is +Inf), sum."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        """Number of observations (the +Inf bucket)."""
        return self.cumulative[-1]


class LatencyHistogram:
    """A Prometheus-style histogram with fixed upper bounds (``le``, inclusive).

    Only the event-loop thread calls it, so there is no locking. ``observe`` is a bisect and two
    additions: cheap enough for every delivery.
    """

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds:
            raise ValueError("at least one bucket is required")
        if any(not math.isfinite(b) for b in bounds):
            raise ValueError("bucket bounds must be finite (+Inf is implicit)")
        if any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ValueError("bucket bounds must be strictly increasing")
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the extra slot is the +Inf bucket
        self._sum = 0.0

    @property
    def bounds(self) -> tuple[float, ...]:
        """The finite upper bounds."""
        return self._bounds

    def observe(self, seconds: float) -> None:
        """Record one duration; NaN is ignored, negatives (clock oddities) count as 0."""
        if math.isnan(seconds):
            return
        seconds = max(seconds, 0.0)
        # bisect_left: a value equal to a bound belongs to that bucket (le is inclusive).
        self._counts[bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def snapshot(self) -> HistogramSnapshot:
        """Cumulative counts as Prometheus exposes them."""
        running = 0
        cumulative = []
        for count in self._counts:
            running += count
            cumulative.append(running)
        return HistogramSnapshot(self._bounds, tuple(cumulative), self._sum)


def redrive_policy_from(redrive_policy: str | None) -> dict[str, object]:
    """A queue's ``RedrivePolicy`` attribute (JSON) as a dict; empty if absent or bad."""
    if not redrive_policy:
        return {}
    try:
        policy = json.loads(redrive_policy)
    except ValueError:
        return {}
    return policy if isinstance(policy, dict) else {}


def max_receive_count_from(redrive_policy: str | None) -> int | None:
    """``maxReceiveCount`` of a queue's ``RedrivePolicy`` attribute (JSON); None if absent or bad."""
    value: object = redrive_policy_from(redrive_policy).get("maxReceiveCount")
    # SQS returns it as a number or a numeric string, depending on the API and the writer.
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        count = int(value)
    except ValueError:
        return None
    return count if count > 0 else None


@dataclass(slots=True)
class DeliveryStats:
    """Per-delivery figures for /metrics that :class:`~asqsd.observe.counters.Counters` does not carry.

    ``max_receive_count`` is the queue's redrive ``maxReceiveCount`` (None: no dead-letter queue).
    """

    max_receive_count: int | None = None
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    age: LatencyHistogram = field(default_factory=lambda: LatencyHistogram(MESSAGE_AGE_BUCKETS))
    dead_letter_bound: int = 0

    def record(
        self,
        *,
        status: int | None,
        elapsed_s: float,
        failed: bool,
        receive_count: int,
        age_s: float | None = None,
    ) -> None:
        """Record one finished delivery.

        Latency is observed only when the worker answered (``status`` is not None): connection
        refusals would pile into the lowest bucket and hide real response times; they are visible
        as ``asqsd_delivery_attempts_total{class="error"}``. ``age_s`` (time since the message
        was sent, see :func:`message_age_s`) is observed for every attempt that has one.
        """
        if status is not None:
            self.latency.observe(elapsed_s)
        if age_s is not None:
            self.age.observe(age_s)
        if failed and self.is_dead_letter_bound(receive_count):
            self.dead_letter_bound += 1

    def is_dead_letter_bound(self, receive_count: int) -> bool:
        """True when SQS moves the message to the DLQ instead of delivering it again."""
        return self.max_receive_count is not None and receive_count >= self.max_receive_count


def message_age_s(sent_timestamp_ms: str | None, now_s: float) -> float | None:
    """Seconds since SQS accepted the message (its ``SentTimestamp``, epoch ms); None if unknown."""
    if sent_timestamp_ms is None or not sent_timestamp_ms.isdigit():
        return None
    return now_s - int(sent_timestamp_ms) / 1000
