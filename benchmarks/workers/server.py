"""The benchmark worker: an HTTP server (+uvloop) that answers every POST with 200.

    python -m benchmarks.workers.server --port 0 --latency fixed:20ms --ready-file /tmp/worker.json

``--server lean`` (the default, :mod:`benchmarks.workers.lean`) is a raw asyncio HTTP/1.1 protocol
whose job timers fire within microseconds of the deadline; ``--server aiohttp`` is the aiohttp app
below, kept for comparison (its ``asyncio.sleep`` overshoots 20 ms jobs by 0.4-0.7 ms).

``--latency`` is ``none`` (answer at once), ``fixed:20ms`` or ``lognormal:median=10ms,p99=200ms`` (a
seeded log-normal, so runs draw the same job mix).  Per POST it records the arrival time, the
end-to-end latency (arrival minus the ``sent_at`` epoch seconds in a JSON body, when present) and how
many times each ``X-Aws-Sqsd-Msgid`` arrived.  ``GET /stats`` returns the counts (``?full=1`` adds
latency percentiles), ``POST /reset`` clears them.  Once listening it writes ``{"port": P, "pid": N}``
to the ready file (atomically) and prints the same line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aiohttp import web

MSGID_HEADER = "X-Aws-Sqsd-Msgid"
_Z99 = 2.3263478740408408  # standard normal quantile for p = 0.99
_UNITS = MappingProxyType({"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0})


def parse_duration(text: str) -> float:
    """``20ms`` / ``1.5s`` / ``300us`` → seconds (a bare number is seconds)."""
    text = text.strip()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * _UNITS[unit]
    return float(text)


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """How long the worker takes per job: ``none``, ``fixed`` or ``lognormal`` (seconds)."""

    kind: str
    fixed_s: float = 0.0
    mu: float = 0.0
    sigma: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> LatencyModel:
        """Parse ``none`` | ``fixed:20ms`` | ``lognormal:median=10ms,p99=200ms``."""
        kind, _, rest = spec.strip().partition(":")
        if kind == "none":
            return cls("none")
        if kind == "fixed":
            return cls("fixed", fixed_s=parse_duration(rest))
        if kind == "lognormal":
            params = dict(part.split("=", 1) for part in rest.split(",") if part)
            median = parse_duration(params["median"])
            p99 = parse_duration(params["p99"])
            if not 0 < median < p99:
                raise ValueError("lognormal needs 0 < median < p99")
            return cls("lognormal", mu=math.log(median), sigma=math.log(p99 / median) / _Z99)
        raise ValueError(f"unknown latency model {spec!r}")

    @property
    def mean_s(self) -> float:
        """Expected job duration (the analytic mean)."""
        if self.kind == "fixed":
            return self.fixed_s
        if self.kind == "lognormal":
            return math.exp(self.mu + self.sigma**2 / 2)
        return 0.0

    def sampler(self, seed: int) -> Sampler:
        """A seeded source of job durations for this model."""
        return Sampler(self, random.Random(seed))


class Sampler:
    """Draws job durations from a :class:`LatencyModel` and keeps their running sum."""

    def __init__(self, model: LatencyModel, rng: random.Random) -> None:
        self.model = model
        self._rng = rng
        self.drawn = 0
        self.total_s = 0.0

    def draw(self) -> float:
        model = self.model
        if model.kind == "fixed":
            value = model.fixed_s
        elif model.kind == "lognormal":
            value = self._rng.lognormvariate(model.mu, model.sigma)
        else:
            return 0.0
        self.drawn += 1
        self.total_s += value
        return value


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


STEADY_FROM, STEADY_TO = 0.10, 0.90  # the steady-state window: arrivals of the 10th to the 90th percentile


class DeliveryStats:
    """What the worker saw: deliveries per message id, arrival times, job intervals and latencies.

    Times are ``time.time()`` seconds (the harness and the message bodies use the same clock).
    """

    def __init__(self) -> None:
        self.requests = 0
        self.counts: dict[str, int] = {}
        self.latencies: list[float] = []
        self.arrivals: list[float] = []  # first delivery of each message id, in arrival order
        self.jobs: list[tuple[float, float]] = []  # (start, end) of every answered job
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.last_new_at: float | None = None
        self.last_done_at: float | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.no_msgid = 0
        self.peers: dict[object, float] = {}  # client (host, port) → when its last response was sent
        self.gaps: list[float] = []  # per connection: last response sent → next request in

    def record(self, msg_id: str | None, body: bytes, now: float) -> None:
        self.requests += 1
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        if msg_id is None:
            self.no_msgid += 1
            return
        seen = self.counts.get(msg_id, 0)
        self.counts[msg_id] = seen + 1
        if seen:
            return
        self.last_new_at = now
        self.arrivals.append(now)
        sent_at = _sent_at(body)
        if sent_at is not None:
            self.latencies.append(now - sent_at)

    def job_started(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def job_done(self, started: float, ended: float) -> None:
        self.in_flight -= 1
        self.jobs.append((started, ended))
        self.last_done_at = ended

    def steady(self) -> dict[str, float | None]:
        """Rate and mean jobs in progress between the 10th and 90th percentile arrivals.

        This leaves out the start (every connection gets a message at once) and the drain at the end
        (the last long jobs run while the others have nothing left to do).
        """
        n = len(self.arrivals)
        lo, hi = int(n * STEADY_FROM), int(n * STEADY_TO) - 1
        if n < 20 or hi <= lo:
            return {"rate": None, "mean_in_flight": None, "from": None, "to": None}
        t_lo, t_hi = self.arrivals[lo], self.arrivals[hi]
        span = t_hi - t_lo
        if span <= 0:
            return {"rate": None, "mean_in_flight": None, "from": t_lo, "to": t_hi}
        busy = sum(max(0.0, min(end, t_hi) - max(start, t_lo)) for start, end in self.jobs)
        return {"rate": (hi - lo) / span, "mean_in_flight": busy / span, "from": t_lo, "to": t_hi}

    def snapshot(self, full: bool) -> dict[str, Any]:
        unique = len(self.counts)
        completed = len(self.jobs)
        out: dict[str, Any] = {
            "requests": self.requests,
            "unique": unique,
            "duplicates": self.requests - self.no_msgid - unique,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "last_new_at": self.last_new_at,
            "completed": completed,
            "last_done_at": self.last_done_at,
            "connections_seen": len(self.peers),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "no_msgid": self.no_msgid,
        }
        if not full:
            return out
        steady = self.steady()
        service = sum(end - start for start, end in self.jobs)
        out.update(
            duplicated_ids=sum(1 for n in self.counts.values() if n > 1),
            steady_rate=None if steady["rate"] is None else round(steady["rate"], 1),
            steady_mean_in_flight=(
                None if steady["mean_in_flight"] is None else round(steady["mean_in_flight"], 3)
            ),
            steady_window=[steady["from"], steady["to"]],
            service_mean_ms=round(service / completed * 1000, 4) if completed else None,
            idle_gap_ms=_summary(self.gaps),
            latency_ms={**_summary(self.latencies), "max": _ms(max(self.latencies, default=None))},
        )
        return out


def _summary(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50": _ms(percentile(ordered, 50)),
        "p90": _ms(percentile(ordered, 90)),
        "p99": _ms(percentile(ordered, 99)),
        "mean": _ms(sum(ordered) / len(ordered) if ordered else None),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _sent_at(body: bytes) -> float | None:
    if not body.startswith(b"{"):
        return None
    try:
        value = json.loads(body).get("sent_at")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


class Worker:
    """The aiohttp application: ``POST /*`` (jobs), ``GET /stats``, ``POST /reset``."""

    def __init__(self, model: LatencyModel, seed: int) -> None:
        self.model = model
        self.seed = seed
        self.stats = DeliveryStats()
        self.sampler = model.sampler(seed)

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=2 * 1024 * 1024)
        app.router.add_get("/stats", self.get_stats)
        app.router.add_post("/reset", self.reset)
        app.router.add_post("/{tail:.*}", self.job)
        return app

    async def job(self, request: web.Request) -> web.Response:
        stats = self.stats
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        arrived = time.time()
        last = stats.peers.get(peer)
        if last:
            stats.gaps.append(arrived - last)
        stats.peers[peer] = 0.0
        body = await request.read()
        stats.record(request.headers.get(MSGID_HEADER), body, arrived)
        delay = self.sampler.draw()
        stats.job_started()
        started = time.time()
        try:
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            ended = time.time()
            stats.job_done(started, ended)
        # The response goes out right after this returns: close enough for gaps of 0.1 ms and more.
        stats.peers[peer] = ended
        return web.Response(status=200)

    async def get_stats(self, request: web.Request) -> web.Response:
        payload = self.stats.snapshot(request.query.get("full") == "1")
        payload["latency_model"] = {
            "kind": self.model.kind,
            "analytic_mean_ms": round(self.model.mean_s * 1000, 4),
            "drawn": self.sampler.drawn,
            "drawn_mean_ms": (
                round(self.sampler.total_s / self.sampler.drawn * 1000, 4) if self.sampler.drawn else None
            ),
        }
        return web.json_response(payload)

    async def reset(self, request: web.Request) -> web.Response:
        self.stats = DeliveryStats()
        self.sampler = self.model.sampler(self.seed)
        return web.json_response({"reset": True})


def _write_ready(path: Path | None, payload: dict[str, Any]) -> None:
    line = json.dumps(payload)
    if path is not None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(line)
        os.replace(tmp, path)
    print(line, flush=True)


async def serve(args: argparse.Namespace) -> None:
    model = LatencyModel.parse(args.latency)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = int(sock.getsockname()[1])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if args.server == "aiohttp":
        runner = web.AppRunner(Worker(model, args.seed).build_app(), access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock, backlog=1024).start()
        _write_ready(args.ready_file, {"port": port, "pid": os.getpid(), "server": "aiohttp"})
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
        return
    from benchmarks.workers.lean import start_lean_server  # imports this module: import late

    server, state = await start_lean_server(model, args.seed, sock)
    _write_ready(
        args.ready_file,
        {"port": port, "pid": os.getpid(), "server": "lean", "precise_timers": state.timers.precise},
    )
    try:
        await stop.wait()
    finally:
        server.close()
        state.timers.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workers.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--latency", default="none", help="none | fixed:20ms | lognormal:median=10ms,p99=200ms"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the latency draws")
    parser.add_argument(
        "--server",
        choices=("lean", "aiohttp"),
        default="lean",
        help="lean: raw asyncio HTTP/1.1 with timerfd job timers (default); aiohttp: the aiohttp app",
    )
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="uvloop", help="the worker's event loop"
    )
    parser.add_argument("--ready-file", type=Path, default=None, help="where to write {port, pid}")
    args = parser.parse_args(argv)
    LatencyModel.parse(args.latency)  # fail early on a bad spec
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    loop_factory = None
    if args.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
