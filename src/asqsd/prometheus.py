"""Prometheus text exposition (format 0.0.4), written by hand, plus the pieces that feed it.

* :class:`LatencyHistogram`: fixed buckets, O(log buckets) ``observe``; the dispatcher records
  worker response times into it.
* :class:`DeliveryStats`: the per-delivery figures :class:`~asqsd.metrics.Counters` does not
  hold (latency, deliveries that failed on their last allowed receive).
* :class:`QueueBacklogPoller`: polls the queue's approximate counts for autoscalers.
* :func:`render_metrics`: everything above as one exposition document.

No client library: the format is a few lines of text and a dependency would bring its own
global registry, which this project avoids.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import re
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from asqsd.logs import get_logger
from asqsd.metrics import Counters

log = get_logger("prometheus")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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

# Keys of the gauge mapping a DaemonView returns (see docs/observability.md).
IN_FLIGHT = "in_flight"
CHANNEL_DEPTH = "channel_depth"
HELD_MESSAGES = "held_messages"
QUEUE_VISIBLE = "queue_visible"
QUEUE_IN_FLIGHT = "queue_in_flight"
QUEUE_DELAYED = "queue_delayed"

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")
BACKLOG_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_NAMED_GAUGES = frozenset(
    {IN_FLIGHT, CHANNEL_DEPTH, HELD_MESSAGES, QUEUE_VISIBLE, QUEUE_IN_FLIGHT, QUEUE_DELAYED}
)


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


def max_receive_count_from(redrive_policy: str | None) -> int | None:
    """``maxReceiveCount`` of a queue's ``RedrivePolicy`` attribute (JSON); None if absent or bad."""
    if not redrive_policy:
        return None
    try:
        policy = json.loads(redrive_policy)
    except ValueError:
        return None
    if not isinstance(policy, dict):
        return None
    value: object = policy.get("maxReceiveCount")
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
    """Per-delivery figures for /metrics that :class:`~asqsd.metrics.Counters` does not carry.

    ``max_receive_count`` is the queue's redrive ``maxReceiveCount`` (None: no dead-letter queue).
    """

    max_receive_count: int | None = None
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    dead_letter_bound: int = 0

    def record(self, *, status: int | None, elapsed_s: float, failed: bool, receive_count: int) -> None:
        """Record one finished delivery.

        Latency is observed only when the worker answered (``status`` is not None): connection
        refusals would pile into the lowest bucket and hide real response times; they are visible
        as ``asqsd_messages_delivered_total{class="error"}``.
        """
        if status is not None:
            self.latency.observe(elapsed_s)
        if failed and self.is_dead_letter_bound(receive_count):
            self.dead_letter_bound += 1

    def is_dead_letter_bound(self, receive_count: int) -> bool:
        """True when SQS moves the message to the DLQ instead of delivering it again."""
        return self.max_receive_count is not None and receive_count >= self.max_receive_count


