"""The pipeline: receivers → channel → dispatchers → settler, with the heartbeat beside them.

:class:`Pipeline` builds the hot path for one queue, starts its tasks and shuts it down in a
fixed order. Invariant: every received receipt handle is at any time in exactly one of the
channel (buffered), a dispatcher (being delivered), the settler (pending delete or visibility
change), released (visibility 0), or abandoned after the grace period (left to its lease). A
message is deleted only after the worker answered a success status (or it was past the
retention period, or the dedup table records it as processed, or it was sent to the dead-letter
queue), so every failure path ends in redelivery by SQS, never in loss. The shutdown phases are
listed in :meth:`Pipeline.shutdown`; docs/daemon.md tells the longer story.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asqsd.clients.sqs.base import SQSClient
from asqsd.clients.sqs.factory import POLL_SLACK_S
from asqsd.clients.worker.base import WorkerPoster
from asqsd.config import Settings
from asqsd.logs import get_logger
from asqsd.observe.counters import Counters
from asqsd.observe.delivery import DeliveryStats
from asqsd.observe.gauges import ASYNC_JOBS_HELD, CHANNEL_DEPTH, HELD_MESSAGES, IN_FLIGHT, WORKER_OUTAGE
from asqsd.observe.stocklog import StockLogWriter
from asqsd.pipeline.async_jobs import AsyncJobs, AsyncPolicy
from asqsd.pipeline.channel import Channel, GroupedChannel
from asqsd.pipeline.dead_letter import DeadLetterer
from asqsd.pipeline.dedup import Deduplicator
from asqsd.pipeline.dispatcher import DeliveryPolicy, Dispatcher, DispatchShared
from asqsd.pipeline.heartbeat import Heartbeat
from asqsd.pipeline.inflight import inflight_report
from asqsd.pipeline.intake import IntakeGate
from asqsd.pipeline.leases import LeaseTable
from asqsd.pipeline.outage import WorkerOutage
from asqsd.pipeline.rate_limit import TokenBucket
from asqsd.pipeline.receiver import FirstReceive, ReceivePolicy, Receiver
from asqsd.pipeline.request import StaticHeaders, attempt_limit
from asqsd.pipeline.s3_pointer import PointerResolver
from asqsd.pipeline.settle import Settler
from asqsd.tasks import OnCrash, StopDeadline, TaskSet

if TYPE_CHECKING:  # imported only when otel_tracing is on (daemon.py)
    from asqsd.pipeline.tracing import HotPathTracing

log = get_logger("daemon")  # shutdown log lines keep the component name they always had

# How long the pipeline's shutdown goes on once forced (a second signal), all steps together: it
# cancels polls and POSTs at once and spends this on the settle flush; the daemon's own closing
# steps fit in the rest of the 2 s a forced stop promises.
FORCED_STOP_S = 1.0
_HEARTBEAT_STOP_S = 5.0


@dataclass(slots=True, frozen=True)
class PipelineParts:
    """What the pipeline is built from: the clients and the figures it writes."""

    sqs: SQSClient
    worker: WorkerPoster
    queue_name: str
    fifo: bool
    counters: Counters
    delivery: DeliveryStats
    stock_log: StockLogWriter | None = None
    wall_clock: Callable[[], float] = time.time
    dedup: Deduplicator | None = None  # the dedup table, when dedup is on
    dead_letter_queue_url: str | None = None  # set when dead_letter_statuses or max_retries is on
    probe: Callable[[], Awaitable[bool]] | None = None  # worker probe; None: no outage hold
    ack_base_url: str | None = None  # async_ack: the health server's URL; None: off
    tracing: HotPathTracing | None = None  # otel_tracing's spans, when on
    s3_pointers: PointerResolver | None = None  # set when resolve_s3_pointers is on
    intake: IntakeGate | None = None  # pause and resume (pause_control); None: never paused


class Pipeline:
    """The hot path of one daemon: create, :meth:`start`, then :meth:`shutdown` once."""

    def __init__(self, settings: Settings, parts: PipelineParts, on_crash: OnCrash) -> None:
        self._settings = settings
        self._parts = parts
        self.leases = LeaseTable()
        capacity = settings.buffer_capacity
        self.channel: Channel = GroupedChannel(capacity) if parts.fifo else Channel(capacity)
        self.settler = Settler(parts.sqs, self.leases, parts.counters, settings.delete_batch_wait_s)
        if parts.s3_pointers is not None:
            self.settler.on_deleted = parts.s3_pointers.message_deleted
        self.dead_letterer: DeadLetterer | None = None
        if parts.dead_letter_queue_url is not None:
            self.dead_letterer = DeadLetterer(
                parts.sqs,
                parts.dead_letter_queue_url,
                settings,
                self.settler,
                parts.counters,
                parts.wall_clock,
            )
        self.heartbeat: Heartbeat | None = None
        if settings.heartbeat and settings.visibility_timeout >= 1:
            self.heartbeat = Heartbeat(parts.sqs, self.leases, settings.visibility_timeout, parts.counters)
        self.first_receive = FirstReceive()
        self.rate_limit: TokenBucket | None = None
        if settings.max_messages_per_s is not None:
            self.rate_limit = TokenBucket(settings.max_messages_per_s, settings.rate_limit_burst)
        self._receivers: dict[Receiver, asyncio.Task[None]] = {}
        self._dispatchers: dict[Dispatcher, asyncio.Task[None]] = {}
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._tasks = TaskSet(on_crash)
        self.outage: WorkerOutage | None = None
        # Holding needs the heartbeat: without it a held message's lease would lapse.
        if settings.worker_outage_hold and parts.probe is not None and self.heartbeat is not None:
            self.outage = WorkerOutage(
                threshold=settings.outage_threshold,
                statuses=settings.outage_statuses or frozenset(),
                probe=parts.probe,
                spawn=self._tasks.spawn,
                counters=parts.counters,
                wall_clock=parts.wall_clock,
            )
        self.intake = parts.intake
        if self.intake is not None:
            self.intake.on_pause = self._release_unstarted
        self.async_jobs: AsyncJobs | None = None
        if settings.async_ack and parts.ack_base_url is not None and self.heartbeat is not None:
            self.async_jobs = self._build_async_jobs(parts.ack_base_url)

    def _build_async_jobs(self, base_url: str) -> AsyncJobs:
        settings = self._settings
        policy = AsyncPolicy(
            base_url, settings.max_async_jobs, settings.async_ack_deadline_s, settings.visibility_timeout
        )
        # A dispatcher that is never run: it settles the jobs that end by acknowledgement or deadline.
        jobs = AsyncJobs(
            policy,
            self._parts.counters,
            finish=lambda job, ack: finisher.finish_job(job, ack),
            release=lambda job: finisher.release_job(job),
            spawn=self._tasks.spawn,
        )
        finisher = Dispatcher(self._dispatch_shared(jobs))
        return jobs

    # --- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the settler and heartbeat first, then the dispatchers and receivers."""
        self.settler.start(self._tasks)
        if self.heartbeat is not None:
            self._heartbeat_task = self._tasks.spawn(self.heartbeat.run())
        if self.async_jobs is not None:
            self._tasks.spawn(self.async_jobs.run())
        for _ in range(self._settings.http_connections):
            dispatcher = Dispatcher(self._dispatch_shared(self.async_jobs))
            self._dispatchers[dispatcher] = self._tasks.spawn(dispatcher.run())
        for receiver in self._build_receivers():
            self._receivers[receiver] = self._tasks.spawn(receiver.run())

    def _build_receivers(self) -> list[Receiver]:
        settings, parts = self._settings, self._parts
        policy = ReceivePolicy(settings.wait_time_s, settings.visibility_timeout)
        return [
            Receiver(
                index,
                parts.sqs,
                self.channel,
                self.leases,
                policy,
                parts.counters,
                self.settler.release,
                first=self.first_receive,
                outage=self.outage,
                rate_limit=self.rate_limit,
                intake=self.intake,
            )
            for index in range(settings.receiver_count)
        ]

    def _dispatch_shared(self, async_jobs: AsyncJobs | None) -> DispatchShared:
        settings, parts = self._settings, self._parts
        return DispatchShared(
            channel=self.channel,
            leases=self.leases,
            worker=parts.worker,
            static=StaticHeaders(
                settings.mime_type,
                settings.user_agent,
                parts.queue_name,
                settings.http_path,
                attempt_limit(parts.delivery.max_receive_count, settings.max_retries),
                trace_headers=settings.trace_headers,
            ),
            policy=DeliveryPolicy(
                settings.success_statuses,
                settings.error_visibility_timeout,
                settings.retention_period,
                settings.retry_after_max_s,
                settings.unwrap_sns,
                settings.error_backoff == "exponential",
                settings.error_backoff_max_s,
                settings.log_settled,
            ),
            settler=self.settler,
            counters=parts.counters,
            delivery=parts.delivery,
            stock_log=parts.stock_log,
            wall_clock=parts.wall_clock,
            dedup=parts.dedup,
            dead_letterer=self.dead_letterer,
            outage=self.outage,
            async_jobs=async_jobs,
            rate_limit=self.rate_limit,
            tracing=parts.tracing,
            s3_pointers=parts.s3_pointers,
            intake=self.intake,
        )

    def _release_unstarted(self) -> None:
        # Intake paused: what is buffered goes back to SQS at once, so a paused daemon holds
        # only the messages whose POST already began.
        buffered = self.channel.take_buffered()
        if buffered:
            log.info("paused-buffer-released", messages=len(buffered))
            self.settler.release(buffered)

    # --- what it holds ---------------------------------------------------------------------------
    @property
    def receivers_polling(self) -> int:
        """How many ReceiveMessage calls are outstanding right now."""
        return sum(1 for receiver in self._receivers if receiver.polling)

    def inflight(self, limit: int) -> dict[str, object]:
        """Every held message and its state (``GET /inflight``), the ``limit`` oldest listed."""
        current = [d.current for d in self._dispatchers if d.current is not None]
        return inflight_report(self.leases, current, self.settler.unsettled(), time.monotonic(), limit)

    def gauges(self) -> dict[str, float]:
        """In-flight, buffered and held messages, and whether a worker outage is open."""
        gauges: dict[str, float] = {
            IN_FLIGHT: sum(1 for d in self._dispatchers if d.current is not None),
            CHANNEL_DEPTH: self.channel.stats().buffered,
            HELD_MESSAGES: len(self.leases),
        }
        if self.outage is not None:
            gauges[WORKER_OUTAGE] = 1 if self.outage.active else 0
        if self.async_jobs is not None:
            gauges[ASYNC_JOBS_HELD] = self.async_jobs.held
        return gauges

    # --- shutdown --------------------------------------------------------------------------------
    async def shutdown(self, force: asyncio.Event) -> None:
        """Stop in order; ``force`` (a second signal) cuts every wait short: from then on all the
        steps together end within :data:`FORCED_STOP_S`."""
        deadline = StopDeadline(force, FORCED_STOP_S)
        self._stop_intake()  # 1. no new ReceiveMessage; what an outstanding poll returns is released
        self._release_buffered()  # 2. buffered, unstarted messages go back to SQS at once
        if self.outage is not None:
            self.outage.stop()  # ... and so do messages held for a worker outage
        if self.async_jobs is not None:
            self.async_jobs.stop_reserving()  # dispatchers waiting for max_async_jobs room go on
        await self._drain_dispatchers(deadline)  # 3. in-flight POSTs get shutdown_grace_s to finish
        await self._cancel_stragglers(deadline)  # 4. then they are cancelled and left to SQS
        await self._wait_receivers(deadline)  # 5. outstanding polls end (bounded by wait time + slack)
        await self._stop_heartbeat(deadline)  # 6. leases are no longer extended
        self._leave_async_jobs()  # ... and jobs still waiting for an acknowledgement are left to SQS
        # 7. pending deletes and visibility changes are sent, bounded by flush_timeout_s.
        await self.settler.flush(self._settings.flush_timeout_s, deadline)

    def waiting_for(self) -> list[str]:
        """What a graceful shutdown started now would wait for, and the bound of each wait."""
        settings = self._settings
        waits = []
        posting = self.gauges()[IN_FLIGHT]
        if posting or (self.channel.stats().buffered and not settings.release_buffered_on_shutdown):
            waits.append(f"in-flight POSTs ({posting:g}, up to {settings.shutdown_grace_s:g} s)")
        if polling := self.receivers_polling:
            waits.append(
                f"outstanding long polls ({polling}, up to {settings.wait_time_s + POLL_SLACK_S:g} s)"
            )
        if unsent := self.settler.pending:
            waits.append(
                f"pending deletes and visibility changes ({unsent}, up to {settings.flush_timeout_s:g} s)"
            )
        return waits

    def _stop_intake(self) -> None:
        for receiver, task in self._receivers.items():
            if not receiver.stop():
                task.cancel()  # idle (waiting for capacity or backing off): nothing to lose

    def _release_buffered(self) -> None:
        if self._settings.release_buffered_on_shutdown:
            buffered = self.channel.close()
            if buffered:
                log.info("releasing-buffered", messages=len(buffered))
            self.settler.release(buffered)
        else:
            self.channel.close_keep_buffer()  # delivered within the grace period instead

    async def _drain_dispatchers(self, deadline: StopDeadline) -> None:
        if deadline.forced:
            return
        grace = deadline.end_after(self._settings.shutdown_grace_s)
        await deadline.wait(self._dispatchers.values(), grace, until_forced=True)

    async def _cancel_stragglers(self, deadline: StopDeadline) -> None:
        # Whatever is still buffered (drain mode ran out of time, or FIFO groups freed after the
        # dispatchers left) goes back to SQS now rather than after its lease.
        self.settler.release(self.channel.close())
        stragglers = [t for t in self._dispatchers.values() if not t.done()]
        if not stragglers:
            return
        log.warning(
            "abandoning-in-flight", messages=len(stragglers), detail="left to SQS; they reappear later"
        )
        # The worker may still be running these: their messages are left alone, not released.
        await deadline.stop(stragglers, 0, self._settings.cancel_deadline_s or None)

    async def _wait_receivers(self, deadline: StopDeadline) -> None:
        # Graceful: an outstanding poll is let finish (see receiver.py). Forced: cancelled at once;
        # what it would have returned stays invisible until its visibility timeout, then reappears.
        await deadline.stop(
            self._receivers.values(),
            self._settings.wait_time_s + POLL_SLACK_S,
            self._settings.cancel_deadline_s or None,
            until_forced=True,
        )

    def _leave_async_jobs(self) -> None:
        # Acknowledgements were applied until now; from here they get 503 and the held messages
        # reappear when their lease ends (the worker may still be running them).
        if self.async_jobs is not None:
            for message in self.async_jobs.close():
                self.leases.remove(message)

    async def _stop_heartbeat(self, deadline: StopDeadline) -> None:
        if self.heartbeat is not None and self._heartbeat_task is not None:
            self.heartbeat.stop()
            await deadline.stop([self._heartbeat_task], _HEARTBEAT_STOP_S, 1.0)
