"""LeanWorkerClient against real servers on 127.0.0.1: an aiohttp worker and scripted raw servers.

Every scenario is an ``async def test_*`` without fixtures, so it runs once on the default asyncio
loop (pytest-asyncio) and once more on uvloop (``test_scenario_on_uvloop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import inspect
import ipaddress
import select
import socket
import ssl
import struct
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiohttp import web

from asqsd.clients.worker.aiohttp_impl import WorkerClient, create_session
from asqsd.clients.worker.base import Request
from asqsd.clients.worker.lean_impl import LeanWorkerClient
from asqsd.message import Message, MessageAttribute
from asqsd.pipeline.request import StaticHeaders, build_request
from tests.component.pipeline import test_delivery, test_outcomes
from tests.support.polling import wait_until
from tests.support.servers import free_loopback_port
from tests.support.worker import Delivery, RecordingWorker, recording_worker

HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "aws-sqsd/3.0.4",
    "Accept-Encoding": "gzip, compressed",
    "X-Aws-Sqsd-Msgid": "5fea7756-0ea4-451a-a703-a558b933e274",
}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def request(path: str = "/", body: bytes = b'{"job": 1}', headers: dict[str, str] | None = None) -> Request:
    return Request(path, body, dict(HEADERS if headers is None else headers))


def lean(port: int, *, connections: int = 4, inactivity_s: float = 5.0, **kw: Any) -> LeanWorkerClient:
    return LeanWorkerClient(f"http://127.0.0.1:{port}", 1.0, inactivity_s, connections, **kw)


# --- servers ---------------------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request a RawServer received, and the stream to answer it on."""

    connection: int  # accept order, from 0
    number: int  # request number on that connection, from 0
    request: bytes
    writer: asyncio.StreamWriter


Script = Callable[[Exchange], Awaitable[bool]]  # answer; False closes the connection


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request (head + Content-Length body), or None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


@dataclass
class RawServer:
    """An asyncio server whose answers are scripted byte for byte; counts connections and EOFs."""

    script: Script
    ssl_context: ssl.SSLContext | None = None
    accepted: int = 0
    eofs: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection, self.accepted = self.accepted, self.accepted + 1
        try:
            for number in range(1_000_000):
                raw = await read_request(reader)
                if raw is None:
                    self.eofs += 1
                    return
                self.requests.append(raw)
                if not await self.script(Exchange(connection, number, raw, writer)):
                    return
        except ConnectionError:
            pass
        finally:
            writer.close()


async def answer(exchange: Exchange, *pieces: bytes) -> bool:
    """Write the pieces one by one (separate sends), keep the connection."""
    for piece in pieces:
        exchange.writer.write(piece)
        await exchange.writer.drain()
    return True


async def answer_ok(exchange: Exchange) -> bool:
    return await answer(exchange, OK)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextlib.contextmanager
