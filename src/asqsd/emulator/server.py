"""The HTTP side: an aiohttp application serving SQS (JSON protocol) and the ``/_asqsd/`` admin API,
and :class:`Emulator`, which runs it in-process on the caller's event loop."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from aiohttp import web

from asqsd.emulator import admin, counters, errors, message_ops, protocol
from asqsd.emulator.context import Context
from asqsd.emulator.counters import OperationCounter, OperationStats
from asqsd.emulator.faults import Decision, Faults
from asqsd.emulator.longpoll import LongPoller
from asqsd.emulator.preload import preload as preload_messages
from asqsd.emulator.s3 import S3Objects
from asqsd.emulator.store import Store
from asqsd.emulator.validation import Params

_SHUTDOWN_TIMEOUT = 1.0


class SqsService:
    """Turns HTTP requests into store operations, applying faults and counting calls."""

    def __init__(self, store: Store, poller: LongPoller, faults: Faults, stats: OperationStats) -> None:
        self.store = store
        self.poller = poller
        self.faults = faults
        self.stats = stats

    async def handle(self, request: web.Request) -> web.StreamResponse:
        target = request.headers.get("X-Amz-Target")
        operation = protocol.operation_of(target)
        counter = self.stats.get(operation or "Unknown")
        counter.calls += 1
        decision = self.faults.decide(operation) if self.faults.active else None
        if decision is not None:
            early = await self._before(request, decision, counter)
            if early is not None:
                return early
        ctx = Context(self.store, f"http://{request.host}", decision.fail_entry if decision else None)
        try:
            protocol.check_operation(target, operation)
            params = protocol.decode(await request.read())
            result = await self._dispatch(operation, ctx, params)
        except errors.SqsError as exc:
            counter.errors += 1
            return _error_response(exc)
        counter.batch_entries_failed += ctx.entries_failed
        response = web.Response(body=protocol.encode(result), content_type=protocol.CONTENT_TYPE)
        if decision is not None and decision.drop_after:
            # The operation took effect but the client never hears about it.
            counter.connections_dropped += 1
            _drop(request)
        return response

    async def _before(
        self, request: web.Request, decision: Decision, counter: OperationCounter
    ) -> web.StreamResponse | None:
        if decision.latency:
            await asyncio.sleep(decision.latency)
        if decision.drop:
            counter.connections_dropped += 1
            _drop(request)
            return web.Response(status=500)  # never reaches the client
        if decision.error is not None:
            counter.errors += 1
            counter.errors_injected += 1
            return _error_response(decision.error)
        return None

    async def _dispatch(self, operation: str, ctx: Context, params: Params) -> dict[str, Any]:
        if operation != protocol.RECEIVE:
            return protocol.HANDLERS[operation](ctx, params)
        request = message_ops.parse_receive(ctx, params)
        messages = message_ops.receive_now(ctx, request)
        if not messages and request.wait_seconds > 0:
            queue = self.store.get_queue(request.queue_name)
            messages = await self.poller.wait(
                queue, request.wait_seconds, lambda: message_ops.receive_now(ctx, request)
            )
        return message_ops.render_received(ctx, request, messages)


def _error_response(error: errors.SqsError) -> web.Response:
    body, headers = protocol.error_payload(error)
    return web.Response(status=error.status, body=body, headers=headers)


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


class Emulator:
    """An SQS-compatible server with fault injection, exact counters and bulk preload.

    Use it in-process (``async with Emulator() as emu: ...``; port 0 picks a free port) or as a
    subprocess (``python -m asqsd.emulator``).  ``store``, ``faults`` and ``stats`` are public so tests can
    reach the engine directly; the methods below cover the common cases.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        queues: Iterable[str] = (),
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        strict_purge: bool = True,
        account_id: str = "000000000000",
        region: str = "us-east-1",
    ) -> None:
        self.host = host
        self.port = port
        self.store = Store(clock, account_id=account_id, region=region, strict_purge=strict_purge)
        self.poller = LongPoller(self.store)
        self.store.listener = self.poller
        self.faults = Faults(seed)
        self.stats = OperationStats()
        self.service = SqsService(self.store, self.poller, self.faults, self.stats)
        self.s3 = S3Objects()  # a minimal S3 for payload offloading (docs/emulator.md)
        self._initial_queues = list(queues)
        self._runner: web.AppRunner | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/", self.service.handle)
        admin.add_routes(app, self)
        app.router.add_post("/{tail:.*}", self.service.handle)
        self.s3.add_routes(app)
        return app

    async def start(self) -> None:
        self.poller.reopen()
        runner = web.AppRunner(
            self.build_app(), access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            site = web.SockSite(runner, sock)
            await site.start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self.port = int(sock.getsockname()[1])
        self._runner = runner
        for name in self._initial_queues:
            # --queue NAME.fifo means a FIFO queue: there is no other way to ask for one on the command line.
            self.create_queue(name, {"FifoQueue": "true"} if name.endswith(".fifo") else None)

    async def stop(self) -> None:
        self.poller.close()  # parked long polls return at once instead of holding shutdown
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def queue_url(self, name: str) -> str:
        return f"{self.endpoint_url}/{self.store.account_id}/{name}"

    def create_queue(self, name: str, attributes: Mapping[str, str] | None = None) -> str:
        """Create (or find, if the attributes match) a queue; returns its URL."""
        queue = self.store.create_queue(name, dict(attributes or {}))
        return self.queue_url(queue.name)

    def counters(self, queue: str | None = None) -> dict[str, Any]:
        """Exact counters: everything, or one queue's counters and gauges."""
        if queue is not None:
            return counters.queue_snapshot(self.store, queue)
        return counters.snapshot(self.store, self.stats)

    def reset_counters(self) -> None:
        counters.reset(self.store, self.stats)

    def preload(
        self,
        queue: str,
        count: int,
        *,
        body: str = "message {i}",
        body_factory: Callable[[int], str] | None = None,
        message_attributes: Mapping[str, Mapping[str, str]] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> int:
        """Append ``count`` messages directly (see :func:`asqsd.emulator.preload.preload`)."""
        return preload_messages(
            self.store,
            queue,
            count,
            body=body,
            body_factory=body_factory,
            message_attributes=message_attributes,
            attributes=attributes,
        )

    def purge(self, queue: str) -> int:
        """Drop every message of ``queue`` now, ignoring AWS's one-purge-per-minute rule."""
        return self.store.purge(self.store.get_queue(queue), force=True)

    def reset(self) -> None:
        """Forget all queues, counters and faults (parked receives return empty)."""
        for queue in list(self.store.queues.values()):
            self.store.delete_queue(queue)
        self.faults.clear()
        counters.reset(self.store, self.stats)
