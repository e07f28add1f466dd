"""Pause and resume under load (ledger harness): nothing lost, nothing POSTed twice.

The daemon works through a backlog while the test pauses and resumes it over HTTP again and
again, and the worker pauses it too with ``X-Asqsd-Pause-Seconds``. Each pause releases what is
buffered and lets the POSTs in progress finish; each resume takes up the rest.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from asqsd.daemon import Daemon
from tests.reliability.conftest import Record, Rig, daemon_running
from tests.support.ledger import Action, Script
from tests.support.polling import wait_until, wait_until_async

# Every 97th message's answer also pauses intake for a moment.
_PAUSING = Action(delay_s=0.002, headers=(("X-Asqsd-Pause-Seconds", "0.05"),))


def pausing_now_and_then(n: int, _attempt: int) -> Action:
    return _PAUSING if n % 97 == 0 else Action(delay_s=0.002)


async def call(session: aiohttp.ClientSession, daemon: Daemon, method: str, path: str) -> dict[str, Any]:
    health = daemon.observers.health
    assert health is not None
    async with session.request(method, health.url + path) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def test_pause_and_resume_under_load_lose_and_duplicate_nothing(rig: Rig, record: Record) -> None:
    """1. 1,500 messages, 20 connections, a worker that takes 2 ms and now and then asks for a
       50 ms pause.
    2. Six times, once some more messages were done: ``GET /inflight`` (its counts add up,
       its list is bounded); ``POST /pause``; wait until ``/inflight`` says the daemon holds
       nothing (buffer released, in-flight POSTs settled) and no poll is outstanding; check
       that no POST is in progress at the worker; ``POST /resume``.
    3. Every message is answered 200 exactly once and deleted; none lost."""
    script: Script = pausing_now_and_then
    rig.worker.script = script
    rig.load(1500)
    settings = rig.settings(
        http_connections=20, health_server=True, health_port=0, pause_control=True, wait_time_s=1
    )
    released_by_pauses = 0
    async with daemon_running(settings) as daemon, aiohttp.ClientSession() as session:
        pipeline = daemon.pipeline
        assert pipeline is not None
        for round_ in range(1, 7):
            await wait_until(lambda r=round_: rig.worker.ok_count() >= 200 * r, timeout_s=20, what="progress")
            inflight = await call(session, daemon, "GET", "/inflight?limit=5")
            assert sum(inflight["counts"].values()) == inflight["total"]
            assert len(inflight["messages"]) == min(5, inflight["total"])
            released = daemon.counters.released
            state = await call(session, daemon, "POST", "/pause?seconds=30")
            assert state["state"] == "paused"

            async def holds_nothing() -> bool:
                inflight = await call(session, daemon, "GET", "/inflight?limit=0")
                return inflight["total"] == 0 and pipeline.receivers_polling == 0

            await wait_until_async(holds_nothing, timeout_s=10, what="a paused daemon holding nothing")
            assert rig.worker.in_flight == 0
            released_by_pauses += daemon.counters.released - released
            await call(session, daemon, "POST", "/resume")
        await rig.wait_done(timeout_s=30)
    report = rig.report()
    record(report=report, pauses=6, released_by_pauses=released_by_pauses)
    report.assert_all_done()
    assert report.duplicated == 0 and report.redelivered == 0
