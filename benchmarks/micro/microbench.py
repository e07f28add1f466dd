"""What the client micro-benchmarks share (``http_client_cost`` and ``sqs_client_cost``).

Each runs a canned-answer aiohttp server as a child process (``python -m MODULE --serve PORT``), so the
``time.process_time()`` read in the parent is the client's CPU alone; drives a client from concurrent
tasks, round after round; writes its summary as JSON; and buckets ``py-spy record -f raw`` profiles of
itself.  This module holds those parts; the scripts keep their servers, clients and tables.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from tests.support.servers import free_loopback_port, wait_http

from benchmarks.harness import ManagedProcess

ROOT = Path(__file__).resolve().parents[2]  # the checkout: benchmarks/micro/microbench.py
# Options that say how to run, not what was measured: left out of the result's "settings".
NOT_SETTINGS = frozenset({"serve", "output", "spy_summary", "no_breakdown", "profile"})
# (bucket, needle): a py-spy frame containing ``needle`` belongs to ``bucket``.
SpyRules = Sequence[tuple[str, str]]


# --- command line ---------------------------------------------------------------------------------


def base_parser(doc: str | None, prog: str | None = None) -> argparse.ArgumentParser:
    """The script's docstring as help, and the hidden ``--serve PORT`` its child process is run with."""
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    return parser


def add_round_arguments(parser: argparse.ArgumentParser, variants: Sequence[str], time_cap_s: float) -> None:
    """``--rounds``, ``--time-cap`` and ``--variants`` (every variant by default)."""
    parser.add_argument("--rounds", type=int, default=3, help="repeat everything; the table shows min/median")
    parser.add_argument("--time-cap", type=float, default=time_cap_s, help="seconds per measurement at most")
    parser.add_argument("--variants", nargs="+", default=list(variants), choices=variants)


def run_side_mode(
    args: argparse.Namespace, serve: Callable[[int], None], spy_summary: Callable[[Path], None]
) -> bool:
    """Serve (``--serve PORT``, in the child) or summarise a profile (``--spy-summary``); True if done."""
    if args.serve:
        serve(args.serve)
        return True
    if args.spy_summary:
        spy_summary(args.spy_summary)
        return True
    return False


# --- the server in a child process ----------------------------------------------------------------


@contextmanager
def server_process(module: str, what: str, limit_s: float = 15.0) -> Iterator[str]:
    """Run ``python -m MODULE --serve PORT``; yields its base URL once ``/ping`` answers, stops it by PID.

    The child runs in the checkout, so ``benchmarks`` imports there as it does for ``python -m`` here.
    Its output goes to a temporary directory: it is shown only if the server does not start.
    """
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="asqsd-microbench-") as logs:
        argv = [sys.executable, "-m", module, "--serve", str(port)]
        proc = ManagedProcess("server", argv, Path(logs), cwd=ROOT)
        try:
            if not wait_http(f"{url}/ping", proc.proc, limit_s):
                raise RuntimeError(f"{what} did not start\n{proc.tail()}")
            yield url
        finally:
            proc.kill_now()


# --- measuring -------------------------------------------------------------------------------------


def interleaved(rounds: int, variants: Sequence[str]) -> Iterator[str]:
    """Every variant once a round, round after round, so drift in the shared cores hits them alike."""
    for _round in range(rounds):
        yield from variants


async def measure(
    call: Callable[[], Awaitable[object]], count: int, concurrency: int, cap_s: float, unit: str
) -> dict[str, float]:
    """``count`` calls from ``concurrency`` tasks (or until ``cap_s``); CPU per ``unit`` in µs.

    The keys are named after ``unit``: ``{unit}s``, ``cpu_us_per_{unit}``, ``{unit}s_per_s`` and so on.
    """
    done = 0
    deadline = time.monotonic() + cap_s

    async def worker() -> None:
        nonlocal done
        while done < count and time.monotonic() < deadline:
            done += 1
            await call()

    times0, cpu0, wall0 = os.times(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall, times = time.process_time() - cpu0, time.perf_counter() - wall0, os.times()
    return {
        f"{unit}s": done,
        f"cpu_us_per_{unit}": cpu / done * 1e6,
        # The kernel's share (loopback TCP send/receive) is client CPU too, but no client can avoid it.
        f"user_us_per_{unit}": (times.user - times0.user) / done * 1e6,
        f"system_us_per_{unit}": (times.system - times0.system) / done * 1e6,
        f"{unit}s_per_s": done / wall,
        "wall_s": wall,
    }


def cpu_summary(runs: Sequence[Mapping[str, float]], unit: str, medians: Iterable[str]) -> dict[str, float]:
    """Min and median CPU µs per ``unit`` over the rounds, then ``<key>_median`` for each of ``medians``."""
    cpu = [run[f"cpu_us_per_{unit}"] for run in runs]
    summary = {f"cpu_us_per_{unit}_min": min(cpu), f"cpu_us_per_{unit}_median": statistics.median(cpu)}
    for key in medians:
        summary[f"{key}_median"] = statistics.median(run[key] for run in runs)
    return summary


# --- the result file -------------------------------------------------------------------------------


def environment(**packages: str) -> dict[str, Any]:
    """Python, CPU count, ``packages`` (name=version) and the aiohttp / uvloop the clients run on."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        **packages,
        "aiohttp": aiohttp.__version__,
        "uvloop": importlib.metadata.version("uvloop"),
        "event_loop": "uvloop",
    }


def write_result(path: Path, args: argparse.Namespace, env: Mapping[str, Any], **sections: Any) -> None:
    """Write the command, ``env``, the measuring options and ``sections`` (in order) as JSON to ``path``."""
    settings = {key: value for key, value in vars(args).items() if key not in NOT_SETTINGS}
    document = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": dict(env),
        "settings": settings,
        **sections,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {path}", file=sys.stderr)


# --- py-spy profiles -------------------------------------------------------------------------------


def spy_bucket(frames: Sequence[str], rules: SpyRules, default: str) -> str:
    """The bucket of the first rule matching a frame, from the leaf up (the innermost code wins)."""
    for frame in reversed(frames):
        match = next((bucket for bucket, needle in rules if needle in frame), None)
        if match:
            return match
    return default


def _is_startup(frames: Sequence[str]) -> bool:
    """Imports and module bodies: once per run, not per call."""
    return any("_find_and_load" in frame or frame.startswith("<module>") for frame in frames[1:])


def spy_counts(
    lines: Iterable[str],
    rules: SpyRules,
    default: str,
    *,
    skip_startup: bool = False,
    aliases: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Samples per bucket of ``py-spy record -f raw`` lines (collapsed stacks: ``f;g;h COUNT``).

    ``aliases`` renames whole frames (compared stripped) before the rules see them, for frames no
    substring singles out, such as one line of a function.
    """
    counts: dict[str, int] = {}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if skip_startup and _is_startup(frames):
            continue
        if aliases:
            frames = [aliases.get(frame.strip(), frame) for frame in frames]
        bucket = spy_bucket(frames, rules, default)
        counts[bucket] = counts.get(bucket, 0) + int(count)
    return counts


def spy_table(heading: str, counts: Mapping[str, int]) -> str:
    """A Markdown table of each bucket's share, largest first; ``{total}`` in ``heading`` is the samples."""
    total = sum(counts.values())
    lines = [f"| {heading.format(total=total)} | share |", "|---|---:|"]
    for bucket, samples in sorted(counts.items(), key=lambda item: -item[1]):
        lines.append(f"| {bucket} | {100 * samples / total:.1f}% |")
    return "\n".join(lines)
