"""Prometheus exposition by hand: histogram maths, escaping, document shape, the backlog poller."""

from __future__ import annotations

import asyncio
import math
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asqsd.errors import SQSError
from asqsd.observe.backlog import BACKLOG_ATTRIBUTES, QueueBacklogPoller
from asqsd.observe.counters import Counters
from asqsd.observe.delivery import (
    DEFAULT_LATENCY_BUCKETS,
    DeliveryStats,
    LatencyHistogram,
    max_receive_count_from,
)
from asqsd.observe.prometheus import (
    CHANNEL_DEPTH,
    HELD_MESSAGES,
    IN_FLIGHT,
    QUEUE_DELAYED,
    QUEUE_IN_FLIGHT,
    QUEUE_VISIBLE,
    escape_help,
    escape_label_value,
    format_labels,
    format_value,
    render_metrics,
)
from tests.support.polling import wait_until

# One sample line of the text format: name, optional {labels}, value (Go float syntax).
_SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})?'
    r" (?P<value>[-+]?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|Inf|NaN))$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')


def parse_exposition(text: str) -> dict[str, dict[str, object]]:
    """A strict mini-parser: HELP then TYPE before each family's samples; returns the families."""
    assert text.endswith("\n")
    families: dict[str, dict[str, object]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in families, f"family {name} twice"
            families[name] = {"help": line.split(" ", 3)[3], "samples": []}
            current = name
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == current, "TYPE must follow its HELP"
            families[name]["type"] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"bad sample line {line!r}"
            assert current is not None and match["name"].startswith(current)
            labels = dict(_LABEL.findall(match["labels"] or ""))
            samples = families[current]["samples"]
            assert isinstance(samples, list)
            samples.append((match["name"], labels, float(match["value"].replace("Inf", "inf"))))
    return families


def samples_of(families: dict[str, dict[str, object]], name: str) -> list[tuple[str, dict[str, str], float]]:
    samples = families[name]["samples"]
    assert isinstance(samples, list)
    return samples


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


class TestFormatting:
    """Values and labels in the exact text-format syntax."""

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (3, "3"),
            (0, "0"),
            (True, "1"),
            (0.25, "0.25"),
            (1.0, "1.0"),
            (1e-05, "1e-05"),
            (math.inf, "+Inf"),
            (-math.inf, "-Inf"),
            (math.nan, "NaN"),
        ],
    )
    def test_format_value(self, value: float, text: str) -> None:
        """Integers stay integers; specials use the +Inf / -Inf / NaN spellings."""
        assert format_value(value) == text

    def test_label_and_help_escaping(self) -> None:
        """Label values escape backslash, quote and line feed; HELP escapes backslash and line feed."""
        assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
        assert escape_help('x\\y"\nz') == 'x\\\\y"\\nz'
        assert format_labels({"operation": 'Bad"Op\n'}) == '{operation="Bad\\"Op\\n"}'
        assert format_labels({}) == ""