def full_backlog_listener() -> Iterator[int]:
    """A port whose accept queue is full (listen(0), never accepted): new SYNs are dropped."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(16):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            filler.connect_ex(address)
            # A connect that does not complete within the deadline is one whose SYN was dropped.
            _, writable, _ = select.select([], [filler], [], 0.3)
            if not writable:
                break
        else:
            pytest.skip("the kernel kept accepting connections: cannot fill the backlog")
        yield address[1]
    finally:
        for sock in [*fillers, listener]:
            sock.close()


# --- statuses, Retry-After, timeouts (aiohttp worker) ---------------------------------------------


async def test_statuses_retry_after_and_keep_alive() -> None:
    """200/500/204 come back as statuses; Retry-After is read for 429/503 only; one connection."""
    future = email.utils.format_datetime(
        datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=60), usegmt=True
    )
    answers = {
        "/200": (200, {}),
        "/500": (500, {"Retry-After": "9"}),
        "/204": (204, {}),
        "/503": (503, {"Retry-After": "7"}),
        "/429": (429, {"Retry-After": future}),
        "/429bad": (429, {"Retry-After": "soon"}),
    }

    async def handler(request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        status, headers = answers[request.path]
        return web.Response(status=status, headers=headers, body=b"" if status == 204 else b"x" * 100)

    async with recording_worker(handler) as worker, lean(worker.port) as client:
        results = {path: await client.post(request(path)) for path in answers}
        assert client.open_connections == 1
    assert {path: r.status for path, r in results.items()} == {p: s for p, (s, _) in answers.items()}
    assert all(r.error is None and r.stale_resends == 0 for r in results.values())
    assert results["/500"].retry_after_s is None
    assert results["/503"].retry_after_s == 7
    assert 55 <= (results["/429"].retry_after_s or 0) <= 61
    assert results["/429bad"].retry_after_s is None
    assert results["/200"].retry_after_s is None


async def test_trickling_body_longer_than_inactivity_timeout_succeeds() -> None:
    """A chunk every 0.3 s for 2.4 s keeps a 1 s idle timer from firing: inactivity, not total."""

    async def trickle(request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        for _ in range(8):
            await asyncio.sleep(0.3)
            await response.write(b"tick\n")
        await response.write_eof()
        return response

    async with recording_worker(trickle) as worker, lean(worker.port, inactivity_s=1.0) as client:
        result = await client.post(request())
    assert (result.status, result.error) == (200, None)
    assert result.elapsed_s >= 2.3


async def test_silent_worker_hits_inactivity_timeout() -> None:
    """No response bytes for inactivity_timeout: a failure, and that connection is closed."""
    release = asyncio.Event()

    async def silent(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await release.wait()
        return web.Response(status=200)

    async with recording_worker(silent) as worker:
        async with lean(worker.port, inactivity_s=0.5) as client:
            started = time.monotonic()
            result = await client.post(request())
            assert (result.status, result.error) == (None, "inactivity timeout")
            assert 0.45 <= time.monotonic() - started < 3
            assert client.open_connections == 0
        release.set()


async def test_inactivity_timer_spans_keep_alive_requests() -> None:
    """The per-connection timer armed by an earlier request re-arms for a later slow one."""
    delays = iter([0.0, 0.35, 0.35, 0.0])

    async def slowish(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        await asyncio.sleep(next(delays))
        return web.Response(status=200)

    async with recording_worker(slowish) as worker, lean(worker.port, inactivity_s=0.6) as client:
        results = [await client.post(request()) for _ in range(4)]
        assert client.open_connections == 1
    assert [r.status for r in results] == [200, 200, 200, 200]


# --- framing and connection reuse (raw servers) ------------------------------------------------


async def test_chunked_response_with_trailers_keeps_the_connection() -> None:
    async def chunked(exchange: Exchange) -> bool:
        return await answer(
            exchange,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5;ext=1\r\nhel",
            b"lo\r\n1",
            b"0\r\n" + b"0123456789abcdef" + b"\r\n0\r\nX-Trailer: yes\r",
            b"\n\r\n",
        )

    async with RawServer(chunked) as server, lean(server.port) as client:
        results = [await client.post(request()) for _ in range(3)]
    assert [(r.status, r.error) for r in results] == [(200, None)] * 3
    assert server.accepted == 1


async def test_http10_response_is_not_reused_unless_keep_alive() -> None:
    async def http10(exchange: Exchange) -> bool:
        if exchange.request.startswith(b"POST /ka "):
            return await answer(
                exchange, b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
            )
        return await answer(exchange, b"HTTP/1.0 201 Created\r\nContent-Length: 0\r\n\r\n")

    async with RawServer(http10) as server, lean(server.port) as client:
        first = await client.post(request())
        await wait_until(lambda: server.eofs == 1, what="the client closing the HTTP/1.0 connection")
        second = await client.post(request("/ka"))
        third = await client.post(request("/ka"))
    assert [first.status, second.status, third.status] == [201, 200, 200]
    assert server.accepted == 2


async def test_http10_body_delimited_by_close() -> None:
    async def until_close(exchange: Exchange) -> bool:
        await answer(exchange, b"HTTP/1.0 200 OK\r\n\r\n", b"the body ends ", b"when the server closes")
        return False

    async with RawServer(until_close) as server, lean(server.port) as client:
        results = [await client.post(request()) for _ in range(2)]
    assert [(r.status, r.error, r.stale_resends) for r in results] == [(200, None, 0)] * 2
    assert server.accepted == 2


async def test_connection_close_is_honoured() -> None:
    """``Connection: close`` from a server that then keeps the socket open: the client closes it."""

    async def close_header(exchange: Exchange) -> bool:
        return await answer(exchange, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")

    async with RawServer(close_header) as server, lean(server.port) as client:
        results = [await client.post(request()) for _ in range(3)]
        await wait_until(lambda: server.eofs == 3, what="three client closes")
    assert [(r.status, r.stale_resends) for r in results] == [(200, 0)] * 3
    assert server.accepted == 3


async def test_unsolicited_bytes_after_a_response_prevent_reuse() -> None:
    async def extra(exchange: Exchange) -> bool:
        return await answer(exchange, OK + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    async with RawServer(extra) as server, lean(server.port) as client:
        results = [await client.post(request()) for _ in range(2)]
    assert [r.status for r in results] == [200, 200]
    assert server.accepted == 2


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_reused_connection_closed_after_reading_the_request_is_a_failure_not_a_resend(how: str) -> None:
    """The worker reads the request on a kept-alive connection, then closes or resets it: it may
    have done the work, so the request is not sent again at once; the caller's retry path decides."""

    async def stale(exchange: Exchange) -> bool:
        if exchange.connection == 0 and exchange.number == 1:
            if how == "rst":
                reset(exchange.writer)
            return False
        return await answer_ok(exchange)

    async with RawServer(stale) as server, lean(server.port) as client:
        first = await client.post(request())
        second = await client.post(request())
    assert (first.status, first.stale_resends) == (200, 0)
    assert (second.status, second.stale_resends) == (None, 0)
    expected = "server disconnected" if how == "fin" else "connection lost: "
    assert second.error is not None and second.error.startswith(expected), second.error
    assert second.error.endswith("before responding")
    assert len(server.requests) == 2
    assert server.accepted == 1


