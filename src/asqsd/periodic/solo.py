"""Periodic tasks for a lone instance (``asqsd local``): no leader election, no registry table.

On Elastic Beanstalk several instances share a queue, so :class:`~asqsd.periodic.scheduler.
PeriodicScheduler` claims each occurrence in DynamoDB before sending it. ``asqsd local`` is the
only consumer of its embedded queue and has no DynamoDB, so :class:`SoloScheduler` just sleeps
until the next occurrence of any task and sends the same message the elected leader would
(:func:`~asqsd.periodic.cron_yaml.task_message`, FIFO ids included). It keeps no history: an
occurrence missed while the process was down is not sent later, and a failed send is logged and
skipped (the next occurrence comes as usual).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from asqsd.clients.sqs.base import SQSClient
from asqsd.clients.sqs.wire import queue_name
from asqsd.errors import SQSError
from asqsd.logs import get_logger
from asqsd.periodic.clock import Clock, SystemClock, wait_first
from asqsd.periodic.cron_yaml import CronTask, task_message
from asqsd.periodic.scheduler import fifo_ids

log = get_logger("scheduler")

_SEND_TIMEOUT_S = 10.0


class SoloScheduler:
    """Sends each occurrence of each task once, on ``clock``, until :meth:`stop`."""

    def __init__(self, tasks: Sequence[CronTask], sqs: SQSClient, clock: Clock | None = None) -> None:
        self._tasks = tuple(tasks)
        self._sqs = sqs
        self._clock = clock or SystemClock()
        self._fifo = queue_name(sqs.queue_url).endswith(".fifo")
        self._stopping = asyncio.Event()
        self.enqueued = 0

    def stop(self) -> None:
        """Ask :meth:`run` to return (between occurrences)."""
        self._stopping.set()

    async def run(self) -> None:
        """Sleep until the next occurrence, send every task due then, repeat."""
        if not self._tasks:
            return
        log.info("scheduler-started", tasks=[t.name for t in self._tasks], fifo=self._fifo, election=False)
        while not self._stopping.is_set():
            now = _utc(self._clock.time())
            due_at = {task: task.schedule.next_after(now) for task in self._tasks}
            wake = min(due_at.values())
            await wait_first(self._clock.sleep(wake.timestamp() - now.timestamp()), self._stopping.wait())
            if self._stopping.is_set():
                break
            for task in (task for task, at in due_at.items() if at == wake):
                await self._send(task, wake)

    async def _send(self, task: CronTask, occurrence: datetime) -> None:
        body, attributes = task_message(task, occurrence)
        group_id, dedup_id = fifo_ids(task.name, occurrence.timestamp()) if self._fifo else (None, None)
        scheduled_at = occurrence.strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            async with asyncio.timeout(_SEND_TIMEOUT_S):
                message_id = await self._sqs.send_message(
                    body, attributes, group_id=group_id, deduplication_id=dedup_id
                )
        except (SQSError, TimeoutError) as exc:
            log.warning("task-send-failed", task=task.name, scheduled_at=scheduled_at, error=str(exc))
            return
        self.enqueued += 1
        log.info("task-enqueued", task=task.name, scheduled_at=scheduled_at, message_id=message_id)


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
