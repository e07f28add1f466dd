"""Prometheus exposition of the counters, delivery figures and gauges, through ``prometheus_client``.

:class:`DaemonCollector` reads a :class:`MetricsSource` (the daemon's counters, delivery stats
and gauges) when scraped and turns it into metric families; :func:`metrics_registry` puts one on
a private ``CollectorRegistry`` (never the library's global one, which would outlive a daemon and
clash between two in one process). :func:`render_metrics` renders a registry in the format the
scraper asks for: OpenMetrics, or the text format 0.0.4 by default. Nothing here runs per
message: the parts keep plain integers and asqsd's own latency histogram, read at scrape time.
The gauge keys are named in :mod:`asqsd.observe.gauges`. The names follow the Prometheus naming
conventions (counters end in ``_total``, base units in the name, every known label value from 0);
``tests/unit/observe/test_metric_names.py`` checks them on the rendered document.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from asqsd import __version__
from asqsd.observe.counters import ASYNC_ACK_OUTCOMES, AWS_OPERATIONS, DEAD_LETTER_REASONS, Counters
from asqsd.observe.delivery import STATUS_CLASSES, DeliveryStats, HistogramSnapshot
from asqsd.observe.gauges import (
    ASYNC_JOBS_HELD,
    CHANNEL_DEPTH,
    HELD_MESSAGES,
    IN_FLIGHT,
    INTAKE_PAUSED,
    INTAKE_PAUSED_SINCE,
    NAMED_GAUGES,
    QUEUE_DELAYED,
    QUEUE_IN_FLIGHT,
    QUEUE_VISIBLE,
    WORKER_OUTAGE,
)
from asqsd.observe.leader_metrics import leader_families
from asqsd.observe.leader_status import LeaderSource

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The content type of the default format (text 0.0.4), for scrapers that ask for nothing else."""


_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


# The library's own spelling of a bucket bound (Go float syntax, as its Histogram writes ``le``);
# it has no type hints, hence the annotated alias.
_go_float: Callable[[float], str] = floatToGoString


class MetricsSource(Protocol):
    """What the collector reads at each scrape (the daemon's ``DaemonView`` satisfies it)."""

    @property
    def counters(self) -> Counters:
        """The daemon's live counters."""
        ...

    @property
    def delivery(self) -> DeliveryStats:
        """Latency histogram and dead-letter-bound count."""
        ...

    def gauges(self) -> Mapping[str, float]:
        """Current gauges under the keys of :mod:`asqsd.observe.gauges`; a missing key is unknown."""
        ...


class DaemonCollector(Collector):
    """A custom collector: every metric family of one daemon, built from its source when scraped."""

    def __init__(self, source: MetricsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        """The families, in the order of docs/observability.md."""
        source = self._source
        yield _build_info()
        yield from _counter_families(source.counters, source.delivery)
        yield from _gauge_families(source.gauges())
        yield _histogram(
            "asqsd_worker_latency_seconds",
            "Time from sending a POST to the worker until its response ended (responses only).",
            source.delivery.latency.snapshot(),
        )
        yield _histogram(
            "asqsd_message_age_seconds",
            "Age of a message (now minus its SentTimestamp) when a delivery attempt ends.",
            source.delivery.age.snapshot(),
        )
        if isinstance(source, LeaderSource) and (leader := source.periodic_leader) is not None:
            yield from leader_families(leader)


def metrics_registry(source: MetricsSource) -> CollectorRegistry:
    """A private registry holding one :class:`DaemonCollector` for ``source``, and the standard
    ``process_*`` families (start time, CPU, memory, open files), which are read from ``/proc``
    at scrape time only and are absent where there is no ``/proc``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(source))
    ProcessCollector(registry=registry)
    return registry


def render_metrics(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The exposition document and its content type, negotiated from an ``Accept`` header.

    ``application/openmetrics-text`` gets OpenMetrics 1.0.0; anything else (or nothing) the text
    format 0.0.4 (:data:`CONTENT_TYPE`), as ``prometheus_client.exposition.choose_encoder`` decides.
    """
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


# --- families -----------------------------------------------------------------------------------
def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)


def _by_label(
    name: str, help_text: str, label: str, values: Mapping[str, int], known: Iterable[str] = ()
) -> CounterMetricFamily:
    """A labelled counter with a sample for every ``known`` value (0 until counted) and any other seen."""
    family = CounterMetricFamily(name, help_text, labels=[label])
    values = dict.fromkeys(known, 0) | dict(values)
    for key in sorted(values):
        family.add_metric([key], values[key])
    return family


def _build_info() -> InfoMetricFamily:
    # The asqsd_build_info gauge (value 1): joined on by dashboards to tell versions apart.
    return InfoMetricFamily(
        "asqsd_build",
        "The asqsd version and the Python it runs on.",
        value={"version": __version__, "python": platform.python_version()},
    )


def _gauge(name: str, help_text: str, gauges: Mapping[str, float], key: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text)
    if key in gauges:  # missing means unknown: HELP and TYPE without a sample
        family.add_metric([], gauges[key])
    return family


def _histogram(name: str, help_text: str, snapshot: HistogramSnapshot) -> HistogramMetricFamily:
    les = [_go_float(bound) for bound in snapshot.bounds] + ["+Inf"]
    buckets = list(zip(les, snapshot.cumulative, strict=True))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=snapshot.total)


