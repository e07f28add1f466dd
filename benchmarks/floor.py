"""The measuring floor: what a client that does no work at all gets from the benchmark worker.

    python -m benchmarks.floor --latency fixed:20ms --connections 50 --seconds 8 --runs 3

A daemon cannot beat a client whose whole per-response work is "parse the status line, write the
next request": this module runs exactly that client (raw asyncio protocols on uvloop, one fixed
request per connection, in its own process like a daemon) against the same worker process the
suite uses, and reports the worker's steady-state figures.  The gap between this floor and the
theoretical limit (connections ÷ job time) is the machine's and the worker's, not the daemon's:
process wake-ups, loopback TCP and the worker's own event loop.  RESULTS.md puts the fixed-20 ms
result next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import PLACEMENTS, ManagedProcess, Placement
from benchmarks.scenarios import ROOT, WorkerHandle
from benchmarks.workers.server import LatencyModel

_REQUEST = (
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"X-Aws-Sqsd-Msgid: floor-%d\r\nContent-Length: 2\r\n\r\n{}"
)


class _Loop(asyncio.Protocol):
    """One connection: the next request goes out as soon as the previous response's head is in."""

    def __init__(self, counter: list[int], stop_at: float, done: asyncio.Future[None]) -> None:
        self._counter = counter
        self._stop_at = stop_at
        self._done = done
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        self._counter[0] += 1
        self._transport.write(_REQUEST % self._counter[0])

    def data_received(self, data: bytes) -> None:
        # The worker answers "Content-Length: 0": a response ends with its head.
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            self._buffer = self._buffer[end + 4 :]
            if time.monotonic() < self._stop_at:
                self._send()
            elif self._transport is not None:
                self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(None)


async def _client(port: int, connections: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    stop_at = time.monotonic() + seconds
    counter = [0]
    done = [loop.create_future() for _ in range(connections)]
    for future in done:
        await loop.create_connection(functools.partial(_Loop, counter, stop_at, future), "127.0.0.1", port)
    await asyncio.wait_for(asyncio.gather(*done), timeout=seconds + 30)


def client_main(port: int, connections: int, seconds: float) -> None:
    """The client process (``--client``): uvloop, like the daemon."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_client(port, connections, seconds))


async def one_run(
    latency: str, connections: int, seconds: float, log_dir: Path, placement: Placement
) -> dict[str, Any]:
    """Start a worker, run the client process against it, return the worker's steady figures.

    The client takes the daemon's CPUs of ``placement``, so the floor is measured like the daemon.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    worker = await WorkerHandle.start(latency, log_dir, env, placement.worker_cpus)
    try:
        argv = [sys.executable, "-m", "benchmarks.floor", "--client", str(worker.port)]
        argv += ["--connections", str(connections), "--seconds", str(seconds)]
        cpus = placement.daemon_cpus
        client = ManagedProcess("floor-client", argv, log_dir, env=env, cwd=ROOT, cpus=cpus)
        code = await client.wait(limit_s=seconds + 60)
        if code != 0:
            raise RuntimeError(f"floor client exited {code}\n{client.tail()}")
        stats = await worker.stats(full=True)
    finally:
        await worker.close()
    mean_s = LatencyModel.parse(latency).mean_s
    limit = connections / mean_s if mean_s > 0 else None
    rate = stats.get("steady_rate")
    busy = stats.get("steady_mean_in_flight")
    return {
        "requests": stats["requests"],
        "steady_msgs_per_s": rate,
        "limit_msgs_per_s": limit,
        "pct_of_limit": round(100 * rate / limit, 2) if rate and limit else None,
        "connections_busy_pct": round(100 * busy / connections, 2) if busy is not None else None,
        "worker_service_mean_ms": stats.get("service_mean_ms"),
        "idle_gap_ms": stats.get("idle_gap_ms"),
        "jobs_per_timer_wakeup": (stats.get("latency_model") or {}).get("jobs_per_timer_wakeup"),
    }


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every run, one line each on stderr, and the medians."""
    runs = []
    placement = Placement.choose(args.placement)
    with tempfile.TemporaryDirectory(prefix="asqsd-floor-") as tmp:
        for index in range(args.runs):
            result = await one_run(args.latency, args.connections, args.seconds, Path(tmp), placement)
            runs.append(result)
            gap = (result["idle_gap_ms"] or {}).get("p50")
            print(
                f"floor run {index + 1}/{args.runs}: {result['pct_of_limit']} % of the limit, "
                f"{result['connections_busy_pct']} % of connections busy, "
                f"job {result['worker_service_mean_ms']} ms, idle gap p50 {gap} ms",
                file=sys.stderr,
                flush=True,
            )
    medians = {
        key: statistics.median(r[key] for r in runs)
        for key in ("pct_of_limit", "connections_busy_pct", "worker_service_mean_ms")
        if all(r[key] is not None for r in runs)
    }
    settings = {"latency": args.latency, "connections": args.connections, "seconds": args.seconds}
    settings["placement"] = placement.describe()
    return {**settings, "runs": runs, "median": medians}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__)
    parser.add_argument("--latency", default="fixed:20ms", help="the worker's latency model")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of one run (bounded)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None, help="write the JSON here as well")
    parser.add_argument(
        "--placement", choices=PLACEMENTS, default="split", help="as for python -m benchmarks"
    )
    parser.add_argument("--client", type=int, default=None, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.connections <= 1000 or not 0 < args.seconds <= 600 or not 1 <= args.runs <= 20:
        parser.error("need 1-1000 connections, 0-600 seconds and 1-20 runs")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client is not None:
        client_main(args.client, args.connections, args.seconds)
        return 0
    result = asyncio.run(run_all(args))
    text = json.dumps(result, indent=2)
    if args.output is not None:
        args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
