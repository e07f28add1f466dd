"""Process plumbing for the benchmarks: start and stop subprocesses, wait for readiness, read ``/proc``.

Every process is started from an argv list without a shell, so the PID we hold is the program's own;
its stdout and stderr go to log files (never an undrained pipe).  Stopping is always by that PID:
SIGTERM, a bounded wait, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


class ProcessFailed(RuntimeError):
    """A benchmark subprocess exited early or never became ready."""


class ManagedProcess:
    """One subprocess with its output in ``<log_dir>/<name>.out`` / ``.err``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        cpus: Collection[int] | None = None,
        nice: int = 0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        self._stdout: IO[bytes] = self.stdout_path.open("wb")
        self._stderr: IO[bytes] = self.stderr_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._stdout,
                stderr=self._stderr,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                preexec_fn=_child_setup(cpus, nice),
            )
        except BaseException:
            self._close_files()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        """The last lines of stderr and stdout, for error messages."""
        parts = []
        for path in (self.stderr_path, self.stdout_path):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            if text:
                parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts)

    async def wait_for_output(self, pattern: str, limit_s: float, *, stream: str = "stdout") -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears in the process's stdout or stderr."""
        path = self.stdout_path if stream == "stdout" else self.stderr_path
        regex = re.compile(pattern)
        deadline = time.monotonic() + limit_s
        while True:
            match = regex.search(path.read_text(errors="replace"))
            if match:
                return match
            if not self.running():
                status = self.proc.returncode
                raise ProcessFailed(
                    f"{self.name} exited with status {status} before it was ready\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise ProcessFailed(f"{self.name} not ready after {limit_s:.0f} s\n{self.tail()}")
            await asyncio.sleep(0.05)

    def signal(self, signum: int) -> None:
        if self.running():
            self.proc.send_signal(signum)

    async def wait(self, limit_s: float) -> int | None:
        """Wait up to ``limit_s`` seconds for the exit; returns the status or None if still running."""
        deadline = time.monotonic() + limit_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
        return self.proc.returncode

    async def stop(self, limit_s: float = 10.0) -> int:
        """SIGTERM, wait ``limit_s`` seconds, then SIGKILL.  Returns the exit status."""
        self.signal(signal.SIGTERM)
        status = await self.wait(limit_s)
        if status is None:
            self.proc.kill()
            status = await self.wait(5.0)
        self._close_files()
        return self.proc.returncode if status is None else status

    def kill_now(self) -> None:
        """Synchronous last resort (used from ``finally`` blocks when the loop is going away)."""
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_files()

    def _close_files(self) -> None:
        for handle in (self._stdout, self._stderr):
            if not handle.closed:
                handle.close()


def _child_setup(cpus: Collection[int] | None, nice: int) -> Callable[[], None]:
    """The ``preexec_fn`` of every benchmark process: parent-death signal, then its CPU placement.

    Both placement calls need no privilege (a process may raise its own nice value and narrow its own
    CPU set); threads and children of the program inherit them.
    """
    cpu_set = frozenset(cpus) if cpus else None

    def setup() -> None:
        _die_with_parent()
        if cpu_set is not None:
            os.sched_setaffinity(0, cpu_set)
        if nice:
            os.nice(nice)

    return setup


PLACEMENTS = ("split", "shared")  # the values of --placement


@dataclass(frozen=True, slots=True)
class Placement:
    """Which CPUs the daemon and the worker run on, and how far the SQS stand-in is niced.

    ``split`` (the default on 2+ CPUs) gives the worker the last CPU the harness may use and the daemon
    all the others, and runs the emulator at nice +10.  Why: with the four processes floating on 2
    vCPUs, the kernel's wake-affine placement often put the daemon on the worker's CPU, and every
    response then waited for the other process's time slice.  The fixed-20 ms result swung between
    89 and 97.7 % of its limit from run to run for that reason alone (see benchmarks/RESULTS.md).  The
    emulator and the harness's producer stand in for SQS, which in production runs on other machines,
    so they yield to the two processes a production host really runs.  ``shared`` leaves everything to
    the scheduler, as before.
    """

    name: str = "shared"
    daemon_cpus: frozenset[int] | None = None
    worker_cpus: frozenset[int] | None = None
    emulator_nice: int = 0

    @classmethod
    def choose(cls, name: str, allowed: Collection[int] | None = None) -> Placement:
        """``split`` or ``shared``; ``split`` falls back to ``shared`` with fewer than 2 CPUs."""
        cpus = sorted(os.sched_getaffinity(0) if allowed is None else allowed)
        if name == "shared" or len(cpus) < 2:
            return cls()
        if name != "split":
            raise ValueError(f"unknown placement {name!r}; use split or shared")
        return cls("split", frozenset(cpus[:-1]), frozenset(cpus[-1:]), 10)

    def describe(self) -> dict[str, Any]:
        """For the results JSON and the report."""
        return {
            "placement": self.name,
            "daemon_cpus": sorted(self.daemon_cpus) if self.daemon_cpus else "any",
            "worker_cpus": sorted(self.worker_cpus) if self.worker_cpus else "any",
            "emulator_nice": self.emulator_nice,
        }


def placement_of(pid: int) -> dict[str, Any] | None:
    """The CPUs a running process may use and its nice value, as the kernel reports them."""
    try:
        return {"cpus": sorted(os.sched_getaffinity(pid)), "nice": os.getpriority(os.PRIO_PROCESS, pid)}
    except OSError:  # it has exited
        return None


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the harness dies, so no process outlives a killed run."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


@dataclass(frozen=True, slots=True)
class ProcSample:
    """CPU and memory of one process at one instant (from ``/proc/PID/stat`` and ``status``)."""

    at: float
    cpu_s: float
    rss_kb: int
    hwm_kb: int


def read_proc(pid: int) -> ProcSample | None:
    """CPU seconds (utime+stime, plus reaped children's cutime+cstime), VmRSS and VmHWM; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    rss_kb = int(fields[21]) * _PAGE_KB
    memory = _status_kb(status)
    return ProcSample(
        at=time.monotonic(),
        cpu_s=(utime + stime + cutime + cstime) / _CLK_TCK,
        rss_kb=memory.get("VmRSS", rss_kb),
        hwm_kb=memory.get("VmHWM", memory.get("VmRSS", rss_kb)),
    )


def _status_kb(status: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


@dataclass(slots=True)
class ProcMonitor:
    """Samples one PID every ``interval`` seconds in the background (for peaks and the RSS chart)."""

    pid: int
    interval: float = 0.5
    samples: list[ProcSample] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            sample = read_proc(self.pid)
            if sample is None:
                return
            self.samples.append(sample)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        last = read_proc(self.pid)
        if last is not None:
            self.samples.append(last)

    @property
    def peak_rss_kb(self) -> int:
        return max((s.rss_kb for s in self.samples), default=0)

    @property
    def peak_hwm_kb(self) -> int:
        return max((s.hwm_kb for s in self.samples), default=0)

    def rss_series(self, since: float) -> list[tuple[float, float]]:
        """(seconds since ``since``, RSS MB) pairs."""
        return [(round(s.at - since, 2), round(s.rss_kb / 1024, 2)) for s in self.samples]


def last_json_event(path: Path, event: str) -> dict[str, Any] | None:
    """The last JSON log line of ``path`` whose ``event`` field is ``event`` (None if there is none)."""
    found: dict[str, Any] | None = None
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if event not in line or not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            found = record
    return found


def count_json_levels(
    path: Path, levels: tuple[str, ...] = ("warning", "error", "critical")
) -> dict[str, int]:
    """How many JSON log lines of ``path`` have each ``level`` in ``levels``, keyed ``level:event``."""
    counts: dict[str, int] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return counts
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        level = str(record.get("level", "")).lower()
        if level in levels:
            key = f"{level}:{record.get('event', '?')}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def read_machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine, all cores, from the first line of ``/proc/stat``."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    ticks = [int(value) for value in first[1:9]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    total = sum(ticks)
    return (total - idle) / _CLK_TCK, total / _CLK_TCK


async def wait_for_quiet_machine(max_wait_s: float, busy_below_pct: float = 25.0) -> float | None:
    """Wait up to ``max_wait_s`` for a 1 s stretch with the machine under ``busy_below_pct`` % of one core.

    Returns the last measured busy % (None if /proc/stat is unreadable).  Other people's processes share
    this box; starting a run while they hog a core makes the figures meaningless.
    """
    deadline = time.monotonic() + max_wait_s
    busy: float | None = None
    while True:
        before = read_machine_cpu()
        await asyncio.sleep(1.0)
        after = read_machine_cpu()
        if before is None or after is None:
            return None
        span = (after[1] - before[1]) / (os.cpu_count() or 1)
        busy = 100 * (after[0] - before[0]) / span if span > 0 else 0.0
        if busy < busy_below_pct or time.monotonic() >= deadline:
            return round(busy, 1)
