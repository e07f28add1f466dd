"""Daemon start-up measured alone: ``python -m benchmarks.startup [--runs N] [--daemon-cmd T ...]``.

Starts the emulator once, then each daemon command template ``--runs`` times, interleaved (A, B, A,
B ...) so that load from other processes on a shared machine falls on every template alike. Each
start is measured on an empty queue:

* ``startup_s``: wall time from just before the daemon's ``exec`` to the first ReceiveMessage the
  emulator received (its ``first_calls`` counter), the figure of the full benchmark's report;
* ``cpu_s``: the daemon's CPU time when that ReceiveMessage was seen (polled every 5 ms): what
  start-up costs, much less disturbed by other processes than the wall time;
* ``peak_rss_mb``: its VmHWM 0.5 s later.

Prints the medians and ranges per template and writes every run as JSON (``--output``). The
daemon is then killed: its shutdown is not measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.backends import EmulatorBackend
from benchmarks.harness import ManagedProcess, read_proc
from benchmarks.scenarios import DEFAULT_DAEMON_CMD, ROOT, Settings, child_env, render_daemon_cmd

_POLL_S = 0.005
_FIRST_RECEIVE_LIMIT_S = 30.0
_HWM_SETTLE_S = 0.5


async def one_start(backend: EmulatorBackend, template: str, log_dir: Path) -> dict[str, Any]:
    """Start the daemon once, wait for its first ReceiveMessage, read its figures, kill it."""
    values = {
        "python": shlex.quote(sys.executable),
        "queue_url": backend.queue_url,
        "endpoint": backend.endpoint,
        "region": "us-east-1",
        "worker_port": 9,  # nothing is delivered: the queue stays empty
        "worker_url": "http://127.0.0.1:9",
        "connections": 50,
        "visibility_timeout": 60,
        "inactivity_timeout": 60,
        "receivers": 5,
    }
    await backend.reset_counters()
    spawned = time.time()
    daemon = ManagedProcess(
        "daemon",
        render_daemon_cmd(template, values),
        log_dir,
        env=child_env(Settings(), backend.endpoint),
        cwd=ROOT,
    )
    try:
        first, cpu_s = None, None
        deadline = time.monotonic() + _FIRST_RECEIVE_LIMIT_S
        while first is None and daemon.running() and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
            first = ((await backend.counters()) or {}).get("first_calls", {}).get("ReceiveMessage")
            sample = read_proc(daemon.pid)
            cpu_s = sample.cpu_s if sample else None
        if first is None:
            raise RuntimeError(f"no ReceiveMessage from the daemon\n{daemon.tail()}")
        await asyncio.sleep(_HWM_SETTLE_S)
        sample = read_proc(daemon.pid)
        return {
            "startup_s": round(first - spawned, 3),
            "cpu_s": cpu_s,
            "peak_rss_mb": round(sample.hwm_kb / 1024, 1) if sample else None,
        }
    finally:
        if daemon.running():
            daemon.proc.kill()  # its shutdown (a long poll to wait out) is not measured here
        daemon.kill_now()


def summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max of each figure over the runs of one template."""
    out: dict[str, Any] = {}
    for key in ("startup_s", "cpu_s", "peak_rss_mb"):
        values = [run[key] for run in runs if run.get(key) is not None]
        if values:
            out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


async def measure(templates: Sequence[str], runs: int, log_dir: Path) -> dict[str, Any]:
    backend = await EmulatorBackend.start(log_dir, child_env(Settings(), None), nice=10)
    results: dict[str, list[dict[str, Any]]] = {template: [] for template in templates}
    try:
        for _ in range(runs):
            for template in templates:
                results[template].append(await one_start(backend, template, log_dir))
    finally:
        await backend.close()
    return {t: {"summary": summary(r), "runs": r} for t, r in results.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="starts per daemon command (default 10)")
    parser.add_argument(
        "--daemon-cmd", action="append", default=[], help="a daemon command template (repeatable)"
    )
    parser.add_argument("--output", type=Path, default=None, help="write every run as JSON here")
    args = parser.parse_args(argv)
    templates = args.daemon_cmd or [DEFAULT_DAEMON_CMD]
    with tempfile.TemporaryDirectory(prefix="asqsd-startup-") as log_dir:
        result = asyncio.run(measure(templates, max(1, args.runs), Path(log_dir)))
    for template, data in result.items():
        shown = ", ".join(
            f"{key} {f['median']:.3f} ({f['min']:.3f}-{f['max']:.3f})" for key, f in data["summary"].items()
        )
        print(f"{template}\n  {len(data['runs'])} runs, median (min-max): {shown}")
    if args.output is not None:
        args.output.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
