"""CountingSQS: every SQS call is reported once, failed or not, whoever makes it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from asqsd.clients.sqs.base import DeleteEntry, VisibilityEntry
from asqsd.clients.sqs.counting import CountingSQS, OnCall
from asqsd.errors import SQSError
from asqsd.message import BatchResult, Message, MessageAttribute
from asqsd.observe.counters import AWS_OPERATIONS, Counters


def counted(counters: Counters) -> OnCall:
    """The daemon's use of the callback, reduced to the counting."""
    return lambda operation, error, _sent_at: counters.count_call(operation, error is not None)


class ScriptedClient:
    """Answers each call, or raises what ``fail`` holds for that operation."""

    queue_url = "http://127.0.0.1:9/000000000000/q"

    def __init__(self, fail: Mapping[str, BaseException] = {}) -> None:
        self.fail = dict(fail)

    def _maybe_fail(self, operation: str) -> None:
        if operation in self.fail:
            raise self.fail[operation]

    async def receive(
        self, *, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[Message]:
        self._maybe_fail("ReceiveMessage")
        return [Message("m1", "rh1", "body")]

    async def delete_batch(self, entries: Sequence[DeleteEntry]) -> BatchResult:
        self._maybe_fail("DeleteMessageBatch")
        return BatchResult(succeeded=[e.entry_id for e in entries])

    async def change_visibility_batch(self, entries: Sequence[VisibilityEntry]) -> BatchResult:
        self._maybe_fail("ChangeMessageVisibilityBatch")
        return BatchResult(succeeded=[e.entry_id for e in entries])

    async def get_queue_attributes(self, names: Sequence[str]) -> dict[str, str]:
        self._maybe_fail("GetQueueAttributes")
        return dict.fromkeys(names, "1")

    async def send_message(
        self,
        body: str,
        attributes: Mapping[str, MessageAttribute] | None = None,
        *,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        queue_url: str | None = None,
    ) -> str:
        self._maybe_fail("SendMessage")
        return "sent-1"


async def test_every_operation_is_counted_once_with_its_result_passed_through() -> None:
    counters = Counters()
    sqs = CountingSQS(ScriptedClient(), counted(counters))
    assert [
        m.message_id for m in await sqs.receive(max_messages=1, wait_time_s=0, visibility_timeout_s=30)
    ] == ["m1"]
    assert (await sqs.delete_batch([DeleteEntry("0", "rh1")])).succeeded == ["0"]
    assert (await sqs.change_visibility_batch([VisibilityEntry("0", "rh1", 0)])).succeeded == ["0"]
    assert await sqs.get_queue_attributes(["QueueArn"]) == {"QueueArn": "1"}
    assert await sqs.send_message("b", group_id="g") == "sent-1"
    assert counters.sqs_calls == {
        "ReceiveMessage": 1,
        "DeleteMessageBatch": 1,
        "ChangeMessageVisibilityBatch": 1,
        "GetQueueAttributes": 1,
        "SendMessage": 1,
    }
    assert counters.sqs_errors == {}
    assert set(counters.sqs_calls) < set(AWS_OPERATIONS)  # /metrics shows each from the start
    assert sqs.queue_url == ScriptedClient.queue_url


@pytest.mark.parametrize(
    "error", [SQSError("SendMessage", "AccessDenied", "no", retryable=False), RuntimeError("client bug")]
)
async def test_a_call_that_raises_counts_as_failed_and_the_error_reaches_the_caller(error: Exception) -> None:
    counters = Counters()
    sqs = CountingSQS(ScriptedClient({"SendMessage": error}), counted(counters))
    with pytest.raises(type(error)):
        await sqs.send_message("b")
    assert counters.sqs_calls == {"SendMessage": 1}
    assert counters.sqs_errors == {"SendMessage": 1}


async def test_a_cancelled_call_is_not_counted() -> None:
    counters = Counters()
    sqs = CountingSQS(ScriptedClient({"ReceiveMessage": asyncio.CancelledError()}), counted(counters))
    with pytest.raises(asyncio.CancelledError):
        await sqs.receive(max_messages=1, wait_time_s=0, visibility_timeout_s=30)
    assert counters.sqs_calls == {}
