"""Asynchronous acknowledgement (``async_ack``): jobs a worker accepted with 202 and settles later.

With ``async_ack`` on, every POST carries an ``X-Asqsd-Ack-Url`` header: the health server's
``/ack/<token>``, the token unguessable and new for each POST. A worker that answers 202 keeps
the job: its dispatcher is free again, the message stays in the lease table (so the heartbeat
keeps it invisible) and :class:`AsyncJobs` holds it until the worker POSTs
``{"outcome": "done" | "fail" | "extend"}`` to that URL, or its deadline passes.

Bounds: at most ``max_async_jobs`` tokens exist at once (held jobs plus dispatchers ready to
POST), so when it is full no new POST starts and the channel, then receiving, stops. A held job's
deadline is ``async_ack_deadline_s`` after the 202 or the last ``extend``, never later than SQS's
12-hour visibility limit allows; past it the message is released for redelivery. Settled tokens
are remembered (a bounded number, oldest forgotten first) so a repeated or late acknowledgement
gets a precise answer (409, 410) rather than 404.

State changes are synchronous; the SQS work they lead to (delete, retry, release) is done by the
callbacks, the asynchronous one in a spawned task. See docs/daemon.md for the worker's view.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from asqsd.clients.worker.base import DeliveryResult, Request
from asqsd.logs import get_logger
from asqsd.message import Message
from asqsd.observe.counters import ASYNC_ACK_OUTCOMES, Counters
from asqsd.pipeline.dispatcher import VISIBILITY_LIMIT_S

log = get_logger("async-ack")

ACK_HEADER = "X-Asqsd-Ack-Url"
ACCEPTED = 202
_TOKEN_BYTES = 24  # 192 random bits, 32 URL-safe characters
_REMEMBERED_MIN = 1000


class AckError(ValueError):
    """An acknowledgement body that is not ``{"outcome": ..., "delay_s": ...}`` (answered 400)."""


@dataclass(slots=True, frozen=True)
class Ack:
    """A parsed acknowledgement: ``done``, ``fail`` (optionally with a visibility delay) or ``extend``."""

    outcome: str
    delay_s: int | None = None


def parse_ack(body: bytes) -> Ack:
    """The acknowledgement in ``body``; raises :class:`AckError` saying what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise AckError('body is not JSON; send {"outcome": "done" | "fail" | "extend"}') from None
    if not isinstance(data, dict):
        raise AckError('body must be a JSON object like {"outcome": "done"}')
    unknown = sorted(set(data) - {"outcome", "delay_s"})
    if unknown:
        raise AckError(f"unknown field(s): {', '.join(unknown)}")
    outcome = data.get("outcome")
    if outcome not in ASYNC_ACK_OUTCOMES:
        raise AckError(f"outcome must be one of {', '.join(ASYNC_ACK_OUTCOMES)}; got {outcome!r}")
    delay = data.get("delay_s")
    if delay is None:
        return Ack(outcome)
    if outcome != "fail":
        raise AckError("delay_s goes only with outcome fail")
    if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= VISIBILITY_LIMIT_S:
        raise AckError(f"delay_s must be a whole number of seconds from 0 to {VISIBILITY_LIMIT_S}")
    return Ack(outcome, delay)


@dataclass(slots=True)
class Job:
    """One POST with an acknowledgement URL: posting until its answer, then held if it was 202."""

    message: Message
    token: str
    received_body: str  # what a dead-letter copy carries (the body as received)
    result: DeliveryResult | None = None  # the POST's answer, once it came
    deadline: float = 0.0  # monotonic; set when held
    early: Ack | None = None  # done/fail reported before the 202 reached asqsd


@dataclass(slots=True, frozen=True)
class AckAnswer:
    """The HTTP answer to an acknowledgement: status and JSON body."""

    status: int
    body: dict[str, object]


Finish = Callable[[Job, Ack], Coroutine[Any, Any, None]]
Release = Callable[[Job], None]
Spawn = Callable[[Coroutine[Any, Any, None]], object]


@dataclass(slots=True, frozen=True)
class AsyncPolicy:
    """The ``async_ack`` settings, read once."""

    base_url: str  # the health server's URL; tokens go under /ack/
    max_jobs: int
    deadline_s: float
    visibility_timeout_s: int


