"""A bounded channel between receivers and dispatchers, with slot reservations.

Receivers reserve free slots *before* calling ReceiveMessage so the channel can never overfill:
SQS's visibility clock runs while a message waits here, so asqsd only receives what it can
dispatch soon. Python 3.11 has no ``Queue.shutdown()``, hence the explicit close semantics.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TypeVar

from asqsd.message import Message

T = TypeVar("T")


class ChannelClosed(Exception):
    """Raised by :meth:`Channel.get` once closed and drained, and by reserve/fill after close."""


@dataclass(slots=True, frozen=True)
class ChannelStats:
    """A snapshot for metrics and tests."""

    capacity: int
    buffered: int
    reserved: int
    waiting_getters: int


class Channel:
    """Bounded FIFO of messages; capacity counts buffered messages plus reserved slots."""

    def __init__(self, capacity: int, batch: int = 10) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        # Receivers wait for a whole batch of free slots (fewer, larger ReceiveMessage calls)
        # unless the buffer ran dry, when any free slot is worth filling at once.
        self._batch = min(batch, capacity)
        # asyncio.Queue wakes exactly one getter per item (no thundering herd on the hot path);
        # None is the end-of-channel sentinel, passed on from getter to getter.
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self._buffered = 0
        self._reserved = 0
        self._closed = False
        self._space = asyncio.Event()
        self._space.set()
        self._getters = 0
        self.empty_waits = 0  # gets that found the buffer empty: dispatchers idle for want of messages

    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`close_keep_buffer` was called."""
        return self._closed

    def free_slots(self) -> int:
        """Slots neither filled nor reserved."""
        return self._capacity - self._buffered - self._reserved

    async def reserve(self, most: int) -> int:
        """Wait for room (a batch of free slots, or any when the buffer is empty), reserve up to
        ``most`` slots and return how many."""
        while True:
            if self._closed:
                raise ChannelClosed
            if self._worth_receiving():
                count = min(most, self.free_slots())
                self._reserved += count
                return count
            self._space.clear()
            await self._space.wait()

    def _worth_receiving(self) -> bool:
        free = self.free_slots()
        return free >= self._batch or (free > 0 and self._buffered == 0)

    def fill(self, messages: list[Message], reserved: int) -> None:
        """Put received messages into reserved slots and give back the unused reservations."""
        if len(messages) > reserved:
            raise ValueError("more messages than reserved slots")
        self._reserved -= reserved
        if self._closed:
            self._space.set()
            raise ChannelClosed
        self._store(messages)
        self._buffered += len(messages)
        self._space_changed()

    def _store(self, messages: list[Message]) -> None:
        for message in messages:
            self._queue.put_nowait(message)

    def cancel_reservation(self, reserved: int) -> None:
        """Give back reservations without filling them (receive failed or intake stopped)."""
        self._reserved -= reserved
        self._space_changed()

    async def get(self) -> Message:
        """Next message; raises :class:`ChannelClosed` once closed and drained."""
        if self._queue.empty():
            self.empty_waits += 1
        item = await self._await_item(self._queue)
        self._buffered -= 1
        self._space_changed()
        return item

    async def _await_item(self, queue: asyncio.Queue[T | None]) -> T:
        """The next item of ``queue``; None is the end, passed on so every getter sees it."""
        self._getters += 1
        try:
            item = await queue.get()
        finally:
            self._getters -= 1
        if item is None:
            queue.put_nowait(None)
            raise ChannelClosed
        return item

    def done(self, message: Message, failed: bool) -> list[Message]:
        """A dispatcher finished ``message``; returns messages that must now be released (none
        for a standard queue, see :class:`GroupedChannel`)."""
        return []

    def close(self) -> list[Message]:
        """Close and take out the buffered, unstarted messages (to release them)."""
        drained = self._take_all()
        self._mark_closed()
        return drained

    def take_buffered(self) -> list[Message]:
        """Take out the buffered, unstarted messages and stay open (intake paused: release them)."""
        if self._closed:
            return []  # close() took them already, or will
        drained = self._take_all()
        self._space_changed()
        return drained

    def _take_all(self) -> list[Message]:
        drained: list[Message] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                drained.append(item)
        self._buffered = 0
        return drained

    def close_keep_buffer(self) -> None:
        """Close for senders only: getters still drain what is buffered, then see the end."""
        self._mark_closed()

    def stats(self) -> ChannelStats:
        """Counts for metrics."""
        return ChannelStats(self._capacity, self._buffered, self._reserved, self._getters)

    def _mark_closed(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)
        self._space.set()  # reservers wake up and see the close

    def _space_changed(self) -> None:
        # Wake reservers only when a receive is worth making: waking them on every get() would
        # cost a round of coroutine switches per message at saturation.
        if self._worth_receiving():
            self._space.set()


class GroupedChannel(Channel):
    """FIFO-queue channel: one message per MessageGroupId at a time, groups in parallel.

    SQS hands out a group's next messages only once the earlier ones are settled, so every
    message of a group held here came in order from one receive. A dispatcher gets the oldest
    message of a group that is not being delivered; :meth:`done` frees the group again. When a
    delivery fails, the group's later messages must not overtake it: they are taken out and
    returned, for the caller to release (visibility 0); SQS keeps the group blocked until the
    failed message is visible again and delivers it first.
    """

    def __init__(self, capacity: int, batch: int = 10) -> None:
        super().__init__(capacity, batch)
        self._groups: dict[str, deque[Message]] = {}
        self._busy: set[str] = set()
        self._queued: set[str] = set()
        # The base class's queue carries group keys here, not messages (None still ends it).
        self._keys: asyncio.Queue[str | None] = asyncio.Queue()

    def _store(self, messages: list[Message]) -> None:
        """Append each message to its group; groups that can go are offered to dispatchers."""
        for message in messages:
            key = message.group_id or ""
            self._groups.setdefault(key, deque()).append(message)
            self._offer(key)

    async def get(self) -> Message:
        """The oldest message of an idle group; the group stays busy until :meth:`done`."""
        if self._keys.empty():
            self.empty_waits += 1
        key = await self._await_item(self._keys)
        self._queued.discard(key)
        group = self._groups[key]
        message = group.popleft()
        if not group:
            del self._groups[key]
        self._busy.add(key)
        self._buffered -= 1
        self._space_changed()
        return message

    def done(self, message: Message, failed: bool) -> list[Message]:
        """The group is free again; after a failure its buffered messages are returned to release."""
        key = message.group_id or ""
        self._busy.discard(key)
        if failed:
            held = list(self._groups.pop(key, ()))
            self._buffered -= len(held)
            self._space_changed()
            return held
        self._offer(key)
        return []

    def _take_all(self) -> list[Message]:
        """Every buffered message of every group (a group being delivered keeps that message)."""
        drained = [m for group in self._groups.values() for m in group]
        self._groups.clear()
        self._queued.clear()
        while not self._keys.empty():  # offers of groups that no longer exist
            self._keys.get_nowait()
        self._buffered = 0
        return drained

    def _offer(self, key: str) -> None:
        if key in self._groups and key not in self._busy and key not in self._queued:
            self._queued.add(key)
            self._keys.put_nowait(key)

    def _mark_closed(self) -> None:
        if not self._closed:
            self._closed = True
            self._keys.put_nowait(None)
        self._space.set()
