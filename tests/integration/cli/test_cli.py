"""The CLI as a real subprocess: exit codes, signals, config errors, logs (no secrets)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiobotocore.session
import pytest
from aiohttp import web

from tests.support.iam import STOCK_QUEUE, IamMoto
from tests.support.ledger import DaemonProcess
from tests.support.polling import wait_until
from tests.support.worker import Delivery, RecordingWorker

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzzSECRET"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"


def cli_env(moto_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASQSD_", "AWS_"))}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_SQS=moto_url,
    )
    return env


def asqsd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asqsd", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_version() -> None:
    """`python -m asqsd version` and `--version` print the version."""
    from asqsd import __version__

    assert asqsd("version").stdout.strip() == f"asqsd {__version__}"
    assert __version__ in asqsd("--version").stdout


def test_config_errors_exit_2_with_one_line_per_problem(tmp_path: Path) -> None:
    """Each bad value is named with its value and source; exit status 2."""
    config = tmp_path / "default.yaml"
    config.write_text("http_connections: 500\n")
    env = {**os.environ, "ASQSD_VISIBILITY_TIMEOUT": "soon"}
    result = asqsd("run", "--config", str(config), "--http-port", "0", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert any(f"http_connections=500 (from file {config}: http_connections)" in line for line in lines)
    assert any("visibility_timeout='soon' (from env ASQSD_VISIBILITY_TIMEOUT)" in line for line in lines)
    assert any("http_port='0' (from flag --http-port)" in line for line in lines)


def test_run_without_queue_url_exits_2() -> None:
    """queue_url is required to run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASQSD_") and k != "WorkerQueueURL"}
    result = asqsd("run", env=env)
    assert result.returncode == 2
    assert "queue_url is required" in result.stderr


def test_config_command_shows_sources_and_masks_credentials(tmp_path: Path, moto_url: str) -> None:
    """`asqsd config` lists every key with its source; the access key is cut, the secret absent."""
    config = tmp_path / "default.yaml"
    config.write_text("queue_url: http://127.0.0.1:1/000000000000/q\nHttpConnections: 8\n")
    result = asqsd("config", "--config", str(config), "--http-port", "8080", env=cli_env(moto_url))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"[file {config}: HttpConnections]" in out
    assert "8080  [flag --http-port]" in out
    assert "AKIA****" in out
    assert ACCESS_KEY not in out and SECRET not in out


def test_missing_queue_is_a_startup_failure(moto_url: str) -> None:
    """A queue that does not exist: exit 3 with a clear log line."""
    url = f"{moto_url}/123456789012/does-not-exist-{uuid.uuid4().hex[:6]}"
    result = asqsd("run", "--queue-url", url, "--log-format", "json", env=cli_env(moto_url))
    assert result.returncode == 3
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "startup-failed" and "QueueDoesNotExist" in e["error"] for e in events)


async def test_missing_queue_with_stock_permissions_exits_3(iam_moto: IamMoto) -> None:
    """Credentials with only the stock worker-tier queue permissions: GetQueueAttributes is
    refused (one warning), and the first receive finds the queue missing: exit 3, not a loop."""
    user = await iam_moto.create_user([STOCK_QUEUE])
    env = cli_env(iam_moto.url) | {
        "AWS_ACCESS_KEY_ID": user.access_key_id,
        "AWS_SECRET_ACCESS_KEY": user.secret_access_key,
    }
    url = f"{iam_moto.url}/123456789012/does-not-exist-{uuid.uuid4().hex[:6]}"
    result = await asyncio.to_thread(
        asqsd, "run", "--queue-url", url, "--wait-time-s", "1", "--log-format", "json", env=env
    )
    assert result.returncode == 3
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [e["permission"] for e in events if e["event"] == "queue-attributes-denied"] == [
        "sqs:GetQueueAttributes"
    ]
    assert any(e["event"] == "startup-failed" and "QueueDoesNotExist" in e["error"] for e in events)


@pytest.fixture
async def queue(moto_url: str) -> AsyncIterator[tuple[Any, str]]:
    session = aiobotocore.session.get_session()
    async with session.create_client("sqs", endpoint_url=moto_url, region_name="us-east-1") as client:
        url = (await client.create_queue(QueueName=f"cli-{uuid.uuid4().hex[:10]}"))["QueueUrl"]
        yield client, url


@pytest.fixture
def spawn(tmp_path: Path, moto_url: str) -> Iterator[Any]:
    started: list[DaemonProcess] = []

    def factory(*args: str) -> DaemonProcess:
        process = DaemonProcess(tmp_path / f"daemon{len(started)}.log", list(args), cli_env(moto_url))
        started.append(process)
        return process

    yield factory
    for process in started:
        process.close()


async def start_with_held_job(
    queue: tuple[Any, str], worker: RecordingWorker, spawn: Any, gate: asyncio.Event, body: str, *flags: str
) -> Any:
    """A daemon whose worker holds every POST until ``gate`` is set, with one message ``body`` sent."""
    client, url = queue

    async def held(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        await gate.wait()
        return web.Response(status=200)

    worker.handler = held
    await client.send_message(QueueUrl=url, MessageBody=body)
    return spawn(
        "--queue-url", url, "--http-url", "http://127.0.0.1", "--http-port", str(worker.port),
        "--wait-time-s", "1", *flags,
    )  # fmt: skip


@pytest.mark.slow
async def test_sigterm_finishes_in_flight_work_and_exits_0(
    queue: tuple[Any, str], worker: RecordingWorker, spawn: Any
) -> None:
    """1. A job is in flight (the worker holds it). 2. SIGTERM. 3. The job is allowed to finish and
    is deleted; the daemon exits 0 with a summary line; no credential appears in the log."""
    client, url = queue
    gate = asyncio.Event()
    daemon = await start_with_held_job(
        queue, worker, spawn, gate, "in flight at SIGTERM", "--http-connections", "2"
    )
    await wait_until(lambda: worker.in_flight == 1, timeout_s=20, what="job in flight")
    daemon.proc.send_signal(signal.SIGTERM)
    await wait_until(lambda: daemon.saw("stopping"), what="stopping logged")
    gate.set()
    assert await daemon.wait_exit(30) == 0
    started = next(e for e in daemon.events() if e["event"] == "started")
    assert started["loop"] == "uvloop"  # the default loop
    summary = next(e for e in daemon.events() if e["event"] == "stopped")
    assert summary["deleted"] == 1 and summary["abandoned"] == 0
    text = daemon.log_path.read_text()
    assert SECRET not in text and ACCESS_KEY not in text
    attrs = await client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"


@pytest.mark.slow
async def test_second_signal_forces_exit(queue: tuple[Any, str], worker: RecordingWorker, spawn: Any) -> None:
    """SIGTERM twice with a job that never ends: forced exit (128+15), message left in flight."""
    client, url = queue
    gate = asyncio.Event()
    daemon = await start_with_held_job(queue, worker, spawn, gate, "stuck", "--shutdown-grace-s", "120")
    try:
        await wait_until(lambda: worker.in_flight == 1, timeout_s=20, what="job in flight")
        daemon.proc.send_signal(signal.SIGTERM)
        await wait_until(lambda: daemon.saw("stopping"), what="stopping logged")
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.wait_exit(15) == 128 + signal.SIGTERM
        assert daemon.saw("forced-shutdown")
        attrs = await client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
    finally:
        gate.set()
