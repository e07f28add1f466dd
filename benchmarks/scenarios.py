"""The benchmark scenarios and the code that runs one of them end to end.

A run of a scenario starts a fresh emulator (unless an external endpoint is given), a fresh worker and a
fresh daemon, drives load, measures, then stops all three.  Every wait is bounded: each scenario has a
time cap after which it stops by itself and reports what it got (``complete: false``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp

from benchmarks.backends import EmulatorBackend, ExternalBackend, QueueBackend, unique_queue_name
from benchmarks.harness import (
    ManagedProcess,
    Placement,
    ProcMonitor,
    ProcSample,
    count_json_levels,
    last_json_event,
    placement_of,
    read_machine_cpu,
    read_proc,
    wait_for_quiet_machine,
)
from benchmarks.workers.server import LatencyModel

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DAEMON_CMD = (
    "{python} -m asqsd run --queue-url {queue_url} --endpoint-url {endpoint} --region {region}"
    " --http-url http://127.0.0.1 --http-port {worker_port} --http-connections {connections}"
    " --visibility-timeout {visibility_timeout} --inactivity-timeout {inactivity_timeout}"
    " --log-format json"
)
DEFAULT_READY_REGEX = r'"event": ?"started"'
DAEMON_ERROR_KEYS = (
    "failed",
    "delete_failed",
    "retry_failed",
    "release_failed",
    "lease_lost",
    "receive_errors",
    "abandoned",
)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One benchmark scenario.

    ``kind`` is ``drain`` (deliver ``messages`` fed by a paced producer), ``slow`` (like drain, then wait
    for late redeliveries), ``idle`` (empty queue for ``duration_s``) or ``backlog`` (``backlog``
    messages queued before the daemon starts, measured for ``duration_s``).
    """

    name: str
    title: str
    kind: str
    messages: int = 0
    connections: int = 50
    latency: str = "none"
    visibility_timeout: int = 60
    inactivity_timeout: int = 60
    target_depth: int = 200
    duration_s: float = 0.0
    backlog: int = 0
    time_cap_s: float = 120.0
    settle_s: float = 0.5

    def limit_msgs_per_s(self, drawn_mean_s: float | None = None) -> float | None:
        """connections ÷ mean job time, where the worker has a latency (the realised mean if given)."""
        model = LatencyModel.parse(self.latency)
        mean = drawn_mean_s if drawn_mean_s else model.mean_s
        if model.kind == "none" or self.kind not in ("drain",) or mean <= 0:
            return None
        return self.connections / mean


def catalogue(quick: bool) -> dict[str, Scenario]:
    """All scenarios, full size or ``--quick`` (small N, short idle)."""
    heavy = "lognormal:median=10ms,p99=200ms"
    if quick:
        items = [
            Scenario("null", "null worker", "drain", messages=1_000, time_cap_s=30),
            Scenario("fixed20", "worker 20 ms", "drain", messages=1_000, latency="fixed:20ms", time_cap_s=30),
            Scenario("heavy", "heavy tail", "drain", messages=1_000, latency=heavy, time_cap_s=30),
            Scenario(
                "slow",
                "slow jobs (2× visibility)",
                "slow",
                messages=10,
                latency="fixed:2s",
                visibility_timeout=1,
                inactivity_timeout=30,
                target_depth=10_000,
                time_cap_s=30,
                settle_s=3.0,
            ),
            Scenario("idle", "idle queue", "idle", duration_s=10, time_cap_s=20),
            Scenario("backlog_10k", "backlog 2k", "backlog", backlog=2_000, duration_s=4, time_cap_s=30),
            Scenario("backlog_1m", "backlog 50k", "backlog", backlog=50_000, duration_s=4, time_cap_s=60),
        ]
    else:
        items = [
            Scenario("null", "null worker", "drain", messages=20_000, time_cap_s=120),
            Scenario(
                "fixed20", "worker 20 ms", "drain", messages=10_000, latency="fixed:20ms", time_cap_s=120
            ),
            Scenario("heavy", "heavy tail", "drain", messages=10_000, latency=heavy, time_cap_s=150),
            Scenario(
                "slow",
                "slow jobs (2× visibility)",
                "slow",
                messages=30,
                latency="fixed:4s",
                visibility_timeout=2,
                inactivity_timeout=30,
                target_depth=10_000,
                time_cap_s=60,
                settle_s=5.0,
            ),
            Scenario("idle", "idle queue 60 s", "idle", duration_s=60, time_cap_s=90),
            Scenario("backlog_10k", "backlog 10k", "backlog", backlog=10_000, duration_s=20, time_cap_s=60),
            Scenario("backlog_1m", "backlog 1M", "backlog", backlog=1_000_000, duration_s=20, time_cap_s=120),
        ]
    return {scenario.name: scenario for scenario in items}


