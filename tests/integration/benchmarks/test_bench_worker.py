"""The benchmark worker's lean server over real HTTP on 127.0.0.1: jobs, stats, reset, bad input.

Both the daemon's own worker client and aiohttp talk to it, so it is checked against two independent
HTTP/1.1 implementations.  Nothing here depends on speed: the only timing check is a lower bound
(a job is not answered before its duration).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from benchmarks.worker import LatencyModel
from benchmarks.worker_lean import PreciseTimers, WorkerState, start_lean_server

from asqsd.headers import Request
from asqsd.http1 import LeanWorkerClient


async def _serve(latency: str) -> tuple[asyncio.AbstractServer, WorkerState, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server, state = await start_lean_server(LatencyModel.parse(latency), 1, sock)
    return server, state, port


@pytest.fixture
async def null_worker() -> AsyncIterator[tuple[WorkerState, int]]:
    server, state, port = await _serve("none")
    yield state, port
    server.close()
    state.timers.close()


async def test_jobs_are_answered_200_and_counted_per_message_id(null_worker: tuple[WorkerState, int]) -> None:
    state, port = null_worker
    client = LeanWorkerClient(f"http://127.0.0.1:{port}", 5, 10, 4)
    try:
        bodies = [json.dumps({"sent_at": time.time(), "n": i}).encode() for i in range(20)]
        results = await asyncio.gather(
            *(
                client.post(Request("/", body, {"X-Aws-Sqsd-Msgid": f"m{i % 10}"}))
                for i, body in enumerate(bodies)
            )
        )
    finally:
        await client.close()
    assert {r.status for r in results} == {200}
    url = f"http://127.0.0.1:{port}/stats?full=1"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        stats = await resp.json()
    assert (stats["requests"], stats["unique"], stats["duplicates"]) == (20, 10, 10)
    assert stats["latency_ms"]["count"] == 10  # first deliveries with a sent_at
    assert stats["connections_seen"] <= 5  # at most the client's 4, plus this stats request
    assert state.stats.requests == 20


async def test_reset_clears_the_counts(null_worker: tuple[WorkerState, int]) -> None:
    _, port = null_worker
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/any/path", data=b"x", headers={"X-Aws-Sqsd-Msgid": "a"}) as resp:
            assert resp.status == 200
        async with session.post(f"{base}/reset") as resp:
            assert await resp.json() == {"reset": True}
        async with session.get(f"{base}/stats") as resp:
            stats = await resp.json()
    assert stats["requests"] == 0


async def test_pipelined_requests_are_answered_in_order(null_worker: tuple[WorkerState, int]) -> None:
    _, port = null_worker
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    one = b"POST /a HTTP/1.1\r\nX-Aws-Sqsd-Msgid: p1\r\nContent-Length: 1\r\n\r\nx"
    two = b"GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n"
    writer.write(one + two)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=5)  # the server closes after the second
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert b'"requests": 1' in data


async def test_a_malformed_request_gets_400_and_the_connection_closes(
    null_worker: tuple[WorkerState, int],
) -> None:
    _, port = null_worker
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 400 ")
    assert b"Content-Length" in data and b"Connection: close" in data


async def test_a_fixed_latency_job_is_not_answered_before_its_duration() -> None:
    server, state, port = await _serve("fixed:200ms")
    client = LeanWorkerClient(f"http://127.0.0.1:{port}", 5, 10, 2)
    try:
        started = time.monotonic()
        result = await client.post(Request("/", b"{}", {"X-Aws-Sqsd-Msgid": "slow"}))
        elapsed = time.monotonic() - started
        payload = state.stats_payload(full=True)
    finally:
        await client.close()
        server.close()
        state.timers.close()
    assert result.status == 200
    assert elapsed >= 0.2 - PreciseTimers.TOLERANCE_S
    assert payload["completed"] == 1
    assert payload["service_mean_ms"] >= 200 - PreciseTimers.TOLERANCE_S * 1000
    assert payload["latency_model"]["precise_timers"] is True  # Linux: the timerfd path ran
