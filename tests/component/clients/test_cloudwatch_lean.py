"""LeanCloudWatch against moto_server: what it puts reads back through botocore's own client, its
refusals and silences are CloudWatchErrors, and the Health metric publisher works through it."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from asqsd.clients.cloudwatch import CloudWatchError, LeanCloudWatch, open_lean_cloudwatch
from asqsd.clients.sqs.aws_config import EnvCredentials, FrozenEnvCredentials
from asqsd.observe.cloudwatch import DIMENSION_NAME, METRIC_NAME, NAMESPACE, HealthMetricPublisher
from tests.component.observe.test_cloudwatch import StubSource, health_stats
from tests.support.servers import free_loopback_port


async def _credentials() -> EnvCredentials:
    return EnvCredentials(FrozenEnvCredentials("testing", "testing", None, None))


@contextlib.asynccontextmanager
async def lean(endpoint: str) -> AsyncIterator[LeanCloudWatch]:
    client = LeanCloudWatch(endpoint, "us-east-1", _credentials)
    try:
        yield client
    finally:
        await client.aclose()


async def test_what_it_puts_reads_back_through_botocore(moto_url: str, cloudwatch: Any) -> None:
    namespace = f"asqsd-{uuid.uuid4().hex[:10]}"
    dims = [{"Name": "QueueName", "Value": "jobs"}]
    now = dt.datetime.now(dt.UTC)
    common = {"Dimensions": dims, "Timestamp": now}
    async with lean(moto_url) as client:
        await client.put_metric_data(
            Namespace=namespace,
            MetricData=[
                {
                    "MetricName": "Deliveries2xx",
                    "Dimensions": dims,
                    "Timestamp": now,
                    "Unit": "Count",
                    "Value": 3.0,
                },
                {
                    **common,
                    "MetricName": "ProcessingTime",
                    "Unit": "Milliseconds",
                    "Values": [5.0, 50.0],
                    "Counts": [2.0, 1.0],
                },
            ],
        )
    response = await cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName="Deliveries2xx",
        Dimensions=dims,
        StartTime=now - dt.timedelta(minutes=5),
        EndTime=now + dt.timedelta(minutes=5),
        Period=3600,
        Statistics=["Sum"],
    )
    assert [point["Sum"] for point in response["Datapoints"]] == [3.0]
    listed = await cloudwatch.list_metrics(Namespace=namespace)
    assert sorted(metric["MetricName"] for metric in listed["Metrics"]) == ["Deliveries2xx", "ProcessingTime"]


async def test_the_health_metric_publisher_works_through_it(moto_url: str, cloudwatch: Any) -> None:
    env_name = f"env-{uuid.uuid4().hex[:10]}"
    source = StubSource()
    source.receive()  # healthy: the worker answers and a receive succeeded (value 1)
    async with lean(moto_url) as client:
        publisher = HealthMetricPublisher(client, env_name, source, interval_s=60)
        await publisher.publish_once()
    assert (publisher.published, publisher.put_errors) == (1, 0)
    assert await health_stats(cloudwatch, env_name) == (1.0, 1.0)


_REFUSAL = (
    400,
    b'{"__type": "com.amazonaws.cloudwatch#InvalidParameterValueException", "message": "bad value"}',
    {"x-amzn-query-error": "InvalidParameterValue;Sender"},
)
_BUSY = (500, b'{"__type": "InternalServiceFault", "message": "try later"}', {})
_OK = (200, b"{}", {})


@contextlib.asynccontextmanager
async def scripted(*answers: tuple[int, bytes, dict[str, str]]) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback server giving ``answers`` in turn; yields its URL and the bodies it received."""
    received: list[bytes] = []

    async def answer(request: web.Request) -> web.Response:
        received.append(await request.read())
        status, body, headers = answers[min(len(received), len(answers)) - 1]
        return web.Response(
            status=status, body=body, headers=headers, content_type="application/x-amz-json-1.0"
        )

    app = web.Application()
    app.router.add_post("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", received
    finally:
        await runner.cleanup()


_ONE = {"Namespace": "n", "MetricData": [{"MetricName": "m", "Value": 1.0}]}


async def test_a_refusal_is_a_cloudwatch_error_with_the_legacy_code_and_no_second_attempt() -> None:
    async with scripted(_REFUSAL, _OK) as (url, received), lean(url) as client:
        with pytest.raises(CloudWatchError) as caught:
            await client.put_metric_data(**_ONE)
    assert (caught.value.code, caught.value.status, len(received)) == ("InvalidParameterValue", 400, 1)
    assert "bad value" in str(caught.value)


async def test_a_server_error_gets_one_second_attempt() -> None:
    async with scripted(_BUSY, _OK) as (url, received), lean(url) as client:
        await client.put_metric_data(**_ONE)
    assert len(received) == 2 and received[0] == received[1]
    async with scripted(_BUSY) as (url, received), lean(url) as client:
        with pytest.raises(CloudWatchError) as caught:
            await client.put_metric_data(**_ONE)
    assert (caught.value.status, len(received)) == (500, 2)


async def test_no_answer_is_a_cloudwatch_error_without_a_status() -> None:
    async with lean(f"http://127.0.0.1:{free_loopback_port()}") as client:
        with pytest.raises(CloudWatchError) as caught:
            await client.put_metric_data(Namespace="n", MetricData=[{"MetricName": "m", "Value": 1.0}])
    assert caught.value.status is None


@pytest.mark.parametrize(
    "region", ["eu-west-1", "us-east-1", "cn-north-1", "us-gov-west-1", "ap-southeast-5"]
)
async def test_the_endpoint_is_the_configured_one_else_botocores_regional_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, region: str
) -> None:
    import botocore.session

    from asqsd.clients.sqs.aws_config import AwsConfigSession
    from asqsd.clients.sqs.credential_chain import BotocoreChain

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDWATCH", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    reference = botocore.session.get_session().create_client("cloudwatch", region_name=region)
    async with contextlib.AsyncExitStack() as stack:
        regional = await open_lean_cloudwatch(BotocoreChain(AwsConfigSession()), region, stack)
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", "http://127.0.0.1:4566")
        configured = await open_lean_cloudwatch(BotocoreChain(AwsConfigSession()), region, stack)
    assert regional.endpoint_url == reference.meta.endpoint_url + "/"
    assert configured.endpoint_url == "http://127.0.0.1:4566/"
    reference.close()


def test_health_names_are_the_stock_ones() -> None:
    # The lean client sends exactly what the publisher gives it: the names are the publisher's.
    assert (NAMESPACE, METRIC_NAME, DIMENSION_NAME) == ("ElasticBeanstalk/SQSD", "Health", "EnvironmentName")
