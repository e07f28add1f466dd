"""The start-up check of the queue: its attributes when the policy allows them, else the first receive.

The stock worker-tier policy does not grant ``sqs:GetQueueAttributes``. When it is refused, asqsd
says so once, reads FIFO from the ``.fifo`` suffix, and lets the pipeline's first ReceiveMessage
answer the question instead: its permanent errors (the queue does not exist, receiving is not
allowed) end start-up as the attribute check's would (docs/daemon.md, "Permissions").
"""

from __future__ import annotations

import asyncio
import contextlib

from asqsd.backoff import Backoff
from asqsd.clients.sqs.base import SQSClient
from asqsd.clients.sqs.credentials import explain
from asqsd.clients.sqs.wire import queue_name
from asqsd.errors import SQSError, StartupError
from asqsd.logs import get_logger
from asqsd.pipeline.receiver import FirstReceive

log = get_logger("daemon")  # the start-up lines keep the component name they always had

STARTUP_ATTRIBUTES = ("QueueArn", "VisibilityTimeout", "FifoQueue", "RedrivePolicy")

# What asqsd does without sqs:GetQueueAttributes (the stock worker-tier policy does not grant it).
_WITHOUT_ATTRIBUTES = (
    "no queue backlog gauges (asqsd_queue_*), no dead-letter-bound figures (the redrive "
    "policy's maxReceiveCount), no queue attributes in queue-ok"
)


class QueueCheck:
    """Checks one queue at start-up; :attr:`attributes` and :attr:`denied` say what it learnt."""

    def __init__(self, queue_url: str, stopping: asyncio.Event) -> None:
        self.queue_url = queue_url
        self.attributes: dict[str, str] = {}
        self.denied = False  # the IAM policy refuses sqs:GetQueueAttributes
        self._stopping = stopping

    @property
    def fifo(self) -> bool:
        """A FIFO queue (by its attributes once read, else by its name)."""
        if "FifoQueue" in self.attributes:
            return self.attributes["FifoQueue"].lower() == "true"
        return self.queue_url.endswith(".fifo")

    async def read_attributes(self, sqs: SQSClient) -> bool:
        """Read the queue's attributes; retry transient errors, fail fast on permanent ones.

        A refused GetQueueAttributes is not a failure (:meth:`confirm` finishes the check then);
        False if a stop came first.
        """
        backoff = Backoff(base_s=0.5, cap_s=20.0, jitter=0.0)  # 0.5, 1, 2 ... 20 s
        while not self._stopping.is_set():
            try:
                self.attributes = await sqs.get_queue_attributes(STARTUP_ATTRIBUTES)
                log.info("queue-ok", queue=queue_name(self.queue_url), **self.attributes)
                return True
            except SQSError as exc:
                if exc.denied:
                    self._without_attributes(exc)
                    return True
                if not exc.retryable:
                    raise StartupError(f"queue {self.queue_url}: {exc.code}: {exc}") from exc
                delay = backoff.next_delay()
                if explain(exc) is None:  # a credential problem is logged once, by CredentialStatus
                    log.warning("queue-check-failed", code=exc.code, error=str(exc), retry_in_s=delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
        return False

    async def confirm(self, first: FirstReceive) -> bool:
        """Without the attributes, the first receive's answer is the queue check.

        Its permanent errors end start-up like the attribute check's would; False if a stop came
        first. With the attributes read, True at once.
        """
        if not self.denied:
            return True
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

    def _without_attributes(self, exc: SQSError) -> None:
        self.denied = True
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