ALIASES = MappingProxyType({"backlog": ("backlog_10k", "backlog_1m"), "all": ()})


def select(catalog: dict[str, Scenario], names: str) -> list[Scenario]:
    """``--scenarios a,b`` → scenarios in catalogue order (``backlog`` = both backlog sizes, ``all``)."""
    wanted: set[str] = set()
    for raw in names.split(","):
        name = raw.strip()
        if not name:
            continue
        if name == "all":
            wanted.update(catalog)
        elif name in ALIASES:
            wanted.update(ALIASES[name])
        elif name in catalog:
            wanted.add(name)
        else:
            raise ValueError(
                f"unknown scenario {name!r}; choose from {', '.join([*catalog, 'backlog', 'all'])}"
            )
    return [scenario for name, scenario in catalog.items() if name in wanted]


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a scenario run needs from the command line."""

    daemon_cmd: str = DEFAULT_DAEMON_CMD
    ready_regex: str = DEFAULT_READY_REGEX
    warmup_s: float = 3.0
    endpoint: str | None = None
    queue_url: str | None = None
    region: str = "us-east-1"
    receivers: int | None = None
    log_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    progress: bool = True
    profile_dir: Path | None = None
    profile_scenarios: tuple[str, ...] = ()
    py_spy: str = str(Path(sys.executable).parent / "py-spy")
    quiet_wait_s: float = 0.0
    placement: Placement = field(default_factory=Placement)

    @property
    def external(self) -> bool:
        return bool(self.endpoint or self.queue_url)

    def receivers_for(self, connections: int) -> int:
        return self.receivers or math.ceil(connections / 10)


def child_env(settings: Settings, endpoint: str | None) -> dict[str, str]:
    """Environment of every subprocess: the project on PYTHONPATH; dummy credentials for the emulator."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("AWS_DEFAULT_REGION", settings.region)
    if not settings.external:
        # Against the local emulator nothing may ever reach AWS: dummy credentials, endpoint pinned.
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            env.pop(var, None)
        env["AWS_ACCESS_KEY_ID"] = "bench"
        env["AWS_SECRET_ACCESS_KEY"] = "bench"  # noqa: S105 - a dummy for the local emulator
        if endpoint:
            env["AWS_ENDPOINT_URL_SQS"] = endpoint
    return env


def render_daemon_cmd(template: str, values: dict[str, Any]) -> list[str]:
    """Fill the placeholders of ``--daemon-cmd`` and split it like a shell would (no shell runs)."""
    try:
        return shlex.split(template.format_map(values))
    except KeyError as exc:
        known = ", ".join("{" + key + "}" for key in values)
        raise ValueError(f"unknown placeholder {exc} in --daemon-cmd; known: {known}") from None


class WorkerHandle:
    """The worker subprocess and an HTTP client for its ``/stats``."""

    def __init__(self, process: ManagedProcess, port: int) -> None:
        self.process = process
        self.port = port
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    @classmethod
    async def start(
        cls, latency: str, log_dir: Path, env: dict[str, str], cpus: frozenset[int] | None = None
    ) -> WorkerHandle:
        ready = log_dir / "worker.ready"
        ready.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "benchmarks.workers.server", "--port", "0", "--latency", latency]
        argv += ["--ready-file", str(ready)]
        process = ManagedProcess("worker", argv, log_dir, env=env, cwd=ROOT, cpus=cpus)
        try:
            match = await process.wait_for_output(r'\{"port": (\d+)', limit_s=20)
        except BaseException:
            await process.stop(5)
            raise
        return cls(process, int(match.group(1)))

    async def stats(self, full: bool = False) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/stats" + ("?full=1" if full else "")
        async with self._session.get(url) as response:
            data: dict[str, Any] = await response.json()
            return data

    async def close(self) -> None:
        await self._session.close()
        await self.process.stop(10)


