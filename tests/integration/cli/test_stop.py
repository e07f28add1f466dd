"""Stopping ``asqsd run`` (a subprocess, on the project's SQS emulator and a real worker).

A first SIGTERM logs ``stopping`` naming what the graceful stop waits for and how long it may
take; a second one forces the exit (128+N) within about 2 s whatever the daemon is doing: idle in
a 20 s long poll, holding a POST the worker never answers, or flushing a delete SQS does not
answer. The time from the second signal to the exit is measured against a deadline that leaves
room for a loaded machine; the figures are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from asqsd.emulator import Emulator
from tests.integration.cli.conftest import QUEUE
from tests.support.ledger import DaemonProcess, emulator_run_args
from tests.support.polling import wait_until
from tests.support.worker import Delivery, RecordingWorker

pytestmark = pytest.mark.slow


# The promise is 2 s from the second signal to the exit; the deadline adds room for a machine
# shared with other test runs (process teardown included), the printed figures are the measure.
FORCED_EXIT_DEADLINE_S = 5.0

Spawn = Callable[..., DaemonProcess]


@pytest.fixture
def spawn(tmp_path: Path, emu: Emulator, worker: RecordingWorker) -> Iterator[Spawn]:
    """``spawn(*flags)``: ``asqsd run`` on the emulator's queue and the recording worker."""
    started: list[DaemonProcess] = []

    def factory(*extra: str) -> DaemonProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ASQSD_", "AWS_"))}
        env.update(AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local", AWS_DEFAULT_REGION="us-east-1")
        argv = [
            *emulator_run_args(emu, QUEUE, worker.port),
            *extra,
        ]
        process = DaemonProcess(tmp_path / f"daemon{len(started)}.log", argv, env)
        started.append(process)
        return process

    yield factory
    for process in started:
        process.close()


def stopping_line(daemon: DaemonProcess) -> dict[str, Any]:
    return next(e for e in daemon.events() if e.get("event") == "stopping")


async def first_signal(daemon: DaemonProcess) -> dict[str, Any]:
    daemon.proc.send_signal(signal.SIGTERM)
    await wait_until(lambda: daemon.saw("stopping"), timeout_s=10, what="stopping logged")
    return stopping_line(daemon)


async def forced_exit_s(daemon: DaemonProcess, state: str) -> float:
    """Send the second signal; the seconds until the process has exited with 128+SIGINT."""
    sent = time.monotonic()
    daemon.proc.send_signal(signal.SIGINT)
    assert await daemon.wait_exit(FORCED_EXIT_DEADLINE_S) == 128 + signal.SIGINT
    elapsed = time.monotonic() - sent
    print(f"\nforced exit while {state}: {elapsed:.2f} s after the second signal")
    assert daemon.saw("forced-shutdown")
    return elapsed


async def test_idle_in_a_long_poll(emu: Emulator, spawn: Spawn) -> None:
    """Idle with a 20 s long poll outstanding: the first signal says it waits for the poll (up to
    30 s); the second cancels the poll and exits at once. (The health server logged its start once.)"""
    daemon = spawn("--wait-time-s", "20", "--receivers", "2", "--health-server", "--health-port", "0")
    await wait_until(lambda: daemon.saw("started"), timeout_s=20, what="daemon started")
    await wait_until(lambda: emu.poller.parked == 2, timeout_s=10, what="both long polls parked")
    assert [e["event"] for e in daemon.events() if "health" in e["event"]] == ["health-server-started"]
    line = await first_signal(daemon)
    assert line["waiting_for"] == ["outstanding long polls (2, up to 30 s)"]
    assert "second" in line["detail"]
    await forced_exit_s(daemon, "idle in a 20 s long poll")


async def test_delivering(emu: Emulator, worker: RecordingWorker, spawn: Spawn) -> None:
    """A POST the worker never answers, with a 120 s grace period: forced out within the bound,
    the message left to SQS (still invisible, not deleted)."""
    gate = asyncio.Event()

    async def held(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        await gate.wait()
        return web.Response(status=200)

    worker.handler = held
    emu.preload(QUEUE, 1, body="stuck")
    daemon = spawn("--wait-time-s", "1", "--shutdown-grace-s", "120")
    try:
        await wait_until(lambda: worker.in_flight == 1, timeout_s=20, what="a POST in flight")
        line = await first_signal(daemon)
        assert "in-flight POSTs (1, up to 120 s)" in line["waiting_for"]
        await forced_exit_s(daemon, "delivering")
        counts = emu.counters(QUEUE)
        assert counts["deleted"] == 0
    finally:
        gate.set()


async def test_flushing(emu: Emulator, worker: RecordingWorker, spawn: Spawn) -> None:
    """The worker answered 200 but SQS does not answer the delete (60 s of latency) and the flush
    may take 120 s: the second signal gives up the flush within the bound."""
    emu.faults.set("DeleteMessageBatch", latency=60)
    emu.preload(QUEUE, 1, body="done")
    daemon = spawn("--wait-time-s", "0", "--flush-timeout-s", "120")
    await wait_until(lambda: len(worker.deliveries) == 1, timeout_s=20, what="delivered")
    await wait_until(lambda: emu.stats.get("DeleteMessageBatch").calls >= 1, timeout_s=10, what="delete sent")
    line = await first_signal(daemon)
    assert line["waiting_for"] == ["pending deletes and visibility changes (1, up to 120 s)"]
    await forced_exit_s(daemon, "flushing")
