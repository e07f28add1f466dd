"""The message as asqsd holds it, and the outcome of delivering it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# SQS system attributes the stock daemon asks for; every X-Aws-Sqsd-* header derives from these.
SYSTEM_ATTRIBUTE_NAMES: tuple[str, ...] = (
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SentTimestamp",
    "SenderId",
)

# What every ReceiveMessage asks for: the stock attributes plus the FIFO ids, which ordering and
# dead-lettering (the group and deduplication ids kept on the dead-letter queue) need, and the
# producer's X-Ray trace header for trace_headers. Asking is free: SQS returns an attribute only
# when the message has it, and none of the three reaches the worker unless a setting says so.
RECEIVE_SYSTEM_ATTRIBUTE_NAMES: tuple[str, ...] = (
    *SYSTEM_ATTRIBUTE_NAMES,
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
)

# Message attributes of periodic tasks (stock names); attributes with this prefix are never
# forwarded to the worker as X-Aws-Sqsd-Attr-* headers.
TASK_PATH_ATTR = "beanstalk.sqsd.path"
TASK_NAME_ATTR = "beanstalk.sqsd.task_name"
TASK_TIME_ATTR = "beanstalk.sqsd.scheduled_time"
RESERVED_PREFIX = "beanstalk.sqsd."


@dataclass(slots=True, frozen=True)
class MessageAttribute:
    """One SQS message attribute: its data type and, for String/Number types, its value."""

    data_type: str
    string_value: str | None = None
    binary_value: bytes | None = None


@dataclass(slots=True)
class Message:
    """A received SQS message plus what asqsd needs to track its lease.

    ``leased_until`` is on the monotonic clock: the moment SQS may hand the message to another
    consumer unless asqsd extends or settles it first. It is computed from the time the receive
    call was *sent*, so it errs on the early side.
    """

    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str] = field(default_factory=dict)
    message_attributes: dict[str, MessageAttribute] = field(default_factory=dict)
    leased_until: float = 0.0
    group_id: str | None = None
    # Monotonic time the receive that returned this copy was sent: SQS's 12-hour visibility
    # limit counts from that receive. None for a message asqsd did not receive itself.
    received_at: float | None = None

    @property
    def receive_count(self) -> int:
        """ApproximateReceiveCount as an int (0 when SQS did not say or said nonsense)."""
        try:
            return int(self.attributes.get("ApproximateReceiveCount", "0"))
        except ValueError:
            return 0


@dataclass(slots=True, frozen=True)
class VisibilityChange:
    """A visibility change to batch: after a failed delivery (retry) or at shutdown (release)."""

    message: Message
    timeout_s: int
    release: bool = False


class Outcome(enum.Enum):
    """What delivering a message decided about it."""

    DELETE = "delete"  # worker said success (or the message expired): delete from SQS
    RETRY = "retry"  # failure: make it visible again after a delay (error visibility / Retry-After)
    LEAVE = "leave"  # failure with no visibility change: it reappears when its lease runs out
    DEAD_LETTER = "dead_letter"  # failure to move to the dead-letter queue: send there, then delete
    HELD = "held"  # async_ack: the worker answered 202 and reports the outcome later


@dataclass(slots=True, frozen=True)
class BatchFailure:
    """A batch entry SQS refused, as reported in the ``Failed`` list of a batch response."""

    entry_id: str
    code: str
    sender_fault: bool
    message: str = ""


@dataclass(slots=True)
class BatchResult:
    """Which entries of a batch call succeeded and which failed."""

    succeeded: list[str] = field(default_factory=list)
    failed: list[BatchFailure] = field(default_factory=list)
