"""cloudwatch_metrics: the interval figures through PutMetricData, read back from moto_server."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest

from asqsd.observe.counters import Counters
from asqsd.observe.delivery import DeliveryStats
from asqsd.observe.emf import dimensions_of
from asqsd.observe.interval import IntervalReader
from asqsd.observe.metricdata import MetricDataPublisher, batches
from tests.component.conftest import SettingsFactory
from tests.support.emf import check_emf_line
from tests.support.polling import wait_until, wait_until_async
from tests.support.worker import RecordingWorker


@pytest.fixture
def namespace() -> str:
    """moto keeps metrics for the whole session: one namespace per test."""
    return f"asqsd-{uuid.uuid4().hex[:10]}"


async def statistics(cloudwatch: Any, namespace: str, name: str, dims: dict[str, str]) -> dict[str, float]:
    """SampleCount, Sum, Minimum and Maximum of one metric over the last minutes (empty if none)."""
    now = dt.datetime.now(dt.UTC)
    response = await cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
        StartTime=now - dt.timedelta(minutes=10),
        EndTime=now + dt.timedelta(minutes=1),
        Period=3600,
        Statistics=["SampleCount", "Sum", "Minimum", "Maximum"],
    )
    points = response["Datapoints"]
    return {k: float(v) for k, v in points[0].items() if k != "Timestamp" and k != "Unit"} if points else {}


async def test_published_figures_read_back(cloudwatch: Any, namespace: str) -> None:
    """Counts, gauges and processing time (Values/Counts) arrive; the call is counted."""
    counters, delivery = Counters(), DeliveryStats()
    reader = IntervalReader(counters, delivery, lambda: {"queue_visible": 12})
    dims = dimensions_of("env", "jobs")
    publisher = MetricDataPublisher(cloudwatch, reader, counters, namespace=namespace, dimensions=dims)
    for seconds in (0.004, 0.004, 0.2):
        counters.count_status(200)
        delivery.record(status=200, elapsed_s=seconds, failed=False, receive_count=1)
    counters.count_status(503)
    await publisher.publish_once()
    assert counters.sqs_calls["PutMetricData"] == 1
    assert "PutMetricData" not in counters.sqs_errors
    assert (await statistics(cloudwatch, namespace, "Deliveries2xx", dims))["Sum"] == 3
    assert (await statistics(cloudwatch, namespace, "Deliveries5xx", dims))["Sum"] == 1
    assert (await statistics(cloudwatch, namespace, "QueueVisible", dims))["Maximum"] == 12
    latency = await statistics(cloudwatch, namespace, "ProcessingTime", dims)
    assert latency["SampleCount"] == 3
    assert (latency["Minimum"], latency["Maximum"]) == (5.0, 250.0)  # bucket bounds, in ms


async def test_a_failing_put_is_counted_and_not_raised(cloudwatch: Any) -> None:
    counters = Counters()
    reader = IntervalReader(counters, DeliveryStats(), dict)
    publisher = MetricDataPublisher(cloudwatch, reader, counters, namespace="", dimensions={"QueueName": "q"})
    await publisher.publish_once()  # an empty namespace is refused by the API
    assert counters.sqs_errors["PutMetricData"] == 1
    assert publisher.published == 0


def test_batches_respect_the_per_call_limit() -> None:
    data = [{"MetricName": str(i)} for i in range(2001)]
    assert [len(batch) for batch in batches(data)] == [1000, 1000, 1]


async def test_daemon_writes_emf_and_publishes(
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    cloudwatch: Any,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto_url: str,
) -> None:
    """With emf_file and cloudwatch_metrics on, the delivered message shows in both at shutdown."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", moto_url)
    emf_file = tmp_path / "emf" / "metrics.log"
    await sqs.send_message(QueueUrl=queue_url, MessageBody="m")
    settings = make_settings(
        emf_file=str(emf_file),
        emf_namespace=namespace,
        emf_interval_s=3600,  # only the report at shutdown: the test needs no clock
        cloudwatch_metrics=True,
        environment_name="env-emf",
        health_metric=False,
    )
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="delivery")
    queue = queue_url.rsplit("/", 1)[1]
    documents = [check_emf_line(line) for line in emf_file.read_text().splitlines()]
    assert sum(doc["Deliveries2xx"] for doc in documents) == 1
    assert all(doc["QueueName"] == queue and doc["EnvironmentName"] == "env-emf" for doc in documents)
    assert daemon.counters.sqs_calls["PutMetricData"] >= 1
    dims = {"EnvironmentName": "env-emf", "QueueName": queue}

    async def published() -> bool:
        return (await statistics(cloudwatch, namespace, "Deliveries2xx", dims)).get("Sum") == 1

    await wait_until_async(published, what="Deliveries2xx in CloudWatch")