class TestRender:
    """The whole /metrics document parses and carries every family the brief lists."""

    def counters(self) -> Counters:
        counters = Counters(received=7, deleted=4, released=1, retried=2, expired=1, extended=9, lease_lost=1)
        counters.duplicates_suppressed, counters.duplicates_in_progress, counters.dedup_errors = 3, 2, 1
        for status in (200, 200, 204, 404, 503, None):
            counters.count_status(status)
        counters.count_call("ReceiveMessage")
        counters.count_call("ReceiveMessage", error=True)
        counters.count_call('Weird"Op\\')
        return counters

    def test_document_shape_and_values(self) -> None:
        """Counters, labelled counters, gauges and the histogram, with HELP/TYPE for each."""
        delivery = DeliveryStats(max_receive_count=3)
        delivery.record(status=200, elapsed_s=0.02, failed=False, receive_count=1)
        delivery.record(status=500, elapsed_s=7.0, failed=True, receive_count=3)
        gauges = {IN_FLIGHT: 2, CHANNEL_DEPTH: 1, HELD_MESSAGES: 3, QUEUE_VISIBLE: 10, QUEUE_IN_FLIGHT: 3}
        families = parse_exposition(render_metrics(self.counters(), delivery, gauges))

        types = {name: family["type"] for name, family in families.items()}
        for name in (
            "asqsd_messages_received_total",
            "asqsd_messages_delivered_total",
            "asqsd_messages_deleted_total",
            "asqsd_messages_released_total",
            "asqsd_messages_retried_total",
            "asqsd_messages_expired_total",
            "asqsd_messages_dead_letter_bound_total",
            "asqsd_messages_duplicate_suppressed_total",
            "asqsd_messages_duplicate_in_progress_total",
            "asqsd_dedup_errors_total",
            "asqsd_visibility_extensions_total",
            "asqsd_leases_lost_total",
            "asqsd_sqs_calls_total",
            "asqsd_sqs_errors_total",
        ):
            assert types[name] == "counter", name
        for name in ("asqsd_in_flight", "asqsd_channel_depth", "asqsd_held_messages", "asqsd_queue_messages"):
            assert types[name] == "gauge", name
        assert types["asqsd_worker_latency_seconds"] == "histogram"

        assert samples_of(families, "asqsd_messages_received_total") == [
            ("asqsd_messages_received_total", {}, 7)
        ]
        delivered = {
            labels["class"]: value
            for _, labels, value in samples_of(families, "asqsd_messages_delivered_total")
        }
        assert delivered == {"2xx": 3, "3xx": 0, "4xx": 1, "5xx": 1, "error": 1}
        assert samples_of(families, "asqsd_messages_dead_letter_bound_total")[0][2] == 1
        assert samples_of(families, "asqsd_messages_duplicate_suppressed_total")[0][2] == 3
        assert samples_of(families, "asqsd_messages_duplicate_in_progress_total")[0][2] == 2
        assert samples_of(families, "asqsd_dedup_errors_total")[0][2] == 1
        calls = {
            labels["operation"]: value for _, labels, value in samples_of(families, "asqsd_sqs_calls_total")
        }
        assert calls == {"ReceiveMessage": 2, 'Weird\\"Op\\\\': 1}  # escaped on the wire
        queue = {labels["state"]: value for _, labels, value in samples_of(families, "asqsd_queue_messages")}
        assert queue == {"visible": 10, "in_flight": 3}  # delayed unknown: no sample
        assert samples_of(families, "asqsd_in_flight")[0][2] == 2

    def test_histogram_lines(self) -> None:
        """Buckets in order, cumulative, ending with +Inf equal to _count; then _sum and _count."""
        delivery = DeliveryStats()
        for seconds in (0.001, 0.3, 400.0):
            delivery.record(status=200, elapsed_s=seconds, failed=False, receive_count=1)
        families = parse_exposition(render_metrics(Counters(), delivery, {}))
        samples = samples_of(families, "asqsd_worker_latency_seconds")
        buckets = [(labels["le"], value) for name, labels, value in samples if name.endswith("_bucket")]
        assert [le for le, _ in buckets] == [format_value(b) for b in DEFAULT_LATENCY_BUCKETS] + ["+Inf"]
        counts = [value for _, value in buckets]
        assert counts == sorted(counts)
        assert counts[0] == 1 and counts[-1] == 3
        tail = {name: value for name, _, value in samples if not name.endswith("_bucket")}
        assert tail == {
            "asqsd_worker_latency_seconds_sum": pytest.approx(400.301),
            "asqsd_worker_latency_seconds_count": 3,
        }

    def test_empty_counters_still_parse(self) -> None:
        """A fresh daemon: every family present, zero-valued, no gauge samples yet."""
        families = parse_exposition(render_metrics(Counters(), DeliveryStats(), {}))
        assert samples_of(families, "asqsd_sqs_calls_total") == []
        assert samples_of(families, "asqsd_queue_messages") == []
        assert len(samples_of(families, "asqsd_messages_delivered_total")) == 5

    def test_extra_gauges(self) -> None:
        """Unknown keys become asqsd_<key> gauges when that is a valid name; others are skipped."""
        text = render_metrics(Counters(), DeliveryStats(), {"receivers_polling": 2, "bad key!": 1})
        families = parse_exposition(text)
        assert samples_of(families, "asqsd_receivers_polling") == [("asqsd_receivers_polling", {}, 2)]
        assert "bad key" not in text


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