def _counter_families(c: Counters, delivery: DeliveryStats) -> Iterable[Metric]:
    return [
        _counter("asqsd_messages_received_total", "Messages received from SQS.", c.received),
        _by_label(
            "asqsd_delivery_attempts_total",
            "POSTs to the worker that ended, by the response's status class (error: no HTTP response).",
            "class",
            c.by_status_class,
            STATUS_CLASSES,
        ),
        _by_label(
            "asqsd_delivery_outcomes_total",
            "Ended POSTs by outcome (success: a success status, the message is deleted; failure: "
            "the message is left for a retry or dead-lettered).",
            "outcome",
            {"success": c.succeeded, "failure": c.failed},
        ),
        _counter("asqsd_messages_deleted_total", "Messages deleted from SQS.", c.deleted),
        _counter(
            "asqsd_messages_released_total",
            "Unstarted messages made visible again (visibility 0) at shutdown.",
            c.released,
        ),
        _counter(
            "asqsd_messages_retried_total",
            "Failed deliveries whose visibility was set to the error visibility timeout or Retry-After.",
            c.retried,
        ),
        _counter(
            "asqsd_messages_expired_total",
            "Messages deleted unsent because they were first received longer ago than the retention period.",
            c.expired,
        ),
        _counter(
            "asqsd_messages_dead_letter_bound_total",
            "Failed deliveries whose receive count reached the queue's maxReceiveCount.",
            delivery.dead_letter_bound,
        ),
        _by_label(
            "asqsd_messages_dead_lettered_total",
            "Messages asqsd moved to the dead-letter queue, by reason (status: a dead_letter_statuses "
            "answer; max_retries: the receive count reached max_retries).",
            "reason",
            c.dead_lettered,
            DEAD_LETTER_REASONS,
        ),
        _counter(
            "asqsd_dead_letter_send_failures_total",
            "Dead-letter sends that failed; the message was left to SQS.",
            c.dead_letter_failed,
        ),
        _counter(
            "asqsd_messages_duplicate_suppressed_total",
            "Messages deleted without a POST because the dedup table records them as processed.",
            c.duplicates_suppressed,
        ),
        _counter(
            "asqsd_messages_duplicate_in_progress_total",
            "Messages left to SQS without a POST because the dedup table shows another consumer on them.",
            c.duplicates_in_progress,
        ),
        _counter(
            "asqsd_dedup_errors_total",
            "Dedup table calls that failed (the message was delivered unchecked, "
            "or its outcome not recorded).",
            c.dedup_errors,
        ),
        _counter(
            "asqsd_visibility_extensions_total", "Visibility extensions made by the heartbeat.", c.extended
        ),
        _counter(
            "asqsd_leases_lost_total",
            "Held messages whose visibility SQS refused to extend (possible duplicate processing).",
            c.lease_lost,
        ),
        _counter(
            "asqsd_worker_outages_total",
            "Worker outages: times receiving paused because the worker could not be reached.",
            c.worker_outages,
        ),
        _by_label(
            "asqsd_async_acks_total",
            "Asynchronous acknowledgements (async_ack) applied, by outcome (done, fail, extend).",
            "outcome",
            c.async_acks,
            ASYNC_ACK_OUTCOMES,
        ),
        _counter(
            "asqsd_async_jobs_expired_total",
            "Jobs answered 202 whose acknowledgement did not come in time; their messages were released.",
            c.async_jobs_expired,
        ),
        _by_label(
            "asqsd_aws_calls_total",
            "AWS API calls by operation (SQS, and CloudWatch PutMetricData), failed ones included.",
            "operation",
            c.sqs_calls,
            AWS_OPERATIONS,
        ),
        _by_label(
            "asqsd_aws_call_failures_total",
            "AWS API calls that failed, by operation.",
            "operation",
            c.sqs_errors,
            AWS_OPERATIONS,
        ),
    ]


def _gauge_families(gauges: Mapping[str, float]) -> Iterable[Metric]:
    families: list[Metric] = [
        _gauge("asqsd_worker_requests_in_flight", "POSTs to the worker in progress.", gauges, IN_FLIGHT),
        _gauge(
            "asqsd_buffered_messages",
            "Received messages waiting for a free dispatcher.",
            gauges,
            CHANNEL_DEPTH,
        ),
        _gauge(
            "asqsd_held_messages",
            "Messages asqsd holds (buffered or being delivered) whose visibility it tracks.",
            gauges,
            HELD_MESSAGES,
        ),
        _gauge(
            "asqsd_worker_outage",
            "1 while a worker outage holds messages and pauses receiving, else 0.",
            gauges,
            WORKER_OUTAGE,
        ),
        _gauge(
            "asqsd_async_jobs_held",
            "Jobs the worker answered 202 for, held leased until their acknowledgement (async_ack).",
            gauges,
            ASYNC_JOBS_HELD,
        ),
        _gauge(
            "asqsd_intake_paused",
            "1 while receiving is paused (POST /pause, asqsd pause, a worker's pause header), else 0.",
            gauges,
            INTAKE_PAUSED,
        ),
        _gauge(
            "asqsd_intake_paused_since_seconds",
            "Unix time the current pause of receiving began; 0 when not paused.",
            gauges,
            INTAKE_PAUSED_SINCE,
        ),
    ]
    queue = GaugeMetricFamily(
        "asqsd_queue_messages",
        "Approximate messages in the SQS queue by state, as last polled (all consumers).",
        labels=["state"],
    )
    states = {"visible": QUEUE_VISIBLE, "in_flight": QUEUE_IN_FLIGHT, "delayed": QUEUE_DELAYED}
    for state, key in states.items():
        if key in gauges:
            queue.add_metric([state], gauges[key])
    families.append(queue)
    for key in sorted(set(gauges) - NAMED_GAUGES):
        name = f"asqsd_{key}"
        if _METRIC_NAME.match(name):
            families.append(_gauge(name, f"{key} (daemon gauge).", gauges, key))
    return families