@dataclass(slots=True)
class Window:
    """CPU readings of the processes at the start of the measurement window."""

    started: float
    daemon: ProcSample | None
    delivered_before: int = 0
    others: dict[str, ProcSample | None] = field(default_factory=dict)
    harness_cpu: float = field(default_factory=time.process_time)
    machine: tuple[float, float] | None = field(default_factory=read_machine_cpu)


class Progress:
    """Prints one line per second: delivered/total, recent and average rate, daemon CPU and RSS."""

    def __init__(self, label: str, total: int | None, enabled: bool) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self._last: tuple[float, int, float] | None = None
        self._started = time.monotonic()

    def update(self, delivered: int, daemon: ProcSample | None, extra: str = "") -> None:
        now = time.monotonic()
        cpu = daemon.cpu_s if daemon else 0.0
        if self._last is None:
            self._last = (now, delivered, cpu)
            return
        then, before, cpu_before = self._last
        self._last = (now, delivered, cpu)
        if not self.enabled:
            return
        span = max(now - then, 1e-6)
        total = f"/{self.total:,}" if self.total else ""
        parts = [
            f"[{self.label}] {now - self._started:5.1f}s",
            f"delivered {delivered:,}{total}",
            f"{(delivered - before) / span:,.0f} msgs/s",
        ]
        if daemon:
            parts.append(f"daemon CPU {(cpu - cpu_before) / span:4.0%} RSS {daemon.rss_kb / 1024:.0f} MB")
        if extra:
            parts.append(extra)
        print("  ".join(parts), file=sys.stderr, flush=True)


