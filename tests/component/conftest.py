"""Fixtures for component tests: SQS and DynamoDB (moto_server), settings, a daemon in-process, logs.

The recording worker (``worker``) comes from tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiobotocore.session
import pytest
import structlog
from structlog.testing import LogCapture

from asqsd.config import Settings, load_settings
from asqsd.daemon import Daemon
from tests.support.dynamo import dynamodb_client
from tests.support.worker import RecordingWorker


@pytest.fixture
async def sqs(moto_url: str) -> AsyncIterator[Any]:
    """An aiobotocore SQS client on moto_server (the test's own view of the queue)."""
    session = aiobotocore.session.get_session()
    async with session.create_client("sqs", endpoint_url=moto_url, region_name="us-east-1") as client:
        yield client


@pytest.fixture
async def cloudwatch(moto_url: str) -> AsyncIterator[Any]:
    """An aiobotocore CloudWatch client on moto_server."""
    session = aiobotocore.session.get_session()
    async with session.create_client("cloudwatch", endpoint_url=moto_url, region_name="us-east-1") as client:
        yield client


@pytest.fixture
async def dynamodb(moto_url: str) -> AsyncIterator[Any]:
    """An aiobotocore DynamoDB client on moto_server."""
    async with dynamodb_client(moto_url) as client:
        yield client


@pytest.fixture
async def queue_url(sqs: Any) -> str:
    """A fresh, uniquely named standard queue (moto is O(depth): one small queue per test)."""
    response = await sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:12]}")
    return str(response["QueueUrl"])


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(moto_url: str, queue_url: str, worker: RecordingWorker) -> SettingsFactory:
    """Settings pointing at moto and the worker, with short waits so tests stay fast."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "queue_url": queue_url,
            "endpoint_url": moto_url,
            "http_url": "http://127.0.0.1",
            "http_port": worker.port,
            "wait_time_s": 1,
            "http_connections": 4,
            "visibility_timeout": 30,
            "delete_batch_wait_s": 0.01,
            "shutdown_grace_s": 10,
        }
        values.update(overrides)
        return load_settings(values, env={}).settings

    return factory


@pytest.fixture
def info_logs() -> Iterator[LogCapture]:
    """structlog as ``asqsd run`` configures it at the default level (info), into a capture."""
    capture = LogCapture()
    structlog.configure(
        processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(logging.INFO)
    )
    yield capture
    structlog.reset_defaults()


@pytest.fixture
def run_daemon() -> Callable[[Settings | Daemon], contextlib.AbstractAsyncContextManager[Daemon]]:
    """``async with run_daemon(settings_or_daemon) as daemon``: started and ready; stopped
    gracefully on exit."""

    @contextlib.asynccontextmanager
    async def runner(target: Settings | Daemon) -> AsyncIterator[Daemon]:
        daemon = target if isinstance(target, Daemon) else Daemon(target)
        task = asyncio.create_task(daemon.run())
        ready = asyncio.create_task(daemon.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()
            raise AssertionError("daemon stopped before it was ready")
        assert ready in done, "daemon not ready within 15 s"
        try:
            yield daemon
        finally:
            if not daemon.stopping:
                daemon.request_stop()
            async with asyncio.timeout(30):
                await task

    return runner


async def queue_counts(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) as SQS reports them."""
    attrs = (
        await sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])
