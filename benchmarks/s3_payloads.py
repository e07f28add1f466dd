"""S3 payloads (``resolve_s3_pointers``): the daemon's memory while it streams a large object, and
the throughput of 1 MiB payloads.

    .venv/bin/python -m benchmarks.s3_payloads                    # S3 on moto_server (the default)
    .venv/bin/python -m benchmarks.s3_payloads --s3 emulator      # S3 of asqsd's emulator

The SQS emulator, the S3 server and the daemon (``python -m asqsd run --resolve-s3-pointers``) run
as subprocesses on 127.0.0.1; a sink worker runs here: it reads each body to its end, hashes it and
answers 200 (nothing is kept). Two phases on one daemon:

1. **Memory.** The daemon's idle VmRSS (median of 20 samples, 100 ms apart, after the start), then
   one pointer to a ``--big-mib`` (50) MiB object; VmRSS is sampled every 5 ms while it streams and
   VmHWM read after. The rise (the higher of the two peaks, minus idle) must stay within
   ``--rss-budget-mib`` (16); the exit status says whether it did.
2. **Throughput.** ``--count`` (200) pointers to distinct ``--small-mib`` (1) MiB objects are
   preloaded at once; msgs/s and MiB/s from the first body's arrival to the last body's end at the
   sink, with ``--connections`` (10) worker connections, and the daemon's CPU per message.

The report is JSON on stdout; ``--out`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.backends import EmulatorBackend
from benchmarks.harness import ManagedProcess, read_proc
from benchmarks.scenarios import ROOT, Settings, child_env

MIB = 1024 * 1024
BUCKET = "bench-payloads"
POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"


# --- the sink worker -----------------------------------------------------------------------------
@dataclass(slots=True)
class Body:
    """One request the sink read to its end."""

    size: int
    sha256: str
    arrived: float
    finished: float


@dataclass(slots=True)
class Sink:
    """Bodies the sink read, and an event per new one."""

    bodies: list[Body] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, count: int, limit_s: float) -> None:
        """Until ``count`` bodies were read; TimeoutError after ``limit_s``."""
        async with asyncio.timeout(limit_s):
            while len(self.bodies) < count:
                self.changed.clear()
                await self.changed.wait()


class _SinkProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive: read the head, then exactly Content-Length bytes, hash, answer 200."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._left = -1  # body bytes still to read; -1 while reading a head
        self._hash = hashlib.sha256()
        self._size = 0
        self._arrived = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        while data:
            if self._left < 0:
                data = self._read_head(data)
                continue
            piece, data = data[: self._left], data[self._left :]
            self._hash.update(piece)
            self._left -= len(piece)
            if self._left == 0:
                self._finish()

    def _read_head(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            return b""
        head, rest = self._head[:end], self._head[end + 4 :]
        self._head = b""
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        self._left, self._size, self._hash, self._arrived = length, length, hashlib.sha256(), time.monotonic()
        if length == 0:
            self._finish()
        return rest

    def _finish(self) -> None:
        self._left = -1
        self._sink.bodies.append(Body(self._size, self._hash.hexdigest(), self._arrived, time.monotonic()))
        self._sink.changed.set()
        assert self._transport is not None
        self._transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


@contextlib.asynccontextmanager
async def sink_server() -> AsyncIterator[tuple[Sink, int]]:
    """The sink on 127.0.0.1 (a free port)."""
    sink = Sink()
    server = await asyncio.get_running_loop().create_server(lambda: _SinkProtocol(sink), "127.0.0.1", 0)
    try:
        yield sink, int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


# --- S3 servers ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_moto(log_dir: Path, env: dict[str, str]) -> tuple[ManagedProcess, str]:
    """moto_server (S3 path-style on the same port) on 127.0.0.1."""
    command = Path(sys.executable).parent / "moto_server"
    port = _free_port()
    process = ManagedProcess("moto", [str(command), "-H", "127.0.0.1", "-p", str(port)], log_dir, env=env)
    await process.wait_for_output(r"Running on", limit_s=30, stream="stderr")
    return process, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def s3_client(endpoint: str) -> AsyncIterator[Any]:
    import aiobotocore.session
    from botocore.config import Config

    session = aiobotocore.session.get_session()
    config = Config(s3={"addressing_style": "path"}, read_timeout=120)
    async with session.create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 - a dummy for loopback servers
        config=config,
    ) as s3:
        yield s3


def pointer(key: str) -> str:
    return json.dumps([POINTER_CLASS, {"s3BucketName": BUCKET, "s3Key": key}])


def size_attribute(size: int) -> dict[str, dict[str, str]]:
    return {"ExtendedPayloadSize": {"DataType": "Number", "StringValue": str(size)}}


# --- the run ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Options:
    s3: str = "moto"
    big_mib: int = 50
    small_mib: int = 1
    count: int = 200
    connections: int = 10
    rss_budget_mib: float = 16.0


async def sample_rss(pid: int, until: asyncio.Event, interval_s: float) -> list[int]:
    """VmRSS (KiB) every ``interval_s`` until ``until`` is set."""
    samples: list[int] = []
    while not until.is_set():
        sample = read_proc(pid)
        if sample is None:
            break
        samples.append(sample.rss_kb)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), interval_s)
    return samples


async def memory_phase(
    opts: Options, daemon: ManagedProcess, sink: Sink, sqs: EmulatorBackend, s3: Any
) -> dict[str, Any]:
    idle = []
    for _ in range(20):
        sample = read_proc(daemon.pid)
        assert sample is not None, "the daemon exited"
        idle.append(sample.rss_kb)
        await asyncio.sleep(0.1)
    before = read_proc(daemon.pid)
    assert before is not None
    payload = os.urandom(opts.big_mib * MIB)
    await s3.put_object(Bucket=BUCKET, Key="big", Body=payload)
    digest = hashlib.sha256(payload).hexdigest()
    del payload
    done = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(daemon.pid, done, 0.005))
    started = time.monotonic()
    await sqs._admin(
        "POST",
        f"/queues/{sqs.queue}/preload",
        {"count": 1, "body": pointer("big"), "message_attributes": size_attribute(opts.big_mib * MIB)},
    )
    await sink.wait_for(1, limit_s=120)
    elapsed = time.monotonic() - started
    done.set()
    during = await sampler
    after = read_proc(daemon.pid)
    assert after is not None
    idle_kb = int(statistics.median(idle))
    peak_kb = max(during, default=0)
    hwm_kb = after.hwm_kb if after.hwm_kb > before.hwm_kb else 0  # a new high-water mark, or none
    rise_mib = (max(peak_kb, hwm_kb) - idle_kb) / 1024
    body = sink.bodies[0]
    return {
        "object_mib": opts.big_mib,
        "intact": body.sha256 == digest and body.size == opts.big_mib * MIB,
        "idle_rss_mib": round(idle_kb / 1024, 1),
        "peak_rss_sampled_mib": round(peak_kb / 1024, 1),
        "hwm_before_mib": round(before.hwm_kb / 1024, 1),
        "hwm_after_mib": round(after.hwm_kb / 1024, 1),
        "samples": len(during),
        "rise_mib": round(rise_mib, 1),
        "budget_mib": opts.rss_budget_mib,
        "within_budget": rise_mib <= opts.rss_budget_mib,
        "seconds_pointer_to_body_end": round(elapsed, 2),
    }


async def throughput_phase(
    opts: Options, daemon: ManagedProcess, sink: Sink, sqs: EmulatorBackend, s3: Any
) -> dict[str, Any]:
    size = opts.small_mib * MIB
    data = os.urandom(size)
    for i in range(opts.count):
        await s3.put_object(Bucket=BUCKET, Key=f"small/{i}", Body=data)
    already = len(sink.bodies)
    cpu_before = read_proc(daemon.pid)
    await sqs._admin(
        "POST",
        f"/queues/{sqs.queue}/preload",
        {"count": opts.count, "body": pointer("small/{i}"), "message_attributes": size_attribute(size)},
    )
    await sink.wait_for(already + opts.count, limit_s=600)
    cpu_after = read_proc(daemon.pid)
    assert cpu_before is not None and cpu_after is not None
    bodies = sink.bodies[already:]
    digest = hashlib.sha256(data).hexdigest()
    span = max(b.finished for b in bodies) - min(b.arrived for b in bodies)
    return {
        "payload_mib": opts.small_mib,
        "messages": opts.count,
        "connections": opts.connections,
        "intact": all(b.sha256 == digest and b.size == size for b in bodies),
        "msgs_per_s": round(opts.count / span, 1),
        "mib_per_s": round(opts.count * opts.small_mib / span, 1),
        "daemon_cpu_ms_per_msg": round((cpu_after.cpu_s - cpu_before.cpu_s) / opts.count * 1000, 2),
        "daemon_peak_rss_mib": round(cpu_after.hwm_kb / 1024, 1),
    }


async def run(opts: Options, log_dir: Path) -> dict[str, Any]:
    env = child_env(Settings(), None)
    sqs = await EmulatorBackend.start(log_dir, env, queue="payloads")
    moto: ManagedProcess | None = None
    daemon: ManagedProcess | None = None
    try:
        if opts.s3 == "moto":
            moto, s3_endpoint = await start_moto(log_dir, env)
        else:
            s3_endpoint = sqs.endpoint
        async with sink_server() as (sink, port), s3_client(s3_endpoint) as s3:
            await s3.create_bucket(Bucket=BUCKET)
            argv = [
                sys.executable, "-m", "asqsd", "run", "--queue-url", sqs.queue_url,
                "--endpoint-url", sqs.endpoint, "--region", "us-east-1", "--http-url", "http://127.0.0.1",
                "--http-port", str(port), "--http-connections", str(opts.connections),
                "--resolve-s3-pointers", "--log-format", "json",
                "--wait-time-s", "2",  # a short long poll: the stop waits for it
            ]  # fmt: skip
            daemon_env = {**env, "AWS_ENDPOINT_URL_S3": s3_endpoint}
            daemon = ManagedProcess("daemon", argv, log_dir, env=daemon_env, cwd=ROOT)
            await daemon.wait_for_output(r'"event": ?"started"', limit_s=60, stream="stderr")
            await asyncio.sleep(1.0)  # receivers parked in their long polls: the idle state
            memory = await memory_phase(opts, daemon, sink, sqs, s3)
            throughput = await throughput_phase(opts, daemon, sink, sqs, s3)
        return {"s3": opts.s3, "memory": memory, "throughput": throughput, "log_dir": str(log_dir)}
    finally:
        if daemon is not None:
            await daemon.stop(15)
        if moto is not None:
            await moto.stop(10)
        await sqs.close()


def parse_args(argv: Sequence[str] | None) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.s3_payloads", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--s3", choices=("moto", "emulator"), default="moto")
    parser.add_argument("--big-mib", type=int, default=50)
    parser.add_argument("--small-mib", type=int, default=1)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--rss-budget-mib", type=float, default=16.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    opts = Options(args.s3, args.big_mib, args.small_mib, args.count, args.connections, args.rss_budget_mib)
    return opts, args.out


def main(argv: Sequence[str] | None = None) -> int:
    opts, out = parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="asqsd-s3-bench-"))
    print(f"logs in {log_dir}", file=sys.stderr)
    report = asyncio.run(run(opts, log_dir))
    text = json.dumps(report, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    ok = report["memory"]["within_budget"] and report["memory"]["intact"] and report["throughput"]["intact"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