class ScenarioRun:
    """One run of one scenario; :meth:`execute` returns its metrics as a flat-ish dict."""

    def __init__(self, scenario: Scenario, settings: Settings, label: str) -> None:
        self.scenario = scenario
        self.settings = settings
        self.label = label
        self.log_dir = settings.log_dir / f"{label.replace(' ', '_').replace('/', 'of')}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.backend: QueueBackend | None = None
        self.worker: WorkerHandle | None = None
        self.daemon: ManagedProcess | None = None
        self.profiler: ManagedProcess | None = None
        self.notes: list[str] = []
        self.dry_polls = 0  # producer ticks that found the queue empty (it should never run dry)
        self.daemon_spawned_at = 0.0  # wall clock just before the daemon's exec (start-up probe)

    async def execute(self) -> dict[str, Any]:
        busy_before = None
        if self.settings.quiet_wait_s > 0:
            busy_before = await wait_for_quiet_machine(self.settings.quiet_wait_s)
        hard_cap = self.scenario.time_cap_s + 120  # start-up, shutdown and a slow preload on top
        try:
            result = await asyncio.wait_for(self._execute(), timeout=hard_cap)
        finally:
            await self._teardown()
        result["machine_busy_before_pct"] = busy_before
        return result

    # --- set-up -------------------------------------------------------------------------------
    async def _start_backend(self) -> QueueBackend:
        settings = self.settings
        if settings.external:
            if not settings.queue_url:
                raise ValueError("--endpoint needs --queue-url (the queue must exist)")
            backend: QueueBackend = await ExternalBackend(
                settings.endpoint or "", settings.queue_url, settings.region
            ).open()
            depth = await backend.depth()
            if depth:
                self.notes.append(f"external queue already held {depth} messages at start")
            return backend
        env = child_env(settings, None)
        nice = settings.placement.emulator_nice
        return await EmulatorBackend.start(self.log_dir, env, unique_queue_name(), nice=nice)

    async def _start_daemon(self, backend: QueueBackend, worker: WorkerHandle) -> ManagedProcess:
        scenario, settings = self.scenario, self.settings
        values = {
            "python": shlex.quote(sys.executable),
            "queue_url": backend.queue_url,
            "endpoint": backend.endpoint,
            "region": settings.region,
            "worker_port": worker.port,
            "worker_url": f"http://127.0.0.1:{worker.port}",
            "connections": scenario.connections,
            "visibility_timeout": scenario.visibility_timeout,
            "inactivity_timeout": scenario.inactivity_timeout,
            "receivers": settings.receivers_for(scenario.connections),
        }
        argv = render_daemon_cmd(settings.daemon_cmd, values)
        env = child_env(settings, None if settings.external else backend.endpoint)
        cpus = settings.placement.daemon_cpus
        self.daemon_spawned_at = time.time()
        daemon = ManagedProcess("daemon", argv, self.log_dir, env=env, cwd=ROOT, cpus=cpus)
        self.daemon = daemon
        if settings.ready_regex:
            await daemon.wait_for_output(settings.ready_regex, limit_s=60, stream="stderr")
            await asyncio.sleep(0.5)  # let the receivers park their first long polls
        else:
            await asyncio.sleep(settings.warmup_s)
            if not daemon.running():
                raise RuntimeError(f"daemon exited during warm-up\n{daemon.tail()}")
        return daemon

    def _start_profiler(self, pid: int) -> None:
        settings = self.settings
        if settings.profile_dir is None or self.scenario.name not in settings.profile_scenarios:
            return
        settings.profile_dir.mkdir(parents=True, exist_ok=True)
        out = settings.profile_dir / f"{self.label.replace(' ', '_').replace('/', 'of')}.txt"
        argv = [settings.py_spy, "record", "-p", str(pid), "--gil", "-f", "raw", "-r", "250", "-o", str(out)]
        self.profiler = ManagedProcess("py-spy", argv, self.log_dir)
        self.notes.append(f"py-spy profile: {out}")

    def _placement_seen(self, daemon: ManagedProcess) -> dict[str, Any]:
        """Where the processes really run (read back from the kernel, not what was asked for)."""
        seen = {"daemon": placement_of(daemon.pid)}
        if self.worker is not None:
            seen["worker"] = placement_of(self.worker.process.pid)
        if self.backend is not None and self.backend.pid is not None:
            seen["emulator"] = placement_of(self.backend.pid)
        return seen

    def _window(self, daemon: ManagedProcess) -> Window:
        others: dict[str, ProcSample | None] = {}
        if self.worker is not None:
            others["worker"] = read_proc(self.worker.process.pid)
        if self.backend is not None and self.backend.pid is not None:
            others["emulator"] = read_proc(self.backend.pid)
        return Window(started=time.monotonic(), daemon=read_proc(daemon.pid), others=others)

    # --- the run --------------------------------------------------------------------------------
    async def _execute(self) -> dict[str, Any]:
        scenario, settings = self.scenario, self.settings
        self.backend = backend = await self._start_backend()
        worker_env = child_env(settings, backend.endpoint)
        cpus = settings.placement.worker_cpus
        self.worker = worker = await WorkerHandle.start(scenario.latency, self.log_dir, worker_env, cpus)
        preload_s = None
        if scenario.kind == "backlog":
            began = time.monotonic()
            await self._preload(backend, scenario.backlog, scenario.time_cap_s)
            preload_s = time.monotonic() - began
        daemon = await self._start_daemon(backend, worker)
        monitor = ProcMonitor(daemon.pid, interval=0.5)
        monitor.start()
        self._start_profiler(daemon.pid)
        placement_seen = self._placement_seen(daemon)
        startup_s = await self._startup_s(backend)
        await backend.reset_counters()
        window = self._window(daemon)
        window.delivered_before = int((await worker.stats())["unique"])
        wall_started = time.time()
        try:
            if scenario.kind in ("drain", "slow"):
                timed_out = await self._drain(backend, worker, daemon)
                if scenario.kind == "slow" and not timed_out:
                    timed_out = await self._finish_jobs(worker, daemon, window.started)
            else:
                timed_out = await self._hold(worker, daemon, scenario.duration_s)
            await asyncio.sleep(scenario.settle_s)
            end_daemon = read_proc(daemon.pid)
            result = await self._collect(window, end_daemon, monitor, timed_out, wall_started)
        finally:
            await monitor.stop()
        result["placement_seen"] = placement_seen
        result["daemon_startup_s"] = startup_s
        if preload_s is not None:
            result["preload_s"] = round(preload_s, 2)
        result["daemon_rss_series"] = monitor.rss_series(window.started)
        result["daemon_peak_rss_mb"] = round(max(monitor.peak_hwm_kb, monitor.peak_rss_kb) / 1024, 1)
        result["daemon_exit"] = await self._stop_daemon(backend)
        result["notes"] = self.notes
        return result

    async def _startup_s(self, backend: QueueBackend) -> float | None:
        """Process start to the first ReceiveMessage the emulator saw (None on an external endpoint).

        Both ends are read on this machine's wall clock: the harness's just before the daemon's
        exec, the emulator's when the request arrived. Read before the counters are reset.
        """
        counters = await backend.counters()
        first = (counters or {}).get("first_calls", {}).get("ReceiveMessage")
        return None if first is None else round(first - self.daemon_spawned_at, 3)

    async def _preload(self, backend: QueueBackend, count: int, cap_s: float) -> None:
        deadline = time.monotonic() + cap_s
        chunk = 100_000 if backend.has_counters else 1_000
        loaded = 0
        while loaded < count and time.monotonic() < deadline:
            loaded += await backend.send(min(chunk, count - loaded))
        if loaded < count:
            self.notes.append(f"preload stopped at its time cap: {loaded} of {count} queued")

    async def _drain(self, backend: QueueBackend, worker: WorkerHandle, daemon: ManagedProcess) -> bool:
        """Feed ``messages`` through a paced producer until the worker has all of them (or the cap)."""
        scenario = self.scenario
        total = scenario.messages
        deadline = time.monotonic() + scenario.time_cap_s
        progress = Progress(self.label, total, self.settings.progress)
        produced = 0
        next_report = 0.0
        low: int | None = None  # lowest visible depth seen since the last progress line
        while True:
            now = time.monotonic()
            if produced < total:
                depth = await backend.depth()
                if depth is not None:
                    low = depth if low is None else min(low, depth)
                    if depth == 0 and produced:
                        self.dry_polls += 1
                want = min(scenario.target_depth - (depth or 0), total - produced)
                if want > 0:
                    produced += await backend.send(want)
            if now >= next_report or produced >= total:
                stats = await worker.stats()
                if now >= next_report:
                    extra = f"queued {produced:,} (min visible {low})  worker in-flight {stats['in_flight']}"
                    progress.update(stats["unique"], read_proc(daemon.pid), extra)
                    next_report, low = now + 1.0, None
                if stats["unique"] >= total:
                    return False
            if not daemon.running():
                raise RuntimeError(f"daemon exited during the run\n{daemon.tail()}")
            if now > deadline:
                self.notes.append(f"time cap of {scenario.time_cap_s:.0f} s reached")
                return True
            await asyncio.sleep(0.01 if produced < total else 0.05)

    async def _finish_jobs(self, worker: WorkerHandle, daemon: ManagedProcess, started: float) -> bool:
        """Wait (within the cap) until the worker answered every job; settle_s then catches redeliveries."""
        scenario = self.scenario
        deadline = started + scenario.time_cap_s
        progress = Progress(self.label, scenario.messages, self.settings.progress)
        while time.monotonic() < deadline:
            stats = await worker.stats()
            progress.update(stats["unique"], read_proc(daemon.pid), f"jobs running {stats['in_flight']}")
            if stats["completed"] >= scenario.messages and stats["in_flight"] == 0:
                return False
            await asyncio.sleep(0.25)
        self.notes.append(f"time cap of {scenario.time_cap_s:.0f} s reached before the jobs finished")
        return True

    async def _hold(self, worker: WorkerHandle, daemon: ManagedProcess, duration: float) -> bool:
        """Let the daemon run ``duration`` seconds (bounded by the cap), printing progress."""
        scenario = self.scenario
        total = scenario.backlog or None
        progress = Progress(self.label, total, self.settings.progress)
        end = time.monotonic() + min(duration, scenario.time_cap_s)
        while (left := end - time.monotonic()) > 0:
            stats = await worker.stats()
            progress.update(stats["unique"], read_proc(daemon.pid))
            if not daemon.running():
                raise RuntimeError(f"daemon exited during the run\n{daemon.tail()}")
            await asyncio.sleep(min(1.0, left))
        return False

    # --- measurements ---------------------------------------------------------------------------
    async def _collect(
        self,
        window: Window,
        end: ProcSample | None,
        monitor: ProcMonitor,
        timed_out: bool,
        wall_started: float,
    ) -> dict[str, Any]:
        assert self.backend is not None and self.worker is not None
        scenario = self.scenario
        elapsed = time.monotonic() - window.started
        stats = await self.worker.stats(full=True)
        counters = await self.backend.counters()
        delivered = int(stats["unique"])
        out: dict[str, Any] = {
            "scenario": scenario.name,
            "title": scenario.title,
            "kind": scenario.kind,
            "params": asdict(scenario),
            "complete": not timed_out
            and (scenario.kind not in ("drain", "slow") or delivered >= scenario.messages),
            "window_s": round(elapsed, 3),
            "delivered": delivered,
            "requests": stats["requests"],
            "duplicates": stats["duplicates"],
            "duplicated_ids": stats["duplicated_ids"],
            "worker_max_in_flight": stats["max_in_flight"],
            "worker_connections_seen": stats.get("connections_seen"),
            "worker_mean_in_flight": stats.get("steady_mean_in_flight"),
            "worker_service_mean_ms": stats.get("service_mean_ms"),
            "worker_idle_gap_ms": stats.get("idle_gap_ms"),
            "latency_ms": stats.get("latency_ms"),
            "worker_latency_model": stats.get("latency_model"),
        }
        overall = _rate(scenario, stats, delivered, wall_started)
        steady = stats.get("steady_rate")
        out["msgs_per_s"] = round(steady, 1) if steady and overall is not None else overall
        out["msgs_per_s_overall"] = overall
        drawn = (stats.get("latency_model") or {}).get("drawn_mean_ms")
        limit = scenario.limit_msgs_per_s(
            drawn / 1000 if drawn and scenario.latency.startswith("log") else None
        )
        out["limit_msgs_per_s"] = None if limit is None else round(limit, 1)
        service = stats.get("service_mean_ms")
        # What the worker's *measured* job times allow (timer overshoot included): separates the
        # worker's own slack from connections the daemon leaves idle.
        out["limit_by_measured_service"] = (
            round(scenario.connections / (service / 1000), 1) if limit is not None and service else None
        )
        mean_in_flight = stats.get("steady_mean_in_flight")
        out["connections_busy_pct"] = (
            round(100 * mean_in_flight / scenario.connections, 1)
            if mean_in_flight is not None and limit is not None
            else None
        )
        out["pct_of_limit"] = (
            None if limit is None or out["msgs_per_s"] is None else round(100 * out["msgs_per_s"] / limit, 1)
        )
        in_window = delivered - window.delivered_before
        out["delivered_in_window"] = in_window
        out.update(_cpu(window, end, elapsed, in_window))
        out["producer_found_queue_empty"] = self.dry_polls
        out["other_cpu_pct"] = self._other_cpu(window, elapsed)
        out["machine_cpu_pct"] = _machine_cpu(window)
        out["foreign_cpu_pct"] = _foreign(out)
        out.update(_sqs(counters, in_window, elapsed, self.settings.receivers_for(scenario.connections)))
        return out

    def _other_cpu(self, window: Window, elapsed: float) -> dict[str, float | None]:
        pids: dict[str, int | None] = {
            "worker": self.worker.process.pid if self.worker else None,
            "emulator": self.backend.pid if self.backend else None,
        }
        shares: dict[str, float | None] = {}
        for name, pid in pids.items():
            before = window.others.get(name)
            after = read_proc(pid) if pid else None
            shares[name] = (
                round(100 * (after.cpu_s - before.cpu_s) / elapsed, 1)
                if before and after and elapsed
                else None
            )
        shares["harness"] = round(100 * (time.process_time() - window.harness_cpu) / elapsed, 1)
        return shares

    async def _stop_daemon(self, backend: QueueBackend) -> dict[str, Any]:
        """SIGTERM; wake parked long polls (emulator) so shutdown need not wait out a 20 s poll."""
        daemon = self.daemon
        if daemon is None:
            return {}
        await self._stop_profiler()
        began = time.monotonic()
        daemon.signal(signal.SIGTERM)
        status = await daemon.wait(1.0)
        if status is None and isinstance(backend, EmulatorBackend):
            # Parked receives return these and the stopping daemon releases them (never delivered).
            await backend.send(10 * self.settings.receivers_for(self.scenario.connections) + 10)
        status = await daemon.wait(45.0)
        killed = status is None
        status = await daemon.stop(5.0)
        self.daemon = None
        summary = last_json_event(daemon.stderr_path, "stopped")
        result: dict[str, Any] = {
            "status": status,
            "killed": killed,
            "stop_s": round(time.monotonic() - began, 2),
            "summary": summary,
            "log_warnings": count_json_levels(daemon.stderr_path),
        }
        if summary is not None:
            result["errors"] = sum(int(summary.get(key) or 0) for key in DAEMON_ERROR_KEYS)
        return result

    async def _stop_profiler(self) -> None:
        if self.profiler is not None:
            self.profiler.signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            if await self.profiler.wait(30) is None:
                await self.profiler.stop(5)
            self.profiler = None

    async def _teardown(self) -> None:
        await self._stop_profiler()
        if self.daemon is not None:
            if self.backend is not None:
                # Wakes parked polls for a quick exit; if the emulator is gone, the plain stop below runs.
                with contextlib.suppress(Exception):
                    await self._stop_daemon(self.backend)
            if self.daemon is not None:
                await self.daemon.stop(10)
                self.daemon = None
        if self.worker is not None:
            await self.worker.close()
            self.worker = None
        if self.backend is not None:
            await self.backend.close()
            self.backend = None