async def test_fresh_connection_closed_before_responding_is_a_plain_failure() -> None:
    async def hang_up(_exchange: Exchange) -> bool:
        return False

    async with RawServer(hang_up) as server, lean(server.port) as client:
        result = await client.post(request())
    assert result.status is None
    assert result.error == "server disconnected before responding"
    assert result.stale_resends == 0
    assert len(server.requests) == 1


@pytest.mark.parametrize("reused", [False, True])
async def test_reset_mid_response_is_a_failure_without_resend(reused: bool) -> None:
    async def cut(exchange: Exchange) -> bool:
        if reused and exchange.number == 0:
            return await answer_ok(exchange)
        await answer(exchange, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        reset(exchange.writer)
        return False

    async with RawServer(cut) as server, lean(server.port) as client:
        if reused:
            assert (await client.post(request())).status == 200
        result = await client.post(request())
    assert result.status is None
    assert result.error is not None and "mid-response" in result.error
    assert result.stale_resends == 0
    assert len(server.requests) == (2 if reused else 1)


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (b"HTTP/1.1 OK 200\r\nContent-Length: 0\r\n\r\n", "malformed response head"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "malformed response head"),
        (
            b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\nContent-Length: 0\r\n\r\n",
            "larger than 65536",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nnot-hex\r\n",
            "Invalid character in chunk size",
        ),
    ],
    ids=["garbage-status", "not-http", "huge-head", "bad-chunk"],
)
async def test_protocol_errors_fail_and_close(response: bytes, reason: str) -> None:
    async def bad(exchange: Exchange) -> bool:
        return await answer(exchange, response)

    async with RawServer(bad) as server, lean(server.port) as client:
        result = await client.post(request())
        await wait_until(lambda: server.eofs == 1, what="the client closing the connection")
        assert client.open_connections == 0
    assert result.status is None
    assert result.error is not None and result.error.startswith("protocol error: ") and reason in result.error
    assert result.stale_resends == 0


async def test_interim_100_continue_is_skipped() -> None:
    async def continue_first(exchange: Exchange) -> bool:
        return await answer(
            exchange,
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
        )

    async with RawServer(continue_first) as server, lean(server.port) as client:
        results = [await client.post(request()) for _ in range(2)]
    assert [r.status for r in results] == [202, 202]
    assert server.accepted == 1


