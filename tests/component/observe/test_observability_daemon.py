"""The observability settings wired into a running daemon: health server, metrics, stock log."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from asqsd import __version__
from tests.component.conftest import SettingsFactory
from tests.support.metrics import value_of
from tests.support.polling import wait_until, wait_until_async
from tests.support.servers import free_loopback_port
from tests.support.worker import Delivery, RecordingWorker


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_health_readiness_and_metrics_of_a_running_daemon(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """/healthz and /readyz answer 200 while serving; /metrics counts a delivered message."""
    await sqs.send_message(QueueUrl=queue_url, MessageBody="m")
    settings = make_settings(health_server=True, health_port=0, health_check_ttl_s=0)
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="delivery")
        health = daemon.observers.health
        assert health is not None
        assert health.url.startswith("http://127.0.0.1:")
        assert (await get(health.url + "/healthz"))[0] == 200
        assert (await get(health.url + "/readyz"))[0] == 200
        status, text = await get(health.url + "/metrics")
        assert status == 200
        assert value_of(text, "asqsd_messages_received_total") == 1
        assert value_of(text, "asqsd_messages_deleted_total") == 1
        assert value_of(text, "asqsd_delivery_attempts_total", **{"class": "2xx"}) == 1
        assert value_of(text, "asqsd_worker_latency_seconds_count") == 1
        assert value_of(text, "asqsd_message_age_seconds_count") == 1
        assert value_of(text, "asqsd_delivery_outcomes_total", outcome="success") == 1
        assert value_of(text, "asqsd_aws_calls_total", operation="DeleteMessageBatch") == 1
        assert value_of(text, "asqsd_build_info", version=__version__, python=platform.python_version()) == 1
        assert 0 < value_of(text, "process_start_time_seconds") <= time.time()


async def test_readiness_fails_when_the_worker_is_down(
    sqs: Any, queue_url: str, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """Nothing listens on the worker port: /readyz says 503 and names the worker check."""
    closed_port = free_loopback_port()
    settings = make_settings(health_server=True, health_port=0, health_check_ttl_s=0, http_port=closed_port)
    async with run_daemon(settings) as daemon:
        health = daemon.observers.health
        assert health is not None
        status, body = await get(health.url + "/readyz")
        assert status == 503
        assert "worker" in body


async def test_stock_log_file_lines(
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    tmp_path: Path,
) -> None:
    """With stock_log_file set, a failed delivery writes the stock `http-err:` line."""

    async def fail(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        return web.Response(status=503)

    worker.handler = fail
    log_file = tmp_path / "aws-sqsd" / "default.log"
    msgid = (await sqs.send_message(QueueUrl=queue_url, MessageBody="m"))["MessageId"]
    async with run_daemon(make_settings(stock_log_file=str(log_file), error_visibility_timeout=30)) as daemon:
        await wait_until(lambda: daemon.counters.failed == 1, what="a failure")

    async def logged() -> bool:
        return log_file.exists() and f"http-err: {msgid} (1) 503 - " in log_file.read_text()

    await wait_until_async(logged, what="stock http-err line")
    assert "message: sent to http://127.0.0.1:" in log_file.read_text()
