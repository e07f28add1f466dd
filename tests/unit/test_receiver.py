"""Receiver loop against a scripted SQSClient: parameters, backpressure, no busy loop."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from asqsd.channel import Channel
from asqsd.errors import SQSError
from asqsd.leases import LeaseTable
from asqsd.message import BatchResult, Message, MessageAttribute
from asqsd.metrics import Counters
from asqsd.receiver import ReceivePolicy, Receiver
from asqsd.sqs import DeleteEntry, VisibilityEntry


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
    channel = Channel(14)
    sqs = ScriptedSQS([batch(0, 10), batch(10, 3)])
    await run_until_exhausted(sqs, channel, clock_step=5.0)
    assert sqs.calls[0] == {"max": 10, "wait": 20, "visibility": 300}
    assert sqs.calls[1]["max"] == 4
    assert sqs.calls[2]["max"] == 1  # 13 buffered of 14
    assert channel.stats().buffered == 13


async def test_full_channel_means_no_receive() -> None:
    """With every slot taken the receiver waits instead of polling."""
    channel = Channel(2)
    sqs = ScriptedSQS([batch(0, 2)])
    receiver = Receiver(0, sqs, channel, LeaseTable(), ReceivePolicy(20, 300), Counters(), lambda m: None)
    task = asyncio.create_task(receiver.run())
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(sqs.calls) == 1
    await channel.get()
    await asyncio.wait_for(sqs.exhausted.wait(), 2)
    assert sqs.calls[1]["max"] == 1
    task.cancel()


async def test_errors_back_off_instead_of_spinning() -> None:
    """Consecutive errors pause with growing jittered delays (counted), then receiving resumes."""
    error = SQSError("ReceiveMessage", "ServiceUnavailable", "down", retryable=True)
    sqs = ScriptedSQS([error, error, batch(0, 1)])
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