@pytest.mark.parametrize("chunked", [False, True])
async def test_ten_megabyte_body_is_discarded_with_bounded_memory(chunked: bool) -> None:
    """10 MB of response body: the client's traced memory peak stays far below the body size."""
    size, block = 10 * 1024 * 1024, b"z" * 65536

    async def big(exchange: Exchange) -> bool:
        writer = exchange.writer
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
        writer.write(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\n")
        for _ in range(size // len(block)):
            writer.write(b"10000\r\n" + block + b"\r\n" if chunked else block)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async with RawServer(big) as server, lean(server.port) as client:
        await client.post(request())  # warm up: connection, imports, caches
        tracemalloc.start()
        try:
            result = await client.post(request())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (result.status, result.error) == (200, None)
    # Socket reads are at most 256 KiB each; the server side's transport buffers ~64 KiB.
    assert peak < 2 * 1024 * 1024, f"peak traced memory {peak} bytes"


# --- connecting ------------------------------------------------------------------------------------


async def test_connection_refused() -> None:
    async with lean(free_loopback_port()) as client:
        result = await client.post(request())
    assert result.status is None
    assert result.error is not None and result.error.startswith("connection failed: ")
    assert "refused" in result.error.lower()


async def test_connect_timeout() -> None:
    with full_backlog_listener() as port:
        client = LeanWorkerClient(f"http://127.0.0.1:{port}", 0.3, 5.0, 2)
        started = time.monotonic()
        result = await client.post(request())
        elapsed = time.monotonic() - started
        await client.close()
    assert (result.status, result.error) == (None, "connect timeout")
    assert 0.25 <= elapsed < 2


async def test_concurrency_limit_is_respected() -> None:
    """12 concurrent posts through 3 connections: never more than 3 at the worker."""
    gate = asyncio.Event()

    async def gated(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        await gate.wait()
        return web.Response(status=200)

    async with recording_worker(gated) as worker, lean(worker.port, connections=3) as client:
        tasks = [asyncio.create_task(client.post(request())) for _ in range(12)]
        await wait_until(lambda: worker.in_flight == 3, what="three posts at the worker")
        assert client.open_connections == 3
        gate.set()
        results = await asyncio.gather(*tasks)
        assert client.open_connections <= 3
    assert [r.status for r in results] == [200] * 12
    assert worker.max_in_flight == 3


async def test_cancelled_post_closes_its_connection_and_frees_its_slot() -> None:
    """The daemon cancels in-flight posts after the shutdown grace: no leaked connection or slot."""
    release = asyncio.Event()

    async def first_hangs(exchange: Exchange) -> bool:
        if exchange.connection == 0:
            await release.wait()
        return await answer_ok(exchange)

    async with RawServer(first_hangs) as server, lean(server.port, connections=1) as client:
        task = asyncio.create_task(client.post(request()))
        await wait_until(lambda: len(server.requests) == 1, what="the request at the server")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_until(lambda: client.open_connections == 0, what="the connection closed")
        result = await client.post(request())  # the only slot was given back
        release.set()
        await wait_until(lambda: server.eofs == 1, what="the server seeing the close")
    assert (result.status, result.stale_resends) == (200, 0)


async def test_cancelled_while_waiting_for_a_slot() -> None:
    gate = asyncio.Event()

    async def gated(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        await gate.wait()
        return web.Response(status=200)

    async with recording_worker(gated) as worker, lean(worker.port, connections=1) as client:
        busy = asyncio.create_task(client.post(request()))
        await wait_until(lambda: worker.in_flight == 1, what="the first post at the worker")
        waiting = asyncio.create_task(client.post(request()))
        queued = asyncio.create_task(client.post(request()))
        await asyncio.sleep(0)  # let both reach the slot queue (not waiting for state: ordering)
        waiting.cancel()
        gate.set()
        assert (await busy).status == 200
        assert (await queued).status == 200
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert len(worker.deliveries) == 2


async def test_idle_connection_closed_by_the_worker_leaves_the_pool() -> None:
    async def answer_then_close(exchange: Exchange) -> bool:
        await answer_ok(exchange)
        return False

    async with RawServer(answer_then_close) as server, lean(server.port) as client:
        assert (await client.post(request())).status == 200
        await wait_until(lambda: client.open_connections == 0, what="the idle connection dropped")
        assert client.idle_connections == 0
        second = await client.post(request())
    assert (second.status, second.stale_resends) == (200, 0)
    assert server.accepted == 2


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_connection_idle_past_the_bound_is_not_reused() -> None:
    """keepalive_idle_s: a connection idle for longer is closed, never written to; a new one is used."""
    clock = FakeClock()
    async with RawServer(answer_ok) as server, lean(server.port, keepalive_idle_s=1.5, clock=clock) as client:
        assert (await client.post(request())).status == 200
        clock.now += 1.5
        assert (await client.post(request())).status == 200
        assert server.accepted == 1  # idle exactly the bound: reused
        clock.now += 1.51
        third = await client.post(request())
        await wait_until(lambda: server.eofs == 1, what="the worker seeing the old connection closed")
    assert (third.status, third.stale_resends) == (200, 0)
    assert server.accepted == 2
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [500, 404, 302])
async def test_failure_body_start_is_kept_up_to_the_bound(status: int) -> None:
    body = b"\x1b[31mtraceback\r\n" + b"x" * 500

    async def fail(exchange: Exchange) -> bool:
        head = f"HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:]))
        return await answer(exchange, head, chunks + b"0\r\n\r\n")

    async with RawServer(fail) as server, lean(server.port, response_bytes=20) as client:
        result = await client.post(request())
    assert result.status == status
    assert result.response_start == body[:20]


async def test_success_body_and_disabled_bound_keep_nothing() -> None:
    async def ok_then_fail(exchange: Exchange) -> bool:
        status = 200 if exchange.number % 2 == 0 else 500
        return await answer(exchange, b"HTTP/1.1 %d X\r\nContent-Length: 4\r\n\r\nbody" % status)

    async with RawServer(ok_then_fail) as server:
        async with lean(server.port, response_bytes=8) as client:
            kept = [await client.post(request()) for _ in range(3)]
        async with lean(server.port) as client:
            off = [await client.post(request()) for _ in range(2)]
    assert [(r.status, r.response_start) for r in kept] == [(200, b""), (500, b"body"), (200, b"")]
    assert [(r.status, r.response_start) for r in off] == [(200, b""), (500, b"")]


async def test_post_after_close_is_a_usage_error() -> None:
    async with RawServer(answer_ok) as server:
        client = lean(server.port)
        assert (await client.post(request())).status == 200
        await client.close()
        assert client.open_connections == 0
        with pytest.raises(RuntimeError):
            await client.post(request())


async def test_close_fails_posts_in_flight_promptly() -> None:
    release = asyncio.Event()

    async def hangs(_exchange: Exchange) -> bool:
        await release.wait()
        return False

    async with RawServer(hangs) as server:
        client = lean(server.port)
        task = asyncio.create_task(client.post(request()))
        await wait_until(lambda: len(server.requests) == 1, what="the request at the server")
        await client.close()
        result = await task
        release.set()
    assert (result.status, result.error) == (None, "client closed")


# --- what the worker receives ------------------------------------------------------------------------


def stock_message() -> Message:
    return Message(
        message_id="5fea7756-0ea4-451a-a703-a558b933e274",
        receipt_handle="r",
        body='{"job": "résumé ☃ 𝄞", "n": 1}\r\n\ttrailing  ',
        attributes={
            "ApproximateReceiveCount": "1",
            "ApproximateFirstReceiveTimestamp": "1700000000123",
            "SentTimestamp": "1700000000000",
            "SenderId": "AIDAIT2UOQQY3AUEKVGXU",
        },
        message_attributes={
            "vendorUserId": MessageAttribute("String", "u-42"),
            "my-attr": MessageAttribute("Number", "3.14"),
            "latin": MessageAttribute("String", "café"),
            "blob": MessageAttribute("Binary", binary_value=b"\x00"),
        },
    )


STATIC = StaticHeaders("application/json", "aws-sqsd/3.0.4", "my-queue", "/jobs/run")


async def test_worker_receives_exact_body_and_headers_in_order() -> None:
    """The existing delivery checks: byte-identical body, the given headers in order and spelling,
    then Content-Length; Host first; no Accept, no Transfer-Encoding."""
    message = stock_message()
    built = build_request(message, STATIC)
    async with recording_worker() as worker:
        async with lean(worker.port) as client:
            result = await client.post(built)
        assert (result.status, result.error) == (200, None)
        delivery = worker.deliveries[0]
    assert (delivery.method, delivery.version, delivery.path) == ("POST", "1.1", "/jobs/run")
    assert delivery.body == message.body.encode("utf-8")
    latin1 = {k: v.encode("utf-8").decode("latin-1") for k, v in built.headers.items()}  # wire bytes
    assert delivery.headers == [
        ("Host", f"127.0.0.1:{worker.port}"),
        *latin1.items(),
        ("Content-Length", str(len(delivery.body))),
    ]
    assert delivery.header("X-Aws-Sqsd-Attr-Latin") == "café".encode().decode("latin-1")
    assert delivery.header("Accept") is None and delivery.header("Transfer-Encoding") is None


async def test_periodic_task_post_has_empty_body_and_content_length_zero() -> None:
    message = Message(
        "id-1",
        "r",
        "elasticbeanstalk scheduled job",
        message_attributes={
            "beanstalk.sqsd.path": MessageAttribute("String", "/tasks/backup"),
            "beanstalk.sqsd.task_name": MessageAttribute("String", "backup"),
            "beanstalk.sqsd.scheduled_time": MessageAttribute("String", "2017-03-22 23:10:00 UTC"),
        },
    )
    async with recording_worker() as worker:
        async with lean(worker.port) as client:
            assert (await client.post(build_request(message, STATIC))).status == 200
        delivery = worker.deliveries[0]
    assert (delivery.path, delivery.body) == ("/tasks/backup", b"")
    assert delivery.header("Content-Length") == "0"
    assert delivery.header("X-Aws-Sqsd-Taskname") == "backup"


async def test_request_bytes_match_aiohttp_apart_from_its_user_agent_position() -> None:
    """Same request line, Host, header lines, Content-Length and body as the aiohttp client; lean
    keeps the given (stock) order, aiohttp moves User-Agent (a session default) before the rest."""
    built = build_request(stock_message(), StaticHeaders("text/plain", "aws-sqsd/3.0.4", "q", "/a b/é?x=1"))
    async with RawServer(answer_ok) as server:
        async with lean(server.port) as client:
            await client.post(built)
        async with create_session(4, "aws-sqsd/3.0.4") as session:
            await WorkerClient(session, f"http://127.0.0.1:{server.port}", 1, 5).post(built)
    ours, theirs = server.requests
    head = b"".join(f"{name}: {value}\r\n".encode() for name, value in built.headers.items())
    body = built.body
    assert ours == (
        f"POST /a%20b/%C3%A9?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode()
        + head
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    assert sorted(ours.split(b"\r\n")) == sorted(theirs.split(b"\r\n"))


def test_host_header_omits_the_default_port() -> None:
    def request_line(url: str) -> str:
        return LeanWorkerClient(url, 1, 1, 1)._request_line("/")

    assert request_line("http://localhost:80") == "POST / HTTP/1.1\r\nHost: localhost\r\n"
    assert request_line("http://localhost") == "POST / HTTP/1.1\r\nHost: localhost\r\n"
    assert request_line("http://localhost:8080") == "POST / HTTP/1.1\r\nHost: localhost:8080\r\n"
    assert request_line("https://worker.internal:443/") == "POST / HTTP/1.1\r\nHost: worker.internal\r\n"
    assert request_line("http://[::1]:81") == "POST / HTTP/1.1\r\nHost: [::1]:81\r\n"


async def test_header_injection_is_refused() -> None:
    async with RawServer(answer_ok) as server, lean(server.port) as client:
        with pytest.raises(ValueError, match="CR or LF"):
            await client.post(request(headers={"X-Evil": "a\r\nX-Injected: 1"}))
    assert server.requests == []


# --- the daemon's own delivery and outcome checks, with the lean client swapped in -----------------


DAEMON_CHECKS: list[Callable[..., Coroutine[Any, Any, None]]] = [
    test_delivery.test_post_carries_stock_headers_and_exact_body,
    test_delivery.test_empty_body_still_has_content_length,
    test_delivery.test_unsafe_attribute_value_is_skipped_not_fatal,
    test_delivery.test_periodic_task_message_posts_empty_body_to_task_path,
    test_delivery.test_receive_count_increments_on_redelivery,
    test_delivery.test_many_messages_all_delivered_and_deleted,
    test_outcomes.test_success_statuses_can_accept_any_2xx,
    test_outcomes.test_retry_after_sets_the_delay,
    test_outcomes.test_connection_refused_counts_as_failure,
    test_outcomes.test_inactivity_timeout_fails_a_silent_worker,
    test_outcomes.test_inactivity_timer_resets_while_bytes_arrive,
    test_outcomes.test_connect_timeout_bounds_connecting,
    test_outcomes.test_idle_keepalive_connection_closed_by_the_worker_costs_no_failure,
    test_outcomes.test_no_more_than_http_connections_in_flight,
    test_outcomes.test_failed_delivery_logs_one_structured_event,
    test_outcomes.test_failure_log_carries_the_start_of_the_response_body,
]


@pytest.mark.parametrize("check", DAEMON_CHECKS, ids=lambda check: check.__name__[5:])
async def test_daemon_checks_pass_with_the_aiohttp_client(
    check: Callable[..., Coroutine[Any, Any, None]],
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: Any,
    run_daemon: Any,
) -> None:
    """The daemon-level checks (tests/component/pipeline/test_delivery.py, test_outcomes.py) run with the
    lean client by default; here they run unchanged with ``http_client=aiohttp``."""
    used: list[str] = []

    def aiohttp_settings(**overrides: Any) -> Any:
        settings = make_settings(**{"http_client": "aiohttp", **overrides})
        used.append(settings.http_client)
        return settings

    available = {
        "sqs": sqs,
        "queue_url": queue_url,
        "worker": worker,
        "make_settings": aiohttp_settings,
        "run_daemon": run_daemon,
    }
    await check(**{name: available[name] for name in inspect.signature(check).parameters})
    assert used and set(used) == {"aiohttp"}


# --- HTTPS ------------------------------------------------------------------------------------------


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost (cert, key, CA)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key: Any, issuer: Any, issuer_key: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        else:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asqsd test CA")])
    ca_cert = cert("asqsd test CA", ca_key, ca_name, ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = cert("localhost", leaf_key, ca_name, ca_key, ca=False)
    paths = directory / "server.pem", directory / "server.key", directory / "ca.pem"
    paths[0].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths[2].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return paths


async def test_https_verifies_the_worker_certificate(tmp_path: Path) -> None:
    cert, key, ca = make_certificates(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(ca))
    async with RawServer(answer_ok, ssl_context=server_context) as server:
        url = f"https://localhost:{server.port}"
        async with LeanWorkerClient(url, 2, 5, 2, ssl_context=trusting) as client:
            results = [await client.post(request()) for _ in range(2)]
        async with LeanWorkerClient(url, 2, 5, 2) as default_client:  # system CAs only
            refused = await default_client.post(request())
    assert [(r.status, r.error) for r in results] == [(200, None), (200, None)]
    assert refused.status is None
    assert refused.error is not None and "certificate verify failed" in refused.error


# --- the same scenarios on uvloop ---------------------------------------------------------------------

UVLOOP_SCENARIOS: list[Callable[[], Coroutine[Any, Any, None]]] = [
    test_statuses_retry_after_and_keep_alive,
    test_silent_worker_hits_inactivity_timeout,
    test_inactivity_timer_spans_keep_alive_requests,
    test_chunked_response_with_trailers_keeps_the_connection,
    test_http10_response_is_not_reused_unless_keep_alive,
    test_http10_body_delimited_by_close,
    test_connection_close_is_honoured,
    test_unsolicited_bytes_after_a_response_prevent_reuse,
    test_fresh_connection_closed_before_responding_is_a_plain_failure,
    test_interim_100_continue_is_skipped,
    test_connection_refused,
    test_connect_timeout,
    test_concurrency_limit_is_respected,
    test_cancelled_post_closes_its_connection_and_frees_its_slot,
    test_cancelled_while_waiting_for_a_slot,
    test_idle_connection_closed_by_the_worker_leaves_the_pool,
    test_post_after_close_is_a_usage_error,
    test_close_fails_posts_in_flight_promptly,
    test_worker_receives_exact_body_and_headers_in_order,
    test_periodic_task_post_has_empty_body_and_content_length_zero,
    test_header_injection_is_refused,
]


@pytest.mark.parametrize("scenario", UVLOOP_SCENARIOS, ids=lambda scenario: scenario.__name__[5:])
def test_scenario_on_uvloop(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    uvloop.run(scenario())


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_no_resend_after_read_on_uvloop(how: str) -> None:
    uvloop.run(test_reused_connection_closed_after_reading_the_request_is_a_failure_not_a_resend(how))


@pytest.mark.parametrize("reused", [False, True])
def test_reset_mid_response_on_uvloop(reused: bool) -> None:
    uvloop.run(test_reset_mid_response_is_a_failure_without_resend(reused))


def test_trickle_and_big_body_on_uvloop() -> None:
    async def both() -> None:
        await test_trickling_body_longer_than_inactivity_timeout_succeeds()
        await test_ten_megabyte_body_is_discarded_with_bounded_memory(chunked=True)

    uvloop.run(both())


def test_https_on_uvloop(tmp_path: Path) -> None:
    uvloop.run(test_https_verifies_the_worker_certificate(tmp_path))
