"""Prometheus text exposition (format 0.0.4) of the counters, delivery figures and gauges.

:func:`render_metrics` turns :class:`~asqsd.observe.counters.Counters`,
:class:`~asqsd.observe.delivery.DeliveryStats` and the gauge values into one exposition document;
the gauge keys are named here. Written by hand: the format is a few lines of text and a client
library would bring its own global registry (docs/observability.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from asqsd.observe.counters import Counters
from asqsd.observe.delivery import STATUS_CLASSES, DeliveryStats, HistogramSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# Keys of the gauge mapping a DaemonView returns (see docs/observability.md).
IN_FLIGHT = "in_flight"


CHANNEL_DEPTH = "channel_depth"


HELD_MESSAGES = "held_messages"


QUEUE_VISIBLE = "queue_visible"


QUEUE_IN_FLIGHT = "queue_in_flight"


QUEUE_DELAYED = "queue_delayed"


_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


_NAMED_GAUGES = frozenset(
    {IN_FLIGHT, CHANNEL_DEPTH, HELD_MESSAGES, QUEUE_VISIBLE, QUEUE_IN_FLIGHT, QUEUE_DELAYED}
)


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
        "asqsd_messages_duplicate_suppressed_total",
        counter,
        "Messages deleted without a POST because the dedup table records them as processed.",
        _one(c.duplicates_suppressed),
    )
    out.family(
        "asqsd_messages_duplicate_in_progress_total",
        counter,
        "Messages left to SQS without a POST because the dedup table shows another consumer on them.",
        _one(c.duplicates_in_progress),
    )
    out.family(
        "asqsd_dedup_errors_total",
        counter,
        "Dedup table calls that failed (the message was delivered unchecked, or its outcome not recorded).",
        _one(c.dedup_errors),
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
