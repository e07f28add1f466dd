"""Counters the daemon keeps: read by tests, the exit summary and (later) the metrics endpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

# Why asqsd moved a message to the dead-letter queue (the reason label of the counter).
DEAD_LETTER_REASONS = ("status", "max_retries")

# Every AWS operation the daemon counts (the SQS client wrapper's calls, and PutMetricData for
# cloudwatch_metrics): /metrics shows each from the start, at 0, so rate() sees its first call.
AWS_OPERATIONS = (
    "ReceiveMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibilityBatch",
    "GetQueueAttributes",
    "SendMessage",
    "PutMetricData",
)

# What a worker may report on an async_ack acknowledgement URL (the outcome label of the counter).
ASYNC_ACK_OUTCOMES = ("done", "fail", "extend")


@dataclass(slots=True)
class Counters:
    """Plain integer counters; only the event-loop thread touches them, so no locking."""

    received: int = 0
    delivered: int = 0
    succeeded: int = 0
    failed: int = 0
    by_status_class: dict[str, int] = field(default_factory=dict)
    deleted: int = 0
    delete_failed: int = 0
    expired: int = 0
    retried: int = 0  # visibility set to error_visibility_timeout / Retry-After after a failure
    retry_failed: int = 0
    released: int = 0  # made visible again (visibility 0) at shutdown without a delivery
    release_failed: int = 0
    extended: int = 0
    lease_lost: int = 0
    abandoned: int = 0  # in flight when the grace period ran out; left to SQS
    stale_resends: int = 0
    duplicates_suppressed: int = 0  # dedup: recorded as processed, so deleted without a POST
    duplicates_in_progress: int = 0  # dedup: another consumer is on it, so left to SQS unsent
    dedup_errors: int = 0  # dedup table calls that failed (delivered unchecked / outcome unrecorded)
    dead_lettered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DEAD_LETTER_REASONS, 0))
    dead_letter_failed: int = 0  # dead-letter sends that failed (the message was left to SQS)
    headers_skipped: int = 0
    worker_outages: int = 0  # times the worker outage hold opened
    # async_ack: acknowledgements applied, by outcome; jobs released because none came in time
    async_acks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ASYNC_ACK_OUTCOMES, 0))
    async_jobs_expired: int = 0
    receive_calls: int = 0
    receive_errors: int = 0
    empty_receives: int = 0
    sqs_calls: dict[str, int] = field(default_factory=dict)
    sqs_errors: dict[str, int] = field(default_factory=dict)

    def count_status(self, status: int | None) -> None:
        """Count a delivery by status class (``2xx`` ... ``5xx``, ``error`` for no response)."""
        key = f"{status // 100}xx" if status is not None else "error"
        self.by_status_class[key] = self.by_status_class.get(key, 0) + 1

    def count_call(self, operation: str, error: bool = False) -> None:
        """Count one SQS API call (and whether it failed)."""
        self.sqs_calls[operation] = self.sqs_calls.get(operation, 0) + 1
        if error:
            self.sqs_errors[operation] = self.sqs_errors.get(operation, 0) + 1
