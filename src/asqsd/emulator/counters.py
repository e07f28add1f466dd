"""Exact counters: per-operation call statistics and snapshots of per-queue message counts."""

from __future__ import annotations

import time
from typing import Any

from asqsd.emulator.queues import QueueCounters
from asqsd.emulator.store import Store


class OperationCounter:
    """Counts for one SQS operation as seen by the HTTP layer."""

    FIELDS = ("calls", "errors", "errors_injected", "connections_dropped", "batch_entries_failed")
    __slots__ = FIELDS

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0  # every error response, injected or genuine
        self.errors_injected = 0
        self.connections_dropped = 0
        self.batch_entries_failed = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.FIELDS}


class OperationStats:
    """Per-operation counters, created on first use.

    ``first_calls`` holds the wall-clock time (Unix seconds) of each operation's first call since
    the last reset: the benchmark harness times a daemon's start-up by its first ReceiveMessage.
    """

    def __init__(self) -> None:
        self._ops: dict[str, OperationCounter] = {}
        self.first_calls: dict[str, float] = {}

    def get(self, operation: str) -> OperationCounter:
        counter = self._ops.get(operation)
        if counter is None:
            counter = self._ops[operation] = OperationCounter()
            self.first_calls[operation] = time.time()
        return counter

    def reset(self) -> None:
        self._ops.clear()
        self.first_calls.clear()

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {name: counter.as_dict() for name, counter in sorted(self._ops.items())}


def queue_snapshot(store: Store, name: str) -> dict[str, int]:
    """Cumulative counters plus live gauges (visible, in_flight, delayed, depth, max_depth) of one queue."""
    queue = store.get_queue(name)
    store.reap(queue)
    return {**queue.counters.as_dict(), **queue.gauges()}


def snapshot(store: Store, stats: OperationStats) -> dict[str, Any]:
    """Everything: operations, each live queue, and totals (which include deleted queues' counts)."""
    queues = {name: queue_snapshot(store, name) for name in sorted(store.queues)}
    totals = QueueCounters()
    totals.add(store.retired)
    for queue in store.queues.values():
        totals.add(queue.counters)
    gauges = {
        key: sum(queue[key] for queue in queues.values())
        for key in ("visible", "in_flight", "delayed", "depth")
    }
    return {
        "operations": stats.as_dict(),
        "first_calls": dict(sorted(stats.first_calls.items())),
        "queues": queues,
        "totals": {**totals.as_dict(), **gauges},
    }


def reset(store: Store, stats: OperationStats) -> None:
    """Zero cumulative counters; gauges keep describing the messages still stored."""
    stats.reset()
    store.retired.reset()
    for queue in store.queues.values():
        queue.counters.reset()
        queue.max_depth = queue.depth
