"""The lease table: every message asqsd holds (buffered or being delivered) and its deadline.

It is the single source of truth for the heartbeat and for shutdown accounting. Methods never
await: they change state synchronously and return what needs I/O, so no cancellation can land
between a check and the update it guards.
"""

from __future__ import annotations

from collections.abc import Iterable

from asqsd.message import Message


class LeaseTable:
    """Held messages keyed by receipt handle (unique per receive, unlike message ids)."""

    def __init__(self) -> None:
        self._held: dict[str, Message] = {}
        self._lost: set[str] = set()

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, message: object) -> bool:
        return isinstance(message, Message) and message.receipt_handle in self._held

    def add(self, messages: Iterable[Message]) -> None:
        """Start tracking messages just received."""
        for message in messages:
            self._held[message.receipt_handle] = message

    def remove(self, message: Message) -> bool:
        """Stop tracking a message (settled, released or abandoned); False if it was not held."""
        self._lost.discard(message.receipt_handle)
        return self._held.pop(message.receipt_handle, None) is not None

    def due(self, now: float, margin_s: float, limit: int = 1000) -> list[Message]:
        """Held messages whose lease ends within ``margin_s`` and that are not known to be lost."""
        deadline = now + margin_s
        due = [
            m
            for m in self._held.values()
            if m.leased_until <= deadline and m.receipt_handle not in self._lost
        ]
        due.sort(key=lambda m: m.leased_until)
        return due[:limit]

    def extended(self, message: Message, leased_until: float) -> None:
        """Record a successful extension (ignored if the message was settled meanwhile)."""
        if message.receipt_handle in self._held:
            message.leased_until = leased_until

    def mark_lost(self, message: Message) -> None:
        """SQS refused to extend: another consumer may get it; stop trying."""
        if message.receipt_handle in self._held:
            self._lost.add(message.receipt_handle)

    def held(self) -> list[Message]:
        """A snapshot of every held message."""
        return list(self._held.values())