def _rate(scenario: Scenario, stats: dict[str, Any], delivered: int, wall_started: float) -> float | None:
    """msgs/s from the first delivery to the last job done (None for the idle and slow-job scenarios)."""
    if scenario.kind in ("idle", "slow"):
        return None
    if delivered == 0:
        return 0.0
    # From the first arrival to the last job *finished*: N jobs on C connections cannot finish sooner
    # than N x mean / C, so the rate can never exceed the limit because of the initial burst.
    first = stats.get("first_at") or wall_started
    last = max(v for v in (stats.get("last_done_at"), stats.get("last_new_at"), first) if v is not None)
    return round(delivered / max(last - first, 1e-3), 1)


def _machine_cpu(window: Window) -> float | None:
    """Busy CPU of the whole machine over the window, in % of one core (200 = both cores of 2)."""
    now = read_machine_cpu()
    if window.machine is None or now is None:
        return None
    busy = now[0] - window.machine[0]
    span = (now[1] - window.machine[1]) / (os.cpu_count() or 1)
    return round(100 * busy / span, 1) if span > 0 else None


def _foreign(out: dict[str, Any]) -> float | None:
    """Machine CPU not used by the benchmark's own processes (other people's work: noise)."""
    machine = out.get("machine_cpu_pct")
    if machine is None:
        return None
    ours = float(out.get("daemon_cpu_pct") or 0)
    ours += sum(float(v or 0) for v in (out.get("other_cpu_pct") or {}).values())
    return round(max(float(machine) - ours, 0.0), 1)


