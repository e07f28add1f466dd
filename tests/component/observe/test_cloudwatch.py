"""The ElasticBeanstalk/SQSD Health metric against moto_server's CloudWatch."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiobotocore.session
import pytest
from aiobotocore.config import AioConfig

from asqsd.observe.cloudwatch import (
    CAUSE_SQS,
    CAUSE_WORKER,
    DIMENSION_NAME,
    METRIC_NAME,
    NAMESPACE,
    HealthMetricPublisher,
    fault_document,
)
from asqsd.observe.counters import Counters
from asqsd.observe.health_source import HealthSource
from tests.support.polling import wait_until, wait_until_async
from tests.support.servers import free_loopback_port


@dataclass
class StubSource:
    """A HealthSource whose probe answers the test sets."""

    counters: Counters = field(default_factory=Counters)
    worker_ok: bool = True
    sqs_ok: bool = True
    sqs_checks: int = 0

    async def check_sqs(self) -> bool:
        self.sqs_checks += 1
        return self.sqs_ok

    async def check_worker(self) -> bool:
        return self.worker_ok

    def receive(self, *, ok: bool = True) -> None:
        self.counters.count_call("ReceiveMessage", error=not ok)


def _conforms(source: StubSource) -> HealthSource:
    return source  # mypy checks the stub against the Protocol


@pytest.fixture
def env_name() -> str:
    """moto keeps metrics for the whole session: one environment name per test."""
    return f"env-{uuid.uuid4().hex[:10]}"


async def health_stats(cloudwatch: Any, env_name: str) -> tuple[float, float | None]:
    """(number of Health samples, their minimum) that moto holds for the environment."""
    now = dt.datetime.now(dt.UTC)
    response = await cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=METRIC_NAME,
        Dimensions=[{"Name": DIMENSION_NAME, "Value": env_name}],
        StartTime=now - dt.timedelta(minutes=10),
        EndTime=now + dt.timedelta(minutes=1),
        Period=3600,
        Statistics=["SampleCount", "Minimum"],
    )
    points = response["Datapoints"]
    count = sum(p["SampleCount"] for p in points)
    return count, min((p["Minimum"] for p in points), default=None)


async def test_healthy_publishes_one(cloudwatch: Any, env_name: str) -> None:
    """Worker up and a receive succeeded: value 1, in the stock namespace and dimension."""
    source = StubSource()
    publisher = HealthMetricPublisher(cloudwatch, env_name, _conforms(source), interval_s=60)
    source.receive()
    verdict = await publisher.publish_once()
    assert verdict.healthy and verdict.value == 1.0 and verdict.cause is None
    assert publisher.published == 1
    assert await health_stats(cloudwatch, env_name) == (1, 1.0)
    metrics = await cloudwatch.list_metrics(Namespace=NAMESPACE, MetricName=METRIC_NAME)
    dims = [m["Dimensions"] for m in metrics["Metrics"]]
    assert [{"Name": "EnvironmentName", "Value": env_name}] in dims


async def test_unhealthy_writes_fault_file_then_clears(
    cloudwatch: Any, env_name: str, tmp_path: Path
) -> None:
    """Worker down: value 0 and fault.json with the cause; healthy again: the file is removed."""
    fault = tmp_path / "run" / "aws-sqsd" / "fault.json"
    source = StubSource(worker_ok=False)
    publisher = HealthMetricPublisher(
        cloudwatch, env_name, _conforms(source), fault_file=fault, wall_clock=lambda: 1485626102.5
    )
    source.receive()
    verdict = await publisher.publish_once()
    assert not verdict.healthy and verdict.cause == CAUSE_WORKER
    assert json.loads(fault.read_text()) == {"cause": CAUSE_WORKER, "timestamp": "2017-01-28T17:55:02Z"}
    assert fault.stat().st_mode & 0o777 == 0o644
    assert list(fault.parent.iterdir()) == [fault]  # no temporary file left behind

    source.worker_ok = True
    source.receive()
    assert (await publisher.publish_once()).healthy
    assert not fault.exists()
    assert await health_stats(cloudwatch, env_name) == (2, 0.0)


async def test_needs_a_receive_since_previous_check(cloudwatch: Any, env_name: str) -> None:
    """Each check consumes the window: failed receives only since the last check → unhealthy."""
    source = StubSource()
    publisher = HealthMetricPublisher(cloudwatch, env_name, _conforms(source))
    source.receive()
    assert (await publisher.publish_once()).healthy
    source.receive(ok=False)
    source.receive(ok=False)
    verdict = await publisher.publish_once()
    assert (verdict.healthy, verdict.cause) == (False, CAUSE_SQS)
    assert source.sqs_checks == 0  # receives did complete: their failure is the answer
    source.receive(ok=False)
    source.receive()
    assert (await publisher.publish_once()).healthy


async def test_saturated_daemon_falls_back_to_cheap_check(cloudwatch: Any, env_name: str) -> None:
    """No receive finished at all (dispatchers all busy): the daemon's SQS check decides."""
    source = StubSource()
    publisher = HealthMetricPublisher(cloudwatch, env_name, _conforms(source))
    assert (await publisher.publish_once()).healthy
    assert source.sqs_checks == 1
    source.sqs_ok = source.worker_ok = False
    verdict = await publisher.publish_once()
    assert verdict.cause == f"{CAUSE_WORKER}; {CAUSE_SQS}"


