"""Periodic tasks: the elected leader enqueues each ``cron.yaml`` occurrence exactly once.

The stock daemon's periodic tasks, with these choices (docs/periodic-tasks.md explains them at length):

* **Timing.** While leading, the scheduler sleeps until the earliest next occurrence of any task
  (UTC, minute resolution; interruptible by :meth:`PeriodicScheduler.stop` and by losing
  leadership), then handles every task due at that minute. Unlike stock it never enqueues early.
* **Exactly once across leaders.** Before sending, it *claims* the occurrence with a conditional
  write on the task's registry item (``attribute_not_exists(schedule_time) OR schedule_time <
  :occurrence``). Two overlapping leaders, or a leader that restarted, cannot both win a claim,
  so no occurrence is enqueued twice. After the send it records ``update_time`` (and the
  ``message_id``) on the same item. The price: a leader that dies between claim and send loses
  that occurrence (at most once), which a new leader logs as an unconfirmed claim.
* **Send failures.** Retryable SQS errors are retried ``send_attempts`` times with jittered
  backoff. If the send still fails, the claim is rolled back (so the occurrence counts as missed),
  and the leader steps down for ``step_down_cooldown_s`` like stock; whichever instance leads
  next sends the missed occurrence under the missed-run rule below.
* **Missed runs** (a saner variant of stock's "hole detection"). When an occurrence was not
  enqueued -- the old leader died, nobody led, the loop was late -- the most recent missed
  occurrence of each task is enqueued once, stamped with its *own* time, if it is at most
  ``missed_run_grace_s`` old; older ones, and earlier missed ones, are skipped and logged. Tasks
  without a registry item (never run) recover nothing, as in stock.
* **FIFO queues** are supported: the message carries ``MessageGroupId`` = the task name and
  ``MessageDeduplicationId`` = ``<task name>-<scheduled epoch>`` (hashed when the name does not
  fit SQS's rules), so SQS's own five-minute deduplication backs up the claim.

Registry items (one per task, ``id`` = task name): ``schedule_time`` (epoch seconds of the last
claimed occurrence), ``update_time`` (when it was sent, stock field), ``message_id``,
``claimed_by`` (leader identity) and ``claim_time``. Nothing here does I/O before :meth:`run`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from asqsd.backoff import Backoff
from asqsd.clients.dynamodb import DynamoDBError
from asqsd.clients.sqs.base import SQSClient
from asqsd.clients.sqs.wire import queue_name
from asqsd.errors import SQSError
from asqsd.logs import get_logger
from asqsd.periodic.clock import Clock, SystemClock, wait_first
from asqsd.periodic.cron_yaml import CronTask, task_message
from asqsd.periodic.leader import Leadership
from asqsd.periodic.registry import RegistryTable

__all__ = ["PeriodicScheduler", "SchedulerCounters", "enqueue_occurrence", "fifo_ids"]

# SQS's rule for MessageGroupId and MessageDeduplicationId: 1-128 of these characters.
_FIFO_ID = re.compile(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}")
# A stale leadership event lasts at most one election round; re-check this often meanwhile.
_STALE_LEADERSHIP_PAUSE_S = 0.05

log = get_logger("scheduler")


@dataclass(slots=True)
class SchedulerCounters:
    """What the scheduler has done, for logs, metrics and tests."""

    enqueued: int = 0
    claimed_elsewhere: int = 0
    skipped_late: int = 0
    send_failures: int = 0
    step_downs: int = 0


class _GiveUp(Exception):
    """This leader cannot enqueue an occurrence; it steps down (the occurrence stays unclaimed)."""


class _SteppedDown(Exception):
    """Leadership was given up; go back to waiting for it."""


def fifo_ids(task_name: str, occurrence: float) -> tuple[str, str]:
    """``(MessageGroupId, MessageDeduplicationId)`` for one occurrence on a FIFO queue.

    The task name when SQS accepts it (allowed characters, length), else a hash of it; the
    deduplication id adds the scheduled epoch, so it is the same on every leader.
    """
    digest = hashlib.sha256(task_name.encode()).hexdigest()[:40]
    group = task_name if _FIFO_ID.fullmatch(task_name) else f"task-{digest}"
    dedup = f"{group}-{int(occurrence)}"
    if len(dedup) > 128:
        dedup = f"task-{digest}-{int(occurrence)}"
    return group, dedup


def is_fifo_queue(sqs: SQSClient) -> bool:
    """Whether the client's queue is a FIFO queue."""
    # SQS requires FIFO queue names to end in ".fifo", so the URL tells without a call.
    return queue_name(sqs.queue_url).endswith(".fifo")


