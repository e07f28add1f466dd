"""Unit tests of the pure queue engine, driven by a fake clock (no sleeping, no I/O)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from asqsd.emulator.checksums import md5_of_body
from asqsd.emulator.errors import SqsError
from asqsd.emulator.messages import Message
from asqsd.emulator.queues import Queue
from asqsd.emulator.store import Outgoing, Preset, Store
from tests.emulator.support import FakeClock


class Recorder:
    """A StoreListener that remembers what it heard."""

    def __init__(self) -> None:
        self.available: list[tuple[str, int]] = []
        self.scheduled: list[tuple[str, float]] = []
        self.deleted: list[str] = []


class _Listener:
    def __init__(self, recorder: Recorder) -> None:
        self.r = recorder

    def available(self, queue: Queue, count: int) -> None:
        self.r.available.append((queue.name, count))

    def scheduled(self, queue: Queue, when: float) -> None:
        self.r.scheduled.append((queue.name, when))

    def deleted(self, queue: Queue) -> None:
        self.r.deleted.append(queue.name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> Store:
    return Store(clock)


def out(body: str = "hello", **kwargs: Any) -> Outgoing:
    return Outgoing(body=body, md5_body=md5_of_body(body), size=len(body), **kwargs)


def code_of(excinfo: pytest.ExceptionInfo[SqsError]) -> str:
    return excinfo.value.shape


def receive_one(store: Store, queue: Queue, timeout: int | None = None) -> Message:
    [message] = store.receive(queue, 1, timeout)
    return message


# --------------------------------------------------------------------------- queues


def test_create_is_idempotent_for_same_attributes_and_rejects_different(store: Store) -> None:
    first = store.create_queue("jobs", {"VisibilityTimeout": "10"})
    assert store.create_queue("jobs", {"VisibilityTimeout": "10"}) is first
    assert store.create_queue("jobs") is first  # only the attributes given are compared
    with pytest.raises(SqsError) as excinfo:
        store.create_queue("jobs", {"VisibilityTimeout": "11"})
    assert code_of(excinfo) == "QueueNameExists"
    assert excinfo.value.code == "QueueAlreadyExists"


@pytest.mark.parametrize(
    ("name", "attributes", "shape"),
    [
        ("bad name", {}, "InvalidParameterValueException"),
        ("x" * 81, {}, "InvalidParameterValueException"),
        ("jobs.fifo", {}, "InvalidParameterValueException"),  # '.' is not allowed in standard names
        ("jobs", {"FifoQueue": "true"}, "InvalidParameterValueException"),
        ("jobs", {"VisibilityTimeout": "43201"}, "InvalidAttributeValue"),
        ("jobs", {"DelaySeconds": "x"}, "InvalidAttributeValue"),
        ("jobs", {"MessageRetentionPeriod": "59"}, "InvalidAttributeValue"),
        ("jobs", {"Bogus": "1"}, "InvalidAttributeName"),
        ("jobs", {"ContentBasedDeduplication": "true"}, "InvalidAttributeName"),
        ("jobs", {"RedrivePolicy": "not json"}, "InvalidParameterValueException"),
    ],
)
def test_create_validates_like_aws(store: Store, name: str, attributes: dict[str, str], shape: str) -> None:
    with pytest.raises(SqsError) as excinfo:
        store.create_queue(name, attributes)
    assert code_of(excinfo) == shape


def test_redrive_policy_needs_an_existing_dlq_of_the_same_type(store: Store) -> None:
    arn = store.arn("dlq")
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 2})
    with pytest.raises(SqsError, match="does not exist"):
        store.create_queue("src", {"RedrivePolicy": policy})
    store.create_queue("dlq.fifo", {"FifoQueue": "true"})
    fifo_policy = json.dumps({"deadLetterTargetArn": store.arn("dlq.fifo"), "maxReceiveCount": 2})
    with pytest.raises(SqsError, match="same type"):
        store.create_queue("src", {"RedrivePolicy": fifo_policy})
    store.create_queue("dlq")
    queue = store.create_queue("src", {"RedrivePolicy": policy})
    assert store.get_attributes(queue, ["RedrivePolicy"]) == {"RedrivePolicy": policy}


def test_get_attributes_all_selected_and_unknown(store: Store) -> None:
    queue = store.create_queue("jobs.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"})
    everything = store.get_attributes(queue, ["All"])
    assert everything["QueueArn"] == "arn:aws:sqs:us-east-1:000000000000:jobs.fifo"
    assert everything["FifoQueue"] == "true"
    assert everything["ContentBasedDeduplication"] == "true"
    assert everything["VisibilityTimeout"] == "30"
    assert store.get_attributes(queue, ["DelaySeconds"]) == {"DelaySeconds": "0"}
    assert store.get_attributes(queue, []) == {}
    with pytest.raises(SqsError) as excinfo:
        store.get_attributes(queue, ["Nope"])
    assert code_of(excinfo) == "InvalidAttributeName"


def test_set_attributes_applies_all_or_nothing(store: Store, clock: FakeClock) -> None:
    queue = store.create_queue("jobs")
    clock.advance(5)
    store.set_attributes(queue, {"VisibilityTimeout": "5", "DelaySeconds": "1"})
    assert (queue.config.visibility_timeout, queue.config.delay_seconds) == (5, 1)
    assert queue.modified == clock.now
    with pytest.raises(SqsError):
        store.set_attributes(queue, {"VisibilityTimeout": "7", "DelaySeconds": "901"})
    assert queue.config.visibility_timeout == 5
    with pytest.raises(SqsError):
        store.set_attributes(queue, {"FifoQueue": "true"})


def test_list_delete_and_missing_queue(store: Store) -> None:
    for name in ("a-1", "a-2", "b-1"):
        store.create_queue(name)
    assert store.list_queues("a-") == ["a-1", "a-2"]
    store.delete_queue(store.get_queue("a-1"))
    assert store.list_queues() == ["a-2", "b-1"]
    with pytest.raises(SqsError) as excinfo:
        store.get_queue("a-1")
    assert code_of(excinfo) == "QueueDoesNotExist"


def test_purge_is_limited_to_once_a_minute(store: Store, clock: FakeClock) -> None:
    queue = store.create_queue("jobs")
    store.send(queue, out())
    store.send(queue, out(delay_seconds=10))
    receive_one(store, queue)
    store.send(queue, out())
    assert store.purge(queue) == 3
    assert (queue.visible, queue.in_flight, queue.delayed) == (0, 0, 0)
    with pytest.raises(SqsError) as excinfo:
        store.purge(queue)
    assert code_of(excinfo) == "PurgeQueueInProgress"
    store.purge(queue, force=True)
    clock.advance(60)
    store.purge(queue)
    assert queue.counters.purged == 3


# --------------------------------------------------------------------------- messages


def test_receive_marks_in_flight_and_counts(store: Store, clock: FakeClock) -> None:
    queue = store.create_queue("jobs", {"VisibilityTimeout": "30"})
    store.send(queue, out("one"))
    store.send(queue, out("two"))
    messages = store.receive(queue, 10)
    assert [m.body for m in messages] == ["one", "two"]
    assert (queue.visible, queue.in_flight) == (0, 2)
    assert all(m.receive_count == 1 and m.first_receive_ms == int(clock.now * 1000) for m in messages)
    assert store.receive(queue, 10) == []


def test_visibility_expiry_redelivers_with_new_handle_and_same_first_receive(
    store: Store, clock: FakeClock
) -> None:
    queue = store.create_queue("jobs", {"VisibilityTimeout": "2"})
    store.send(queue, out())
    first = receive_one(store, queue)
    handle, first_receive = first.receipt_handle, first.first_receive_ms
    clock.advance(1.9)
    assert store.receive(queue, 1) == []
    clock.advance(0.2)
    again = receive_one(store, queue)
    assert again is first
    assert again.receipt_handle != handle
    assert again.receive_count == 2
    assert again.first_receive_ms == first_receive
    assert queue.counters.duplicates == 1


def test_stale_handle_delete_is_accepted_but_deletes_nothing(store: Store, clock: FakeClock) -> None:
    queue = store.create_queue("jobs", {"VisibilityTimeout": "1"})
    store.send(queue, out())
    stale = receive_one(store, queue).receipt_handle
    assert stale is not None
    clock.advance(1)
    current = receive_one(store, queue).receipt_handle
    assert store.delete(queue, stale) is False
    assert queue.in_flight == 1
    assert queue.counters.stale_deletes == 1
    with pytest.raises(SqsError) as excinfo:
        store.change_visibility(queue, stale, 10)
    assert code_of(excinfo) == "MessageNotInflight"
    assert current is not None and store.delete(queue, current) is True
    assert queue.depth == 0
    # Deleting again with a well-formed handle is fine; changing visibility is not.
    assert store.delete(queue, current) is False
    with pytest.raises(SqsError) as excinfo:
        store.change_visibility(queue, current, 10)
    assert code_of(excinfo) == "InvalidParameterValueException"


@pytest.mark.parametrize("handle", ["garbage", "", "AQEB.1.zz.1", "AQEB.99.1.1", "AQEB.1.1"])
def test_garbage_handles_are_invalid(store: Store, handle: str) -> None:
    queue = store.create_queue("jobs")
    store.send(queue, out())
    receive_one(store, queue)
    with pytest.raises(SqsError) as excinfo:
        store.delete(queue, handle)
    assert code_of(excinfo) == "ReceiptHandleIsInvalid"
    with pytest.raises(SqsError):
        store.change_visibility(queue, handle, 5)


def test_delete_with_latest_handle_after_expiry_still_deletes(store: Store, clock: FakeClock) -> None:
    queue = store.create_queue("jobs", {"VisibilityTimeout": "1"})
    store.send(queue, out())
    handle = receive_one(store, queue).receipt_handle
    clock.advance(5)
    store.reap(queue)
    assert queue.visible == 1
    assert handle is not None and store.delete(queue, handle)
    assert queue.depth == 0
    assert store.receive(queue, 10) == []


def test_change_visibility_extends_and_zero_makes_visible(store: Store, clock: FakeClock) -> None:
    recorder = Recorder()
    store.listener = _Listener(recorder)
    queue = store.create_queue("jobs", {"VisibilityTimeout": "1"})
    store.send(queue, out())
    handle = receive_one(store, queue).receipt_handle
    assert handle is not None
    store.change_visibility(queue, handle, 10)
    assert recorder.scheduled[-1] == ("jobs", clock.now + 10)
    clock.advance(5)
    assert store.receive(queue, 1) == []  # the old 1 s heap entry is stale and skipped
    store.change_visibility(queue, handle, 0)
    assert recorder.available[-1] == ("jobs", 1)
    assert receive_one(store, queue).receive_count == 2


def test_change_visibility_total_is_capped_at_12_hours(store: Store, clock: FakeClock) -> None:
    queue = store.create_queue("jobs")
    store.send(queue, out())
    handle = receive_one(store, queue, 43_000).receipt_handle
    assert handle is not None
    clock.advance(1000)
    with pytest.raises(SqsError, match="43200"):
        store.change_visibility(queue, handle, 43_000)
    store.change_visibility(queue, handle, 42_000)


def test_delay_queue_and_per_message_delay(store: Store, clock: FakeClock) -> None:
    queue = store.create_queue("jobs", {"DelaySeconds": "5"})
    store.send(queue, out("queue-delay"))
    store.send(queue, out("no-delay", delay_seconds=0))
    store.send(queue, out("long", delay_seconds=20))
    assert (queue.visible, queue.delayed) == (1, 2)
    assert [m.body for m in store.receive(queue, 10)] == ["no-delay"]
    clock.advance(5)
    assert [m.body for m in store.receive(queue, 10)] == ["queue-delay"]
    clock.advance(15)
    assert [m.body for m in store.receive(queue, 10)] == ["long"]
    assert queue.delayed == 0


def test_retention_drops_expired_messages_lazily(store: Store, clock: FakeClock) -> None:
    queue = store.create_queue("jobs", {"MessageRetentionPeriod": "60"})
    old = int((clock.now - 61) * 1000)
    store.preload(queue, 3, iter([("old", md5_of_body("old"), 3)] * 3), Preset(sent_ms=old))
    store.send(queue, out("fresh"))
    assert queue.visible == 4  # approximate until a receive reaches them
    assert [m.body for m in store.receive(queue, 10)] == ["fresh"]
    assert queue.counters.expired == 3
    assert queue.depth == 1


def test_redrive_moves_message_after_max_receives(store: Store) -> None:
    dlq = store.create_queue("dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 2})
    queue = store.create_queue("src", {"RedrivePolicy": policy})
    store.send(queue, out())
    for expected in (1, 2):
        assert receive_one(store, queue, 0).receive_count == expected
    assert store.receive(queue, 10, 0) == []
    moved = receive_one(store, dlq)
    assert moved.receive_count == 3  # AWS keeps counting across the move
    attributes = store.system_attributes(dlq, moved)
    assert attributes["DeadLetterQueueSourceArn"] == queue.arn
    assert (queue.counters.redriven_out, dlq.counters.redriven_in) == (1, 1)
    assert queue.depth == 0


def test_standard_queue_rejects_deduplication_id(store: Store) -> None:
    queue = store.create_queue("jobs")
    with pytest.raises(SqsError, match="MessageDeduplicationId"):
        store.send(queue, out(dedup_id="x"))
    store.send(queue, out(group_id="g"))  # fair queues accept a group id
    assert receive_one(store, queue).group_id == "g"


# --------------------------------------------------------------------------- FIFO


@pytest.fixture
def fifo(store: Store) -> Queue:
    return store.create_queue("jobs.fifo", {"FifoQueue": "true", "VisibilityTimeout": "5"})


def test_fifo_group_order_and_blocking(store: Store, fifo: Queue) -> None:
    for body, group in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("a3", "a")):
        store.send(fifo, out(body, group_id=group, dedup_id=body))
    first = store.receive(fifo, 1)
    assert [m.body for m in first] == ["a1"]
    assert [m.body for m in store.receive(fifo, 10)] == ["b1"]  # group a blocked
    assert store.receive(fifo, 10) == []
    handle = first[0].receipt_handle
    assert handle is not None
    store.delete(fifo, handle)
    assert [m.body for m in store.receive(fifo, 10)] == ["a2", "a3"]  # several of one group at once


def test_fifo_expired_messages_come_back_in_order(store: Store, clock: FakeClock, fifo: Queue) -> None:
    for index in range(4):
        store.send(fifo, out(f"m{index}", group_id="g", dedup_id=str(index)))
    assert [m.body for m in store.receive(fifo, 3)] == ["m0", "m1", "m2"]
    clock.advance(5)
    again = store.receive(fifo, 10)
    assert [m.body for m in again] == ["m0", "m1", "m2", "m3"]
    assert [m.receive_count for m in again] == [2, 2, 2, 1]


def test_fifo_deduplication_window(store: Store, clock: FakeClock, fifo: Queue) -> None:
    first = store.send(fifo, out("x", group_id="g", dedup_id="same"))
    duplicate = store.send(fifo, out("y", group_id="g", dedup_id="same"))
    assert duplicate == first
    assert fifo.visible == 1
    clock.advance(301)
    third = store.send(fifo, out("z", group_id="g", dedup_id="same"))
    assert third.message_id != first.message_id
    assert fifo.visible == 2
    assert first.sequence_number is not None and third.sequence_number is not None
    assert int(third.sequence_number) > int(first.sequence_number)
    assert len(third.sequence_number) == 20


def test_fifo_content_based_dedup_and_scope(store: Store) -> None:
    queue = store.create_queue(
        "cb.fifo",
        {"FifoQueue": "true", "ContentBasedDeduplication": "true", "DeduplicationScope": "messageGroup"},
    )
    store.send(queue, out("same", group_id="a"))
    store.send(queue, out("same", group_id="a"))
    store.send(queue, out("same", group_id="b"))  # other group: other scope
    assert queue.visible == 2
    [message] = store.receive(queue, 1)
    assert message.dedup_id is not None and len(message.dedup_id) == 64


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"dedup_id": "d"}, "MessageGroupId"),
        ({"group_id": "g"}, "ContentBasedDeduplication"),
        ({"group_id": "g", "dedup_id": "d", "delay_seconds": 2}, "DelaySeconds"),
    ],
)
def test_fifo_send_rules(store: Store, fifo: Queue, kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(SqsError, match=pattern):
        store.send(fifo, out(**kwargs))


def test_fifo_redrive_keeps_the_group_moving(store: Store) -> None:
    dlq = store.create_queue("dlq.fifo", {"FifoQueue": "true"})
    policy = json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1})
    queue = store.create_queue("src.fifo", {"FifoQueue": "true", "RedrivePolicy": policy})
    store.send(queue, out("m1", group_id="g", dedup_id="1"))
    store.send(queue, out("m2", group_id="g", dedup_id="2"))
    assert [m.body for m in store.receive(queue, 1, 0)] == ["m1"]
    assert [m.body for m in store.receive(queue, 10, 0)] == ["m2"]
    assert [m.body for m in store.receive(dlq, 10)] == ["m1"]


# --------------------------------------------------------------------------- listener, counters, cost


def test_listener_hears_availability(store: Store, clock: FakeClock) -> None:
    recorder = Recorder()
    store.listener = _Listener(recorder)
    queue = store.create_queue("jobs", {"VisibilityTimeout": "3"})
    store.send(queue, out())
    store.send(queue, out(delay_seconds=2))
    assert recorder.available == [("jobs", 1)]
    assert recorder.scheduled == [("jobs", clock.now + 2)]
    store.receive(queue, 10)
    assert recorder.scheduled[-1] == ("jobs", clock.now + 3)
    clock.advance(3)
    store.reap(queue)
    assert recorder.available[-1] == ("jobs", 2)  # the delayed one and the expired one
    store.delete_queue(queue)
    assert recorder.deleted == ["jobs"]


def test_counters_are_exact(store: Store, clock: FakeClock) -> None:
    queue = store.create_queue("jobs", {"VisibilityTimeout": "1"})
    for _ in range(3):
        store.send(queue, out())
    first = store.receive(queue, 10)
    clock.advance(1)
    second = store.receive(queue, 2)
    for message in second:
        assert message.receipt_handle is not None
        store.delete(queue, message.receipt_handle)
    assert len(first) == 3 and len(second) == 2
    counters = queue.counters.as_dict()
    assert counters["sent"] == 3
    assert counters["received"] == 5
    assert counters["duplicates"] == 2
    assert counters["deleted"] == 2
    assert queue.gauges() == {"visible": 1, "in_flight": 0, "delayed": 0, "depth": 1, "max_depth": 3}


def test_preload_fifo_needs_group(store: Store, fifo: Queue) -> None:
    bodies = iter([("b", md5_of_body("b"), 1)] * 2)
    with pytest.raises(SqsError):
        store.preload(fifo, 2, bodies, Preset())
    assert store.preload(fifo, 2, bodies, Preset(group_id="g")) == 2
    messages = store.receive(fifo, 10)
    assert [m.sequence_number is not None for m in messages] == [True, True]


def test_receive_cost_does_not_depend_on_depth(store: Store) -> None:
    """Structural proof of O(1): a receive at depth 1,000,000 looks at exactly the messages it returns."""
    deep = store.create_queue("deep")
    body = ("x" * 100, md5_of_body("x" * 100), 100)
    assert store.preload(deep, 1_000_000, _repeat(body), Preset()) == 1_000_000
    before = store.examined
    messages = store.receive(deep, 10)
    assert len(messages) == 10
    assert store.examined - before == 10
    # Deleting, changing visibility and reading the counts touch no other message either.
    for message in messages[:5]:
        assert message.receipt_handle is not None
        store.delete(deep, message.receipt_handle)
    for message in messages[5:]:
        assert message.receipt_handle is not None
        store.change_visibility(deep, message.receipt_handle, 0)
    assert store.get_attributes(deep, ["ApproximateNumberOfMessages"]) == {
        "ApproximateNumberOfMessages": str(1_000_000 - 5)
    }
    before = store.examined
    assert len(store.receive(deep, 10)) == 10
    assert store.examined - before == 10
    assert len(deep.in_flight_heap) <= 20  # no heap entry per stored message


def _repeat(item: tuple[str, str, int]) -> Iterator[tuple[str, str, int]]:
    while True:
        yield item


def test_in_flight_heap_stays_bounded_by_live_messages(store: Store) -> None:
    """Deleting messages long before their visibility ends must not leave the heap growing."""
    queue = store.create_queue("jobs", {"VisibilityTimeout": "600"})
    for _ in range(300):
        for _ in range(10):
            store.send(queue, out())
        for message in store.receive(queue, 10):
            assert message.receipt_handle is not None
            store.delete(queue, message.receipt_handle)
    assert queue.depth == 0
    assert len(queue.in_flight_heap) <= 2 * queue.in_flight + 1024 + 1