def _cpu(window: Window, end: ProcSample | None, elapsed: float, delivered: int) -> dict[str, Any]:
    if window.daemon is None or end is None:
        return {"daemon_cpu_s": None, "daemon_cpu_us_per_msg": None, "daemon_cpu_pct": None}
    cpu = end.cpu_s - window.daemon.cpu_s
    return {
        "daemon_cpu_s": round(cpu, 3),
        "daemon_cpu_us_per_msg": round(cpu / delivered * 1e6, 1) if delivered else None,
        "daemon_cpu_pct": round(100 * cpu / elapsed, 1) if elapsed else None,
    }


def _sqs(counters: dict[str, Any] | None, delivered: int, elapsed: float, receivers: int) -> dict[str, Any]:
    if counters is None:
        return {"sqs_calls": None, "sqs_calls_per_msg": None, "sqs_errors": None}
    ops: dict[str, dict[str, int]] = counters.get("operations", {})
    calls = {name: op["calls"] for name, op in ops.items()}
    total = sum(calls.values())
    out: dict[str, Any] = {
        "sqs_calls": {**calls, "total": total},
        "sqs_calls_per_msg": (
            {
                **{name: round(n / delivered, 4) for name, n in calls.items()},
                "total": round(total / delivered, 4),
            }
            if delivered
            else None
        ),
        "sqs_errors": sum(op.get("errors", 0) for op in ops.values()),
        "sqs_calls_per_min": round(total * 60 / elapsed, 1) if elapsed else None,
        "receivers_assumed": receivers,
        "receive_calls_per_receiver_per_min": (
            round(calls.get("ReceiveMessage", 0) * 60 / elapsed / receivers, 2) if elapsed else None
        ),
        "emulator_totals": counters.get("totals"),
    }
    return out


def with_overrides(
    scenario: Scenario, messages: int | None, connections: int | None, target_depth: int | None = None
) -> Scenario:
    """Apply ``--messages`` / ``--connections`` / ``--target-depth`` where they make sense."""
    changes: dict[str, Any] = {}
    if target_depth is not None and scenario.kind == "drain":
        changes["target_depth"] = target_depth
    if messages is not None and scenario.kind in ("drain", "slow"):
        changes["messages"] = messages
    if connections is not None:
        changes["connections"] = connections
    return replace(scenario, **changes) if changes else scenario
