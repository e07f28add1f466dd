"""What is in flight: every message asqsd holds, with its state, for ``GET /inflight``.

Built on demand from what the pipeline already keeps (the lease table, each dispatcher's current
message, the settler's unsent batches), so the hot path pays nothing for it. States:

* ``buffered``: received, waiting in the channel for a free dispatcher;
* ``posting``: taken by a dispatcher, POST in progress (or held for a worker outage);
* ``settling``: the worker answered; the delete or visibility change is not answered by SQS yet.

A report never carries a body or a receipt handle: only a short hash of the handle, which tells
two copies of one message apart without giving anyone the means to delete or hide it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from asqsd.message import Message
from asqsd.pipeline.leases import LeaseTable

STATES = ("buffered", "posting", "settling")


@dataclass(slots=True, frozen=True)
class HeldMessage:
    """One line of the report; times in seconds, relative to the moment of the report."""

    message_id: str
    receipt_hash: str
    receive_count: int
    state: str
    held_s: float | None  # since the receive that returned this copy was sent (None: unknown)
    visibility_left_s: float  # until SQS may hand it out again, unless extended or settled

    def as_dict(self) -> dict[str, object]:
        """The JSON form."""
        return {
            "message_id": self.message_id,
            "receipt_hash": self.receipt_hash,
            "receive_count": self.receive_count,
            "state": self.state,
            "held_s": self.held_s,
            "visibility_left_s": self.visibility_left_s,
        }


def receipt_hash(receipt_handle: str) -> str:
    """12 hex digits of a BLAKE2b hash of the receipt handle."""
    return hashlib.blake2b(receipt_handle.encode(), digest_size=6).hexdigest()


def inflight_report(
    leases: LeaseTable,
    current: Iterable[Message],
    unsettled: Iterable[Message],
    now: float,
    limit: int,
) -> dict[str, object]:
    """The ``/inflight`` body: the total, the count per state and the ``limit`` longest-held
    messages (oldest first). ``current`` are the dispatchers' messages, ``unsettled`` the
    settler's; ``now`` is on the receivers' (monotonic) clock."""
    states: dict[str, tuple[Message, str]] = {}
    for message in unsettled:
        states[message.receipt_handle] = (message, "settling")
    for message in current:
        # A dispatcher drops the lease before it settles: still leased means still posting.
        state = "posting" if message in leases else "settling"
        states.setdefault(message.receipt_handle, (message, state))
    for message in leases.held():
        states.setdefault(message.receipt_handle, (message, "buffered"))
    lines = [_line(message, state, now) for message, state in states.values()]
    lines.sort(key=lambda line: -(line.held_s or 0.0))
    counts = dict.fromkeys(STATES, 0)
    for line in lines:
        counts[line.state] += 1
    return {
        "total": len(lines),
        "counts": counts,
        "limit": limit,
        "messages": [line.as_dict() for line in lines[:limit]],
    }


def _line(message: Message, state: str, now: float) -> HeldMessage:
    received_at = message.received_at
    return HeldMessage(
        message.message_id,
        receipt_hash(message.receipt_handle),
        message.receive_count,
        state,
        None if received_at is None else round(now - received_at, 3),
        round(message.leased_until - now, 3),
    )
