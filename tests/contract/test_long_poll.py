"""Long polling: early wake-ups, full-length waits, competing pollers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.contract.helpers import new_queue, receive


async def test_long_poll_on_empty_queue_waits_the_full_time(sqs: Any) -> None:
    url = await new_queue(sqs)
    started = time.monotonic()
    assert await receive(sqs, url, WaitTimeSeconds=1) == []
    assert time.monotonic() - started >= 0.9


async def test_long_poll_wakes_early_on_send(sqs: Any) -> None:
    url = await new_queue(sqs)
    started = time.monotonic()
    poll = asyncio.create_task(receive(sqs, url, WaitTimeSeconds=10))
    await asyncio.sleep(0.5)  # give the receive time to park (this orders events; it waits for no state)
    await sqs.send_message(QueueUrl=url, MessageBody="wake up")
    [message] = await asyncio.wait_for(poll, timeout=8)
    assert message["Body"] == "wake up"
    assert time.monotonic() - started < 5


async def test_competing_long_polls_one_message(sqs: Any) -> None:
    """One message wakes one poller; the other keeps waiting until its own deadline."""
    url = await new_queue(sqs)
    started = time.monotonic()
    polls = [asyncio.create_task(receive(sqs, url, WaitTimeSeconds=2)) for _ in range(2)]
    await asyncio.sleep(0.5)
    await sqs.send_message(QueueUrl=url, MessageBody="only one")
    done, pending = await asyncio.wait(polls, return_when=asyncio.FIRST_COMPLETED)
    assert len(done.pop().result()) == 1
    assert time.monotonic() - started < 1.8
    assert await pending.pop() == []
    assert time.monotonic() - started >= 1.9
