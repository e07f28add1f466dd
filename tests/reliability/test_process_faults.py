"""Process faults: the daemon as a subprocess (``python -m asqsd run --log-format json``) against
an emulator subprocess that survives it; the ledger worker runs in the test.

SIGTERM with work in flight is graceful (exit 0, in-flight work finishes, unstarted messages are
visible again at once); SIGKILL leaves leases to run out (visibility 2 s) and a restarted daemon
finishes the work; restarts under load lose nothing.
"""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.support import sqs_client
from tests.reliability.conftest import Record
from tests.support.ledger import (
    Action,
    DaemonProcess,
    EmulatorProcess,
    Ledger,
    LedgerWorker,
    always,
    daemon_env,
    inventory_via_client,
)
from tests.support.polling import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One emulator subprocess for the module (each test uses its own queue)."""
    emulator = EmulatorProcess(tmp_path_factory.mktemp("emulator") / "emulator.log")
    try:
        yield emulator
    finally:
        emulator.stop()


Spawn = Callable[..., DaemonProcess]


@pytest.fixture
def spawn(tmp_path: Path, emulator_process: EmulatorProcess, worker: LedgerWorker) -> Iterator[Spawn]:
    """``spawn(queue_url, *extra_args)``: a daemon subprocess for the emulator and the worker;
    every daemon still running at the end is SIGKILLed by PID."""
    started: list[DaemonProcess] = []

    def factory(queue_url: str, *extra: str) -> DaemonProcess:
        args = [
            "--queue-url",
            queue_url,
            "--endpoint-url",
            emulator_process.endpoint_url,
            "--http-url",
            worker.url,
            "--http-port",
            str(worker.port),
            "--wait-time-s",
            "1",
            "--delete-batch-wait-s",
            "0.01",
            "--error-visibility-timeout",
            "0",
            *extra,
        ]
        process = DaemonProcess(tmp_path / f"daemon{len(started)}.log", args, daemon_env())
        started.append(process)
        return process

    yield factory
    for process in started:
        process.close()


def new_queue(emulator: EmulatorProcess, visibility_s: int) -> tuple[str, str]:
    """A fresh queue: (name, url)."""
    name = f"proc-{uuid.uuid4().hex[:8]}"
    return name, emulator.create_queue(name, {"VisibilityTimeout": str(visibility_s)})


async def test_sigterm_with_work_in_flight(
    emulator_process: EmulatorProcess, worker: LedgerWorker, spawn: Spawn, record: Record
) -> None:
    """SIGTERM while 4 jobs run and 4 more are buffered: the running jobs finish and are deleted,
    the buffered ones are visible again at once, exit status 0, nothing lost."""
    name, url = new_queue(emulator_process, 30)
    numbers = emulator_process.preload(name, 40)
    worker.script = always(Action(delay_s=1.0))
    daemon = spawn(url, "--http-connections", "4", "--visibility-timeout", "30", "--shutdown-grace-s", "10")
    await wait_until(lambda: worker.in_flight == 4, timeout_s=20, what="4 jobs in flight")
    await wait_until(
        lambda: emulator_process.counters(name)["in_flight"] == 8, timeout_s=5, what="buffer full"
    )
    in_flight_at_signal = [r.n for r in worker.records if r.status is None]
    daemon.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert await daemon.wait_exit(20) == 0
    exit_s = time.monotonic() - signalled
    await wait_until(
        lambda: emulator_process.counters(name)["in_flight"] == 0, timeout_s=5, what="nothing left in flight"
    )
    visible_s = time.monotonic() - signalled
    counters = emulator_process.counters(name)
    assert {r.n for r in worker.records if r.status == 200} >= set(in_flight_at_signal)
    summary = next(e for e in daemon.events() if e.get("event") == "stopped")
    async with _client(emulator_process) as client:
        inventory = await inventory_via_client(client, url)
    report = Ledger(numbers, worker).report(inventory)
    record(
        report=report,
        exit_s=round(exit_s, 2),
        unstarted_visible_after_s=round(visible_s, 2),
        released=summary.get("released"),
        deleted=counters["deleted"],
    )
    report.assert_nothing_lost()
    assert report.duplicated == 0 and report.stuck == 0
    assert summary["released"] == 4 and summary["abandoned"] == 0
    assert report.pending == len(numbers) - report.done


async def test_sigkill_with_work_in_flight(
    emulator_process: EmulatorProcess, worker: LedgerWorker, spawn: Spawn, record: Record
) -> None:
    """SIGKILL while jobs run: their messages stay in flight until the 2 s visibility timeout
    ends, then a restarted daemon delivers everything. The duplicates are jobs the worker was
    running at the kill (they finish and answer 200 into a dead connection) and jobs answered
    200 whose delete was still waiting for its batch: all among the messages held at the kill."""
    name, url = new_queue(emulator_process, 2)
    numbers = emulator_process.preload(name, 40)
    worker.script = always(Action(delay_s=0.3))
    args = ("--http-connections", "4", "--visibility-timeout", "2")
    first = spawn(url, *args)
    await wait_until(
        lambda: worker.ok_count() >= 8 and worker.in_flight > 0, timeout_s=20, what="work in flight"
    )
    first.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    assert await first.wait_exit(5) == -signal.SIGKILL
    held = emulator_process.counters(name)["in_flight"]
    await wait_until(
        lambda: emulator_process.counters(name)["in_flight"] == 0, timeout_s=10, what="leases to run out"
    )
    reappeared_s = time.monotonic() - killed
    worker.script = always(Action(delay_s=0.02))  # the rest quickly: the kill is what is measured
    second = spawn(url, *args)
    await wait_until(
        lambda: emulator_process.counters(name)["depth"] == 0, timeout_s=30, what="queue drained"
    )
    second.proc.send_signal(signal.SIGTERM)
    assert await second.wait_exit(20) == 0
    async with _client(emulator_process) as client:
        inventory = await inventory_via_client(client, url)
    report = Ledger(numbers, worker).report(inventory)
    record(report=report, held_at_kill=held, reappeared_after_s=round(reappeared_s, 2))
    report.assert_all_done()
    assert held > 0
    assert reappeared_s < 2 + 2.5  # visibility timeout (2 s) + reaping and polling slack
    assert report.duplicated <= held


async def test_restart_under_load(
    emulator_process: EmulatorProcess, worker: LedgerWorker, spawn: Spawn, record: Record
) -> None:
    """Three SIGTERM/restart cycles while a backlog drains, then a last daemon finishes it: every
    stop exits 0, nothing is lost, nothing is duplicated (graceful stops never abandon work)."""
    name, url = new_queue(emulator_process, 30)
    numbers = emulator_process.preload(name, 300)
    worker.script = always(Action(delay_s=0.02))
    args = ("--http-connections", "8", "--visibility-timeout", "30")
    exits = []
    for cycle in range(3):
        daemon = spawn(url, *args)
        target = min(len(numbers), worker.ok_count() + 40)
        await wait_until(worker_reached(worker, target), timeout_s=20, what=f"progress in cycle {cycle}")
        daemon.proc.send_signal(signal.SIGTERM)
        exits.append(await daemon.wait_exit(20))
    last = spawn(url, *args)
    await wait_until(
        lambda: emulator_process.counters(name)["depth"] == 0, timeout_s=30, what="queue drained"
    )
    last.proc.send_signal(signal.SIGTERM)
    exits.append(await last.wait_exit(20))
    async with _client(emulator_process) as client:
        inventory = await inventory_via_client(client, url)
    report = Ledger(numbers, worker).report(inventory)
    record(report=report, exit_statuses=exits)
    assert exits == [0, 0, 0, 0]
    report.assert_all_done()
    assert report.duplicated == 0


def worker_reached(worker: LedgerWorker, target: int) -> Callable[[], bool]:
    """A predicate: the worker answered 200 for at least ``target`` distinct messages."""
    return lambda: worker.ok_count() >= target


def _client(emulator: EmulatorProcess) -> contextlib.AbstractAsyncContextManager[Any]:
    """A no-retry SQS client for the emulator subprocess (the checker's own view)."""
    return sqs_client(emulator.endpoint_url)
