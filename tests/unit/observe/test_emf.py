"""EMF lines: the interval figures, the 100-value processing-time summary, size splitting, the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asqsd.observe.counters import Counters
from asqsd.observe.delivery import DeliveryStats, LatencyHistogram
from asqsd.observe.emf import (
    EmfReporter,
    dimensions_of,
    emf_documents,
    metric_members,
    spread_to_values,
)
from asqsd.observe.interval import IntervalReader, LatencyBuckets, latency_delta
from tests.support.emf import check_emf_line

NOW_S = 1_765_000_000.0


def _reader(
    counters: Counters, delivery: DeliveryStats, gauges: dict[str, float] | None = None
) -> IntervalReader:
    return IntervalReader(counters, delivery, lambda: gauges or {})


def _deliver(counters: Counters, delivery: DeliveryStats, status: int | None, elapsed_s: float) -> None:
    counters.count_status(status)
    ok = status == 200
    counters.succeeded += ok
    counters.failed += not ok
    delivery.record(status=status, elapsed_s=elapsed_s, failed=not ok, receive_count=1)


# --- interval figures -----------------------------------------------------------------------------
def test_reader_reports_changes_since_its_previous_read() -> None:
    counters, delivery = Counters(), DeliveryStats(max_receive_count=1)
    _deliver(counters, delivery, 200, 0.01)  # before the reader: not part of any interval
    reader = _reader(counters, delivery, {"in_flight": 3, "queue_visible": 7})
    _deliver(counters, delivery, 200, 0.02)
    _deliver(counters, delivery, 503, 0.2)
    _deliver(counters, delivery, None, 5.0)
    counters.count_call("ReceiveMessage")
    counters.count_call("DeleteMessageBatch")
    counters.count_call("DeleteMessage")
    first = reader.read()
    assert first.counts["Deliveries2xx"] == 1
    assert first.counts["Deliveries5xx"] == 1
    assert first.counts["DeliveriesError"] == 1
    assert first.counts["DeliveriesFailed"] == 2
    assert first.counts["DeadLetterBound"] == 2  # maxReceiveCount 1: every failure is its last
    assert (first.counts["ReceiveCalls"], first.counts["DeleteCalls"]) == (1, 2)
    assert first.gauges == {"InFlight": 3.0, "QueueVisible": 7.0}
    assert first.latency.buckets == ((0.025, 1), (0.25, 1))  # no latency without a response
    second = reader.read()
    assert set(second.counts.values()) == {0}
    assert second.latency.count == 0


def test_reader_reports_dead_letters_outages_and_message_age() -> None:
    """The figures the failure handling adds: dead-lettered by reason, worker outages (count and
    the open state as a gauge) and the message age at delivery as a distribution in seconds."""
    counters, delivery = Counters(), DeliveryStats()
    reader = _reader(counters, delivery, {"worker_outage": 1})
    counters.dead_lettered["status"] += 2
    counters.dead_lettered["max_retries"] += 1
    counters.worker_outages += 1
    delivery.record(status=200, elapsed_s=0.01, failed=False, receive_count=1, age_s=42.0)
    figures = reader.read()
    assert figures.counts["DeadLetteredStatus"] == 2
    assert figures.counts["DeadLetteredMaxRetries"] == 1
    assert figures.counts["WorkerOutages"] == 1
    assert figures.gauges == {"WorkerOutage": 1.0}
    assert figures.age.count == 1
    members = metric_members(figures)
    assert members["MessageAge"][0] == "Seconds"
    assert members["MessageAge"][1] == [figures.age.buckets[0][0]]  # seconds, not milliseconds
    for line in emf_documents(members, dimensions_of("env", "q"), "asqsd", int(NOW_S * 1000)):
        check_emf_line(line)


def test_latency_delta_puts_overflow_in_the_last_bound() -> None:
    histogram = LatencyHistogram((0.1, 1.0))
    before = histogram.snapshot()
    for seconds in (0.05, 0.5, 0.7, 9.0):
        histogram.observe(seconds)
    delta = latency_delta(histogram.snapshot(), before)
    assert delta.buckets == ((0.1, 1), (1.0, 3))
    assert delta.total_s == pytest.approx(10.25)


# --- the 100-value summary ------------------------------------------------------------------------
def test_few_deliveries_are_reported_exactly() -> None:
    values = spread_to_values(LatencyBuckets(((0.01, 2), (1.0, 1)), 1.02))
    assert values == [10.0, 10.0, 1000.0]


def test_many_deliveries_become_100_values_in_proportion_with_every_bucket_kept() -> None:
    latency = LatencyBuckets(((0.01, 9_000), (0.1, 999), (300.0, 1)), 0.0)
    values = spread_to_values(latency)
    assert len(values) == 100
    assert values.count(300_000.0) == 1  # one slow delivery in 10 000 still shows in the max
    assert values.count(10.0) == 89 and values.count(100.0) == 10
    assert values == sorted(values)


# --- documents ------------------------------------------------------------------------------------
def _members() -> dict[str, tuple[str, float | list[float]]]:
    counters, delivery = Counters(), DeliveryStats()
    reader = _reader(counters, delivery, {"queue_visible": 4})
    for index in range(500):
        _deliver(counters, delivery, 200 if index % 10 else 500, index / 100)
    counters.count_call("ReceiveMessage")
    return metric_members(reader.read())


def test_every_line_validates_field_by_field() -> None:
    dims = dimensions_of("my-env", "jobs")
    lines = emf_documents(_members(), dims, "asqsd", int(NOW_S * 1000))
    assert len(lines) == 1
    document = check_emf_line(lines[0])
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "asqsd"
    assert directive["Dimensions"] == [["EnvironmentName", "QueueName"]]
    assert (document["EnvironmentName"], document["QueueName"]) == ("my-env", "jobs")
    assert document["_aws"]["Timestamp"] == int(NOW_S * 1000)
    assert document["Deliveries2xx"] == 450 and document["Deliveries5xx"] == 50
    assert document["QueueVisible"] == 4
    assert len(document["ProcessingTime"]) == 100
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units["ProcessingTime"] == "Milliseconds" and units["Deliveries2xx"] == "Count"


def test_without_an_environment_name_the_queue_is_the_only_dimension() -> None:
    line = emf_documents(_members(), dimensions_of(None, "jobs"), "ns", int(NOW_S * 1000))[0]
    document = check_emf_line(line)
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["QueueName"]]
    assert "EnvironmentName" not in document


def test_no_timed_delivery_means_no_processing_time_member() -> None:
    members = metric_members(_reader(Counters(), DeliveryStats()).read())
    assert "ProcessingTime" not in members
    assert members["Deliveries2xx"] == ("Count", 0.0)  # zero, not missing: alarms see the quiet


def test_oversized_documents_are_split_and_each_part_is_valid() -> None:
    members = _members()
    whole = emf_documents(members, dimensions_of("e", "q"), "asqsd", int(NOW_S * 1000))[0]
    lines = emf_documents(
        members, dimensions_of("e", "q"), "asqsd", int(NOW_S * 1000), max_bytes=len(whole) // 3
    )
    assert len(lines) > 1
    seen: set[str] = set()
    for line in lines:
        document = check_emf_line(line)
        names = [m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
        assert not seen & set(names)
        seen |= set(names)
    assert seen == set(members)


def test_more_than_100_metrics_take_several_directives() -> None:
    members: dict[str, tuple[str, float | list[float]]] = {f"M{i}": ("Count", float(i)) for i in range(250)}
    lines = emf_documents(members, {"QueueName": "q"}, "asqsd", int(NOW_S * 1000))
    assert len(lines) == 3
    for line in lines:
        check_emf_line(line)


# --- the reporter ---------------------------------------------------------------------------------
def test_reporter_appends_lines_and_reopens_after_rotation(tmp_path: Path) -> None:
    counters, delivery = Counters(), DeliveryStats()
    path = tmp_path / "emf" / "metrics.log"
    reporter = EmfReporter(
        _reader(counters, delivery),
        str(path),
        namespace="asqsd",
        dimensions=dimensions_of("env", "q"),
        wall_clock=lambda: NOW_S,
    )
    _deliver(counters, delivery, 200, 0.01)
    reporter.report()
    path.rename(tmp_path / "rotated.log")  # logrotate moves the file, then sends SIGHUP
    reporter.reopen()
    _deliver(counters, delivery, 404, 0.01)
    reporter.report()
    reporter.close()
    (rotated,) = (tmp_path / "rotated.log").read_text().splitlines()
    (current,) = path.read_text().splitlines()
    assert check_emf_line(rotated)["Deliveries2xx"] == 1
    assert check_emf_line(current)["Deliveries4xx"] == 1
    assert check_emf_line(current)["Deliveries2xx"] == 0
    assert reporter.lines == 2


def test_reporter_writes_to_stdout_with_dash(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = EmfReporter(
        _reader(Counters(), DeliveryStats()), "-", namespace="asqsd", dimensions={"QueueName": "q"}
    )
    reporter.report()
    out = capsys.readouterr().out
    assert json.loads(out)["QueueName"] == "q"
    check_emf_line(out.rstrip("\n"))


def test_an_unwritable_file_is_reported_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    reporter = EmfReporter(
        _reader(Counters(), DeliveryStats()),
        str(blocker / "m.log"),
        namespace="n",
        dimensions={"QueueName": "q"},
    )
    reporter.report()
    assert reporter.lines == 0


@pytest.mark.parametrize(
    "counts",
    [(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 100_000), (50, 51), (1, 10**6, 3, 7, 99, 1), (101,)],
)
def test_the_summary_always_has_100_values_and_keeps_every_bucket(counts: tuple[int, ...]) -> None:
    latency = LatencyBuckets(tuple((float(i + 1), n) for i, n in enumerate(counts)), 0.0)
    values = spread_to_values(latency)
    assert len(values) == 100
    assert {v / 1000 for v in values} == {float(i + 1) for i in range(len(counts))}