# --- exposition ---------------------------------------------------------------------------------
def format_value(value: float) -> str:
    """A sample value as Prometheus parses it (Go float syntax; integers without a fraction)."""
    if isinstance(value, bool):  # a bool is an int, but str(True) is not a sample value
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def escape_label_value(value: str) -> str:
    """Escape backslash, double quote and line feed, as the text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escapes only backslash and line feed."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_labels(labels: Mapping[str, str]) -> str:
    """``{a="x",b="y"}`` in the given order, or an empty string for no labels."""
    if not labels:
        return ""
    inner = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels.items())
    return "{" + inner + "}"


Sample = tuple[Mapping[str, str], float]


class Exposition:
    """Builds one exposition document, metric family by metric family."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        """A counter or gauge family: HELP, TYPE, then one line per sample."""
        self._header(name, kind, help_text)
        for labels, value in samples:
            self._lines.append(f"{name}{format_labels(labels)} {format_value(value)}")

    def histogram(self, name: str, help_text: str, snapshot: HistogramSnapshot) -> None:
        """A histogram family: cumulative ``_bucket`` lines ending in ``+Inf``, ``_sum``, ``_count``."""
        self._header(name, "histogram", help_text)
        les = [format_value(b) for b in snapshot.bounds] + ["+Inf"]
        for le, count in zip(les, snapshot.cumulative, strict=True):
            self._lines.append(f'{name}_bucket{{le="{le}"}} {count}')
        self._lines.append(f"{name}_sum {format_value(snapshot.total)}")
        self._lines.append(f"{name}_count {snapshot.count}")

    def text(self) -> str:
        """The document; the format requires a final line feed."""
        return "\n".join(self._lines) + "\n"

    def _header(self, name: str, kind: str, help_text: str) -> None:
        if not _METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        self._lines.append(f"# HELP {name} {escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")


def _one(value: float) -> list[Sample]:
    return [({}, value)]


def _by_label(label: str, values: Mapping[str, int]) -> list[Sample]:
    return [({label: key}, values[key]) for key in sorted(values)]


def render_metrics(counters: Counters, delivery: DeliveryStats, gauges: Mapping[str, float]) -> str:
    """The whole /metrics document.

    ``gauges`` uses the keys defined in this module (:data:`IN_FLIGHT` ...). A missing key means
    "unknown" and produces no sample (e.g. the queue backlog before its first poll); any other
    key whose ``asqsd_<key>`` is a valid metric name is exposed as an extra gauge.
    """
    out = Exposition()
    _render_counters(out, counters, delivery)
    _render_gauges(out, gauges)
    out.histogram(
        "asqsd_worker_latency_seconds",
        "Time from sending a POST to the worker until its response ended (responses only).",
        delivery.latency.snapshot(),
    )
    return out.text()


def _render_counters(out: Exposition, c: Counters, delivery: DeliveryStats) -> None:
    counter = "counter"
    out.family("asqsd_messages_received_total", counter, "Messages received from SQS.", _one(c.received))
    classes = dict.fromkeys(STATUS_CLASSES, 0) | c.by_status_class  # every class from the start
    out.family(
        "asqsd_messages_delivered_total",
        counter,
        "Deliveries to the worker by status class (error: no HTTP response).",
        _by_label("class", classes),
    )
    out.family("asqsd_messages_deleted_total", counter, "Messages deleted from SQS.", _one(c.deleted))
    out.family(
        "asqsd_messages_released_total",
        counter,
        "Unstarted messages made visible again (visibility 0) at shutdown.",
        _one(c.released),
    )
    out.family(
        "asqsd_messages_retried_total",
        counter,
        "Failed deliveries whose visibility was set to the error visibility timeout or Retry-After.",
        _one(c.retried),
    )
    out.family(
        "asqsd_messages_expired_total",
        counter,
        "Messages deleted unsent because they were first received longer ago than the retention period.",
        _one(c.expired),
    )
    out.family(
        "asqsd_messages_dead_letter_bound_total",
        counter,
        "Failed deliveries whose receive count reached the queue's maxReceiveCount.",
        _one(delivery.dead_letter_bound),
    )
    out.family(
        "asqsd_visibility_extensions_total",
        counter,
        "Visibility extensions made by the heartbeat.",
        _one(c.extended),
    )
    out.family(
        "asqsd_leases_lost_total",
        counter,
        "Held messages whose visibility SQS refused to extend (possible duplicate processing).",
        _one(c.lease_lost),
    )
    out.family(
        "asqsd_sqs_calls_total", counter, "SQS API calls by operation.", _by_label("operation", c.sqs_calls)
    )
    out.family(
        "asqsd_sqs_errors_total",
        counter,
        "Failed SQS API calls by operation.",
        _by_label("operation", c.sqs_errors),
    )


def _render_gauges(out: Exposition, gauges: Mapping[str, float]) -> None:
    def maybe(key: str) -> list[Sample]:
        return _one(gauges[key]) if key in gauges else []

    out.family("asqsd_in_flight", "gauge", "POSTs to the worker in progress.", maybe(IN_FLIGHT))
    out.family(
        "asqsd_channel_depth",
        "gauge",
        "Received messages waiting for a free dispatcher.",
        maybe(CHANNEL_DEPTH),
    )
    out.family(
        "asqsd_held_messages",
        "gauge",
        "Messages asqsd holds (buffered or being delivered) whose visibility it tracks.",
        maybe(HELD_MESSAGES),
    )
    states = {"visible": QUEUE_VISIBLE, "in_flight": QUEUE_IN_FLIGHT, "delayed": QUEUE_DELAYED}
    out.family(
        "asqsd_queue_messages",
        "gauge",
        "Approximate messages in the SQS queue by state, as last polled (all consumers).",
        [({"state": state}, gauges[key]) for state, key in states.items() if key in gauges],
    )
    for key in sorted(set(gauges) - _NAMED_GAUGES):
        name = f"asqsd_{key}"
        if _METRIC_NAME.match(name):
            out.family(name, "gauge", f"{key} (daemon gauge).", _one(gauges[key]))


# --- queue backlog ------------------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class QueueBacklog:
    """The queue's approximate counts at one moment (``polled_at`` on the monotonic clock)."""

    visible: int
    in_flight: int
    delayed: int
    polled_at: float


