"""The Settler: deletes, retry delays and releases reach SQS in batches and are accounted for,
and what cannot be sent is left to SQS (counted and logged), never lost silently."""

from __future__ import annotations

from collections.abc import Sequence

from asqsd.clients.sqs.base import DeleteEntry, VisibilityEntry
from asqsd.errors import SQSError
from asqsd.message import BatchFailure, BatchResult, Message
from asqsd.observe.counters import Counters
from asqsd.pipeline.batcher import MISSING_FROM_RESPONSE, EntryFate, classify_entries
from asqsd.pipeline.leases import LeaseTable
from asqsd.pipeline.settle import Settler
from asqsd.tasks import TaskSet


class RecordingSQS:
    """Records the batch calls; entries whose receipt handle is in ``refuse`` fail (sender fault)."""

    queue_url = "http://127.0.0.1:9/000000000000/q"

    def __init__(self, refuse: frozenset[str] = frozenset(), error: SQSError | None = None) -> None:
        self.refuse = refuse
        self.error = error
        self.deletes: list[str] = []
        self.changes: list[tuple[str, int]] = []

    def _result(self, ids_and_handles: list[tuple[str, str]]) -> BatchResult:
        return BatchResult(
            succeeded=[i for i, handle in ids_and_handles if handle not in self.refuse],
            failed=[
                BatchFailure(i, "ReceiptHandleIsInvalid", sender_fault=True)
                for i, handle in ids_and_handles
                if handle in self.refuse
            ],
        )

    async def delete_batch(self, entries: Sequence[DeleteEntry]) -> BatchResult:
        if self.error is not None:
            raise self.error
        self.deletes += [e.receipt_handle for e in entries]
        return self._result([(e.entry_id, e.receipt_handle) for e in entries])

    async def change_visibility_batch(self, entries: Sequence[VisibilityEntry]) -> BatchResult:
        self.changes += [(e.receipt_handle, e.visibility_timeout_s) for e in entries]
        return self._result([(e.entry_id, e.receipt_handle) for e in entries])


def message(n: int) -> Message:
    return Message(f"id{n}", f"rh{n}", "body")


async def settle(sqs: RecordingSQS, leases: LeaseTable, act: object) -> tuple[Counters, int]:
    counters = Counters()
    settler = Settler(sqs, leases, counters, max_wait_s=0.01)  # type: ignore[arg-type]
    tasks = TaskSet()
    settler.start(tasks)
    assert callable(act)
    act(settler)
    given_up = await settler.flush(timeout_s=5)
    return counters, given_up


async def test_deletes_retries_and_releases_are_sent_and_counted() -> None:
    sqs = RecordingSQS()
    leases = LeaseTable()
    released = [message(3), message(4)]
    leases.add(released)

    def act(settler: Settler) -> None:
        settler.delete(message(1))
        settler.retry_in(message(2), 30)
        settler.release(released)

    counters, given_up = await settle(sqs, leases, act)
    assert given_up == 0
    assert sqs.deletes == ["rh1"]
    assert sorted(sqs.changes) == [("rh2", 30), ("rh3", 0), ("rh4", 0)]
    assert (counters.deleted, counters.retried, counters.released) == (1, 1, 2)
    assert len(leases) == 0  # released messages are no longer extended by the heartbeat


async def test_refused_settles_are_counted_as_failed_and_left_to_sqs() -> None:
    sqs = RecordingSQS(refuse=frozenset({"rh1", "rh2", "rh3"}))

    def act(settler: Settler) -> None:
        settler.delete(message(1))
        settler.retry_in(message(2), 30)
        settler.release([message(3)])

    counters, given_up = await settle(sqs, LeaseTable(), act)
    assert given_up == 0
    assert (counters.delete_failed, counters.retry_failed, counters.release_failed) == (1, 1, 1)
    assert (counters.deleted, counters.retried, counters.released) == (0, 0, 0)


async def test_a_permanent_call_error_fails_every_entry_of_the_call() -> None:
    sqs = RecordingSQS(error=SQSError("DeleteMessageBatch", "AccessDenied", "denied", retryable=False))
    counters, _given_up = await settle(sqs, LeaseTable(), lambda s: [s.delete(message(n)) for n in range(3)])
    assert counters.delete_failed == 3
    assert counters.deleted == 0


def test_batch_results_are_read_one_way() -> None:
    """Successful → done; sender fault → failed for good; server fault or missing → retry."""
    entries = [("0", "a"), ("1", "b"), ("2", "c"), ("3", "d")]
    result = BatchResult(
        succeeded=["0"],
        failed=[
            BatchFailure("1", "ReceiptHandleIsInvalid", sender_fault=True),
            BatchFailure("2", "InternalError", sender_fault=False),
        ],
    )
    assert classify_entries(result, entries) == [
        (EntryFate.DONE, None),
        (EntryFate.FAILED, "ReceiptHandleIsInvalid"),
        (EntryFate.RETRY, "InternalError"),
        (EntryFate.RETRY, MISSING_FROM_RESPONSE),
    ]


def test_an_entry_both_successful_and_failed_is_not_taken_as_done() -> None:
    result = BatchResult(succeeded=["0"], failed=[BatchFailure("0", "InternalError", sender_fault=False)])
    assert classify_entries(result, [("0", "a")]) == [(EntryFate.RETRY, "InternalError")]
