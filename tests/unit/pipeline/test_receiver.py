"""Receiver loop against a scripted SQSClient: parameters, backpressure, no busy loop."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from asqsd.clients.sqs.base import DeleteEntry, VisibilityEntry
from asqsd.errors import SQSError
from asqsd.message import BatchResult, Message, MessageAttribute
from asqsd.observe.counters import Counters
from asqsd.pipeline.channel import Channel
from asqsd.pipeline.leases import LeaseTable
from asqsd.pipeline.receiver import FirstReceive, ReceivePolicy, Receiver


class ScriptedSQS:
    """Implements the receive part of SQSClient from a script; records every call."""

    queue_url = "http://127.0.0.1:1/000/q"

    def __init__(self, script: list[list[Message] | SQSError]) -> None:
        self.script = script
        self.calls: list[dict[str, int]] = []
        self.exhausted = asyncio.Event()

    async def receive(
        self, *, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[Message]:
        self.calls.append({"max": max_messages, "wait": wait_time_s, "visibility": visibility_timeout_s})
        if not self.script:
            self.exhausted.set()
            await asyncio.Event().wait()  # a long poll that never returns
        step = self.script.pop(0)
        if isinstance(step, SQSError):
            raise step
        return step

    async def delete_batch(self, entries: Sequence[DeleteEntry]) -> BatchResult:
        raise NotImplementedError

    async def change_visibility_batch(self, entries: Sequence[VisibilityEntry]) -> BatchResult:
        raise NotImplementedError

    async def get_queue_attributes(self, names: Sequence[str]) -> dict[str, str]:
        raise NotImplementedError

    async def send_message(
        self,
        body: str,
        attributes: Mapping[str, MessageAttribute] | None = None,
        *,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        queue_url: str | None = None,
    ) -> str:
        raise NotImplementedError


def batch(start: int, count: int) -> list[Message]:
    return [Message(f"id{i}", f"rh{i}", "b") for i in range(start, start + count)]


async def run_until_exhausted(sqs: ScriptedSQS, channel: Channel, clock_step: float = 0.0) -> Receiver:
    now = [0.0]

    def clock() -> float:
        now[0] += clock_step
        return now[0]

    receiver = Receiver(
        0, sqs, channel, LeaseTable(), ReceivePolicy(20, 300), Counters(), lambda m: None, clock
    )
    task = asyncio.create_task(receiver.run())
    await asyncio.wait_for(sqs.exhausted.wait(), 5)
    task.cancel()
    return receiver


async def test_receive_parameters_and_free_capacity() -> None:
    """WaitTimeSeconds=20, the configured VisibilityTimeout, MaxNumberOfMessages=min(10, free)."""
    channel = Channel(4)
    sqs = ScriptedSQS([batch(0, 4), batch(4, 2)])
    receiver = Receiver(0, sqs, channel, LeaseTable(), ReceivePolicy(20, 300), Counters(), lambda m: None)
    task = asyncio.create_task(receiver.run())
    for _ in range(6):
        await asyncio.wait_for(channel.get(), 2)
    await asyncio.wait_for(sqs.exhausted.wait(), 2)
    task.cancel()
    assert sqs.calls[0] == {"max": 4, "wait": 20, "visibility": 300}
    assert [c["max"] for c in sqs.calls] == [4, 4, 4]


async def test_full_channel_means_no_receive() -> None:
    """With the buffer full the receiver waits instead of polling; it polls again for a whole
    batch once enough slots are free."""
    channel = Channel(20)
    sqs = ScriptedSQS([batch(0, 10), batch(10, 10)])
    receiver = Receiver(0, sqs, channel, LeaseTable(), ReceivePolicy(20, 300), Counters(), lambda m: None)
    task = asyncio.create_task(receiver.run())
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(sqs.calls) == 2
    assert channel.stats().buffered == 20
    for _ in range(9):
        await channel.get()
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(sqs.calls) == 2  # 9 free slots: not yet worth a receive
    await channel.get()
    await asyncio.wait_for(sqs.exhausted.wait(), 2)
    assert sqs.calls[2]["max"] == 10
    task.cancel()


async def test_errors_back_off_instead_of_spinning() -> None:
    """Consecutive errors pause with growing jittered delays (counted), then receiving resumes."""
    error = SQSError("ReceiveMessage", "ServiceUnavailable", "down", retryable=True)
    sqs = ScriptedSQS([error, error, []])
    loop = asyncio.get_running_loop()
    started = loop.time()
    receiver = await run_until_exhausted(sqs, Channel(10), clock_step=5.0)
    assert len(sqs.calls) == 4
    assert loop.time() - started >= 0.05  # two pauses of at least the floor each
    assert receiver._counters.receive_errors == 2


async def test_fast_empty_receives_pause() -> None:
    """Empty answers that come back at once (short polling) are followed by a pause."""
    sqs = ScriptedSQS([[], []])
    receiver = await run_until_exhausted(sqs, Channel(10), clock_step=0.0)
    assert receiver._counters.empty_receives == 2
    assert receiver._idle.attempt == 2


async def test_first_receive_settles_on_the_first_success_or_permanent_error() -> None:
    """FirstReceive ignores retryable errors (the receiver retries them) and keeps the first
    success or permanent error: later outcomes do not change it."""
    throttled = SQSError("ReceiveMessage", "ServiceUnavailable", "down", retryable=True)
    missing = SQSError("ReceiveMessage", "QueueDoesNotExist", "gone", retryable=False)
    for script, error in (([throttled, missing, []], missing), ([throttled, [], missing], None)):
        first = FirstReceive()
        sqs = ScriptedSQS(list(script))
        receiver = Receiver(
            0, sqs, Channel(10), LeaseTable(), ReceivePolicy(20, 300), Counters(), lambda m: None, first=first
        )
        assert not first.settled.is_set()
        task = asyncio.create_task(receiver.run())
        await asyncio.wait_for(sqs.exhausted.wait(), 5)
        task.cancel()
        assert first.settled.is_set()
        assert first.error is error


async def test_messages_carry_the_time_of_their_receive() -> None:
    """Each message records when its receive was sent (SQS's 12-hour visibility limit counts from
    there) and its lease ends a visibility timeout later."""
    channel = Channel(4)
    sqs = ScriptedSQS([batch(0, 2)])
    receiver = Receiver(
        0, sqs, channel, LeaseTable(), ReceivePolicy(20, 300), Counters(), lambda m: None, lambda: 1000.0
    )
    task = asyncio.create_task(receiver.run())
    got = [await asyncio.wait_for(channel.get(), 2) for _ in range(2)]
    task.cancel()
    assert [(m.received_at, m.leased_until) for m in got] == [(1000.0, 1300.0)] * 2
