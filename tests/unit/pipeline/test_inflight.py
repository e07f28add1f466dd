"""The /inflight report: states, order, bound, and no receipt handle or body in it."""

from __future__ import annotations

import json

from asqsd.message import Message
from asqsd.observe.counters import Counters
from asqsd.pipeline.channel import Channel, GroupedChannel
from asqsd.pipeline.inflight import inflight_report, receipt_hash
from asqsd.pipeline.leases import LeaseTable
from asqsd.pipeline.settle import Settler


def held(n: int, received_at: float, leased_until: float = 130.0) -> Message:
    message = Message(f"id{n}", f"secret-receipt-{n}", f"secret body {n}")
    message.attributes["ApproximateReceiveCount"] = str(n)
    message.received_at = received_at
    message.leased_until = leased_until
    return message


def test_states_counts_and_oldest_first() -> None:
    """Leased and idle: buffered; leased and taken: posting; lease dropped or in the settler: settling."""
    leases = LeaseTable()
    buffered, posting, answered, deleting = held(1, 90), held(2, 80), held(3, 70), held(4, 60)
    leases.add([buffered, posting])
    report = inflight_report(leases, [posting, answered], [deleting], now=100.0, limit=10)
    assert report["total"] == 4
    assert report["counts"] == {"buffered": 1, "posting": 1, "settling": 2}
    lines = report["messages"]
    assert isinstance(lines, list)
    assert [(line["message_id"], line["state"]) for line in lines] == [
        ("id4", "settling"),
        ("id3", "settling"),
        ("id2", "posting"),
        ("id1", "buffered"),
    ]
    assert lines[-1] == {
        "message_id": "id1",
        "receipt_hash": receipt_hash("secret-receipt-1"),
        "receive_count": 1,
        "state": "buffered",
        "held_s": 10.0,
        "visibility_left_s": 30.0,
    }


def test_a_message_in_two_places_is_listed_once() -> None:
    """Between the settler taking a delete and the dispatcher letting go, both hold it."""
    message = held(1, 90)
    report = inflight_report(LeaseTable(), [message], [message], now=100.0, limit=10)
    assert report["total"] == 1 and report["counts"] == {"buffered": 0, "posting": 0, "settling": 1}


def test_limit_bounds_the_list_not_the_counts() -> None:
    leases = LeaseTable()
    leases.add([held(n, 100.0 - n) for n in range(50)])
    report = inflight_report(leases, [], [], now=100.0, limit=5)
    assert report["total"] == 50 and report["limit"] == 5
    lines = report["messages"]
    assert isinstance(lines, list)
    assert [line["message_id"] for line in lines] == ["id49", "id48", "id47", "id46", "id45"]


def test_never_a_receipt_handle_or_body() -> None:
    leases = LeaseTable()
    leases.add([held(n, 90) for n in range(3)])
    text = json.dumps(inflight_report(leases, [], [], now=100.0, limit=10))
    assert "secret" not in text


def test_unknown_receive_time() -> None:
    message = held(1, 0)
    message.received_at = None
    leases = LeaseTable()
    leases.add([message])
    lines = inflight_report(leases, [], [], now=100.0, limit=10)["messages"]
    assert isinstance(lines, list) and lines[0]["held_s"] is None


async def test_take_buffered_keeps_the_channel_open() -> None:
    """A pause takes the buffer out; the channel goes on taking and giving messages."""
    channel = Channel(10)
    reserved = await channel.reserve(3)
    channel.fill([held(1, 0), held(2, 0)], reserved)
    taken = channel.take_buffered()
    assert [m.message_id for m in taken] == ["id1", "id2"]
    assert channel.stats().buffered == 0 and not channel.closed
    reserved = await channel.reserve(1)
    channel.fill([held(3, 0)], reserved)
    assert (await channel.get()).message_id == "id3"
    channel.close()
    assert channel.take_buffered() == []


async def test_grouped_take_buffered_leaves_the_busy_group_busy() -> None:
    """FIFO: the message being delivered stays with its dispatcher; later ones go back."""
    channel = GroupedChannel(10)
    messages = [held(1, 0), held(2, 0), held(3, 0)]
    for message, group in zip(messages, ("a", "a", "b"), strict=True):
        message.group_id = group
    reserved = await channel.reserve(3)
    channel.fill(messages, reserved)
    first = await channel.get()
    taken = channel.take_buffered()
    assert first.message_id == "id1"
    assert sorted(m.message_id for m in taken) == ["id2", "id3"]
    assert channel.stats().buffered == 0
    assert channel.done(first, failed=False) == []
    reserved = await channel.reserve(1)
    extra = held(4, 0)
    extra.group_id = "a"
    channel.fill([extra], reserved)
    assert (await channel.get()).message_id == "id4"


def test_settler_lists_what_sqs_has_not_answered() -> None:
    """Deletes, retries and releases waiting for a call are all unsettled."""
    leases = LeaseTable()
    one, two, three = held(1, 0), held(2, 0), held(3, 0)
    leases.add([three])
    settler = Settler(None, leases, Counters(), max_wait_s=0.01)  # type: ignore[arg-type] - never called
    settler.delete(one)
    settler.retry_in(two, 30)
    settler.release([three])
    assert [m.message_id for m in settler.unsettled()] == ["id1", "id2", "id3"]
    assert settler.pending == 3 and len(leases) == 0
