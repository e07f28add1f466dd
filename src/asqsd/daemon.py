"""The daemon: the composition root that opens the clients, starts the parts, and stops them.

:class:`Daemon` opens the AWS sessions (the SQS client's credential chain, and an aiobotocore
session for the optional CloudWatch, DynamoDB and S3 clients, made only if one is), waits for the
SQS credentials (one explained log line per problem, never an exit), checks the queue,
builds the :class:`~asqsd.pipeline.pipeline.Pipeline` and the optional periodic tasks and
observers, and on :meth:`Daemon.request_stop` (SIGTERM/SIGINT) calls the pipeline's shutdown,
then stops periodic tasks and observers; resources close in reverse order of opening and a
summary line is logged. The hot path's invariants live in the pipeline; the order of start and
shutdown is described in docs/daemon.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from asqsd.backoff import Backoff
from asqsd.clients.s3 import open_s3
from asqsd.clients.sqs.base import SQSClient
from asqsd.clients.sqs.counting import CountingSQS
from asqsd.clients.sqs.credential_chain import BotocoreChain, LazyAioSession
from asqsd.clients.sqs.credentials import CredentialStatus, wait_for_credentials
from asqsd.clients.sqs.factory import open_sqs
from asqsd.clients.sqs.wire import queue_name
from asqsd.clients.worker.auth import load_worker_auth
from asqsd.clients.worker.factory import open_worker
from asqsd.config import Settings, WorkerHealthcheck
from asqsd.errors import SQSError, StartupError
from asqsd.logs import get_logger
from asqsd.observe.counters import Counters
from asqsd.observe.delivery import DeliveryStats, max_receive_count_from
from asqsd.observe.leader_status import LeaderStatus
from asqsd.observe.observers import Observers
from asqsd.observe.probes import probe_worker
from asqsd.periodic.clock import Clock
from asqsd.periodic.cron_yaml import CronTask
from asqsd.periodic.runner import PeriodicTasks
from asqsd.pipeline.dead_letter import dead_letter_queue
from asqsd.pipeline.dedup import Deduplicator, open_deduplicator
from asqsd.pipeline.intake import IntakeGate
from asqsd.pipeline.pipeline import Pipeline, PipelineParts
from asqsd.pipeline.queue_check import QueueCheck
from asqsd.pipeline.s3_pointer import PointerResolver
from asqsd.tasks import StopDeadline

if TYPE_CHECKING:
    from asqsd.pipeline.tracing import HotPathTracing

log = get_logger("daemon")

# Once forced, what the periodic tasks and observers may still take to stop: with the pipeline's
# FORCED_STOP_S, the forced exit stays within 2 s.
_FORCED_TAIL_S = 0.5


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
        botocore_session: Any = None,
    ) -> None:
        """``botocore_session``: a botocore session (or an
        :class:`~asqsd.clients.sqs.aws_config.AwsConfigSession`) already made (``asqsd run``'s region
        check) to reuse for the SQS credential chain; None makes one."""
        if settings.queue_url is None:
            raise StartupError("queue_url is required")
        self.settings = settings
        self.queue_url: str = settings.queue_url
        self.counters = Counters()
        self.credentials = CredentialStatus()
        self.delivery = DeliveryStats()
        self.ready = asyncio.Event()
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
        self._botocore_session = botocore_session
        self._stopping = asyncio.Event()
        self.queue = QueueCheck(self.queue_url, self._stopping)
        self._force = asyncio.Event()
        self._sqs: SQSClient | None = None
        self._dead_letter_queue_url: str | None = None
        self._healthcheck = WorkerHealthcheck.parse(settings.healthcheck) if settings.healthcheck else None
        # Signing secret and bearer token: read once, here, so a missing one stops the start at once.
        self._worker_auth = load_worker_auth(settings, os.environ)
        self._tracing = _open_tracing(settings, queue_name(self.queue_url))
        # Before the pipeline, so a pause asked for during start-up holds from the first receive.
        self.intake = IntakeGate(enabled=settings.pause_control, wall_clock=wall_clock)

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
        return self.queue.fifo

    def reopen_logs(self) -> None:
        """SIGHUP: reopen the stock log file (logrotate)."""
        self.observers.reopen_logs()

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Start, serve until stopped, shut down in order. Raises StartupError if SQS refuses us."""
        started = time.monotonic()
        sqs_session, session = self._aws_sessions()
        async with contextlib.AsyncExitStack() as stack:
            await self.observers.open(self, stack, control=self)
            if not await self._wait_for_credentials(sqs_session):
                return
            sqs, region = await open_sqs(sqs_session, self.settings, stack)
            self._sqs = CountingSQS(sqs, self._sqs_called)
            cloudwatch = await self._open_cloudwatch(sqs_session, session, region, stack)
            if not await self.queue.read_attributes(self._sqs):
                return
            self.delivery.max_receive_count = max_receive_count_from(
                self.queue.attributes.get("RedrivePolicy")
            )
            self._dead_letter_queue_url = dead_letter_queue(self.settings, self.queue)
            dedup = await open_deduplicator(
                session, self.settings, self.settings.region or region, stack, self.counters, self._wall_clock
            )
            s3_pointers = await self._open_s3_pointers(session, self.settings.region or region, stack)
            parts = await self._parts(stack, dedup, s3_pointers)
            pipeline = self.pipeline = Pipeline(self.settings, parts, self._crashed)
            if self.observers.health is not None:  # async_ack: the health server takes the acks
                self.observers.health.ack_receiver = pipeline.async_jobs
            attributes = None if self.queue.denied else self._sqs.get_queue_attributes
            self.observers.start(self, attributes, cloudwatch, queue_name(self.queue_url))
            if self.periodic is not None:  # no cron.yaml: no DynamoDB client, no call
                await self.periodic.open(session, self.settings.region or region, stack, self._sqs)
                self.periodic.start(self._crashed)
            pipeline.start()
            try:
                if await self.queue.confirm(pipeline.first_receive):
                    await self._serve()
            finally:
                self._stopping.set()
                self.intake.close()
                await pipeline.shutdown(self._force)
                await self._stop_periodic_and_observers()
        log.info("stopped", uptime_s=round(time.monotonic() - started, 1), **self._summary())

    async def _stop_periodic_and_observers(self) -> None:
        """Stop the periodic tasks, then the observers; once forced, cut short within
        :data:`_FORCED_TAIL_S` (a cron occurrence in hand is left to the next leader)."""

        async def stop_both() -> None:
            if self.periodic is not None:
                await self.periodic.stop()
            await self.observers.stop()

        deadline = StopDeadline(self._force, _FORCED_TAIL_S)
        task = asyncio.create_task(stop_both())
        await deadline.stop([task], None, _FORCED_TAIL_S)
        if task.done() and not task.cancelled():
            task.result()  # a failure to stop is raised here, as before

    def _aws_sessions(self) -> tuple[Any, Any]:
        """The SQS client's session and the optional AWS features' one.

        ``sqs_client: botocore``: one aiobotocore session, one credential chain for every client.
        The lean client: botocore's own chain (no aiobotocore, no aiohttp, and no botocore.session
        while the environment holds the keys: start-up time and memory, docs/daemon.md), and an
        aiobotocore session made only when a feature makes a client; it resolves the same sources
        through its own chain.
        """
        if self.settings.sqs_client == "botocore":
            from aiobotocore.session import get_session

            session = get_session()
            return session, session
        from asqsd.clients.sqs.aws_config import AwsConfigSession

        return BotocoreChain(self._botocore_session or AwsConfigSession()), LazyAioSession()

    async def _open_cloudwatch(
        self, sqs_session: Any, session: Any, region: str, stack: contextlib.AsyncExitStack
    ) -> Any:
        """The CloudWatch client, when a CloudWatch output is on: with the lean SQS client a
        :class:`~asqsd.clients.cloudwatch.LeanCloudWatch` on the same credential chain (no
        aiobotocore), else aiobotocore's."""
        if not self.observers.wants_cloudwatch():
            return None
        if self.settings.sqs_client == "botocore":
            return await self.observers.open_cloudwatch(session, region, stack)
        from asqsd.clients.cloudwatch import open_lean_cloudwatch

        return await open_lean_cloudwatch(sqs_session, region, stack)

    async def _wait_for_credentials(self, session: Any) -> bool:
        """Until the credential chain gives credentials (False: stopped first); see docs/deployment.md."""
        backoff = Backoff(base_s=1.0, cap_s=60.0, jitter=0.5)  # ~1, 2, 4 ... 60 s
        return await wait_for_credentials(session, self.credentials, self._stopping, backoff)

    def _sqs_called(self, operation: str, error: Exception | None, sent_at: float) -> None:
        self.counters.count_call(operation, error is not None)
        if self._tracing is not None:
            self._tracing.sqs_call(operation, error, sent_at)
        self._last_sqs_call_ok = error is None
        self.credentials.observe(operation, error, sent_at)

    async def _open_s3_pointers(
        self, session: Any, region: str, stack: contextlib.AsyncExitStack
    ) -> PointerResolver | None:
        """The S3 pointer resolver when ``resolve_s3_pointers`` is on (no S3 client otherwise)."""
        settings = self.settings
        if not settings.resolve_s3_pointers:
            return None
        resolver = PointerResolver(
            await open_s3(session, settings, region, stack),
            settings.success_statuses,
            delete_after_success=settings.delete_s3_payload_after_success,
        )
        stack.push_async_callback(resolver.aclose)  # before the S3 client closes
        return resolver

    async def _parts(
        self,
        stack: contextlib.AsyncExitStack,
        dedup: Deduplicator | None,
        s3_pointers: PointerResolver | None = None,
    ) -> PipelineParts:
        assert self._sqs is not None
        health = self.observers.health
        worker = self._worker_auth.wrap(await open_worker(self.settings, stack))
        return PipelineParts(
            sqs=self._sqs,
            worker=worker if self._tracing is None else self._tracing.wrap_worker(worker),
            queue_name=queue_name(self.queue_url),
            fifo=self.fifo,
            counters=self.counters,
            delivery=self.delivery,
            stock_log=self.observers.stock_log,
            wall_clock=self._wall_clock,
            dedup=dedup,
            dead_letter_queue_url=self._dead_letter_queue_url,
            probe=self.check_worker,
            ack_base_url=health.local_url if self.settings.async_ack and health is not None else None,
            tracing=self._tracing,
            s3_pointers=s3_pointers,
            intake=self.intake,
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
        log.info(
            "stopping",
            held=len(self.pipeline.leases),
            buffered=self.pipeline.channel.stats().buffered,
            waiting_for=[] if self._force.is_set() else self.pipeline.waiting_for(),
            detail="a second SIGTERM or SIGINT stops at once, leaving unfinished work to SQS",
        )

    # --- health view (asqsd.observe.health.DaemonView) ----------------------------------------
    @property
    def credential_problem(self) -> str | None:
        """The current credential problem (``credentials-missing`` ...), None when there is none."""
        return self.credentials.cause

    def gauges(self) -> dict[str, float]:
        """In-flight, buffered and held messages, plus the queue backlog when it is polled."""
        values = self.pipeline.gauges() if self.pipeline is not None else {}
        values.update(self.observers.gauges())
        values.update(self.intake.gauges())
        return values

    @property
    def periodic_leader(self) -> LeaderStatus | None:
        """The periodic-task leader election as this instance sees it; None without periodic tasks."""
        return self.periodic.leader_status() if self.periodic is not None else None

    # --- control view (asqsd.observe.control.ControlView) -------------------------------------
    @property
    def pause_control(self) -> bool:
        """The ``pause_control`` setting."""
        return self.intake.enabled

    def intake_state(self) -> Mapping[str, object]:
        """Running or paused, since and until when."""
        return self.intake.state().as_dict()

    def pause(self, seconds: float | None) -> Mapping[str, object]:
        """``POST /pause``: pause intake for ``seconds`` (None: until a resume)."""
        return self.intake.pause(seconds, "api").as_dict()

    def resume(self) -> Mapping[str, object]:
        """``POST /resume``: end every pause."""
        return self.intake.resume("api").as_dict()

    def inflight(self, limit: int) -> Mapping[str, object]:
        """The held messages and their states (none before the pipeline exists)."""
        if self.pipeline is None:
            return {"total": 0, "counts": {}, "limit": limit, "messages": []}
        return self.pipeline.inflight(limit)

    async def check_sqs(self) -> bool:
        """One cheap call on the queue; without GetQueueAttributes, whether the last call worked."""
        if self._sqs is None:
            return False
        if self.queue.denied:
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
            "dead_lettered": sum(c.dead_lettered.values()),
            "duplicates_suppressed": c.duplicates_suppressed,
            "duplicates_in_progress": c.duplicates_in_progress,
            "extended": c.extended,
            "lease_lost": c.lease_lost,
            "abandoned": c.abandoned,
            "channel_empty_waits": self.pipeline.channel.empty_waits if self.pipeline is not None else 0,
            "forced": self.forced,
        }


def _open_tracing(settings: Settings, queue: str) -> HotPathTracing | None:
    """otel_tracing's spans, or None; OpenTelemetry is imported only when the setting is on."""
    if not settings.otel_tracing:
        return None
    try:
        from asqsd.pipeline.tracing import HotPathTracing
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        raise StartupError(
            "otel_tracing is on but the OpenTelemetry API is not installed: install asqsd with its "
            "otel extra ('.[otel]' from a checkout; docs/daemon.md)"
        ) from None
    return HotPathTracing.create(queue)