async def enqueue_occurrence(
    sqs: SQSClient, task: CronTask, occurrence: float, fifo: bool | None = None
) -> str:
    """SendMessage of one run of ``task`` scheduled at ``occurrence`` (epoch seconds): the body and
    attributes the worker sees as the stock ``X-Aws-Sqsd-*`` task headers, and on a FIFO queue
    (``fifo``; default: by the queue's name) the group and deduplication ids of :func:`fifo_ids`.
    One attempt; returns the MessageId."""
    body, attributes = task_message(task, _utc(occurrence))
    fifo = is_fifo_queue(sqs) if fifo is None else fifo
    group_id, dedup_id = fifo_ids(task.name, occurrence) if fifo else (None, None)
    return await sqs.send_message(body, attributes, group_id=group_id, deduplication_id=dedup_id)


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _iso(epoch: float) -> str:
    return _utc(epoch).strftime("%Y-%m-%dT%H:%M:%SZ")


class PeriodicScheduler:
    """Enqueues the periodic tasks of ``cron.yaml`` while ``election`` says this instance leads.

    ``sqs`` is the worker queue's client, ``registry`` the same table the election uses. Run
    :meth:`run` as a task next to ``election.run()``; :meth:`stop` ends it. ``clock`` drives the
    schedule (tests pass one that runs faster than real time); ``missed_run_grace_s`` and
    ``step_down_cooldown_s`` are on that clock, the send/claim retry pauses on the event loop.
    """

    def __init__(
        self,
        tasks: Sequence[CronTask],
        sqs: SQSClient,
        election: Leadership,
        registry: RegistryTable,
        clock: Clock | None = None,
        *,
        missed_run_grace_s: float = 300.0,
        send_attempts: int = 3,
        send_timeout_s: float = 10.0,
        retry_base_s: float = 0.5,
        step_down_cooldown_s: float = 15.0,
        fifo: bool | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if send_attempts < 1:
            raise ValueError("send_attempts must be at least 1")
        self._tasks = tuple(tasks)
        self._sqs = sqs
        self._election = election
        self._registry = registry
        self._clock = clock or SystemClock()
        self._grace_s = missed_run_grace_s
        self._attempts = send_attempts
        self._send_timeout_s = send_timeout_s
        self._retry_base_s = retry_base_s
        self._cooldown_s = step_down_cooldown_s
        self.fifo = is_fifo_queue(sqs) if fifo is None else fifo
        self._rng = rng or random.Random()
        self._stopping = asyncio.Event()
        self.counters = SchedulerCounters()

    def stop(self) -> None:
        """Ask :meth:`run` to finish (between occurrences, never in the middle of one)."""
        self._stopping.set()

    async def run(self) -> None:
        """Wait for leadership, enqueue occurrences while leading, repeat until :meth:`stop`.

        Raises :class:`~asqsd.clients.dynamodb.TableUnavailableError` if the registry table cannot be
        used; transient registry errors are retried with backoff.
        """
        if not self._tasks:
            log.info("scheduler-idle", detail="cron.yaml has no tasks")
            return
        log.info("scheduler-started", tasks=[t.name for t in self._tasks], fifo=self.fifo)
        backoff = self._backoff()
        while not self._stopping.is_set():
            await wait_first(self._election.wait_for_leadership(), self._stopping.wait())
            if self._stopping.is_set():
                break
            if not self._election.is_leader:
                await wait_first(asyncio.sleep(_STALE_LEADERSHIP_PAUSE_S), self._stopping.wait())
                continue
            try:
                await self._lead(self._election.term)
                backoff.reset()
            except _SteppedDown:
                continue
            except DynamoDBError as exc:
                if not exc.retryable:
                    raise
                delay = backoff.next_delay()
                log.warning("registry-retry", code=exc.code, error=str(exc), retry_in_s=round(delay, 2))
                await wait_first(asyncio.sleep(delay), self._stopping.wait())
        log.info("scheduler-stopped", **self._summary())

    # --- one term of leadership --------------------------------------------------------------
    async def _lead(self, term: int) -> None:
        cursors = await self._load_cursors()
        log.info("scheduler-leading", term=term, last_handled={k: _iso(v) for k, v in cursors.items()})
        while self._leading(term):
            for task, occurrence in self._due(cursors, self._clock.time()):
                if not self._leading(term):
                    return
                await self._fire(task, occurrence)
                cursors[task.name] = occurrence
            now = self._clock.time()
            wake = min(task.schedule.next_after(_utc(now)).timestamp() for task in self._tasks)
            await wait_first(
                self._clock.sleep(wake - now), self._stopping.wait(), self._election.wait_for_loss()
            )

    def _leading(self, term: int) -> bool:
        return not self._stopping.is_set() and self._election.is_leader and self._election.term == term

    async def _load_cursors(self) -> dict[str, float]:
        """The last handled occurrence of each task: the registry's, else the latest past one."""
        now = _utc(self._clock.time())
        cursors: dict[str, float] = {}
        for task in self._tasks:
            item = await self._registry.get(task.name)
            recorded = None if item is None else item.get("schedule_time")
            if isinstance(recorded, Decimal):
                cursors[task.name] = float(recorded)
                self._note_unconfirmed(task, item or {})
            else:
                # Never run here: nothing to recover (stock treats a missing item as "very old").
                cursors[task.name] = task.schedule.previous_at_or_before(now).timestamp()
        return cursors

    def _note_unconfirmed(self, task: CronTask, item: dict[str, object]) -> None:
        claimed_by = item.get("claimed_by")
        if claimed_by is not None and "message_id" not in item and claimed_by != self._election.identity:
            schedule_time = item.get("schedule_time")
            assert isinstance(schedule_time, Decimal)
            log.warning(
                "occurrence-unconfirmed",
                task=task.name,
                scheduled_at=_iso(float(schedule_time)),
                claimed_by=claimed_by,
                detail="claimed by another leader that never recorded the send; not sent again",
            )

    def _due(self, cursors: dict[str, float], now: float) -> list[tuple[CronTask, float]]:
        """Occurrences to enqueue now: per task, the latest one not yet handled, if recent.

        Occurrences older than the grace period are skipped (and the cursor moves past them);
        when several were missed only the latest is returned, so a late loop catches up with
        one message per task rather than a burst.
        """
        due: list[tuple[CronTask, float]] = []
        for task in self._tasks:
            latest = task.schedule.previous_at_or_before(_utc(now)).timestamp()
            cursor = cursors[task.name]
            if latest <= cursor:
                continue
            first_missed = task.schedule.next_after(_utc(cursor)).timestamp()
            if now - latest > self._grace_s:
                self.counters.skipped_late += 1
                log.warning(
                    "occurrence-skipped",
                    task=task.name,
                    scheduled_at=_iso(latest),
                    late_s=round(now - latest, 1),
                    grace_s=self._grace_s,
                )
                cursors[task.name] = latest
                continue
            if first_missed < latest:
                log.warning(
                    "occurrences-missed",
                    task=task.name,
                    first_missed=_iso(first_missed),
                    sending_only=_iso(latest),
                )
            due.append((task, latest))
        return due

    # --- one occurrence ----------------------------------------------------------------------
    async def _fire(self, task: CronTask, occurrence: float) -> None:
        try:
            claimed, previous = await self._claim(task, occurrence)
            if not claimed:
                self.counters.claimed_elsewhere += 1
                log.debug("occurrence-claimed-elsewhere", task=task.name, scheduled_at=_iso(occurrence))
                return
            try:
                message_id = await self._send(task, occurrence)
            except _GiveUp:
                await self._unclaim(task, occurrence, previous)
                raise
        except _GiveUp as exc:
            await self._step_down(task, occurrence, str(exc))
            raise _SteppedDown from exc
        self.counters.enqueued += 1
        log.info("task-enqueued", task=task.name, scheduled_at=_iso(occurrence), message_id=message_id)
        await self._confirm(task, occurrence, message_id)

    async def _claim(self, task: CronTask, occurrence: float) -> tuple[bool, float | None]:
        """Claim the occurrence; ``(won, the schedule_time it replaced)``."""
        backoff = self._backoff()
        for attempt in range(1, self._attempts + 1):
            try:
                old = await self._registry.update(
                    task.name,
                    "SET schedule_time = :occurrence, claimed_by = :me, claim_time = :now REMOVE message_id",
                    {
                        ":occurrence": int(occurrence),
                        ":me": self._election.identity,
                        ":now": self._clock.time(),
                    },
                    condition="attribute_not_exists(schedule_time) OR schedule_time < :occurrence",
                    return_old=True,
                )
            except DynamoDBError as exc:
                if not exc.retryable:
                    raise
                log.warning("claim-retry", task=task.name, attempt=attempt, code=exc.code)
                if attempt == self._attempts:
                    raise _GiveUp(f"cannot claim the occurrence: {exc}") from exc
                await asyncio.sleep(backoff.next_delay())
                continue
            if old is not None:
                previous = old.get("schedule_time")
                return True, float(previous) if isinstance(previous, Decimal) else None
            # Refused. After a failed attempt the refusal may be our own earlier write landing
            # late; then the claim is ours (the schedule_time it replaced is lost, though).
            return (attempt > 1 and await self._claimed_by_me(task, occurrence)), None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _claimed_by_me(self, task: CronTask, occurrence: float) -> bool:
        item = await self._registry.get(task.name) or {}
        return (
            item.get("schedule_time") == int(occurrence)
            and item.get("claimed_by") == self._election.identity
            and "message_id" not in item
        )

    async def _send(self, task: CronTask, occurrence: float) -> str:
        backoff = self._backoff()
        for attempt in range(1, self._attempts + 1):
            try:
                async with asyncio.timeout(self._send_timeout_s):
                    return await enqueue_occurrence(self._sqs, task, occurrence, self.fifo)
            except (SQSError, TimeoutError) as exc:
                retryable = not isinstance(exc, SQSError) or exc.retryable
                code = exc.code if isinstance(exc, SQSError) else "Timeout"
                self.counters.send_failures += 1
                log.warning(
                    "task-send-failed", task=task.name, attempt=attempt, code=code, retryable=retryable
                )
                if not retryable or attempt == self._attempts:
                    raise _GiveUp(f"SendMessage failed: {code}: {exc}") from exc
                await asyncio.sleep(backoff.next_delay())
        raise AssertionError("unreachable")  # pragma: no cover

    async def _confirm(self, task: CronTask, occurrence: float, message_id: str) -> None:
        """Record the send (stock: best effort, one retry); the claim already prevents repeats."""
        for attempt in (1, 2):
            try:
                await self._registry.update(
                    task.name,
                    "SET update_time = :now, message_id = :message_id",
                    {
                        ":now": self._clock.time(),
                        ":message_id": message_id or "-",
                        ":occurrence": int(occurrence),
                        ":me": self._election.identity,
                    },
                    condition="schedule_time = :occurrence AND claimed_by = :me",
                )
                return
            except DynamoDBError as exc:
                if not exc.retryable or attempt == 2:
                    log.warning(
                        "record-failed", task=task.name, scheduled_at=_iso(occurrence), error=str(exc)
                    )
                    return

    async def _unclaim(self, task: CronTask, occurrence: float, previous: float | None) -> None:
        """Undo a claim whose send failed, so the occurrence counts as missed, not as done.

        Without a previous value, 0 is written: the item then exists, so the next leader may
        recover this occurrence (a missing item would mean "never ran": nothing to recover).
        """
        try:
            await self._registry.update(
                task.name,
                "SET schedule_time = :previous REMOVE claimed_by, claim_time",
                {
                    ":previous": int(previous or 0),
                    ":occurrence": int(occurrence),
                    ":me": self._election.identity,
                },
                condition="schedule_time = :occurrence AND claimed_by = :me",
            )
        except DynamoDBError as exc:
            log.error("unclaim-failed", task=task.name, scheduled_at=_iso(occurrence), error=str(exc))

    async def _step_down(self, task: CronTask, occurrence: float, reason: str) -> None:
        self.counters.step_downs += 1
        log.error(
            "occurrence-not-enqueued",
            task=task.name,
            scheduled_at=_iso(occurrence),
            reason=reason,
            detail=f"giving up leadership for {self._cooldown_s}s; the next leader recovers it",
        )
        await self._election.step_down(self._cooldown_s)

    def _backoff(self) -> Backoff:
        return Backoff(base_s=self._retry_base_s, cap_s=self._retry_base_s * 8, rng=self._rng)

    def _summary(self) -> dict[str, int]:
        c = self.counters
        return {
            "enqueued": c.enqueued,
            "claimed_elsewhere": c.claimed_elsewhere,
            "skipped_late": c.skipped_late,
            "send_failures": c.send_failures,
            "step_downs": c.step_downs,
        }
