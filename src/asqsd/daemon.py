"""The daemon: wires receivers → channel → dispatchers → batched settles, and shuts down in order.

Invariant: every received receipt handle is, at any time, in exactly one of: the channel
(buffered), a dispatcher (being delivered), a batch sender (pending delete or visibility change),
released (visibility 0), or abandoned after the grace period (left to its lease). A message is
deleted only after the worker answered a success status (or it was past the retention period).
Nothing is deleted optimistically, so every failure path ends in redelivery by SQS, never loss.

Shutdown order (on :meth:`Daemon.request_stop`, i.e. SIGTERM/SIGINT):

1. ``_stop_intake``: receivers issue no new ReceiveMessage; an outstanding long poll finishes and
   whatever it returns is released at once (visibility 0).
2. ``_release_buffered``: close the channel; buffered, unstarted messages are released
   (or, with ``release_buffered_on_shutdown`` off, delivered within the grace period).
3. ``_drain_dispatchers``: in-flight POSTs get ``shutdown_grace_s`` to finish while the heartbeat
   keeps extending their leases; results are settled as usual.
4. ``_cancel_stragglers``: after the grace period (or on a second signal) the remaining POSTs are
   cancelled; their messages are left alone (the worker may still be running them) and reappear
   when their lease ends.
5. ``_wait_receivers``: outstanding polls are awaited (bounded by the wait time plus slack).
6. ``_stop_heartbeat``, then ``_flush_settles``: pending deletes and visibility changes are sent,
   bounded by ``flush_timeout_s``.
7. Resources close in reverse order of opening; a summary line is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from asqsd.clients.sqs.base import DeleteEntry, SQSClient, VisibilityEntry
from asqsd.clients.sqs.botocore_impl import BotocoreSQS
from asqsd.clients.sqs.lean_impl import create_lean_sqs
from asqsd.clients.sqs.wire import queue_name, region_from_queue_url
from asqsd.clients.worker.aiohttp_impl import WorkerClient, create_session
from asqsd.clients.worker.base import WorkerPoster
from asqsd.clients.worker.lean_impl import LeanWorkerClient
from asqsd.config import Settings, WorkerHealthcheck
from asqsd.errors import SQSError, StartupError
from asqsd.logs import get_logger
from asqsd.message import BatchResult, Message, VisibilityChange
from asqsd.observe.counters import Counters
from asqsd.observe.delivery import DeliveryStats, max_receive_count_from
from asqsd.observe.observers import Observers
from asqsd.observe.probes import probe_worker
from asqsd.observe.prometheus import CHANNEL_DEPTH, HELD_MESSAGES, IN_FLIGHT
from asqsd.periodic.clock import Clock
from asqsd.periodic.cron_yaml import CronTask
from asqsd.periodic.runner import PeriodicTasks
from asqsd.pipeline.batcher import BatchSender
from asqsd.pipeline.channel import Channel, GroupedChannel
from asqsd.pipeline.dispatcher import DeliveryPolicy, Dispatcher, DispatchShared
from asqsd.pipeline.heartbeat import Heartbeat
from asqsd.pipeline.leases import LeaseTable
from asqsd.pipeline.receiver import ReceivePolicy, Receiver
from asqsd.pipeline.request import StaticHeaders

log = get_logger("daemon")

# Slack on top of the long-poll wait before an outstanding receive is given up on at shutdown.
_POLL_SLACK_S = 10.0
_FORCED_FLUSH_S = 2.0
_STARTUP_ATTRIBUTES = ("QueueArn", "VisibilityTimeout", "FifoQueue", "RedrivePolicy")


class Daemon:
    """One asqsd instance. Create, ``await run()``, stop with :meth:`request_stop`."""

    def __init__(
        self,
        settings: Settings,
        *,
        tasks: Sequence[CronTask] = (),
        create_registry_table: bool = False,
        wall_clock: Callable[[], float] = time.time,
        periodic_clock: Clock | None = None,
    ) -> None:
        if settings.queue_url is None:
            raise StartupError("queue_url is required")
        self.settings = settings
        self.queue_url: str = settings.queue_url
        self._wall_clock = wall_clock
        self.counters = Counters()
        self.leases = LeaseTable()
        self.channel = Channel(settings.buffer_capacity)
        self.ready = asyncio.Event()
        self.queue_attributes: dict[str, str] = {}
        self.forced = False
        self.failure: BaseException | None = None
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()
        self._receivers: dict[Receiver, asyncio.Task[None]] = {}
        self._dispatchers: dict[Dispatcher, asyncio.Task[None]] = {}
        self._infra: list[asyncio.Task[None]] = []
        self.deleter: BatchSender[Message] = BatchSender(
            self._send_deletes, self._deleted, max_wait_s=settings.delete_batch_wait_s
        )
        self.changer: BatchSender[VisibilityChange] = BatchSender(
            self._send_visibility, self._visibility_changed, max_wait_s=settings.delete_batch_wait_s
        )
        self._sqs: SQSClient | None = None
        self._heartbeat: Heartbeat | None = None
        self.delivery = DeliveryStats()
        self.observability = Observers(settings)
        self._cloudwatch: Any = None
        self._region: str | None = None
        self.periodic = (
            PeriodicTasks(settings, list(tasks), create_table=create_registry_table, clock=periodic_clock)
            if tasks
            else None
        )
        self._healthcheck = WorkerHealthcheck.parse(settings.healthcheck) if settings.healthcheck else None

    # --- control -----------------------------------------------------------------------------
    def request_stop(self, force: bool = False) -> None:
        """Begin the graceful shutdown; a second request (or ``force``) skips the grace period."""
        if self._stopping.is_set() or force:
            if not self._force.is_set():
                log.warning("forced-shutdown", detail="unfinished work is left to SQS")
            self.forced = True
            self._force.set()
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stopping.is_set()

    @property
    def fifo(self) -> bool:
        """A FIFO queue (by its attributes once read, else by its name)."""
        if "FifoQueue" in self.queue_attributes:
            return self.queue_attributes["FifoQueue"].lower() == "true"
        return self.queue_url.endswith(".fifo")

    @property
    def receivers_polling(self) -> int:
        """How many ReceiveMessage calls are outstanding right now."""
        return sum(1 for receiver in self._receivers if receiver.polling)

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Start, serve until stopped, shut down in order. Raises StartupError if SQS refuses us."""
        started = time.monotonic()
        async with contextlib.AsyncExitStack() as stack:
            await self.observability.open(self, stack)
            self._sqs = await self._open_sqs(stack)
            if not await self._check_queue():
                return
            self.delivery.max_receive_count = max_receive_count_from(
                self.queue_attributes.get("RedrivePolicy")
            )
            if self.fifo:
                self.channel = GroupedChannel(self.settings.buffer_capacity)
            worker = await self._open_worker(stack)
            self._start_infra()
            self.observability.start(self, self._queue_attributes, self._cloudwatch)
            await self._start_periodic(stack)
            self._start_pipeline(worker)
            try:
                await self._serve()
            finally:
                await self._shutdown()
        log.info("stopped", uptime_s=round(time.monotonic() - started, 1), **self._summary())

    async def _open_sqs(self, stack: contextlib.AsyncExitStack) -> SQSClient:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        settings = self.settings
        region = settings.region or region_from_queue_url(self.queue_url)
        config = AioConfig(
            # botocore's own retries would hide errors from our backoff; we retry ourselves.
            retries={"max_attempts": 1, "mode": "standard"},
            read_timeout=settings.wait_time_s + _POLL_SLACK_S,
            connect_timeout=10,
            max_pool_connections=settings.receiver_count + 20,
            parameter_validation=False,
            tcp_keepalive=True,
        )
        session = get_session()
        if region is None and session.get_config_variable("region") is None:
            region = "us-east-1"
            log.info("region-defaulted", region=region, detail="no region configured or in the queue URL")
        client = await stack.enter_async_context(
            session.create_client(
                "sqs", region_name=region, endpoint_url=settings.endpoint_url, config=config
            )
        )
        log.info(
            "sqs-client",
            endpoint=client.meta.endpoint_url,
            region=client.meta.region_name,
            client=settings.sqs_client,
        )
        self._region = client.meta.region_name
        self._cloudwatch = await self.observability.open_cloudwatch(session, client.meta.region_name, stack)
        if settings.sqs_client == "botocore":
            return BotocoreSQS(client, self.queue_url)
        # Lean client: the botocore client's credentials, region and endpoint at a fraction of
        # its CPU per call (docs/sqs-client.md). Its pool covers every long poll plus batch calls.
        # Its own HTTP/1.1 keep-alive pool covers every long poll plus the batch calls.
        sqs = await create_lean_sqs(
            session,
            client,
            None,
            self.queue_url,
            receive_slack_s=_POLL_SLACK_S,
            connections=settings.receiver_count + 20,
        )
        stack.push_async_callback(sqs.aclose)
        return sqs

    async def _check_queue(self) -> bool:
        """Read the queue's attributes; retry transient errors, fail fast on permanent ones."""
        assert self._sqs is not None
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self.queue_attributes = await self._sqs.get_queue_attributes(_STARTUP_ATTRIBUTES)
                self.counters.count_call("GetQueueAttributes")
                log.info("queue-ok", queue=queue_name(self.queue_url), **self.queue_attributes)
                return True
            except SQSError as exc:
                self.counters.count_call("GetQueueAttributes", error=True)
                if not exc.retryable:
                    raise StartupError(f"queue {self.queue_url}: {exc.code}: {exc}") from exc
                log.warning("queue-check-failed", code=exc.code, error=str(exc), retry_in_s=delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            delay = min(delay * 2, 20.0)
        return False

    def _start_infra(self) -> None:
        assert self._sqs is not None
        settings = self.settings
        self._infra = [asyncio.create_task(self.deleter.run()), asyncio.create_task(self.changer.run())]
        if settings.heartbeat and settings.visibility_timeout >= 1:
            self._heartbeat = Heartbeat(self._sqs, self.leases, settings.visibility_timeout, self.counters)
            self._infra.append(asyncio.create_task(self._heartbeat.run()))
        for task in self._infra:
            task.add_done_callback(self._task_done)

    async def _start_periodic(self, stack: contextlib.AsyncExitStack) -> None:
        if self.periodic is None:
            return  # no cron.yaml: no DynamoDB client, no call
        assert self._sqs is not None
        from aiobotocore.session import get_session

        region = self.settings.region or region_from_queue_url(self.queue_url) or self._region
        await self.periodic.open(get_session(), region, stack, self._sqs)
        for task in self.periodic.start():
            task.add_done_callback(self._task_done)

    async def _open_worker(self, stack: contextlib.AsyncExitStack) -> WorkerPoster:
        settings = self.settings
        if settings.http_client == "lean":
            # A third of aiohttp's CPU per POST (docs/http-client.md), same semantics.
            return await stack.enter_async_context(
                LeanWorkerClient(
                    settings.worker_url,
                    settings.connect_timeout,
                    settings.inactivity_timeout,
                    settings.http_connections,
                )
            )
        session = await stack.enter_async_context(
            create_session(settings.http_connections, settings.user_agent)
        )
        return WorkerClient(
            session, settings.worker_url, settings.connect_timeout, settings.inactivity_timeout
        )

    def _start_pipeline(self, worker: WorkerPoster) -> None:
        assert self._sqs is not None
        settings = self.settings
        receive_policy = ReceivePolicy(settings.wait_time_s, settings.visibility_timeout)
        for index in range(settings.receiver_count):
            receiver = Receiver(
                index, self._sqs, self.channel, self.leases, receive_policy, self.counters, self.release
            )
            self._receivers[receiver] = self._spawn(receiver.run())
        static = StaticHeaders(
            settings.mime_type, settings.user_agent, queue_name(self.queue_url), settings.http_path
        )
        policy = DeliveryPolicy(
            settings.success_statuses,
            settings.error_visibility_timeout,
            settings.retention_period,
            settings.retry_after_max_s,
            settings.unwrap_sns,
        )
        shared = DispatchShared(
            channel=self.channel,
            leases=self.leases,
            worker=worker,
            static=static,
            policy=policy,
            deleter=self.deleter,
            changer=self.changer,
            counters=self.counters,
            release=self.release,
            delivery=self.delivery,
            stock_log=self.observability.stock_log,
            wall_clock=self._wall_clock,
        )
        for _ in range(settings.http_connections):
            dispatcher = Dispatcher(shared)
            self._dispatchers[dispatcher] = self._spawn(dispatcher.run())

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # A bug, not an SQS or worker problem (those are handled in the loops): stop cleanly.
        self.failure = task.exception()
        log.error("component-crashed", error=repr(self.failure), exc_info=self.failure)
        self.request_stop()

    async def _serve(self) -> None:
        settings = self.settings
        self.ready.set()
        log.info(
            "started",
            queue=queue_name(self.queue_url),
            worker=settings.worker_url + settings.http_path,
            receivers=settings.receiver_count,
            http_connections=settings.http_connections,
            buffer=settings.buffer_capacity,
            heartbeat=self._heartbeat is not None,
            loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
        )
        await self._stopping.wait()
        log.info("stopping", held=len(self.leases), buffered=self.channel.stats().buffered)

    async def _shutdown(self) -> None:
        self._stop_intake()
        self._release_buffered()
        await self._drain_dispatchers()
        await self._cancel_stragglers()
        await self._wait_receivers()
        await self._stop_heartbeat()
        await self._flush_settles()
        if self.periodic is not None:
            await self.periodic.stop()
        await self.observability.stop()

    # --- shutdown phases -----------------------------------------------------------------------
    def _stop_intake(self) -> None:
        self._stopping.set()
        for receiver, task in self._receivers.items():
            if not receiver.stop():
                task.cancel()  # idle (waiting for capacity or backing off): nothing to lose

    def _release_buffered(self) -> None:
        if self.settings.release_buffered_on_shutdown:
            buffered = self.channel.close()
            if buffered:
                log.info("releasing-buffered", messages=len(buffered))
            self.release(buffered)
        else:
            self.channel.close_keep_buffer()

    async def _drain_dispatchers(self) -> None:
        pending = {t for t in self._dispatchers.values() if not t.done()}
        if not pending or self._force.is_set():
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace_s
        force = asyncio.create_task(self._force.wait())
        try:
            while pending and not force.done() and (left := deadline - loop.time()) > 0:
                done, _ = await asyncio.wait(
                    pending | {force}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                pending -= done
        finally:
            force.cancel()

    async def _cancel_stragglers(self) -> None:
        # Whatever is still buffered (drain mode ran out of time, or FIFO groups freed after
        # the dispatchers left) goes back to SQS now rather than after its lease.
        self.release(self.channel.close())
        stragglers = [t for t in self._dispatchers.values() if not t.done()]
        if not stragglers:
            return
        log.warning(
            "abandoning-in-flight", messages=len(stragglers), detail="left to SQS; they reappear later"
        )
        for task in stragglers:
            task.cancel()
        await asyncio.wait(stragglers, timeout=self.settings.cancel_deadline_s or None)

    async def _wait_receivers(self) -> None:
        tasks = [t for t in self._receivers.values() if not t.done()]
        if not tasks:
            return
        timeout = _FORCED_FLUSH_S if self._force.is_set() else self.settings.wait_time_s + _POLL_SLACK_S
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=self.settings.cancel_deadline_s or None)

    async def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            await asyncio.wait(self._infra[2:], timeout=5)

    async def _flush_settles(self) -> None:
        timeout = _FORCED_FLUSH_S if self._force.is_set() else self.settings.flush_timeout_s
        given_up = await self.deleter.close(self._infra[0], timeout)
        given_up += await self.changer.close(self._infra[1], timeout)
        if given_up:
            log.warning("flush-incomplete", entries=given_up, detail="left to SQS for redelivery")

    # --- health view (asqsd.observe.health.DaemonView) ----------------------------------------------
    def gauges(self) -> dict[str, float]:
        """In-flight, buffered and held messages, plus the queue backlog when it is polled."""
        values: dict[str, float] = {
            IN_FLIGHT: sum(1 for d in self._dispatchers if d.current is not None),
            CHANNEL_DEPTH: self.channel.stats().buffered,
            HELD_MESSAGES: len(self.leases),
        }
        values.update(self.observability.gauges())
        return values

    async def check_sqs(self) -> bool:
        """One cheap call on the queue."""
        if self._sqs is None:
            return False
        try:
            await self._queue_attributes(["QueueArn"])
        except SQSError:
            return False
        return True

    async def check_worker(self) -> bool:
        """The worker port accepts a connection (or the stock HTTP health check answers 200)."""
        return await probe_worker(self.settings.worker_url, self._healthcheck, self.settings.connect_timeout)

    async def _queue_attributes(self, names: list[str]) -> dict[str, str]:
        assert self._sqs is not None
        try:
            attributes = await self._sqs.get_queue_attributes(names)
        except SQSError:
            self.counters.count_call("GetQueueAttributes", error=True)
            raise
        self.counters.count_call("GetQueueAttributes")
        return attributes

    def reopen_logs(self) -> None:
        """SIGHUP: reopen the stock log file (logrotate)."""
        self.observability.reopen_logs()

    # --- settling -----------------------------------------------------------------------------
    def release(self, messages: list[Message]) -> None:
        """Make unstarted messages visible again at once (visibility 0), batched."""
        for message in messages:
            self.leases.remove(message)
            self.changer.add(VisibilityChange(message, 0, release=True))

    async def _send_deletes(self, entries: list[tuple[str, Message]]) -> BatchResult:
        assert self._sqs is not None
        try:
            result = await self._sqs.delete_batch([DeleteEntry(i, m.receipt_handle) for i, m in entries])
        except SQSError:
            self.counters.count_call("DeleteMessageBatch", error=True)
            raise
        self.counters.count_call("DeleteMessageBatch")
        return result

    async def _send_visibility(self, entries: list[tuple[str, VisibilityChange]]) -> BatchResult:
        assert self._sqs is not None
        try:
            result = await self._sqs.change_visibility_batch(
                [VisibilityEntry(i, c.message.receipt_handle, c.timeout_s) for i, c in entries]
            )
        except SQSError:
            self.counters.count_call("ChangeMessageVisibilityBatch", error=True)
            raise
        self.counters.count_call("ChangeMessageVisibilityBatch")
        return result

    def _deleted(self, message: Message, failure: str | None) -> None:
        if failure is None:
            self.counters.deleted += 1
            return
        self.counters.delete_failed += 1
        log.warning(
            "delete-failed", message_id=message.message_id, code=failure, detail="will be redelivered"
        )

    def _visibility_changed(self, change: VisibilityChange, failure: str | None) -> None:
        counters = self.counters
        if failure is None:
            if change.release:
                counters.released += 1
            else:
                counters.retried += 1
            return
        if change.release:
            counters.release_failed += 1
        else:
            counters.retry_failed += 1
        log.warning(
            "visibility-change-failed",
            message_id=change.message.message_id,
            code=failure,
            timeout_s=change.timeout_s,
            detail="the message reappears when its current visibility timeout ends",
        )

    def _summary(self) -> dict[str, Any]:
        c = self.counters
        return {
            "received": c.received,
            "delivered": c.delivered,
            "succeeded": c.succeeded,
            "failed": c.failed,
            "deleted": c.deleted,
            "delete_failed": c.delete_failed,
            "released": c.released,
            "retried": c.retried,
            "expired": c.expired,
            "extended": c.extended,
            "lease_lost": c.lease_lost,
            "abandoned": c.abandoned,
            "channel_empty_waits": self.channel.empty_waits,
            "forced": self.forced,
        }
