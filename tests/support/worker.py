"""A real aiohttp worker on 127.0.0.1 that records every request and answers as scripted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(slots=True)
class Delivery:
    """One request the worker received."""

    method: str
    path: str
    version: str
    headers: list[tuple[str, str]]  # in wire order, wire spelling
    body: bytes

    def header(self, name: str) -> str | None:
        """Value of a header (case-insensitive name), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def msgid(self) -> str | None:
        """X-Aws-Sqsd-Msgid."""
        return self.header("X-Aws-Sqsd-Msgid")


Handler = Callable[[web.Request, Delivery], Awaitable[web.StreamResponse]]


async def answer_200(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
    """The default behaviour: 200 at once."""
    return web.Response(status=200, text="ok")


@dataclass
class RecordingWorker:
    """Records deliveries; ``handler`` decides the answer; tracks concurrency."""

    handler: Handler = answer_200
    deliveries: list[Delivery] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        delivery = Delivery(
            request.method, request.path_qs, f"{request.version[0]}.{request.version[1]}", headers, body
        )
        self.deliveries.append(delivery)
        self.arrived.set()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.handler(request, delivery)
        finally:
            self.in_flight -= 1

    def by_msgid(self, msgid: str) -> list[Delivery]:
        """Deliveries of one message."""
        return [d for d in self.deliveries if d.msgid == msgid]

    def count_ids(self) -> dict[str, int]:
        """How many times each message id was delivered."""
        counts: dict[str, int] = {}
        for delivery in self.deliveries:
            counts[delivery.msgid or ""] = counts.get(delivery.msgid or "", 0) + 1
        return counts

    async def start(self) -> web.AppRunner:
        """Listen on 127.0.0.1 on a free port."""
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner


@contextlib.asynccontextmanager
async def recording_worker(handler: Handler | None = None) -> AsyncIterator[RecordingWorker]:
    """A :class:`RecordingWorker` started on the running loop (asyncio or uvloop), stopped on exit."""
    worker = RecordingWorker() if handler is None else RecordingWorker(handler=handler)
    runner = await worker.start()
    try:
        yield worker
    finally:
        await runner.cleanup()