class AsyncJobs:
    """The registry of acknowledgement tokens and held jobs (see the module docstring)."""

    def __init__(
        self,
        policy: AsyncPolicy,
        counters: Counters,
        *,
        finish: Finish,
        release: Release,
        spawn: Spawn,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._counters = counters
        self._finish = finish
        self._release = release
        self._spawn = spawn
        self._clock = clock
        self._jobs: dict[str, Job] = {}  # posting and held, by token
        self._held = 0
        self._reserved = 0
        self._settled: OrderedDict[str, str] = OrderedDict()  # token → how it ended (bounded)
        self._remember = max(_REMEMBERED_MIN, 4 * policy.max_jobs)
        self._room = asyncio.Event()
        self._room.set()
        self._closed = asyncio.Event()
        self._stopping = False  # shutdown began: dispatchers no longer wait for room
        self._tick_s = min(1.0, policy.deadline_s / 10)

    @property
    def held(self) -> int:
        """Jobs answered 202 and not yet settled."""
        return self._held

    # --- the dispatchers' side -----------------------------------------------------------------
    async def reserve(self) -> None:
        """Wait until a job may start (held jobs plus reservations below ``max_jobs``), take a place."""
        while self._held + self._reserved >= self._policy.max_jobs and not self._stopping:
            self._room.clear()
            await self._room.wait()
        self._reserved += 1

    def unreserve(self) -> None:
        """Give back a place that did not become a held job."""
        self._reserved -= 1
        self._room.set()

    def begin(self, message: Message, received_body: str, request: Request) -> Job:
        """A new token for this POST; its URL goes into ``request``'s headers."""
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        job = Job(message, token, received_body)
        self._jobs[token] = job
        request.headers[ACK_HEADER] = f"{self._policy.base_url}/ack/{token}"
        return job

    def answered(self, job: Job, result: DeliveryResult | None) -> bool:
        """The POST ended (``result`` None: cancelled). True if the job is now held (a 202): the
        caller's reservation became the job. Else the token is retired; the answer settles it."""
        job.result = result
        if result is None or result.status != ACCEPTED or self._closed.is_set():
            del self._jobs[job.token]
            self._retire(job.token, "answered")
            if job.early is not None:
                log.warning(
                    "async-ack-ignored",
                    message_id=job.message.message_id,
                    outcome=job.early.outcome,
                    status=None if result is None else result.status,
                    detail="acknowledged before the POST was answered, and the answer was not 202",
                )
            return False
        self._held += 1
        self._reserved -= 1
        job.deadline = self._deadline(job)
        if job.early is not None:
            self._settle(job, job.early)
        return True

    # --- the worker's side (the health server's /ack/<token>) ----------------------------------
    def acknowledge(self, token: str, body: bytes) -> AckAnswer:
        """Apply one acknowledgement; the answer says what happened (see docs/daemon.md)."""
        if self._closed.is_set():
            return AckAnswer(503, {"error": "asqsd is stopping; the message reappears when its lease ends"})
        job = self._jobs.get(token)
        ended = self._settled.get(token)
        if job is None and ended is None:
            return AckAnswer(404, {"error": "unknown acknowledgement token"})
        try:
            ack = parse_ack(body)
        except AckError as exc:
            return AckAnswer(400, {"error": str(exc)})
        if job is None:
            return self._after_end(ack, ended or "")
        if job.result is None:
            return self._early(job, ack)
        if ack.outcome == "extend":
            job.deadline = self._deadline(job)
            self._counters.async_acks["extend"] += 1
            left = round(job.deadline - self._clock(), 3)
            return AckAnswer(200, {"status": "applied", "outcome": "extend", "deadline_in_s": left})
        self._settle(job, ack)
        return AckAnswer(200, {"status": "applied", "outcome": ack.outcome})

    def _early(self, job: Job, ack: Ack) -> AckAnswer:
        # The worker may report before its 202 reaches asqsd (a fast background job): the outcome
        # is kept and applied when the 202 arrives.
        if ack.outcome == "extend":
            return AckAnswer(200, {"status": "applied", "outcome": "extend"})
        if job.early is not None and job.early != ack:
            return AckAnswer(409, {"error": "already acknowledged", "outcome": job.early.outcome})
        job.early = ack
        return AckAnswer(200, {"status": "recorded", "outcome": ack.outcome})

    def _after_end(self, ack: Ack, ended: str) -> AckAnswer:
        if ended == "expired":
            return AckAnswer(410, {"error": "past the deadline: the message was released for redelivery"})
        if ended == "answered":
            return AckAnswer(409, {"error": "the answer to the POST settled this message (not a 202)"})
        if ack.outcome == ended:
            # The same outcome again: a worker retrying an acknowledgement whose answer it lost gets
            # the answer it would have had; it changes nothing.
            return AckAnswer(200, {"status": "already-applied", "outcome": ended})
        return AckAnswer(409, {"error": "already acknowledged", "outcome": ended})

    def _settle(self, job: Job, ack: Ack) -> None:
        del self._jobs[job.token]
        self._held -= 1
        self._room.set()
        self._retire(job.token, ack.outcome)
        self._counters.async_acks[ack.outcome] += 1
        self._spawn(self._finish(job, ack))

    def _retire(self, token: str, how: str) -> None:
        self._settled[token] = how
        while len(self._settled) > self._remember:
            self._settled.popitem(last=False)

    def _deadline(self, job: Job) -> float:
        deadline = self._clock() + self._policy.deadline_s
        received_at = job.message.received_at
        if received_at is not None:
            # The heartbeat extends by one visibility timeout at a time: stop before SQS would refuse.
            limit = received_at + VISIBILITY_LIMIT_S - self._policy.visibility_timeout_s
            deadline = min(deadline, limit)
        return deadline

    # --- deadlines and shutdown ----------------------------------------------------------------
    async def run(self) -> None:
        """Release held jobs past their deadline, every tick, until :meth:`close`."""
        while not self._closed.is_set():
            try:
                async with asyncio.timeout(self._tick_s):
                    await self._closed.wait()
            except TimeoutError:
                self.expire_due()

    def expire_due(self) -> int:
        """Release every held job past its deadline; returns how many."""
        now = self._clock()
        due = [job for job in self._jobs.values() if job.result is not None and job.deadline <= now]
        for job in due:
            del self._jobs[job.token]
            self._held -= 1
            self._retire(job.token, "expired")
            self._counters.async_jobs_expired += 1
            log.warning(
                "async-job-expired",
                message_id=job.message.message_id,
                deadline_s=self._policy.deadline_s,
                detail="no acknowledgement in time; released for redelivery",
            )
            self._release(job)
        if due:
            self._room.set()
        return len(due)

    def stop_reserving(self) -> None:
        """Shutdown began: let dispatchers waiting for room go on (to find the channel closed)."""
        self._stopping = True
        self._room.set()

    def close(self) -> list[Message]:
        """Stop: later acknowledgements get 503, waiting reservers go on; returns the messages of
        held jobs, which are left to SQS (they reappear when their lease ends)."""
        self._closed.set()
        self.stop_reserving()
        held = [job.message for job in self._jobs.values() if job.result is not None]
        if held:
            log.info("async-jobs-left", jobs=len(held), detail="left to SQS; they reappear later")
        return held
