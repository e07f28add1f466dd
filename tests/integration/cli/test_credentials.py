"""Credentials that explain themselves: ``asqsd run`` as a subprocess with no usable credentials.

The daemon's environment holds no AWS keys, AWS config files that do not exist and a fake instance
metadata service on 127.0.0.1 (:mod:`tests.support.imds`), so neither the developer's credentials
nor the real IMDS can be reached. That is an Elastic Beanstalk instance's configuration: the lean
client asks the IMDS itself (:mod:`asqsd.clients.sqs.instance_profile`), the botocore client through
botocore's chain. SQS is the project's emulator on loopback. For each failure the daemon
must log one line naming the cause with a hint, retry on a capped backoff (the IMDS sees few
calls), stay up with ``/readyz`` naming the problem, and deliver once credentials work.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asqsd.emulator import Emulator
from tests.integration.cli.conftest import QUEUE
from tests.support.imds import FakeImds, Mode
from tests.support.ledger import DaemonProcess, emulator_run_args
from tests.support.polling import wait_until
from tests.support.worker import RecordingWorker

pytestmark = pytest.mark.slow


# The start-up wait's backoff (Daemon._wait_for_credentials): pauses of at least half of 1, 2, 4 ...
# seconds. A slow machine only stretches the run, so this bound holds whatever its speed.
_MIN_FIRST_PAUSE_S = 0.5

# A measurement window, not a wait for state: how long the daemon is watched for extra retries.
_WINDOW_S = 4.0


def most_attempts(elapsed_s: float) -> int:
    """The most credential attempts the backoff allows within ``elapsed_s`` of the daemon's life."""
    # Attempt n+1 cannot start before the pauses 0.5 * (1 + 2 + ... + 2**(n-1)) have passed.
    return 1 + math.floor(math.log2(elapsed_s / _MIN_FIRST_PAUSE_S + 1))


@pytest.fixture
def aws_files(tmp_path: Path) -> dict[str, str]:
    """AWS credentials and config files that do not exist, so nothing on this machine supplies
    credentials."""
    credentials, config = tmp_path / "aws-credentials", tmp_path / "aws-config"
    return {"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_CONFIG_FILE": str(config)}


@pytest.fixture
def spawn(tmp_path: Path, emu: Emulator, worker: RecordingWorker, aws_files: dict[str, str]) -> Iterator[Any]:
    """``spawn(imds, **env)``: ``asqsd run`` on the emulator's queue, credentials only from ``imds``."""
    started: list[DaemonProcess] = []

    def factory(imds: FakeImds | None, *extra: str, **env: str) -> DaemonProcess:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("ASQSD_", "AWS_"))}
        clean.update(
            aws_files,
            AWS_DEFAULT_REGION="us-east-1",
            # Never the real 169.254.169.254: a closed loopback port when no fake is given.
            AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.endpoint if imds is not None else "http://127.0.0.1:9/",
            **env,
        )
        argv = [
            *emulator_run_args(emu, QUEUE, worker.port),
            "--wait-time-s",
            "1",
            "--health-server",
            "--health-port",
            "0",
            *extra,
        ]
        process = DaemonProcess(tmp_path / f"daemon{len(started)}.log", argv, clean)
        started.append(process)
        return process

    yield factory
    for process in started:
        process.close()


def lines(daemon: DaemonProcess, event: str) -> list[dict[str, Any]]:
    """The daemon's log lines for one event."""
    return [e for e in daemon.events() if e.get("event") == event]


def readyz(daemon: DaemonProcess) -> tuple[int, dict[str, Any]]:
    """GET /readyz on the daemon's health server (its URL is in the health-server-started line)."""
    url = lines(daemon, "health-server-started")[0]["url"] + "/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def stop(daemon: DaemonProcess) -> None:
    """SIGTERM: a daemon that waited on credentials still stops cleanly, with status 0."""
    daemon.proc.send_signal(signal.SIGTERM)
    assert await daemon.wait_exit(30) == 0


async def delivered(emu: Emulator, worker: RecordingWorker, body: str) -> None:
    """Send ``body`` and wait until the worker has it and the queue is empty again."""
    emu.preload(QUEUE, 1, body=body)
    await wait_until(
        lambda: any(d.body == body.encode() for d in worker.deliveries) and emu.counters(QUEUE)["depth"] == 0,
        timeout_s=60,
        what=f"{body!r} delivered and deleted",
    )


