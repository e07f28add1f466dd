"""The daemon: the composition root that opens the clients, starts the parts, and stops them.

:class:`Daemon` creates one AWS session (shared by the SQS, CloudWatch and DynamoDB clients),
waits for its credentials (one explained log line per problem, never an exit), checks the queue,
builds the :class:`~asqsd.pipeline.pipeline.Pipeline` and the optional periodic tasks and
observers, and on :meth:`Daemon.request_stop` (SIGTERM/SIGINT) calls the pipeline's shutdown,
then stops periodic tasks and observers; resources close in reverse order of opening and a
summary line is logged. The hot path's invariants live in the pipeline; the order of start and
shutdown is described in docs/daemon.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from asqsd.backoff import Backoff
from asqsd.clients.dynamodb import open_dynamodb
from asqsd.clients.sqs.base import SQSClient
from asqsd.clients.sqs.counting import CountingSQS
from asqsd.clients.sqs.credentials import CredentialStatus, explain, wait_for_credentials
from asqsd.clients.sqs.factory import open_sqs
from asqsd.clients.sqs.wire import queue_name
from asqsd.clients.worker.factory import open_worker
from asqsd.config import Settings, WorkerHealthcheck
from asqsd.errors import SQSError, StartupError
from asqsd.logs import get_logger
from asqsd.observe.counters import Counters
from asqsd.observe.delivery import DeliveryStats, max_receive_count_from
from asqsd.observe.observers import Observers
from asqsd.observe.probes import probe_worker
from asqsd.periodic.clock import Clock
from asqsd.periodic.cron_yaml import CronTask
from asqsd.periodic.runner import PeriodicTasks
from asqsd.pipeline.dedup import Deduplicator, DedupTable
from asqsd.pipeline.pipeline import Pipeline, PipelineParts

log = get_logger("daemon")

_STARTUP_ATTRIBUTES = ("QueueArn", "VisibilityTimeout", "FifoQueue", "RedrivePolicy")


# What asqsd does without sqs:GetQueueAttributes (the stock worker-tier policy does not grant it).
_WITHOUT_ATTRIBUTES = (
    "no queue backlog gauges (asqsd_queue_*), no dead-letter-bound figures (the redrive "
    "policy's maxReceiveCount), no queue attributes in queue-ok"
)


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
        self.counters = Counters()
        self.credentials = CredentialStatus()
        self.delivery = DeliveryStats()
        self.ready = asyncio.Event()
        self.queue_attributes: dict[str, str] = {}
        self.attributes_denied = False  # the IAM policy refuses sqs:GetQueueAttributes
        self._last_sqs_call_ok = False
        self.forced = False
        self.failure: BaseException | None = None
        self.pipeline: Pipeline | None = None
        self.observers = Observers(settings)
        self.periodic = (
            PeriodicTasks(settings, list(tasks), create_table=create_registry_table, clock=periodic_clock)
            if tasks
            else None
        )
        self._wall_clock = wall_clock
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()
        self._sqs: SQSClient | None = None
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

    def reopen_logs(self) -> None:
        """SIGHUP: reopen the stock log file (logrotate)."""
        self.observers.reopen_logs()

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Start, serve until stopped, shut down in order. Raises StartupError if SQS refuses us."""
        from aiobotocore.session import get_session

        started = time.monotonic()
        session = get_session()  # one credential chain for SQS, CloudWatch and DynamoDB
        async with contextlib.AsyncExitStack() as stack:
            await self.observers.open(self, stack)
            if not await self._wait_for_credentials(session):
                return
            sqs, region = await open_sqs(session, self.settings, stack)
            self._sqs = CountingSQS(sqs, self._sqs_called)
            cloudwatch = await self.observers.open_cloudwatch(session, region, stack)
            if not await self._check_queue(self._sqs):
                return
            self.delivery.max_receive_count = max_receive_count_from(
                self.queue_attributes.get("RedrivePolicy")
            )
            dedup = await self._open_dedup(session, self.settings.region or region, stack)
            pipeline = self.pipeline = Pipeline(self.settings, await self._parts(stack, dedup), self._crashed)
            attributes = None if self.attributes_denied else self._sqs.get_queue_attributes
            self.observers.start(self, attributes, cloudwatch)
            if self.periodic is not None:  # no cron.yaml: no DynamoDB client, no call
                await self.periodic.open(session, self.settings.region or region, stack, self._sqs)
                self.periodic.start(self._crashed)
            pipeline.start()
            try:
                if await self._queue_confirmed(pipeline):
                    await self._serve()
            finally:
                self._stopping.set()
                await pipeline.shutdown(self._force)
                if self.periodic is not None:
                    await self.periodic.stop()
                await self.observers.stop()
        log.info("stopped", uptime_s=round(time.monotonic() - started, 1), **self._summary())

    async def _wait_for_credentials(self, session: Any) -> bool:
        """Until the credential chain gives credentials (False: stopped first); see docs/deployment.md."""
        backoff = Backoff(base_s=1.0, cap_s=60.0, jitter=0.5)  # ~1, 2, 4 ... 60 s
        return await wait_for_credentials(session, self.credentials, self._stopping, backoff)

    def _sqs_called(self, operation: str, error: Exception | None, sent_at: float) -> None:
        self.counters.count_call(operation, error is not None)
        self._last_sqs_call_ok = error is None
        self.credentials.observe(operation, error, sent_at)

    async def _check_queue(self, sqs: SQSClient) -> bool:
        """Read the queue's attributes; retry transient errors, fail fast on permanent ones.

        A policy that refuses GetQueueAttributes is not a failure: the first receive then
        confirms the queue (:meth:`_queue_confirmed`).
        """
        backoff = Backoff(base_s=0.5, cap_s=20.0, jitter=0.0)  # 0.5, 1, 2 ... 20 s
        while not self._stopping.is_set():
            try:
                self.queue_attributes = await sqs.get_queue_attributes(_STARTUP_ATTRIBUTES)
                log.info("queue-ok", queue=queue_name(self.queue_url), **self.queue_attributes)
                return True
            except SQSError as exc:
                if exc.denied:
                    self._without_attributes(exc)
                    return True
                if not exc.retryable:
                    raise StartupError(f"queue {self.queue_url}: {exc.code}: {exc}") from exc
                delay = backoff.next_delay()
                if explain(exc) is None:  # a credential problem is logged once, by self.credentials
                    log.warning("queue-check-failed", code=exc.code, error=str(exc), retry_in_s=delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
        return False

    def _without_attributes(self, exc: SQSError) -> None:
        self.attributes_denied = True
        log.warning(
            "queue-attributes-denied",
            queue=queue_name(self.queue_url),
            permission=exc.permission,
            code=exc.code,
            fifo=self.fifo,
            turned_off=_WITHOUT_ATTRIBUTES,
            detail="running without them: FIFO is read from the queue name (.fifo), and the first "
            "ReceiveMessage confirms the queue",
        )

    async def _queue_confirmed(self, pipeline: Pipeline) -> bool:
        """Without GetQueueAttributes, the first receive's answer is the queue check.

        Its permanent errors (the queue does not exist, ReceiveMessage is not allowed) end the
        start-up like the attribute check's would; False if a stop came first.
        """
        if not self.attributes_denied:
            return True
        first = pipeline.first_receive
        settled = asyncio.create_task(first.settled.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({settled, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            settled.cancel()
            stopping.cancel()
        if first.error is not None:
            error = first.error
            hint = f" (the IAM policy must allow {error.permission} on this queue)" if error.denied else ""
            raise StartupError(f"queue {self.queue_url}: {error.code}: {error}{hint}") from error
        if not first.settled.is_set():
            return False
        log.info("queue-ok", queue=queue_name(self.queue_url), fifo=self.fifo, confirmed_by="ReceiveMessage")
        return True

    async def _open_dedup(
        self, session: Any, region: str | None, stack: contextlib.AsyncExitStack
    ) -> Deduplicator | None:
        """The dedup table's client and a first read of it; without ``dedup``, no DynamoDB call."""
        settings = self.settings
        if not settings.dedup or settings.dedup_table is None:
            return None
        table = DedupTable(await open_dynamodb(session, region, stack), settings.dedup_table, self.queue_url)
        await table.check_access()  # a missing table or denied access ends start-up (exit 3)
        log.info("dedup-on", table=table.name, in_progress_window_s=settings.visibility_timeout)
        return Deduplicator(
            table,
            window_s=settings.visibility_timeout,
            retention_s=settings.retention_period,
            counters=self.counters,
            wall_clock=self._wall_clock,
        )

    async def _parts(self, stack: contextlib.AsyncExitStack, dedup: Deduplicator | None) -> PipelineParts:
        assert self._sqs is not None
        return PipelineParts(
            sqs=self._sqs,
            worker=await open_worker(self.settings, stack),
            queue_name=queue_name(self.queue_url),
            fifo=self.fifo,
            counters=self.counters,
            delivery=self.delivery,
            stock_log=self.observers.stock_log,
            wall_clock=self._wall_clock,
            dedup=dedup,
        )

    def _crashed(self, exc: BaseException) -> None:
        # A bug, not an SQS or worker problem (those are handled in the loops): stop cleanly.
        self.failure = exc
        log.error("component-crashed", error=repr(exc), exc_info=exc)
        self.request_stop()

    async def _serve(self) -> None:
        settings = self.settings
        assert self.pipeline is not None
        self.ready.set()
        log.info(
            "started",
            queue=queue_name(self.queue_url),
            worker=settings.worker_url + settings.http_path,
            receivers=settings.receiver_count,
            http_connections=settings.http_connections,
            buffer=settings.buffer_capacity,
            heartbeat=self.pipeline.heartbeat is not None,
            loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
        )
        await self._stopping.wait()
        log.info("stopping", held=len(self.pipeline.leases), buffered=self.pipeline.channel.stats().buffered)

    # --- health view (asqsd.observe.health.DaemonView) ----------------------------------------
    @property
    def credential_problem(self) -> str | None:
        """The current credential problem (``credentials-missing`` ...), None when there is none."""
        return self.credentials.cause

    def gauges(self) -> dict[str, float]:
        """In-flight, buffered and held messages, plus the queue backlog when it is polled."""
        values = self.pipeline.gauges() if self.pipeline is not None else {}
        values.update(self.observers.gauges())
        return values

    async def check_sqs(self) -> bool:
        """One cheap call on the queue; without GetQueueAttributes, whether the last call worked."""
        if self._sqs is None:
            return False
        if self.attributes_denied:
            # No permitted call is free of side effects: the calls the daemon makes anyway answer.
            return self._last_sqs_call_ok
        try:
            await self._sqs.get_queue_attributes(["QueueArn"])
        except SQSError:
            return False
        return True

    async def check_worker(self) -> bool:
        """The worker port accepts a connection (or the stock HTTP health check answers 200)."""
        return await probe_worker(self.settings.worker_url, self._healthcheck, self.settings.connect_timeout)

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
            "duplicates_suppressed": c.duplicates_suppressed,
            "duplicates_in_progress": c.duplicates_in_progress,
            "extended": c.extended,
            "lease_lost": c.lease_lost,
            "abandoned": c.abandoned,
            "channel_empty_waits": self.pipeline.channel.empty_waits if self.pipeline is not None else 0,
            "forced": self.forced,
        }
