"""Receivers: long-poll SQS for as many messages as the channel has free slots.

A receiver reserves slots first, so a receive never brings more than can be buffered. At stop an
outstanding long poll is allowed to finish (cancelling it could make SQS hand a message to the
abandoned call, hiding it for a whole visibility timeout); what it returns is released at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from asqsd.backoff import Backoff
from asqsd.clients.sqs.base import SQSClient
from asqsd.clients.sqs.credentials import explain
from asqsd.errors import SQSError
from asqsd.logs import get_logger
from asqsd.message import Message
from asqsd.observe.counters import Counters
from asqsd.pipeline.channel import Channel, ChannelClosed
from asqsd.pipeline.intake import IntakeGate
from asqsd.pipeline.leases import LeaseTable
from asqsd.pipeline.outage import WorkerOutage
from asqsd.pipeline.rate_limit import TokenBucket

log = get_logger("receiver")

# A receive that comes back empty faster than this was not a long poll (wait_time_s=0, or the
# server answered early): pause before the next one so an empty queue never means a busy loop.
_EMPTY_FAST_S = 1.0


@dataclass(slots=True, frozen=True)
class ReceivePolicy:
    """The receive parameters, read once from the settings."""

    wait_time_s: int
    visibility_timeout_s: int
    max_messages: int = 10


class FirstReceive:
    """How the first ReceiveMessage that ended went: a success, or a permanent error.

    Without ``sqs:GetQueueAttributes`` the daemon has no other call that tells whether the queue
    exists and may be read, so it waits for this before it calls itself started. A retryable
    error does not settle it: the receivers retry those with backoff.
    """

    def __init__(self) -> None:
        self.settled = asyncio.Event()
        self.error: SQSError | None = None

    def record(self, error: SQSError | None) -> None:
        """Note one receive's outcome (only the first success or permanent error counts)."""
        if self.settled.is_set() or (error is not None and error.retryable):
            return
        self.error = error
        self.settled.set()


class Receiver:
    """One ReceiveMessage loop."""

    def __init__(
        self,
        index: int,
        sqs: SQSClient,
        channel: Channel,
        leases: LeaseTable,
        policy: ReceivePolicy,
        counters: Counters,
        release: Callable[[list[Message]], None],
        clock: Callable[[], float] = time.monotonic,
        first: FirstReceive | None = None,
        outage: WorkerOutage | None = None,
        rate_limit: TokenBucket | None = None,
        intake: IntakeGate | None = None,
    ) -> None:
        self.index = index
        self._sqs = sqs
        self._channel = channel
        self._leases = leases
        self._policy = policy
        self._counters = counters
        self._release = release
        self._clock = clock
        self._first = first or FirstReceive()
        self._outage = outage
        self._rate = rate_limit
        self._intake = intake
        self._errors = Backoff(base_s=0.5, cap_s=20.0)
        self._idle = Backoff(base_s=1.0, cap_s=5.0)
        self.polling = False
        self.stopping = False

    async def run(self) -> None:
        """Receive until :attr:`stopping` is set (the daemon cancels us while we are not polling)."""
        while not self.stopping:
            if self._outage is not None:
                await self._outage.wait_until_closed()  # receive nothing the worker cannot take
            if self._intake is not None:
                await self._intake.wait_open()  # paused: no ReceiveMessage until resumed
            try:
                reserved = await self._reserve()
            except ChannelClosed:
                return
            if self._paused():  # paused while waiting for room
                self._channel.cancel_reservation(reserved)
                continue
            try:
                pause = await self._receive_into_channel(reserved)
            finally:
                self.polling = False
            if pause > 0 and not self.stopping:
                await asyncio.sleep(pause)

    async def _reserve(self) -> int:
        """Reserve channel slots; with a rate limit, only as many as the bucket passes soon."""
        if self._rate is None:
            return await self._channel.reserve(self._policy.max_messages)
        while True:
            # Wait for tokens before reserving: a receiver waiting here holds no slots, so two
            # waiting receivers cannot each count the other's reservation and wait forever.
            delay = self._rate.receive_delay(self._pending())
            if delay > 0:
                await self._rate.sleep(delay)
                continue
            reserved = await self._channel.reserve(self._policy.max_messages)
            allowed = min(reserved, self._rate.receivable(self._pending() - reserved))
            if allowed >= 1:
                self._channel.cancel_reservation(reserved - allowed)
                return allowed
            self._channel.cancel_reservation(reserved)  # other receivers took them meanwhile

    def _pending(self) -> int:
        """Messages buffered or being received: each still needs a token."""
        stats = self._channel.stats()
        return stats.buffered + stats.reserved

    def stop(self) -> bool:
        """Ask the loop to end; True if a poll is outstanding (let it finish), False if idle."""
        self.stopping = True
        return self.polling

    async def _receive_into_channel(self, reserved: int) -> float:
        """One receive into ``reserved`` slots; returns how long to pause before the next."""
        filled = False
        try:
            self.polling = True
            sent_at = self._clock()
            messages = await self._receive(reserved)
            self.polling = False
            if messages is None:
                return self._errors.next_delay()
            self._errors.reset()
            self._counters.received += len(messages)
            leased_until = sent_at + self._policy.visibility_timeout_s
            for message in messages:
                message.leased_until = leased_until
                message.received_at = sent_at
            if self.stopping or self._channel.closed:
                self._release(messages)
                return 0.0
            if self._paused():
                if messages:
                    log.info("paused-poll-released", receiver=self.index, messages=len(messages))
                self._release(messages)
                return 0.0
            self._leases.add(messages)
            self._channel.fill(messages, reserved)
            filled = True
            return self._pause_after(messages, sent_at)
        finally:
            if not filled:
                self._channel.cancel_reservation(reserved)

    def _paused(self) -> bool:
        return self._intake is not None and self._intake.paused

    async def _receive(self, count: int) -> list[Message] | None:
        policy = self._policy
        self._counters.receive_calls += 1
        try:
            messages = await self._sqs.receive(
                max_messages=count,
                wait_time_s=policy.wait_time_s,
                visibility_timeout_s=policy.visibility_timeout_s,
            )
        except SQSError as exc:
            self._first.record(exc)
            self._failed(exc.code, str(exc), exc.retryable)
            return None
        except Exception as exc:  # noqa: BLE001 - a receiver must outlive any client bug: back off, retry
            self._failed(type(exc).__name__, repr(exc), True)
            return None
        self._first.record(None)
        return messages

    def _failed(self, code: str, error: str, retryable: bool) -> None:
        self._counters.receive_errors += 1
        # A refused credential is logged once for the whole daemon (its credential status), not
        # by every receiver on every retry.
        level = log.debug if explain(code) is not None else log.warning
        level(
            "receive-failed",
            receiver=self.index,
            code=code,
            error=error,
            retryable=retryable,
            attempt=self._errors.attempt + 1,
        )

    def _pause_after(self, messages: list[Message], sent_at: float) -> float:
        if messages:
            self._idle.reset()
            return 0.0
        self._counters.empty_receives += 1
        if self._clock() - sent_at < _EMPTY_FAST_S:
            return self._idle.next_delay()
        return 0.0
