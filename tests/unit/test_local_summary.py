"""`asqsd local`'s live summary: a line only when the queue's figures change, from the emulator's
exact counters."""

from __future__ import annotations

from structlog.testing import capture_logs

from asqsd.cli.local_summary import queue_figures, queue_summaries
from asqsd.emulator import Emulator
from tests.support.polling import wait_until


async def test_a_summary_is_logged_when_the_queue_changes_and_only_then() -> None:
    emulator = Emulator(port=9)
    emulator.create_queue("jobs")
    assert queue_figures(emulator, "jobs") == {
        "sent": 0,
        "deleted": 0,
        "waiting": 0,
        "in_flight": 0,
        "dead_lettered": 0,
    }
    with capture_logs() as logs:
        async with queue_summaries(emulator, "jobs", interval_s=0.01):
            emulator.preload("jobs", 3)
            await wait_until(lambda: len(logs) == 1, timeout_s=5, what="a summary")
            emulator.purge("jobs")
            await wait_until(lambda: len(logs) == 2, timeout_s=5, what="a second summary")
    first, second = logs
    assert first["event"] == "queue-summary" and first["waiting"] == 3 and first["queue"] == "jobs"
    assert second["waiting"] == 0