@pytest.mark.parametrize(
    ("mode", "client", "cause", "hint"),
    [
        ("hangs", "lean", "credentials-imds-unreachable", "--http-put-response-hop-limit 2"),
        ("no-role", "botocore", "credentials-missing", "no IAM role"),
    ],
)
async def test_no_credentials_yet_one_line_bounded_retries_then_recovery(
    spawn: Any,
    emu: Emulator,
    worker: RecordingWorker,
    mode: Mode,
    client: str,
    cause: str,
    hint: str,
) -> None:
    """1. The IMDS gives nothing (it hangs, or the instance has no role). 2. One line names the cause
    and what to set; the daemon stays up, not ready, and asks the IMDS only as often as its backoff
    allows. 3. The IMDS starts answering: the daemon finds the role and delivers a message."""
    async with FakeImds(mode) as imds:
        started = time.monotonic()
        daemon = spawn(imds, "--sqs-client", client)
        await wait_until(lambda: bool(lines(daemon, cause)), timeout_s=30, what=cause)
        status, body = readyz(daemon)
        assert (status, body["checks"]["daemon"]) == (503, cause)

        await asyncio.sleep(_WINDOW_S)
        elapsed_s = time.monotonic() - started
        assert daemon.proc.poll() is None, "the daemon exited instead of waiting for credentials"
        [line] = lines(daemon, cause)  # one line, however many retries
        assert hint in line["hint"] and line["level"] == "warning"
        assert line["imds"] == imds.endpoint
        # Each attempt: botocore's token PUT, then the probe's (which names the cause).
        assert 2 <= imds.count("PUT") <= 2 * most_attempts(elapsed_s)
        assert not lines(daemon, "queue-check-failed") and "Traceback" not in daemon.text()

        imds.mode = "answers"
        await delivered(emu, worker, "after the role appeared")
        [found] = lines(daemon, "credentials-found")
        # An attempt that straddles the switch can find no credentials yet a role in its probe.
        assert found["source"] == "iam-role" and found["after"] in (cause, "credentials-missing")
        assert readyz(daemon)[0] == 200
        await stop(daemon)


async def test_imds_disabled_names_the_setting(spawn: Any) -> None:
    """``AWS_EC2_METADATA_DISABLED=true`` and no keys: credentials-missing says so; the IMDS is not asked."""
    async with FakeImds("answers") as imds:
        daemon = spawn(imds, AWS_EC2_METADATA_DISABLED="true")
        await wait_until(lambda: bool(lines(daemon, "credentials-missing")), timeout_s=30, what="line")
        [line] = lines(daemon, "credentials-missing")
        assert "AWS_EC2_METADATA_DISABLED" in line["hint"] and line["imds_answer"] == "disabled"
        assert imds.calls == []
        assert readyz(daemon)[1]["checks"]["daemon"] == "credentials-missing"
        await stop(daemon)


async def test_expired_credentials_keep_the_daemon_running(
    spawn: Any, emu: Emulator, worker: RecordingWorker
) -> None:
    """The instance profile hands out expired credentials and SQS refuses them (ExpiredToken), first
    at start-up, then again while serving. Each time: one credentials-expired line, no exit, /readyz
    names it, retries stay sparse; once SQS accepts the credentials, messages flow again."""
    async with FakeImds("expired") as imds:
        emu.faults.set(error_rate=1.0, error="expired_token")
        started = time.monotonic()
        daemon = spawn(imds)
        await wait_until(lambda: bool(lines(daemon, "credentials-expired")), timeout_s=30, what="line")
        assert readyz(daemon)[1]["checks"]["daemon"] == "credentials-expired"
        await asyncio.sleep(_WINDOW_S)
        assert daemon.proc.poll() is None, "the daemon exited on expired credentials"
        [line] = lines(daemon, "credentials-expired")
        assert "refreshed automatically" in line["hint"] and line["operation"] == "GetQueueAttributes"
        # The queue check's backoff (0.5, 1, 2 ... s): a handful of calls, not a spin.
        checks = emu.counters()["operations"]["GetQueueAttributes"]["calls"]
        assert 2 <= checks <= most_attempts(time.monotonic() - started)
        [found] = lines(daemon, "credentials-found")
        assert found["source"] == "iam-role"

        emu.faults.clear()
        await delivered(emu, worker, "after start-up")
        assert lines(daemon, "credentials-ok")[-1]["after"] == "credentials-expired"

        emu.faults.set(error_rate=1.0, error="expired_token")  # the credentials expire while serving
        await wait_until(lambda: len(lines(daemon, "credentials-expired")) == 2, timeout_s=30, what="line")
        status, body = readyz(daemon)
        assert (status, body["checks"]["sqs"]) == (503, "credentials-expired")
        receives_before = emu.counters()["operations"]["ReceiveMessage"]["calls"]
        await asyncio.sleep(_WINDOW_S)
        assert len(lines(daemon, "credentials-expired")) == 2  # five receivers, still one line
        assert not lines(daemon, "receive-failed")
        # Five receivers, each backing off from 0.5 s (full jitter, at least 0.05 s): no spin.
        assert emu.counters()["operations"]["ReceiveMessage"]["calls"] - receives_before <= 5 * 12
        assert imds.count() <= 30  # botocore's own extensions of expired IMDS credentials

        emu.faults.clear()
        await delivered(emu, worker, "after expiry while serving")
        assert len(lines(daemon, "credentials-ok")) == 2
        await stop(daemon)
