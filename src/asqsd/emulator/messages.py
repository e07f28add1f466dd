"""The stored message record and its life-cycle states."""

from __future__ import annotations

from typing import Final

# A message is in exactly one state; structures that still reference a message in another state
# (the ready deque, the heaps) skip it when they reach it: that is the lazy invalidation.
READY: Final = 0
IN_FLIGHT: Final = 1
DELAYED: Final = 2
GONE: Final = 3

MessageAttributes = dict[str, dict[str, str]]


class Message:
    """One message in one queue.

    Plain mutable record with ``__slots__``: a million of them must fit comfortably in memory and be created
    quickly by ``preload``.  ``seq`` is unique in the store and orders messages; ``token`` identifies the
    message's current heap entry so stale entries can be recognised without searching the heap.
    """

    __slots__ = (
        "attributes",
        "body",
        "dedup_id",
        "dlq_source_arn",
        "first_receive_ms",
        "group_id",
        "md5_attributes",
        "md5_body",
        "md5_system",
        "message_id",
        "receipt_handle",
        "receive_count",
        "received_at",
        "sent_ms",
        "seq",
        "sequence_number",
        "size",
        "state",
        "token",
        "trace_header",
        "visible_at",
    )

    def __init__(
        self,
        seq: int,
        message_id: str,
        body: str,
        md5_body: str,
        sent_ms: int,
        size: int,
    ) -> None:
        self.seq = seq
        self.message_id = message_id
        self.body = body
        self.md5_body = md5_body
        self.sent_ms = sent_ms
        self.size = size
        self.attributes: MessageAttributes | None = None
        self.md5_attributes: str | None = None
        self.trace_header: str | None = None
        self.md5_system: str | None = None
        self.group_id: str | None = None
        self.dedup_id: str | None = None
        self.sequence_number: str | None = None
        self.dlq_source_arn: str | None = None
        self.first_receive_ms = 0
        self.receive_count = 0
        self.received_at = 0.0
        self.receipt_handle: str | None = None
        self.state: int = READY
        self.visible_at = 0.0
        self.token = 0

    def __repr__(self) -> str:
        return f"<Message seq={self.seq} state={self.state} receives={self.receive_count}>"