async def test_run_publishes_every_interval_and_stops(cloudwatch: Any, env_name: str) -> None:
    """run() checks once per interval (not at start) until stop()."""
    source = StubSource()
    publisher = HealthMetricPublisher(cloudwatch, env_name, _conforms(source), interval_s=0.1)
    task = asyncio.create_task(publisher.run())
    assert publisher.published == 0
    await wait_until(lambda: publisher.published >= 2, what="two publications")
    publisher.stop()
    async with asyncio.timeout(2):
        await task

    async def two_samples() -> bool:
        return (await health_stats(cloudwatch, env_name))[0] >= 2

    await wait_until_async(two_samples, what="samples in CloudWatch")


async def test_cloudwatch_errors_are_survived(tmp_path: Path) -> None:
    """An unreachable CloudWatch and an unwritable fault file: logged, counted, never raised."""
    session = aiobotocore.session.get_session()
    config = AioConfig(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=1)
    blocker = tmp_path / "aws-sqsd"
    blocker.write_text("not a directory")
    async with session.create_client(
        "cloudwatch",
        endpoint_url=f"http://127.0.0.1:{free_loopback_port()}",
        region_name="us-east-1",
        config=config,
    ) as client:
        source = StubSource(worker_ok=False)
        publisher = HealthMetricPublisher(client, "env", _conforms(source), fault_file=blocker / "fault.json")
        verdict = await publisher.publish_once()
        await publisher.publish_once()
    assert not verdict.healthy
    assert (publisher.put_errors, publisher.published) == (2, 0)


async def test_failing_probe_is_unhealthy(cloudwatch: Any, env_name: str) -> None:
    """A worker probe that raises counts as the worker being down."""

    class Broken(StubSource):
        async def check_worker(self) -> bool:
            raise RuntimeError("probe bug")

    source = Broken()
    source.receive()
    publisher = HealthMetricPublisher(cloudwatch, env_name, _conforms(source))
    assert (await publisher.publish_once()).cause == CAUSE_WORKER


def test_arguments_validated() -> None:
    """An environment name is required (it is the metric's only dimension)."""
    with pytest.raises(ValueError, match="environment_name"):
        HealthMetricPublisher(object(), "", _conforms(StubSource()))
    with pytest.raises(ValueError, match="interval"):
        HealthMetricPublisher(object(), "env", _conforms(StubSource()), interval_s=0)


def test_fault_document() -> None:
    """The fault.json body: cause and a UTC ISO-8601 timestamp."""
    assert json.loads(fault_document("x", 0)) == {"cause": "x", "timestamp": "1970-01-01T00:00:00Z"}
