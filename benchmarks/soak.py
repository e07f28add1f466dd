"""Soak mode: a long, bounded run under a schedule of faults, checked with the ledger.

    .venv/bin/python -m benchmarks.soak --minutes 10            # the full schedule, 30 s SQS outage
    .venv/bin/python -m benchmarks.soak --minutes 1 --outage-s 5 # a quick look (~1.5 min)

The SQS emulator and the daemon (``python -m asqsd run``) run as subprocesses on 127.0.0.1; the
ledger worker and a producer (SendMessageBatch, ``--rate`` messages a second) run here. Faults,
as fractions of the run (``T`` = ``--minutes``):

| when          | fault                                                                          |
|---------------|--------------------------------------------------------------------------------|
| 0.10T-0.20T   | 10 % of every SQS call fails (500), 50 ms latency                              |
| 0.25T-0.35T   | worker: 10 % resets, 5 % 500s, 2 % hangs (inactivity timeout), 5 % 1 s jobs    |
| 0.40T         | SQS endpoint unavailable for ``--outage-s`` (30 s)                             |
| 0.55T         | worker down for 5 s                                                            |
| 0.65T         | daemon SIGKILLed, restarted after 1 s                                          |
| 0.75T         | daemon SIGTERMed (graceful), restarted                                         |
| 0.80T-0.85T   | 20 % of DeleteMessageBatch / ChangeMessageVisibilityBatch entries fail         |
| 0.90T         | production stops, faults cleared, the backlog drains                           |

At the end the daemon is stopped (SIGTERM), whatever is left in the queue is received by the
checker, and the ledger report is printed as JSON on stdout (``--out`` also writes it to a file):
lost (must be 0), duplicated, stuck, recovery time after the outage, receive calls during the
outage, exit statuses. The exit status is 0 when nothing was lost, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.emulator.support import sqs_client
from tests.support.ledger import (
    OK,
    Action,
    DaemonProcess,
    EmulatorProcess,
    Ledger,
    LedgerWorker,
    daemon_env,
    inventory_via_client,
    numbered_body,
)

MAX_MINUTES = 240.0
MAX_RATE = 2000
DRAIN_LIMIT_S = 180.0
VISIBILITY_S = 10


@dataclass
class SoakState:
    """What the phases switch and what they measured."""

    worker_faults: bool = False
    produced: list[int] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    exits: list[int] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run (default 10)")
    parser.add_argument("--rate", type=int, default=50, help="messages produced per second (default 50)")
    parser.add_argument("--outage-s", type=float, default=30.0, help="SQS outage length (default 30)")
    parser.add_argument("--connections", type=int, default=10, help="daemon http_connections (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the worker's fault draws")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep process logs here")
    args = parser.parse_args(argv)
    if not 0.2 <= args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be between 0.2 and {MAX_MINUTES}")
    if not 1 <= args.rate <= MAX_RATE:
        parser.error(f"--rate must be between 1 and {MAX_RATE}")
    if not 1 <= args.outage_s <= args.minutes * 60 * 0.15:
        parser.error("--outage-s must be at least 1 and fit in 15 % of the run")
    return args


def worker_script(state: SoakState, seed: int) -> Any:
    """The worker's answers: 200 at once, or a fault mix while ``state.worker_faults`` is on."""
    import hashlib

    def script(n: int, attempt: int) -> Action:
        if not state.worker_faults:
            return OK
        draw = int.from_bytes(
            hashlib.blake2b(f"{seed}:{n}:{attempt}".encode(), digest_size=8).digest(), "big"
        )
        x = draw / 2**64
        if x < 0.10:
            return Action(kind="reset", delay_s=0.05)
        if x < 0.15:
            return Action(status=500)
        if x < 0.17:
            return Action(kind="hang", hang_s=30)
        if x < 0.22:
            return Action(delay_s=1.0)
        return OK

    return script


def log(state: SoakState, started: float, what: str) -> None:
    """Record and print a phase change."""
    at = time.monotonic() - started
    state.timeline.append((round(at, 1), what))
    print(f"[soak {at:7.1f}s] {what}", file=sys.stderr, flush=True)


async def send_some(sqs: Any, queue_url: str, numbers: list[int], state: SoakState) -> list[int]:
    """One SendMessageBatch attempt per 10 numbers; returns the numbers still unsent (an SQS
    fault or outage must not stop the producer: it retries them on the next tick)."""
    unsent: list[int] = []
    for start in range(0, len(numbers), 10):
        batch = numbers[start : start + 10]
        entries = [{"Id": str(n), "MessageBody": numbered_body(n)} for n in batch]
        try:
            response = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except Exception:
            unsent.extend(batch)
            continue
        ok = {int(entry["Id"]) for entry in response.get("Successful", [])}
        state.produced.extend(n for n in batch if n in ok)
        unsent.extend(n for n in batch if n not in ok)
    return unsent


