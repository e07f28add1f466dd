"""Per-queue state: ready structures for standard and FIFO queues, heaps, O(1) gauges and counters."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from asqsd.emulator.attributes import QueueConfig
from asqsd.emulator.messages import READY, Message

# Decides whether a ready message may be delivered now; False means it was consumed otherwise
# (expired by retention, or moved to the dead-letter queue).
Admit = Callable[[Message], bool]
HeapEntry = tuple[float, int, Message]


class ReadyList(Protocol):
    """Messages that may be received now.  Every method is O(1) amortised, whatever the depth.

    The ``int`` results count newly available "units" (messages, or FIFO groups that became unblocked):
    that is how many long-poll waiters to wake.
    """

    examined: int

    def append(self, message: Message) -> int: ...
    def requeue(self, message: Message) -> int: ...
    def release(self, message: Message) -> int: ...
    def take(self, limit: int, admit: Admit) -> list[Message]: ...


class StandardReady:
    """One deque: sent messages at the back, messages whose visibility ended at the front."""

    __slots__ = ("_items", "examined")

    def __init__(self) -> None:
        self._items: deque[Message] = deque()
        self.examined = 0

    def append(self, message: Message) -> int:
        self._items.append(message)
        return 1

    def requeue(self, message: Message) -> int:
        self._items.appendleft(message)
        return 1

    def release(self, message: Message) -> int:
        return 0

    def take(self, limit: int, admit: Admit) -> list[Message]:
        items = self._items
        out: list[Message] = []
        while items and len(out) < limit:
            message = items.popleft()
            self.examined += 1
            # Deleted-while-ready messages stay in the deque until they reach the front.
            if message.state == READY and admit(message):
                out.append(message)
        return out


class _Group:
    __slots__ = ("gid", "in_flight", "items", "queued")

    def __init__(self, gid: str) -> None:
        self.gid = gid
        self.items: deque[Message] = deque()
        self.in_flight = 0
        self.queued = False


class FifoReady:
    """Per-group deques plus a deque of unblocked groups.

    A group is blocked while any of its messages is in flight (AWS FIFO semantics); it is offered again
    once the last one is deleted or becomes visible.  One receive may take several messages of a group.
    """

    __slots__ = ("_groups", "_ready", "examined")

    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}
        self._ready: deque[_Group] = deque()
        self.examined = 0

    def append(self, message: Message) -> int:
        gid = message.group_id or ""
        group = self._groups.get(gid)
        if group is None:
            group = self._groups[gid] = _Group(gid)
        group.items.append(message)
        return self._offer(group)

    def requeue(self, message: Message) -> int:
        group = self._groups[message.group_id or ""]
        group.in_flight -= 1
        _insert_in_order(group.items, message)
        return self._offer(group)

    def release(self, message: Message) -> int:
        group = self._groups[message.group_id or ""]
        group.in_flight -= 1
        woken = self._offer(group)
        self._forget_if_idle(group)
        return woken

    def take(self, limit: int, admit: Admit) -> list[Message]:
        out: list[Message] = []
        while self._ready and len(out) < limit:
            group = self._ready.popleft()
            group.queued = False
            self._take_from(group, limit, admit, out)
            self._offer(group)
            self._forget_if_idle(group)
        return out

    def _take_from(self, group: _Group, limit: int, admit: Admit, out: list[Message]) -> None:
        items = group.items
        while items and len(out) < limit:
            message = items.popleft()
            self.examined += 1
            if message.state == READY and admit(message):
                out.append(message)
                group.in_flight += 1

    def _offer(self, group: _Group) -> int:
        if group.in_flight or group.queued or not group.items:
            return 0
        group.queued = True
        self._ready.append(group)
        return 1

    def _forget_if_idle(self, group: _Group) -> None:
        # Groups are created per MessageGroupId; drop idle ones so memory follows live groups only.
        if not group.in_flight and not group.items and not group.queued:
            self._groups.pop(group.gid, None)


def _insert_in_order(items: deque[Message], message: Message) -> None:
    # Messages returning from flight precede everything still queued in their group, except other
    # returning messages of the same receive; so the scan stops after a few steps.
    index = 0
    for index, queued in enumerate(items):  # noqa: B007 - the index is used after the loop
        if queued.seq > message.seq:
            break
    else:
        index = len(items)
    items.insert(index, message)


class QueueCounters:
    """Cumulative, exact event counts for one queue."""

    FIELDS = (
        "sent",
        "received",
        "deleted",
        "stale_deletes",
        "duplicates",
        "expired",
        "redriven_out",
        "redriven_in",
        "purged",
    )
    __slots__ = FIELDS

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        for name in self.FIELDS:
            setattr(self, name, 0)

    def add(self, other: QueueCounters) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.FIELDS}

    sent: int
    received: int
    deleted: int
    stale_deletes: int  # DeleteMessage calls accepted with an outdated handle: nothing was deleted
    duplicates: int
    expired: int
    redriven_out: int
    redriven_in: int
    purged: int


class Queue:
    """One queue: configuration, message structures and gauges.  Mutated only by :class:`Store`."""

    __slots__ = (
        "arn",
        "config",
        "counters",
        "created",
        "dedup",
        "dedup_order",
        "delayed",
        "delayed_heap",
        "deleted",
        "in_flight",
        "in_flight_heap",
        "last_purge",
        "max_depth",
        "modified",
        "name",
        "ready",
        "received",
        "tags",
        "uid",
        "visible",
    )

    def __init__(self, uid: int, name: str, arn: str, config: QueueConfig, now: float) -> None:
        self.uid = uid
        self.name = name
        self.arn = arn
        self.config = config
        self.created = now
        self.modified = now
        self.tags: dict[str, str] = {}
        self.ready: ReadyList = FifoReady() if config.fifo else StandardReady()
        # (visible_at, token, message); an entry is live only while message.token == token.
        self.in_flight_heap: list[HeapEntry] = []
        self.delayed_heap: list[HeapEntry] = []
        # Messages that have a receipt handle, by seq: resolves handles without keeping old ones.
        self.received: dict[int, Message] = {}
        self.visible = 0
        self.in_flight = 0
        self.delayed = 0
        self.max_depth = 0
        self.counters = QueueCounters()
        # FIFO deduplication: key -> (expires_at, message_id, sequence_number), plus expiry order.
        self.dedup: dict[str, tuple[float, str, str | None]] = {}
        self.dedup_order: deque[tuple[float, str]] = deque()
        self.last_purge: float | None = None
        self.deleted = False

    def clear_messages(self) -> None:
        """Forget every message (PurgeQueue); gauges drop to zero."""
        self.ready = FifoReady() if self.config.fifo else StandardReady()
        self.in_flight_heap.clear()
        self.delayed_heap.clear()
        self.received.clear()
        self.visible = self.in_flight = self.delayed = 0

    @property
    def depth(self) -> int:
        """Messages stored in any state (visible, in flight or delayed)."""
        return self.visible + self.in_flight + self.delayed

    def gauges(self) -> dict[str, int]:
        return {
            "visible": self.visible,
            "in_flight": self.in_flight,
            "delayed": self.delayed,
            "depth": self.depth,
            "max_depth": self.max_depth,
        }
