"""Streamed request bodies (S3 payloads) through both worker clients, against a real aiohttp worker:
the body arrives whole with its Content-Length, and a body whose source fails or ends early is cut
off mid-way, so the worker never reads a short body as a complete one."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Callable

import pytest
import uvloop
from aiohttp import web

from asqsd.clients.worker.aiohttp_impl import WorkerClient, create_session
from asqsd.clients.worker.base import BodyStream, BodyStreamError, Request, WorkerPoster
from asqsd.clients.worker.lean_impl import LeanWorkerClient
from tests.support.polling import wait_until

CHUNK = 64 * 1024


class Worker:
    """Reads each body to the end: whole bodies by hash, cut-off ones as errors."""

    def __init__(self) -> None:
        self.bodies: list[tuple[int, str]] = []  # (Content-Length, sha256 of what was read)
        self.cut_off: list[str] = []
        self.cut = asyncio.Event()
        self.gate: asyncio.Event | None = None  # when set: read no body byte before it is
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.gate is not None:
            await self.gate.wait()
        digest = hashlib.sha256()
        try:
            while chunk := await request.content.readany():
                digest.update(chunk)
        except Exception as exc:
            self.cut_off.append(type(exc).__name__)
            self.cut.set()
            raise
        self.bodies.append((request.content_length or -1, digest.hexdigest()))
        return web.Response(text="ok")


@contextlib.asynccontextmanager
async def worker() -> AsyncIterator[Worker]:
    recorder = Worker()
    app = web.Application()
    app.router.add_post("/", recorder.handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    recorder.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield recorder
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def client(kind: str, port: int) -> AsyncIterator[WorkerPoster]:
    url = f"http://127.0.0.1:{port}"
    if kind == "lean":
        async with LeanWorkerClient(url, 1.0, 5.0, 2) as lean:
            yield lean
        return
    async with create_session(2, "asqsd-test") as session:
        yield WorkerClient(session, url, 1.0, 5.0)


async def chunks_of(data: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), CHUNK):
        if fail_after is not None and offset >= fail_after:
            raise OSError("S3 connection reset")
        yield data[offset : offset + CHUNK]


def streamed(data: bytes, length: int | None = None, fail_after: int | None = None) -> Request:
    stream = BodyStream(len(data) if length is None else length, chunks_of(data, fail_after))
    return Request("/", b"", {"Content-Type": "application/octet-stream"}, stream=stream)


KINDS = ["lean", "aiohttp"]


@pytest.mark.parametrize("kind", KINDS)
async def test_streamed_body_arrives_whole_and_the_connection_is_reused(kind: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    async with worker() as recorder, client(kind, recorder.port) as poster:
        for _ in range(2):
            result = await poster.post(streamed(data))
            assert result.status == 200, result
        assert (await poster.post(Request("/", b"plain", {}))).status == 200
    digest = hashlib.sha256(data).hexdigest()
    assert recorder.bodies == [
        (len(data), digest),
        (len(data), digest),
        (5, hashlib.sha256(b"plain").hexdigest()),
    ]
    if isinstance(poster, LeanWorkerClient):
        assert poster.open_connections == 0  # closed with the client; reuse is checked below


async def test_lean_client_reuses_the_connection_after_a_streamed_body() -> None:
    async with (
        worker() as recorder,
        LeanWorkerClient(f"http://127.0.0.1:{recorder.port}", 1.0, 5.0, 1) as lean,
    ):
        assert (await lean.post(streamed(b"x" * 200_000))).status == 200
        assert lean.idle_connections == 1
        assert (await lean.post(Request("/", b"next", {}))).status == 200
        assert lean.open_connections == 1


Breakage = Callable[[bytes], Request]
BREAKAGES: dict[str, Breakage] = {
    "source fails": lambda data: streamed(data, fail_after=CHUNK * 2),
    "source short": lambda data: streamed(data, length=len(data) + 10),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", list(BREAKAGES))
async def test_broken_body_is_cut_off_never_completed(kind: str, how: str) -> None:
    data = os.urandom(CHUNK * 4)
    async with worker() as recorder, client(kind, recorder.port) as poster:
        with pytest.raises(BodyStreamError):
            await poster.post(BREAKAGES[how](data))
        async with asyncio.timeout(5):
            await recorder.cut.wait()
        assert (await poster.post(Request("/", b"after", {}))).status == 200  # the client goes on
    assert recorder.bodies == [(5, hashlib.sha256(b"after").hexdigest())]
    assert len(recorder.cut_off) == 1


class Counted:
    """A large source that counts what the client has taken from it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.taken = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        chunk = b"z" * CHUNK
        while self.taken < self.total:
            self.taken += CHUNK
            yield chunk


@pytest.mark.parametrize("kind", KINDS)
async def test_a_worker_that_does_not_read_stops_the_source(kind: str) -> None:
    """Backpressure: while the worker reads nothing, the client stops taking chunks once the
    socket buffers are full, instead of buffering the rest of the body in memory; when the worker
    reads, the whole body arrives."""
    await backpressure(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_a_worker_that_does_not_read_stops_the_source_on_uvloop(kind: str) -> None:
    """The same on uvloop (the daemon's default loop), whose transports pause writers themselves."""
    uvloop.run(backpressure(kind))


async def backpressure(kind: str) -> None:
    release = asyncio.Event()
    source = Counted(256 * 1024 * 1024)
    async with worker() as recorder:
        recorder.gate = release
        async with client(kind, recorder.port) as poster:
            body = BodyStream(source.total, source.chunks())
            post = asyncio.create_task(poster.post(Request("/", b"", {}, stream=body)))
            last = [-1]

            def stalled() -> bool:
                seen, last[0] = last[0], source.taken
                return seen == source.taken

            await wait_until(stalled, timeout_s=10, interval_s=0.1, what="the source to stop")
            assert source.taken <= 64 * 1024 * 1024  # socket buffers, not the 256 MiB body
            release.set()
            assert (await asyncio.wait_for(post, 60)).status == 200
    assert recorder.bodies[0][0] == source.total == source.taken