async def produce(sqs: Any, queue_url: str, state: SoakState, rate: int, stop: asyncio.Event) -> None:
    """Send ``rate`` numbered messages a second (a batch every 0.2 s) until ``stop``; what SQS
    refuses is retried later (at most a minute's worth is kept back, then production pauses)."""
    next_n = 0
    per_tick = max(1, rate // 5)
    unsent: list[int] = []
    while not stop.is_set():
        tick = time.monotonic()
        if len(unsent) < rate * 60:
            unsent.extend(range(next_n, next_n + per_tick))
            next_n += per_tick
        unsent = await send_some(sqs, queue_url, unsent, state)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, 0.2 - (time.monotonic() - tick))):
                await stop.wait()
    for _ in range(50):  # flush what is left, bounded (faults are cleared by now)
        if not unsent:
            break
        unsent = await send_some(sqs, queue_url, unsent, state)
        await asyncio.sleep(0.2)


class Soak:
    """One soak run: processes, producer, phases, final check."""

    def __init__(self, args: argparse.Namespace, log_dir: Path) -> None:
        self.args = args
        self.log_dir = log_dir
        self.state = SoakState()
        self.worker = LedgerWorker(worker_script(self.state, args.seed))
        self.emulator = EmulatorProcess(log_dir / "emulator.log")
        self.queue_url = self.emulator.create_queue("soak", {"VisibilityTimeout": str(VISIBILITY_S)})
        self.daemons: list[DaemonProcess] = []
        self.started = time.monotonic()

    def start_daemon(self) -> DaemonProcess:
        """A new daemon subprocess."""
        args = [
            "--queue-url",
            self.queue_url,
            "--endpoint-url",
            self.emulator.endpoint_url,
            "--http-url",
            self.worker.url,
            "--http-port",
            str(self.worker.port),
            "--http-connections",
            str(self.args.connections),
            "--visibility-timeout",
            str(VISIBILITY_S),
            "--inactivity-timeout",
            "5",
            "--error-visibility-timeout",
            "1",
            "--wait-time-s",
            "5",
        ]
        daemon = DaemonProcess(self.log_dir / f"daemon{len(self.daemons)}.log", args, daemon_env())
        self.daemons.append(daemon)
        return daemon

    async def stop_daemon(self, daemon: DaemonProcess, sig: signal.Signals) -> None:
        """Signal by PID and record the exit status."""
        daemon.proc.send_signal(sig)
        self.state.exits.append(await daemon.wait_exit(60))

    async def until(self, fraction: float) -> None:
        """Sleep until ``fraction`` of the run has passed."""
        delay = self.started + fraction * self.args.minutes * 60 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def faults(self, document: dict[str, Any] | None) -> None:
        """Replace the emulator's faults (None clears them)."""
        if document is None:
            self.emulator.admin("DELETE", "faults")
        else:
            self.emulator.admin("PUT", "faults", document)

    def receive_calls(self) -> int:
        """ReceiveMessage calls the emulator has seen."""
        operations = self.emulator.admin("GET", "counters")["operations"]
        return int(operations.get("ReceiveMessage", {}).get("calls", 0))

    async def phases(self, daemon: DaemonProcess) -> DaemonProcess:
        """The fault schedule (module docstring); returns the daemon running at the end."""
        state = self.state

        def note(what: str) -> None:
            log(state, self.started, what)

        await self.until(0.10)
        note("SQS: 10 % errors on every call, 50 ms latency")
        self.faults({"operations": {"*": {"error_rate": 0.1, "error": "internal", "latency": 0.05}}})
        await self.until(0.20)
        self.faults(None)
        note("SQS faults cleared")
        await self.until(0.25)
        state.worker_faults = True
        note("worker: resets, 500s, hangs, slow jobs")
        await self.until(0.35)
        state.worker_faults = False
        note("worker faults cleared")
        await self.until(0.40)
        calls = self.receive_calls()
        self.faults({"unavailable": "error"})
        note(f"SQS outage for {self.args.outage_s:.0f} s")
        await asyncio.sleep(self.args.outage_s)
        state.figures["receive_calls_during_outage"] = self.receive_calls() - calls
        self.faults(None)
        cleared = time.monotonic()
        note("SQS back")
        first = None
        for _ in range(2400):  # at most 2 minutes
            if (first := self.worker.first_ok_after(cleared)) is not None:
                break
            await asyncio.sleep(0.05)
        state.figures["recovery_after_outage_s"] = None if first is None else round(first - cleared, 2)
        note(f"first delivery after the outage: {state.figures['recovery_after_outage_s']} s")
        await self.until(0.55)
        await self.worker.stop()
        note("worker down")
        await asyncio.sleep(5)
        await self.worker.start()
        note("worker up")
        await self.until(0.65)
        await self.stop_daemon(daemon, signal.SIGKILL)
        note("daemon SIGKILLed")
        await asyncio.sleep(1)
        daemon = self.start_daemon()
        note("daemon restarted")
        await self.until(0.75)
        await self.stop_daemon(daemon, signal.SIGTERM)
        note(f"daemon SIGTERMed, exit {state.exits[-1]}")
        daemon = self.start_daemon()
        note("daemon restarted")
        await self.until(0.80)
        self.faults(
            {
                "operations": {
                    op: {"batch_failure_rate": 0.2}
                    for op in ("DeleteMessageBatch", "ChangeMessageVisibilityBatch")
                }
            }
        )
        note("SQS: 20 % of batch entries fail")
        await self.until(0.85)
        self.faults(None)
        note("batch failures cleared")
        await self.until(0.90)
        return daemon

    async def drain(self) -> None:
        """Wait (bounded) until every produced message was answered 200 and the queue is empty."""
        deadline = time.monotonic() + DRAIN_LIMIT_S
        while time.monotonic() < deadline:
            depth = int(self.emulator.counters("soak")["depth"])
            if depth == 0 and self.worker.ok_numbers() >= set(self.state.produced):
                return
            await asyncio.sleep(0.5)
        log(self.state, self.started, "drain time limit reached")

    def duplicates_by_phase(self) -> dict[str, int]:
        """Each duplicate (a second 200) counted under the phase that was running when it was
        answered: tells which fault caused it."""
        answers: dict[int, list[float]] = {}
        for record in self.worker.records:
            if record.status == 200 and record.n is not None:
                answers.setdefault(record.n, []).append(record.started - self.started)
        counts: dict[str, int] = {}
        for times in answers.values():
            for at in times[1:]:
                phase = "start"
                for when, what in self.state.timeline:
                    if when <= at:
                        phase = what
                counts[phase] = counts.get(phase, 0) + 1
        return counts

    async def run(self) -> dict[str, Any]:
        """Run the whole soak; returns the report."""
        await self.worker.start()
        stop = asyncio.Event()
        try:
            async with sqs_client(self.emulator.endpoint_url) as sqs:
                daemon = self.start_daemon()
                log(self.state, self.started, f"started: {self.args.rate} msgs/s for {self.args.minutes} min")
                producer = asyncio.create_task(produce(sqs, self.queue_url, self.state, self.args.rate, stop))
                try:
                    daemon = await self.phases(daemon)
                finally:
                    stop.set()
                    await producer
                    self.faults(None)
                log(self.state, self.started, f"production stopped after {len(self.state.produced)} messages")
                await self.drain()
                await self.stop_daemon(daemon, signal.SIGTERM)
                inventory = await inventory_via_client(sqs, self.queue_url, in_flight_wait_s=VISIBILITY_S + 5)
            report = Ledger(self.state.produced, self.worker).report(inventory)
            self.state.figures["duplicates_by_phase"] = self.duplicates_by_phase()
        finally:
            await self.worker.stop()
            for daemon in self.daemons:
                daemon.close()
            self.emulator.stop()
        return {
            "minutes": self.args.minutes,
            "rate": self.args.rate,
            "outage_s": self.args.outage_s,
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "ledger": report.as_dict(),
            "summary": report.summary(),
            "exit_statuses": self.state.exits,
            **self.state.figures,
            "timeline": self.state.timeline,
            "logs": str(self.log_dir),
        }


async def main_async(args: argparse.Namespace) -> int:
    """Run, print the JSON report, exit 0 if nothing was lost."""
    with contextlib.ExitStack() as stack:
        log_dir = args.log_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="asqsd-soak-")))
        log_dir.mkdir(parents=True, exist_ok=True)
        result = await Soak(args, log_dir).run()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if result["ledger"]["lost"] == 0 and result["ledger"]["unexpected"] == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.soak``."""
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
