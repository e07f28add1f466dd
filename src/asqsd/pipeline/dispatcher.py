"""Dispatchers: take a message from the channel, POST it, and settle it by the outcome.

There are exactly ``http_connections`` dispatcher tasks, each handling one message at a time:
the number of tasks *is* the concurrency limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from asqsd.backoff import backoff_delay
from asqsd.clients.worker.base import DeliveryResult, Request, WorkerPoster
from asqsd.logs import get_logger, printable_bytes
from asqsd.message import Message, Outcome
from asqsd.observe.counters import Counters
from asqsd.observe.delivery import DeliveryStats, message_age_s
from asqsd.observe.stocklog import StockLogWriter
from asqsd.pipeline.channel import Channel, ChannelClosed
from asqsd.pipeline.dead_letter import DeadLetterer
from asqsd.pipeline.dedup import Deduplicator, Verdict
from asqsd.pipeline.intake import IntakeGate
from asqsd.pipeline.leases import LeaseTable
from asqsd.pipeline.outage import WorkerOutage
from asqsd.pipeline.rate_limit import TokenBucket
from asqsd.pipeline.request import StaticHeaders, build_request, unwrap_sns
from asqsd.pipeline.s3_pointer import PointerResolver, S3Pointer, is_s3_failure
from asqsd.pipeline.settle import Settler

if TYPE_CHECKING:  # async_jobs imports this module; tracing only when otel_tracing is on
    from asqsd.pipeline.async_jobs import Ack, AsyncJobs, Job
    from asqsd.pipeline.tracing import HotPathTracing

log = get_logger("dispatcher")

# SQS refuses a visibility timeout that would keep a message invisible longer than 12 hours from
# the receive that returned it (ChangeMessageVisibility); each receive starts a new 12 hours.
VISIBILITY_LIMIT_S = 43200
# error_backoff "exponential": each delay keeps at least half of its doubled ceiling, so the
# delays really grow from one receive to the next.
BACKOFF_JITTER = 0.5


@dataclass(slots=True, frozen=True)
class DeliveryPolicy:
    """The settings a dispatcher needs, read once from :class:`~asqsd.config.Settings`."""

    success_statuses: frozenset[int]
    error_visibility_timeout_s: int | None
    retention_period_s: int
    retry_after_max_s: int
    unwrap_sns: bool = False
    error_backoff: bool = False
    error_backoff_max_s: int = VISIBILITY_LIMIT_S
    log_settled: bool = False  # the settled line at info, not debug


@dataclass(slots=True, frozen=True)
class Attempt:
    """What :func:`decide` needs to know about the delivery attempt for ``error_backoff``.

    ``receive_count`` is ApproximateReceiveCount (0 when unknown: treated as the first);
    ``held_s`` how long ago the receive that returned this copy was sent.
    """

    receive_count: int = 1
    held_s: float = 0.0


_NO_ATTEMPT = Attempt()


def decide(
    result: DeliveryResult,
    policy: DeliveryPolicy,
    attempt: Attempt = _NO_ATTEMPT,
    rng: random.Random | None = None,
) -> tuple[Outcome, int | None]:
    """Outcome of a delivery, and the visibility delay for :attr:`Outcome.RETRY`.

    A worker's ``Retry-After`` wins; else ``error_visibility_timeout``, grown by
    :func:`backoff_visibility` when ``error_backoff`` is on (``rng`` draws its jitter).
    """
    if result.status is not None and result.status in policy.success_statuses:
        return Outcome.DELETE, None
    if result.retry_after_s is not None:
        return Outcome.RETRY, min(result.retry_after_s, policy.retry_after_max_s)
    if policy.error_visibility_timeout_s is not None:
        if not policy.error_backoff:
            return Outcome.RETRY, policy.error_visibility_timeout_s
        return Outcome.RETRY, backoff_visibility(policy, attempt, rng or random.Random())
    return Outcome.LEAVE, None


def backoff_visibility(policy: DeliveryPolicy, attempt: Attempt, rng: random.Random) -> int:
    """The ``error_backoff`` "exponential" delay in whole seconds.

    Receive count n gets ``d = error_visibility_timeout * 2**(n-1)`` capped at
    ``error_backoff_max_s``, jittered to [d/2, d] and rounded up; never past what is left of
    the 12-hour limit of this receive (SQS would refuse the change and the message would wait
    out its whole lease instead).
    """
    base = policy.error_visibility_timeout_s or 0
    delay = backoff_delay(
        max(attempt.receive_count, 1) - 1, base, policy.error_backoff_max_s, rng, BACKOFF_JITTER
    )
    return min(math.ceil(delay), policy.error_backoff_max_s, visibility_left(attempt))


def visibility_left(attempt: Attempt) -> int:
    """Whole seconds left of the 12-hour visibility limit of this receive."""
    return max(0, math.floor(VISIBILITY_LIMIT_S - attempt.held_s))


def is_expired(message: Message, retention_period_s: int, now_s: float) -> bool:
    """First received longer ago than the retention period (stock: delete without delivery)."""
    first = message.attributes.get("ApproximateFirstReceiveTimestamp")
    if first is None:
        return False
    try:
        first_ms = int(first)
    except ValueError:
        return False
    return now_s * 1000 - first_ms > retention_period_s * 1000


@dataclass(slots=True)
class DispatchShared:
    """What every dispatcher shares: the channel, the settler, the worker client, the counters."""

    channel: Channel
    leases: LeaseTable
    worker: WorkerPoster
    static: StaticHeaders
    policy: DeliveryPolicy
    settler: Settler
    counters: Counters
    delivery: DeliveryStats = field(default_factory=DeliveryStats)
    stock_log: StockLogWriter | None = None
    wall_clock: Callable[[], float] = time.time
    dedup: Deduplicator | None = None
    clock: Callable[[], float] = time.monotonic  # the receivers' clock (Message.received_at)
    rng: random.Random = field(default_factory=random.Random)  # error_backoff's jitter
    dead_letterer: DeadLetterer | None = None  # dead_letter_statuses / max_retries set
    outage: WorkerOutage | None = None  # the worker outage hold, when on
    async_jobs: AsyncJobs | None = None  # async_ack on: POSTs carry an ack URL, 202 holds the job
    rate_limit: TokenBucket | None = None  # max_messages_per_s, when set
    tracing: HotPathTracing | None = None  # otel_tracing's spans, when on
    s3_pointers: PointerResolver | None = None  # resolve_s3_pointers on
    intake: IntakeGate | None = None  # honours the worker's X-Asqsd-Pause-Seconds (pause_control)


class Dispatcher:
    """One delivery slot."""

    def __init__(self, shared: DispatchShared) -> None:
        self._shared = shared
        self._channel = shared.channel
        self._leases = shared.leases
        self._worker = shared.worker
        self._static = shared.static
        self._policy = shared.policy
        self._settler = shared.settler
        self._counters = shared.counters
        self._wall_clock = shared.wall_clock
        self._log_settled = _settled_logger(shared.policy.log_settled)
        self._rate = shared.rate_limit
        self.current: Message | None = None
        self._reserved = False  # async_ack: holds a place among max_async_jobs for its next POST

    async def run(self) -> None:
        """Deliver messages until the channel is closed and drained."""
        try:
            await self._run()
        finally:
            if self._reserved and self._shared.async_jobs is not None:
                self._shared.async_jobs.unreserve()

    async def _run(self) -> None:
        jobs = self._shared.async_jobs
        while True:
            if jobs is not None and not self._reserved:
                await jobs.reserve()  # max_async_jobs held: take nothing more from the channel
                self._reserved = True
            try:
                message = await self._channel.get()
            except ChannelClosed:
                return
            self.current = message
            try:
                if self._shared.tracing is None:
                    await self.handle(message)
                else:
                    with self._shared.tracing.deliver(message):
                        await self.handle(message)
            except asyncio.CancelledError:
                # Grace period over: the worker may still be processing it, so leave it alone;
                # SQS makes it visible again when its lease runs out. A message no longer held was
                # settled already (only its dedup record was being written): not abandoned.
                if self._leases.remove(message):
                    self._counters.abandoned += 1
                raise
            finally:
                self.current = None

    async def handle(self, message: Message) -> None:
        """Deliver one message (or delete it unsent if it is past the retention period, or with
        dedup on, hold it back if the dedup table says so)."""
        if is_expired(message, self._policy.retention_period_s, self._wall_clock()):
            self._expire(message)
            return
        dedup = self._shared.dedup
        if dedup is None:
            await self._deliver(message)
            return
        claim = await dedup.check(message)
        if self._held_back(message, claim.verdict):
            return
        outcome = await self._deliver(message)
        await dedup.finished(message, claim, succeeded=outcome is Outcome.DELETE)

    def _held_back(self, message: Message, verdict: Verdict) -> bool:
        # Processed before: delete it unsent. Another consumer on it: leave it alone (stock), so it
        # reappears when its lease ends; on a FIFO queue its group's later messages go back too.
        if verdict is Verdict.DELIVER:
            return False
        self._leases.remove(message)
        duplicate = verdict is Verdict.DUPLICATE
        self._group_done(message, failed=not duplicate)
        if duplicate:
            self._settler.delete(message)
        return True

    async def _deliver(self, message: Message) -> Outcome:
        received_body = message.body  # what a dead-letter copy carries, even once SNS-unwrapped
        if self._policy.unwrap_sns and (inner := unwrap_sns(message.body)) is not None:
            message.body = inner
        try:
            request = build_request(message, self._static)
        except Exception as exc:  # noqa: BLE001 - one poison message must never stop the daemon
            log.error("request-build-failed", message_id=message.message_id, error=repr(exc))
            failure = DeliveryResult(None, f"cannot build the request: {exc!r}", 0.0)
            return await self._settle(message, failure, received_body)
        if request.skipped:
            self._log_skipped(message, request)
        if request.error is not None:
            result = DeliveryResult(None, request.error, 0.0)
        else:
            if self._shared.stock_log is not None:
                self._shared.stock_log.message_sent(self._worker.base_url + request.path)
            resolver = self._shared.s3_pointers
            pointer = resolver.find(message, request) if resolver is not None else None
            jobs = self._shared.async_jobs
            if jobs is None:
                posted = await self._post(message, request, pointer)
            else:
                posted, held = await self._post_with_ack(jobs, message, request, received_body, pointer)
                if held:
                    return Outcome.HELD  # the worker answered 202: the job waits for its ack
            if posted is None:
                return self._release_held(message)
            result = posted
        return await self._settle(message, result, received_body)

    async def _post_with_ack(
        self,
        jobs: AsyncJobs,
        message: Message,
        request: Request,
        received_body: str,
        pointer: S3Pointer | None,
    ) -> tuple[DeliveryResult | None, bool]:
        """:meth:`_post` with an acknowledgement URL; and True when the worker answered 202: the
        job is held (the message stays leased) until its acknowledgement or deadline."""
        job = jobs.begin(message, received_body, request)
        result: DeliveryResult | None = None
        try:
            result = await self._post(message, request, pointer)
        finally:
            held = jobs.answered(job, result)
        if held and result is not None:
            self._reserved = False  # the place is the held job's now
            self._count_delivery(result)
            self._log_held(message, result)
        return result, held

    async def _post(
        self, message: Message, request: Request, pointer: S3Pointer | None = None
    ) -> DeliveryResult | None:
        """POST (an S3 pointer's payload fetched afresh for each attempt); during a worker outage
        hold the message and POST it again once the outage ends (None: release it instead, at
        shutdown or at the hold limit)."""
        outage = self._shared.outage
        while True:
            if outage is not None and outage.is_open and not await outage.hold(message):
                return None
            if self._rate is not None:
                await self._rate.take()
            if pointer is None:
                result = await self._worker.post(request)
            else:
                assert self._shared.s3_pointers is not None
                result = await self._shared.s3_pointers.post(self._worker, request, pointer, message)
                if is_s3_failure(result):
                    return result  # S3's failure, not the worker's: no outage bookkeeping
            if result.pause_header is not None and self._shared.intake is not None:
                self._shared.intake.pause_from_header(result.pause_header, message.message_id)
            if outage is None or not outage.record(result, message):
                return result
            log.debug("held-for-outage", message_id=message.message_id, error=result.error)

    def _release_held(self, message: Message) -> Outcome:
        # Like a buffered message at shutdown: visible again at once, no receive attempt spent.
        self._leases.remove(message)
        self._group_done(message, failed=True)
        self._settler.release([message])
        return Outcome.LEAVE

    def _expire(self, message: Message) -> None:
        self._counters.expired += 1
        log.warning(
            "expired-msg",
            message_id=message.message_id,
            first_received_ms=message.attributes.get("ApproximateFirstReceiveTimestamp"),
            retention_period_s=self._policy.retention_period_s,
        )
        if self._shared.stock_log is not None:
            first_ms = int(message.attributes["ApproximateFirstReceiveTimestamp"])
            self._shared.stock_log.expired_msg(message.message_id, self._wall_clock() - first_ms / 1000)
        self._leases.remove(message)
        self._group_done(message, failed=False)
        self._settler.delete(message)

    async def _settle(
        self,
        message: Message,
        result: DeliveryResult,
        received_body: str,
        acked: tuple[Outcome, int | None] | None = None,
    ) -> Outcome:
        """Settle by ``result``, or by ``acked``: the outcome an async acknowledgement decided for
        a 202 (that delivery was counted when the 202 came)."""
        # Drop the lease first so the heartbeat stops extending a message being settled.
        self._leases.remove(message)
        counters = self._counters
        if acked is None:
            self._count_delivery(result)
        # The attempt (receive count, time held) only matters to error_backoff: not built otherwise.
        attempt = self._attempt(message) if self._policy.error_backoff else _NO_ATTEMPT
        outcome, delay = acked or decide(result, self._policy, attempt, self._shared.rng)
        dead_letterer = self._shared.dead_letterer
        reason = None
        if outcome is not Outcome.DELETE and dead_letterer is not None:
            reason = dead_letterer.reason(message, result)
        self._shared.delivery.record(
            status=result.status,
            elapsed_s=result.elapsed_s,
            failed=outcome is not Outcome.DELETE,
            receive_count=message.receive_count,
            age_s=message_age_s(message.attributes.get("SentTimestamp"), self._wall_clock()),
        )
        if reason is None:  # a dead-lettered message's group goes on once it has left the queue
            self._group_done(message, failed=outcome is not Outcome.DELETE)
        if self._log_settled is not None:
            self._log_settled(
                "settled",
                message_id=message.message_id,
                outcome=outcome.value,
                status=result.status,
                elapsed_s=round(result.elapsed_s, 3),
            )
        if outcome is Outcome.DELETE:
            counters.succeeded += 1
            self._settler.delete(message)
            return outcome
        counters.failed += 1
        self._stock_log_failure(message, result)
        # On the last receive before the redrive threshold no retry follows: SQS dead-letters it.
        last = self._shared.delivery.is_dead_letter_bound(message.receive_count)
        next_step = {"detail": "will be dead-lettered by SQS"} if last else {"retry_in_s": delay}
        log.warning(
            "http-err" if result.status is not None else "socket-err",
            message_id=message.message_id,
            receive_count=message.receive_count,
            status=result.status,
            error=result.error,
            elapsed_s=round(result.elapsed_s, 3),
            **next_step,
            # The start of the worker's answer (log_response_bytes), when it sent a body.
            **({"response": printable_bytes(result.response_start)} if result.response_start else {}),
        )
        if dead_letterer is not None and reason is not None:
            moved = await dead_letterer.move(message, received_body, reason, result)
            self._group_done(message, failed=not moved)
            if moved:
                return Outcome.DEAD_LETTER
        if outcome is Outcome.RETRY and delay is not None:
            self._settler.retry_in(message, delay)
        return outcome

    def _count_delivery(self, result: DeliveryResult) -> None:
        counters = self._counters
        counters.delivered += 1
        counters.stale_resends += result.stale_resends
        counters.count_status(result.status)

    def _log_held(self, message: Message, result: DeliveryResult) -> None:
        if self._log_settled is not None:
            self._log_settled(
                "settled",
                message_id=message.message_id,
                outcome=Outcome.HELD.value,
                status=result.status,
                elapsed_s=round(result.elapsed_s, 3),
            )

    # --- async_ack: the end of a job the worker accepted with 202 ------------------------------
    async def finish_job(self, job: Job, ack: Ack) -> None:
        """Settle a held job by its acknowledgement: ``done`` deletes; ``fail`` is a failed
        delivery (``delay_s``, else the error visibility, backoff and dead-letter rules)."""
        assert job.result is not None
        result = job.result
        if ack.outcome == "done":
            acked: tuple[Outcome, int | None] = (Outcome.DELETE, None)
        else:
            result = replace(result, error="acknowledged fail")
            attempt = self._attempt(job.message)
            if ack.delay_s is not None:
                acked = (Outcome.RETRY, min(ack.delay_s, visibility_left(attempt)))
            else:
                acked = decide(result, self._policy, attempt, self._shared.rng)
        await self._settle(job.message, result, job.received_body, acked)

    def release_job(self, job: Job) -> None:
        """A held job past its deadline: visible again at once, for redelivery."""
        self._release_held(job.message)

    def _attempt(self, message: Message) -> Attempt:
        received_at = message.received_at
        held_s = 0.0 if received_at is None else self._shared.clock() - received_at
        return Attempt(message.receive_count, held_s)

    def _group_done(self, message: Message, failed: bool) -> None:
        # FIFO queues: the group may go on; after a failure its later messages are released so
        # they cannot overtake the failed one.
        held_back = self._channel.done(message, failed)
        if held_back:
            log.info("fifo-group-released", group=message.group_id, messages=len(held_back))
            self._settler.release(held_back)

    def _stock_log_failure(self, message: Message, result: DeliveryResult) -> None:
        stock_log = self._shared.stock_log
        if stock_log is None:
            return
        if result.status is not None:
            stock_log.http_err(message.message_id, message.receive_count, result.status, result.elapsed_s)
        else:
            stock_log.socket_err(
                message.message_id, message.receive_count, result.error or "error", result.elapsed_s
            )

    def _log_skipped(self, message: Message, request: Request) -> None:
        self._counters.headers_skipped += len(request.skipped)
        for name, reason in request.skipped:
            log.warning("header-skipped", message_id=message.message_id, header=name, reason=reason)


def _settled_logger(at_info: bool) -> Callable[..., object] | None:
    """The method the settled line is logged with, or None when its level is filtered out (checked
    once here, so a delivery does not even build the line's arguments)."""
    bound = log.bind()
    if not bound.is_enabled_for(logging.INFO if at_info else logging.DEBUG):
        return None
    method: Callable[..., object] = bound.info if at_info else bound.debug
    return method