GetAttributes = Callable[[list[str]], Awaitable[dict[str, str]]]


class QueueBacklogPoller:
    """Polls GetQueueAttributes for the backlog every ``interval_s``; never raises.

    Failures are logged (a warning for the first of a streak, then debug) and back off
    exponentially up to ``max_backoff_s``. Values older than ``stale_after_s`` are dropped from
    :meth:`gauges` so a scraper sees "unknown" instead of a stale number.
    """

    def __init__(
        self,
        get_attributes: GetAttributes,
        interval_s: float = 5.0,
        *,
        max_backoff_s: float = 60.0,
        timeout_s: float = 10.0,
        stale_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._get_attributes = get_attributes
        self._interval_s = interval_s
        self._max_backoff_s = max(max_backoff_s, interval_s)
        self._timeout_s = timeout_s
        self._stale_after_s = stale_after_s if stale_after_s is not None else max(60.0, 3 * interval_s)
        self._clock = clock
        self._rng = rng or random.Random()
        self._failures = 0
        self._stopped = asyncio.Event()
        self.latest: QueueBacklog | None = None

    @property
    def failures(self) -> int:
        """Consecutive failed polls."""
        return self._failures

    def stop(self) -> None:
        """End :meth:`run` (at once if it is sleeping)."""
        self._stopped.set()

    async def run(self) -> None:
        """Poll until :meth:`stop`."""
        while not self._stopped.is_set():
            ok = await self.poll_once()
            await self._sleep(self._interval_s if ok else self.backoff_delay(self._failures))

    async def poll_once(self) -> bool:
        """One poll; True if it updated :attr:`latest`."""
        try:
            async with asyncio.timeout(self._timeout_s):
                attributes = await self._get_attributes(list(BACKLOG_ATTRIBUTES))
            visible, in_flight, delayed = (int(attributes[name]) for name in BACKLOG_ATTRIBUTES)
        except Exception as exc:  # noqa: BLE001 - a metrics poller must outlive any SQS or client error
            self._failures += 1
            level = log.warning if self._failures == 1 else log.debug
            level("backlog-poll-failed", error=repr(exc), failures=self._failures)
            return False
        if self._failures:
            log.info("backlog-poll-recovered", after_failures=self._failures)
        self._failures = 0
        self.latest = QueueBacklog(visible, in_flight, delayed, self._clock())
        return True

    def gauges(self) -> dict[str, float]:
        """The latest counts under the :data:`QUEUE_VISIBLE` ... keys; empty if none or stale."""
        latest = self.latest
        if latest is None or self._clock() - latest.polled_at > self._stale_after_s:
            return {}
        return {
            QUEUE_VISIBLE: latest.visible,
            QUEUE_IN_FLIGHT: latest.in_flight,
            QUEUE_DELAYED: latest.delayed,
        }

    def backoff_delay(self, failures: int) -> float:
        """Pause after ``failures`` consecutive failures: doubling from the interval, capped, jittered."""
        ceiling = min(self._max_backoff_s, self._interval_s * 2.0 ** min(failures, 16))
        return ceiling * self._rng.uniform(0.5, 1.0)  # jitter: many instances must not poll in step

    async def _sleep(self, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._stopped.wait()
