"""Fixtures for the reliability suite: an in-process emulator with a fresh queue, a ledger worker,
and a daemon in-process, bundled in a :class:`Rig`.

Measured figures (ledger reports, recovery times) are appended as JSON lines to the file named by
``ASQSD_RELIABILITY_OUT`` when it is set; docs/reliability.md quotes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from asqsd.config import Settings, load_settings
from asqsd.daemon import Daemon
from asqsd.emulator import Emulator
from tests.support.ledger import (
    Ledger,
    LedgerReport,
    LedgerWorker,
    inventory_from_store,
    preload_numbered,
)
from tests.support.polling import wait_until


@contextlib.asynccontextmanager
async def daemon_running(
    settings: Settings | Daemon, *, ready_timeout_s: float = 15
) -> AsyncIterator[Daemon]:
    """A daemon in-process (from settings, or one built by the test), started (and ready) on
    entry, stopped gracefully on exit.

    The body may stop it itself; a daemon that stopped on its own before it was stopped fails the
    test (asqsd must never exit because of SQS or worker faults).
    """
    daemon = settings if isinstance(settings, Daemon) else Daemon(settings)
    task = asyncio.create_task(daemon.run())
    ready = asyncio.create_task(daemon.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=ready_timeout_s, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
        raise AssertionError("daemon stopped before it was ready")
    if ready not in done:
        ready.cancel()
        daemon.request_stop()
        await asyncio.wait({task}, timeout=30)
        raise AssertionError(f"daemon not ready within {ready_timeout_s} s")
    try:
        yield daemon
        assert not task.done() or daemon.stopping, "the daemon exited by itself"
    finally:
        if not daemon.stopping:
            daemon.request_stop()
        async with asyncio.timeout(40):
            await task
    assert daemon.failure is None, f"a component crashed: {daemon.failure!r}"


@dataclass
class Rig:
    """One emulator queue, numbered messages, a ledger worker and settings for a daemon."""

    emu: Emulator
    queue: str
    worker: LedgerWorker
    numbers: set[int] = field(default_factory=set)
    dlq: str | None = None

    @property
    def queue_url(self) -> str:
        """The queue's URL on the emulator."""
        return self.emu.queue_url(self.queue)

    def load(self, count: int, *, start: int = 0, pad_to: int = 0) -> range:
        """Preload ``count`` numbered messages (added to the expected set)."""
        loaded = preload_numbered(self.emu, self.queue, count, start=start, pad_to=pad_to)
        self.numbers.update(loaded)
        return loaded

    def settings(self, **overrides: Any) -> Settings:
        """Daemon settings for this rig, tuned for short tests; ``overrides`` win."""
        values: dict[str, Any] = {
            "queue_url": self.queue_url,
            "endpoint_url": self.emu.endpoint_url,
            "http_url": self.worker.url,
            "http_port": self.worker.port,
            "wait_time_s": 1,
            "http_connections": 10,
            "visibility_timeout": 10,
            "error_visibility_timeout": 0,
            "delete_batch_wait_s": 0.01,
            "shutdown_grace_s": 5,
            "connect_timeout": 1,
            "inactivity_timeout": 5,
        }
        values.update(overrides)
        return load_settings(values, env={}).settings

    def gauges(self) -> dict[str, int]:
        """The queue's exact counters and gauges."""
        return dict(self.emu.counters(self.queue))

    def depth(self) -> int:
        """Messages still stored (visible, in flight or delayed)."""
        return int(self.gauges()["depth"])

    def done(self) -> bool:
        """Every expected message answered 200 and deleted from the queue."""
        return self.worker.ok_numbers() >= self.numbers and self.depth() == 0

    async def wait_done(
        self, timeout_s: float = 30, what: str = "every message delivered and deleted"
    ) -> None:
        """Poll until :meth:`done` (deadline ``timeout_s``)."""
        await wait_until(self.done, timeout_s=timeout_s, interval_s=0.05, what=what)

    def report(self) -> LedgerReport:
        """The ledger report, from a non-destructive look at the store."""
        inventory = inventory_from_store(self.emu, self.queue, self.dlq)
        return Ledger(self.numbers, self.worker).report(inventory)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """An emulator on 127.0.0.1 (free port, fixed seed) on the test's loop."""
    async with Emulator(host="127.0.0.1", port=0, seed=20240601) as emulator:
        yield emulator


@pytest.fixture
async def worker() -> AsyncIterator[LedgerWorker]:
    """A started ledger worker answering 200 unless the test scripts it otherwise."""
    recorder = LedgerWorker()
    await recorder.start()
    try:
        yield recorder
    finally:
        await recorder.stop()


@pytest.fixture
def rig(emu: Emulator, worker: LedgerWorker) -> Rig:
    """A queue ``jobs`` (visibility 10 s) with the worker and the emulator."""
    emu.create_queue("jobs", {"VisibilityTimeout": "10"})
    return Rig(emu, "jobs", worker)


Record = Callable[..., None]


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Record:
    """``record(report=..., **figures)``: print the figures and, with ``ASQSD_RELIABILITY_OUT``,
    append them as one JSON line (test id, time, figures)."""

    def write(report: LedgerReport | None = None, **figures: Any) -> None:
        line: dict[str, Any] = {"test": request.node.nodeid, "at": time.time(), **figures}
        if report is not None:
            line["ledger"] = report.as_dict()
        print(json.dumps(line, default=str))
        path = os.environ.get("ASQSD_RELIABILITY_OUT")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(line, default=str) + "\n")

    return write
