"""Prometheus exposition: histogram maths, the document (both formats, read by prometheus_client's
parsers), the backlog poller."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS

from asqsd.errors import SQSError
from asqsd.observe.backlog import BACKLOG_ATTRIBUTES, QueueBacklogPoller
from asqsd.observe.counters import AWS_OPERATIONS, Counters
from asqsd.observe.delivery import (
    DEFAULT_LATENCY_BUCKETS,
    MESSAGE_AGE_BUCKETS,
    DeliveryStats,
    LatencyHistogram,
    max_receive_count_from,
    message_age_s,
)
from asqsd.observe.gauges import (
    CHANNEL_DEPTH,
    HELD_MESSAGES,
    IN_FLIGHT,
    QUEUE_DELAYED,
    QUEUE_IN_FLIGHT,
    QUEUE_VISIBLE,
)
from asqsd.observe.prometheus import CONTENT_TYPE, MetricsSource, metrics_registry, render_metrics
from tests.support.metrics import parse_families, samples_of
from tests.support.polling import wait_until


@dataclass
class Snapshot:
    """A MetricsSource with fixed values."""

    counters: Counters
    delivery: DeliveryStats
    gauge_values: Mapping[str, float]

    def gauges(self) -> Mapping[str, float]:
        return self.gauge_values


def _conforms(snapshot: Snapshot) -> MetricsSource:
    return snapshot  # mypy checks the stub against the Protocol the daemon's view satisfies


def render(
    counters: Counters, delivery: DeliveryStats, gauges: Mapping[str, float], accept: str | None = None
) -> str:
    """The document a scraper sending ``accept`` gets for these values."""
    body, _ = render_metrics(metrics_registry(Snapshot(counters, delivery, gauges)), accept)
    return body.decode()


class TestLatencyHistogram:
    """Buckets are inclusive upper bounds; the exposition is cumulative with +Inf = count."""

    def test_bounds_are_inclusive_and_cumulative(self) -> None:
        """A value equal to a bound lands in that bucket; above the last bound only in +Inf."""
        histogram = LatencyHistogram((0.1, 1.0))
        for value in (0.05, 0.1, 0.5, 1.0, 2.0):
            histogram.observe(value)
        snapshot = histogram.snapshot()
        assert snapshot.cumulative == (2, 4, 5)
        assert snapshot.count == 5
        assert snapshot.total == pytest.approx(3.65)

    def test_nan_ignored_negative_clamped(self) -> None:
        """NaN is not an observation; a negative duration counts as zero."""
        histogram = LatencyHistogram((0.1,))
        histogram.observe(math.nan)
        histogram.observe(-3.0)
        snapshot = histogram.snapshot()
        assert snapshot.cumulative == (1, 1)
        assert snapshot.total == 0.0

    def test_default_buckets_span_5ms_to_5min(self) -> None:
        """The default buckets run from 5 ms to the stock 300 s visibility timeout."""
        assert DEFAULT_LATENCY_BUCKETS[0] == 0.005
        assert DEFAULT_LATENCY_BUCKETS[-1] == 300.0
        assert LatencyHistogram().bounds == DEFAULT_LATENCY_BUCKETS

    @pytest.mark.parametrize("buckets", [(), (1.0, 1.0), (2.0, 1.0), (1.0, math.inf)])
    def test_rejects_bad_buckets(self, buckets: tuple[float, ...]) -> None:
        """Empty, unsorted, duplicate or infinite bounds are a programming error."""
        with pytest.raises(ValueError):
            LatencyHistogram(buckets)

    @given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=200))
    def test_cumulative_invariants(self, values: list[float]) -> None:
        """Counts never decrease across buckets; +Inf equals the number of observations."""
        histogram = LatencyHistogram()
        for value in values:
            histogram.observe(value)
        snapshot = histogram.snapshot()
        assert list(snapshot.cumulative) == sorted(snapshot.cumulative)
        assert snapshot.count == len(values)
        for bound, count in zip(snapshot.bounds, snapshot.cumulative, strict=False):
            assert count == sum(1 for v in values if v <= bound)
        assert snapshot.total == pytest.approx(math.fsum(values))


# Every asqsd family of the document, as the text format's HELP and TYPE lines name them
# (dashboards and alerts depend on them: a rename is listed in CHANGELOG.md).
FAMILIES = {
    "asqsd_build_info": ("gauge", "The asqsd version and the Python it runs on."),
    "asqsd_messages_received_total": ("counter", "Messages received from SQS."),
    "asqsd_delivery_attempts_total": (
        "counter",
        "POSTs to the worker that ended, by the response's status class (error: no HTTP response).",
    ),
    "asqsd_delivery_outcomes_total": (
        "counter",
        "Ended POSTs by outcome (success: a success status, the message is deleted; failure: "
        "the message is left for a retry or dead-lettered).",
    ),
    "asqsd_messages_deleted_total": ("counter", "Messages deleted from SQS."),
    "asqsd_messages_released_total": (
        "counter",
        "Unstarted messages made visible again (visibility 0) at shutdown.",
    ),
    "asqsd_messages_retried_total": (
        "counter",
        "Failed deliveries whose visibility was set to the error visibility timeout or Retry-After.",
    ),
    "asqsd_messages_expired_total": (
        "counter",
        "Messages deleted unsent because they were first received longer ago than the retention period.",
    ),
    "asqsd_messages_dead_letter_bound_total": (
        "counter",
        "Failed deliveries whose receive count reached the queue's maxReceiveCount.",
    ),
    "asqsd_messages_dead_lettered_total": (
        "counter",
        "Messages asqsd moved to the dead-letter queue, by reason (status: a dead_letter_statuses "
        "answer; max_retries: the receive count reached max_retries).",
    ),
    "asqsd_dead_letter_send_failures_total": (
        "counter",
        "Dead-letter sends that failed; the message was left to SQS.",
    ),
    "asqsd_messages_duplicate_suppressed_total": (
        "counter",
        "Messages deleted without a POST because the dedup table records them as processed.",
    ),
    "asqsd_messages_duplicate_in_progress_total": (
        "counter",
        "Messages left to SQS without a POST because the dedup table shows another consumer on them.",
    ),
    "asqsd_dedup_errors_total": (
        "counter",
        "Dedup table calls that failed (the message was delivered unchecked, or its outcome not recorded).",
    ),
    "asqsd_visibility_extensions_total": ("counter", "Visibility extensions made by the heartbeat."),
    "asqsd_leases_lost_total": (
        "counter",
        "Held messages whose visibility SQS refused to extend (possible duplicate processing).",
    ),
    "asqsd_worker_outages_total": (
        "counter",
        "Worker outages: times receiving paused because the worker could not be reached.",
    ),
    "asqsd_async_acks_total": (
        "counter",
        "Asynchronous acknowledgements (async_ack) applied, by outcome (done, fail, extend).",
    ),
    "asqsd_async_jobs_expired_total": (
        "counter",
        "Jobs answered 202 whose acknowledgement did not come in time; their messages were released.",
    ),
    "asqsd_aws_calls_total": (
        "counter",
        "AWS API calls by operation (SQS, and CloudWatch PutMetricData), failed ones included.",
    ),
    "asqsd_aws_call_failures_total": ("counter", "AWS API calls that failed, by operation."),
    "asqsd_worker_requests_in_flight": ("gauge", "POSTs to the worker in progress."),
    "asqsd_buffered_messages": ("gauge", "Received messages waiting for a free dispatcher."),
    "asqsd_held_messages": (
        "gauge",
        "Messages asqsd holds (buffered or being delivered) whose visibility it tracks.",
    ),
    "asqsd_worker_outage": (
        "gauge",
        "1 while a worker outage holds messages and pauses receiving, else 0.",
    ),
    "asqsd_async_jobs_held": (
        "gauge",
        "Jobs the worker answered 202 for, held leased until their acknowledgement (async_ack).",
    ),
    "asqsd_intake_paused": (
        "gauge",
        "1 while receiving is paused (POST /pause, asqsd pause, a worker's pause header), else 0.",
    ),
    "asqsd_intake_paused_since_seconds": (
        "gauge",
        "Unix time the current pause of receiving began; 0 when not paused.",
    ),
    "asqsd_queue_messages": (
        "gauge",
        "Approximate messages in the SQS queue by state, as last polled (all consumers).",
    ),
    "asqsd_worker_latency_seconds": (
        "histogram",
        "Time from sending a POST to the worker until its response ended (responses only).",
    ),
    "asqsd_message_age_seconds": (
        "histogram",
        "Age of a message (now minus its SentTimestamp) when a delivery attempt ends.",
    ),
}


class TestRender:
    """The whole /metrics document parses and carries every family listed above."""

    def counters(self) -> Counters:
        counters = Counters(received=7, deleted=4, released=1, retried=2, expired=1, extended=9, lease_lost=1)
        counters.duplicates_suppressed, counters.duplicates_in_progress, counters.dedup_errors = 3, 2, 1
        counters.succeeded, counters.failed = 3, 2
        for status in (200, 200, 204, 404, 503, None):
            counters.count_status(status)
        counters.count_call("ReceiveMessage")
        counters.count_call("ReceiveMessage", error=True)
        counters.count_call('Weird"Op\\')
        return counters

    def test_help_and_type_lines_unchanged(self) -> None:
        """Text format: every family's HELP and TYPE lines, in order, exactly as documented."""
        text = render(Counters(), DeliveryStats(), {})
        headers = [line for line in text.splitlines() if line.startswith(("# HELP asqsd_", "# TYPE asqsd_"))]
        expected: list[str] = []
        for name, (kind, help_text) in FAMILIES.items():
            expected += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        assert headers == expected

    def test_dead_letter_counters_start_at_zero_for_every_reason(self) -> None:
        """Both reasons are exposed before anything was dead-lettered, then count what happened."""
        counters = Counters()
        assert 'asqsd_messages_dead_lettered_total{reason="status"} 0.0' in render(
            counters, DeliveryStats(), {}
        )
        assert 'asqsd_messages_dead_lettered_total{reason="max_retries"} 0.0' in render(
            counters, DeliveryStats(), {}
        )
        counters.dead_lettered["max_retries"] += 2
        counters.dead_letter_failed += 1
        text = render(counters, DeliveryStats(), {})
        assert 'asqsd_messages_dead_lettered_total{reason="max_retries"} 2.0' in text
        assert "asqsd_dead_letter_send_failures_total 1.0" in text

    def test_document_shape_and_values(self) -> None:
        """Counters, labelled counters, gauges and the histogram, with HELP/TYPE for each."""
        delivery = DeliveryStats(max_receive_count=3)
        delivery.record(status=200, elapsed_s=0.02, failed=False, receive_count=1)
        delivery.record(status=500, elapsed_s=7.0, failed=True, receive_count=3)
        gauges = {IN_FLIGHT: 2, CHANNEL_DEPTH: 1, HELD_MESSAGES: 3, QUEUE_VISIBLE: 10, QUEUE_IN_FLIGHT: 3}
        text = render(self.counters(), delivery, gauges)
        families = parse_families(text)

        assert {
            name: (f.type, f.documentation) for name, f in families.items() if name.startswith("asqsd_")
        } == FAMILIES
        assert samples_of(families, "asqsd_messages_received_total") == [
            ("asqsd_messages_received_total", {}, 7)
        ]
        attempts = {
            labels["class"]: value
            for _, labels, value in samples_of(families, "asqsd_delivery_attempts_total")
        }
        assert attempts == {"2xx": 3, "3xx": 0, "4xx": 1, "5xx": 1, "error": 1}
        outcomes = {
            labels["outcome"]: value
            for _, labels, value in samples_of(families, "asqsd_delivery_outcomes_total")
        }
        assert outcomes == {"success": 3, "failure": 2}
        assert samples_of(families, "asqsd_messages_dead_letter_bound_total")[0][2] == 1
        assert samples_of(families, "asqsd_messages_duplicate_suppressed_total")[0][2] == 3
        assert samples_of(families, "asqsd_messages_duplicate_in_progress_total")[0][2] == 2
        assert samples_of(families, "asqsd_dedup_errors_total")[0][2] == 1
        calls = {
            labels["operation"]: value for _, labels, value in samples_of(families, "asqsd_aws_calls_total")
        }
        # every known operation from 0, and one nobody expected still shown
        assert calls == dict.fromkeys(AWS_OPERATIONS, 0) | {"ReceiveMessage": 2, 'Weird"Op\\': 1}
        assert 'asqsd_aws_calls_total{operation="Weird\\"Op\\\\"}' in text  # escaped on the wire
        queue = {labels["state"]: value for _, labels, value in samples_of(families, "asqsd_queue_messages")}
        assert queue == {"visible": 10, "in_flight": 3}  # delayed unknown: no sample
        assert samples_of(families, "asqsd_worker_requests_in_flight")[0][2] == 2

    def test_histogram_lines(self) -> None:
        """Buckets in order, cumulative, ending with +Inf equal to _count; then _sum and _count."""
        delivery = DeliveryStats()
        for seconds in (0.001, 0.3, 400.0):
            delivery.record(status=200, elapsed_s=seconds, failed=False, receive_count=1)
        families = parse_families(render(Counters(), delivery, {}))
        samples = samples_of(families, "asqsd_worker_latency_seconds")
        buckets = [(labels["le"], value) for name, labels, value in samples if name.endswith("_bucket")]
        assert [float(le) for le, _ in buckets] == [*DEFAULT_LATENCY_BUCKETS, math.inf]
        assert buckets[7][0] == "1.0" and buckets[-1][0] == "+Inf"  # Go float syntax, as Prometheus writes
        counts = [value for _, value in buckets]
        assert counts == sorted(counts)
        assert counts[0] == 1 and counts[-1] == 3
        tail = {name: value for name, _, value in samples if not name.endswith("_bucket")}
        assert tail == {
            "asqsd_worker_latency_seconds_sum": pytest.approx(400.301),
            "asqsd_worker_latency_seconds_count": 3,
        }

    def test_message_age_histogram(self) -> None:
        """Every attempt with a SentTimestamp is observed, answered or not; without one, none."""
        delivery = DeliveryStats()
        now = 1_700_000_000.0
        for sent, status in (("1699999999900", 200), ("1699999000000", None), (None, 200), ("junk", 500)):
            age = message_age_s(sent, now)
            delivery.record(status=status, elapsed_s=0.1, failed=status != 200, receive_count=1, age_s=age)
        samples = samples_of(parse_families(render(Counters(), delivery, {})), "asqsd_message_age_seconds")
        buckets = {float(labels["le"]): value for name, labels, value in samples if name.endswith("_bucket")}
        assert [float(le) for le in buckets] == [*MESSAGE_AGE_BUCKETS, math.inf]
        assert (buckets[0.1], buckets[900.0], buckets[3600.0], buckets[math.inf]) == (1, 1, 2, 2)
        tail = {name: value for name, _, value in samples if not name.endswith("_bucket")}
        assert tail == {
            "asqsd_message_age_seconds_sum": pytest.approx(1000.1),
            "asqsd_message_age_seconds_count": 2,
        }

    def test_empty_counters_still_parse(self) -> None:
        """A fresh daemon: every family present, every labelled counter at 0, no gauge samples yet."""
        families = parse_families(render(Counters(), DeliveryStats(), {}))
        for name in ("asqsd_aws_calls_total", "asqsd_aws_call_failures_total"):
            assert samples_of(families, name) == [
                (name, {"operation": op}, 0) for op in sorted(AWS_OPERATIONS)
            ]
        assert samples_of(families, "asqsd_queue_messages") == []
        assert len(samples_of(families, "asqsd_delivery_attempts_total")) == 5
        assert len(samples_of(families, "asqsd_delivery_outcomes_total")) == 2

    def test_extra_gauges(self) -> None:
        """Unknown keys become asqsd_<key> gauges when that is a valid name; others are skipped."""
        text = render(Counters(), DeliveryStats(), {"receivers_polling": 2, "bad key!": 1})
        families = parse_families(text)
        assert samples_of(families, "asqsd_receivers_polling") == [("asqsd_receivers_polling", {}, 2)]
        assert "bad key" not in text

    @pytest.mark.parametrize(("value", "text"), [(math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN")])
    def test_special_values(self, value: float, text: str) -> None:
        """Infinities and NaN use the spellings Prometheus parses."""
        assert f"asqsd_worker_requests_in_flight {text}\n" in render(
            Counters(), DeliveryStats(), {IN_FLIGHT: value}
        )


class TestNegotiation:
    """OpenMetrics when the scraper asks for it, else the text format 0.0.4; both parse."""

    def render_with(self, accept: str | None) -> tuple[str, str]:
        delivery = DeliveryStats(max_receive_count=2)
        delivery.record(status=503, elapsed_s=0.4, failed=True, receive_count=2)
        source = Snapshot(TestRender().counters(), delivery, {IN_FLIGHT: 1, QUEUE_DELAYED: 4, "extra": 2.5})
        body, content_type = render_metrics(metrics_registry(source), accept)
        return body.decode(), content_type

    @pytest.mark.parametrize("accept", [None, "", "text/plain", "*/*", "application/json"])
    def test_text_format_by_default(self, accept: str | None) -> None:
        """No Accept, or one that does not name OpenMetrics: text 0.0.4, which its parser reads."""
        text, content_type = self.render_with(accept)
        assert content_type == CONTENT_TYPE == CONTENT_TYPE_PLAIN_0_0_4
        assert not text.endswith("# EOF\n")
        families = parse_families(text)
        assert set(FAMILIES) <= set(families)
        assert "process_start_time_seconds" in families

    @pytest.mark.parametrize(
        "accept",
        [
            "application/openmetrics-text",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            # Prometheus 3's default scrape header
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
            "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;"
            "escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        ],
    )
    def test_openmetrics_when_asked(self, accept: str) -> None:
        """OpenMetrics content type and document (ends in # EOF), accepted by the strict parser."""
        text, content_type = self.render_with(accept)
        assert content_type.startswith(OPENMETRICS.split(";")[0] + "; version=1.0.0")
        assert text.endswith("# EOF\n")
        families = parse_families(text, openmetrics=True)
        assert {name: f.type for name, f in families.items() if name.startswith("asqsd_")} == {
            **{name: kind for name, (kind, _) in FAMILIES.items()},
            "asqsd_build_info": "info",
            "asqsd_extra": "gauge",
        }

    def test_both_formats_carry_the_same_samples(self) -> None:
        """Names, labels and values agree between the two formats."""
        text, _ = self.render_with(None)
        openmetrics, _ = self.render_with("application/openmetrics-text")
        parsed = parse_families(openmetrics, openmetrics=True)
        as_text = {n: sorted(map(repr, samples_of(parse_families(text), n))) for n in FAMILIES}
        as_openmetrics = {n: sorted(map(repr, samples_of(parsed, n))) for n in FAMILIES}
        assert as_text == as_openmetrics
        assert samples_of(parsed, "asqsd_messages_dead_letter_bound_total") == [
            ("asqsd_messages_dead_letter_bound_total", {}, 1.0)
        ]


class TestDeliveryStats:
    """Dead-letter-bound counting and which deliveries feed the latency histogram."""

    def test_dead_letter_bound_needs_failure_and_count(self) -> None:
        """Counted only for failed deliveries whose receive count reached maxReceiveCount."""
        stats = DeliveryStats(max_receive_count=3)
        stats.record(status=500, elapsed_s=0.1, failed=True, receive_count=2)
        stats.record(status=200, elapsed_s=0.1, failed=False, receive_count=5)
        stats.record(status=None, elapsed_s=0.0, failed=True, receive_count=3)
        stats.record(status=404, elapsed_s=0.1, failed=True, receive_count=4)
        assert stats.dead_letter_bound == 2

    def test_no_redrive_policy_means_never(self) -> None:
        """Without a dead-letter queue nothing is dead-letter bound."""
        stats = DeliveryStats()
        stats.record(status=500, elapsed_s=0.1, failed=True, receive_count=1000)
        assert stats.dead_letter_bound == 0

    def test_latency_only_for_responses(self) -> None:
        """A transport error (no status) is not a latency sample."""
        stats = DeliveryStats()
        stats.record(status=None, elapsed_s=5.0, failed=True, receive_count=1)
        stats.record(status=503, elapsed_s=0.2, failed=True, receive_count=1)
        assert stats.latency.snapshot().count == 1

    @pytest.mark.parametrize(
        ("policy", "expected"),
        [
            ('{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":10}', 10),
            ('{"maxReceiveCount":"5"}', 5),
            ('{"maxReceiveCount":0}', None),
            ('{"maxReceiveCount":true}', None),
            ('{"maxReceiveCount":"x"}', None),
            ("[]", None),
            ("not json", None),
            ("", None),
            (None, None),
        ],
    )
    def test_max_receive_count_from(self, policy: str | None, expected: int | None) -> None:
        """maxReceiveCount is read from the RedrivePolicy attribute, tolerating junk."""
        assert max_receive_count_from(policy) == expected


def attributes(visible: int = 3, in_flight: int = 1, delayed: int = 0) -> dict[str, str]:
    return dict(zip(BACKLOG_ATTRIBUTES, (str(visible), str(in_flight), str(delayed)), strict=True))


class TestQueueBacklogPoller:
    """Polls, never raises, backs off, and forgets values that went stale."""

    async def test_poll_once_updates_gauges(self) -> None:
        """A good answer becomes the three queue gauges; the right attributes were asked for."""
        asked: list[list[str]] = []

        async def get(names: list[str]) -> dict[str, str]:
            asked.append(names)
            return attributes(5, 2, 1)

        poller = QueueBacklogPoller(get)
        assert poller.gauges() == {}
        assert await poller.poll_once()
        assert asked == [list(BACKLOG_ATTRIBUTES)]
        assert poller.gauges() == {QUEUE_VISIBLE: 5, QUEUE_IN_FLIGHT: 2, QUEUE_DELAYED: 1}

    @pytest.mark.parametrize(
        "failure",
        [
            SQSError("GetQueueAttributes", "AccessDenied", "no", retryable=False),
            RuntimeError("client bug"),
            {"ApproximateNumberOfMessages": "1"},  # attributes missing
            attributes() | {"ApproximateNumberOfMessages": "lots"},  # not a number
        ],
    )
    async def test_failures_never_raise(self, failure: object) -> None:
        """Errors and malformed answers count as a failed poll; the last good values stay."""
        answers: list[object] = [attributes(4), failure]

        async def get(_names: list[str]) -> dict[str, str]:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            assert isinstance(answer, dict)
            return answer

        poller = QueueBacklogPoller(get)
        assert await poller.poll_once()
        assert not await poller.poll_once()
        assert poller.failures == 1
        assert poller.gauges()[QUEUE_VISIBLE] == 4

    async def test_hanging_call_times_out(self) -> None:
        """A call that never answers is abandoned after timeout_s."""

        async def get(_names: list[str]) -> dict[str, str]:
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

        poller = QueueBacklogPoller(get, timeout_s=0.05)
        assert not await poller.poll_once()

    async def test_stale_values_dropped(self) -> None:
        """Once the last success is older than stale_after_s the gauges report nothing."""
        now = [100.0]

        async def get(_names: list[str]) -> dict[str, str]:
            return attributes()

        poller = QueueBacklogPoller(get, interval_s=5, stale_after_s=30, clock=lambda: now[0])
        await poller.poll_once()
        now[0] += 29
        assert poller.gauges()
        now[0] += 2
        assert poller.gauges() == {}

    async def test_denied_permission_stops_polling_with_one_warning(self) -> None:
        """A policy that refuses GetQueueAttributes ends run() after one call and one warning
        naming the permission, instead of a denied call (and a log line) every interval."""
        from structlog.testing import capture_logs

        calls = 0

        async def get(_names: list[str]) -> dict[str, str]:
            nonlocal calls
            calls += 1
            raise SQSError("GetQueueAttributes", "AccessDenied", "no", retryable=False, denied=True)

        poller = QueueBacklogPoller(get, interval_s=0.01, max_backoff_s=0.01)
        with capture_logs() as logs:
            async with asyncio.timeout(2):
                await poller.run()
        assert calls == 1
        assert poller.denied
        assert poller.gauges() == {}
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert [(e["event"], e["permission"]) for e in warnings] == [
            ("backlog-poll-denied", "sqs:GetQueueAttributes")
        ]

    async def test_run_backs_off_and_stops(self) -> None:
        """Consecutive failures lengthen the pause (capped); stop() ends run() at once."""
        calls = 0

        async def get(_names: list[str]) -> dict[str, str]:
            nonlocal calls
            calls += 1
            raise SQSError("GetQueueAttributes", "ServiceUnavailable", "down", retryable=True)

        poller = QueueBacklogPoller(get, interval_s=0.01, max_backoff_s=0.04, rng=random.Random(1))
        delays = [poller.backoff_delay(failures) for failures in range(1, 6)]
        assert all(0.01 <= d <= 0.04 for d in delays)
        assert delays[-1] >= 0.02  # at the cap: between half of it and all of it

        task = asyncio.create_task(poller.run())
        await wait_until(lambda: calls >= 3, what="three failed polls")
        assert poller.failures >= 3
        poller.stop()
        async with asyncio.timeout(2):
            await task
