"""Pause, resume and /inflight end to end: a daemon in-process, the emulator and a real worker.

Every request goes over HTTP to the daemon's health server; the queue's state is read from the
emulator's exact counters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from asqsd.config import Settings, load_settings
from asqsd.daemon import Daemon
from asqsd.emulator import Emulator
from tests.support.metrics import value_of
from tests.support.polling import wait_until
from tests.support.worker import Delivery, Handler, RecordingWorker


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """An emulator on 127.0.0.1 with a queue ``jobs``."""
    async with Emulator(host="127.0.0.1", port=0) as emulator:
        emulator.create_queue("jobs", {"VisibilityTimeout": "30"})
        yield emulator


def control_settings(emu: Emulator, worker: RecordingWorker, **overrides: Any) -> Settings:
    """A daemon on the emulator and the worker, with its health server and pause control on."""
    values: dict[str, Any] = {
        "queue_url": emu.queue_url("jobs"),
        "endpoint_url": emu.endpoint_url,
        "http_url": "http://127.0.0.1",
        "http_port": worker.port,
        "wait_time_s": 1,
        "visibility_timeout": 30,
        "delete_batch_wait_s": 0.01,
        "health_server": True,
        "health_port": 0,
        "health_check_ttl_s": 0,
        "pause_control": True,
    }
    values.update(overrides)
    return load_settings(values, env={}).settings


async def call(daemon: Daemon, method: str, path: str) -> tuple[int, Any]:
    """One request to the daemon's health server: status and JSON body (text for /metrics)."""
    health = daemon.observers.health
    assert health is not None
    async with aiohttp.ClientSession() as session, session.request(method, health.url + path) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


def holding(body: bytes, release: asyncio.Event) -> Handler:
    """A worker handler that answers 200, the message with ``body`` only once ``release`` is set."""

    async def handler(_request: web.Request, delivery: Delivery) -> web.StreamResponse:
        if delivery.body == body:
            await release.wait()
        return web.Response(status=200, text="ok")

    return handler


def visible(emu: Emulator) -> int:
    return int(emu.counters("jobs")["visible"])


def ids(worker: RecordingWorker) -> list[str]:
    return [d.body.decode() for d in worker.deliveries]


async def test_pause_releases_the_buffer_lets_posts_finish_and_resume_delivers_the_rest(
    emu: Emulator, worker: RecordingWorker, run_daemon: Any
) -> None:
    """1. The worker holds message ``a``; ``b`` and ``c`` wait in the daemon's buffer.
    2. ``POST /pause``: the buffered two go back to the queue at once (visibility 0), ``/inflight``
       lists ``a`` alone, posting; ``/readyz`` stays 200 and says paused; the gauges say so.
    3. ``a`` is answered while paused: it is deleted; nothing else reaches the worker.
    4. ``POST /resume``: ``b`` and ``c`` are delivered once each."""
    hold = asyncio.Event()
    worker.handler = holding(b"a", hold)
    emu.preload("jobs", 1, body="a")
    settings = control_settings(emu, worker, http_connections=1, channel_capacity=4)
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: ids(worker) == ["a"], what="a posted")
        emu.preload("jobs", 2, body_factory=lambda i: "bc"[i])
        await wait_until(lambda: daemon.pipeline.channel.stats().buffered == 2, what="b, c buffered")
        before = time.time()
        status, state = await call(daemon, "POST", "/pause")
        assert status == 200
        assert state["state"] == "paused" and state["until"] is None and state["source"] == "api"
        assert before - 1 <= state["since"] <= time.time() + 1
        await wait_until(lambda: daemon.counters.released == 2, what="buffer released")
        await wait_until(lambda: daemon.pipeline.receivers_polling == 0, what="polls finished")
        assert visible(emu) == 2
        status, inflight = await call(daemon, "GET", "/inflight")
        assert status == 200
        assert inflight["intake"]["state"] == "paused"
        assert inflight["total"] == 1
        assert inflight["counts"] == {"buffered": 0, "posting": 1, "settling": 0}
        (line,) = inflight["messages"]
        assert line["state"] == "posting" and line["receive_count"] == 1
        assert 0 <= line["held_s"] < 30 and 0 < line["visibility_left_s"] <= 30
        status, ready = await call(daemon, "GET", "/readyz")
        assert status == 200 and ready["intake"] == {"state": "paused", "since": state["since"]}
        _status, metrics = await call(daemon, "GET", "/metrics")
        assert value_of(metrics, "asqsd_intake_paused") == 1
        assert value_of(metrics, "asqsd_intake_paused_since_seconds") == state["since"]

        hold.set()
        await wait_until(lambda: daemon.counters.deleted == 1, what="a deleted while paused")
        await wait_until(lambda: daemon.pipeline.inflight(10)["total"] == 0, what="nothing held")
        assert ids(worker) == ["a"] and visible(emu) == 2

        status, state = await call(daemon, "POST", "/resume")
        assert status == 200 and state["state"] == "running" and state["changed"] is True
        await wait_until(lambda: daemon.counters.deleted == 3, what="b and c delivered")
        assert sorted(ids(worker)) == ["a", "b", "c"]
        _status, ready = await call(daemon, "GET", "/readyz")
        assert "intake" not in ready
        _status, metrics = await call(daemon, "GET", "/metrics")
        assert value_of(metrics, "asqsd_intake_paused") == 0
        assert value_of(metrics, "asqsd_intake_paused_since_seconds") == 0


async def test_pause_twice_resume_twice_and_a_timed_pause(
    emu: Emulator, worker: RecordingWorker, run_daemon: Any
) -> None:
    """Repeats answer 200 with ``changed: false`` and a log line; ``?seconds=`` sets ``until``
    and the longest pause wins."""
    async with run_daemon(control_settings(emu, worker)) as daemon:
        with capture_logs() as logs:
            _status, first = await call(daemon, "POST", "/pause?seconds=60")
            _status, shorter = await call(daemon, "POST", "/pause?seconds=5")
            _status, forever = await call(daemon, "POST", "/pause")
            _status, resumed = await call(daemon, "POST", "/resume")
            _status, again = await call(daemon, "POST", "/resume")
        assert first["until"] == pytest.approx(first["since"] + 60, abs=1)
        assert shorter["changed"] is False and shorter["until"] == first["until"]
        assert forever["changed"] is True and forever["until"] is None
        assert resumed["state"] == "running" and again["changed"] is False
        names = [e["event"] for e in logs if str(e["event"]).startswith("intake-")]
        assert names == [
            "intake-paused",
            "intake-already-paused",
            "intake-already-paused",
            "intake-resumed",
            "intake-not-paused",
        ]


async def test_bad_requests_and_pause_control_off(
    emu: Emulator, worker: RecordingWorker, run_daemon: Any
) -> None:
    """Garbage seconds or limit: 400 naming the problem. Without ``pause_control`` the daemon
    refuses to pause (403 naming the setting) but still lists what it holds."""
    async with run_daemon(control_settings(emu, worker)) as daemon:
        for seconds in ("soon", "0", "-5", "nan", "1e9"):
            status, body = await call(daemon, "POST", f"/pause?seconds={seconds}")
            assert status == 400 and "seconds" in body["error"], seconds
        for limit in ("-1", "x", "1001"):
            status, body = await call(daemon, "GET", f"/inflight?limit={limit}")
            assert status == 400 and "limit" in body["error"], limit
        assert not daemon.intake.paused
    async with run_daemon(control_settings(emu, worker, pause_control=False)) as daemon:
        status, body = await call(daemon, "POST", "/pause")
        assert status == 403 and "pause_control" in body["error"]
        assert not daemon.intake.paused
        status, body = await call(daemon, "GET", "/inflight?limit=0")
        assert status == 200 and body["messages"] == [] and body["intake"]["state"] == "running"


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
async def test_worker_pause_header(
    emu: Emulator, worker: RecordingWorker, run_daemon: Any, client: str
) -> None:
    """A worker answer carrying ``X-Asqsd-Pause-Seconds: 120`` pauses intake for 120 s (the
    message itself is settled as its status says); a resume ends it early."""

    async def pause_me(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        return web.Response(status=200, text="ok", headers={"X-Asqsd-Pause-Seconds": "120"})

    worker.handler = pause_me
    emu.preload("jobs", 1, body="a")
    async with run_daemon(control_settings(emu, worker, http_client=client)) as daemon:
        await wait_until(lambda: daemon.intake.paused, what="paused by the header")
        await wait_until(lambda: daemon.counters.deleted == 1, what="a deleted")
        _status, inflight = await call(daemon, "GET", "/inflight")
        state = inflight["intake"]
        assert state["source"] == "worker-header"
        assert state["until"] == pytest.approx(state["since"] + 120, abs=2)
        _status, resumed = await call(daemon, "POST", "/resume")
        assert resumed["state"] == "running"


async def test_garbage_pause_header_is_logged_and_ignored(
    emu: Emulator, worker: RecordingWorker, run_daemon: Any
) -> None:
    async def garbage(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        return web.Response(status=200, text="ok", headers={"X-Asqsd-Pause-Seconds": "tomorrow"})

    worker.handler = garbage
    emu.preload("jobs", 2, body_factory=lambda i: f"m{i}")
    with capture_logs() as logs:
        async with run_daemon(control_settings(emu, worker)) as daemon:
            await wait_until(lambda: daemon.counters.deleted == 2, what="both delivered")
            assert not daemon.intake.paused
    bad = [e for e in logs if e["event"] == "pause-header-invalid"]
    assert len(bad) == 1 and bad[0]["value"] == "tomorrow"


async def test_what_an_outstanding_poll_returns_after_a_pause_is_released(
    emu: Emulator, worker: RecordingWorker, run_daemon: Any
) -> None:
    """The pause does not cancel a long poll in progress (SQS could hand a message to the
    abandoned call); a message that poll returns goes back at once, unsent."""
    settings = control_settings(emu, worker, wait_time_s=2, http_connections=1)
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.pipeline.receivers_polling == 1, what="a long poll outstanding")
        with capture_logs() as logs:
            _status, state = await call(daemon, "POST", "/pause")
            assert state["state"] == "paused" and daemon.pipeline.receivers_polling == 1
            emu.preload("jobs", 1, body="late")
            await wait_until(lambda: daemon.counters.released == 1, what="the late message released")
        assert daemon.counters.received == 1 and worker.deliveries == []
        assert daemon.pipeline.receivers_polling == 0 and visible(emu) == 1
        assert [e["messages"] for e in logs if e["event"] == "paused-poll-released"] == [1]
        await call(daemon, "POST", "/resume")
        await wait_until(lambda: daemon.counters.deleted == 1, what="delivered after the resume")


async def test_a_paused_daemon_stops_cleanly(emu: Emulator, worker: RecordingWorker, run_daemon: Any) -> None:
    """Receivers waiting on the pause are idle: the stop cancels them and the daemon exits, with
    the queue untouched."""
    emu.preload("jobs", 1, body="a")
    async with run_daemon(control_settings(emu, worker, http_connections=1)) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="a delivered")
        await call(daemon, "POST", "/pause")
        await wait_until(lambda: daemon.pipeline.receivers_polling == 0, what="polls finished")
        emu.preload("jobs", 1, body="b")
    assert daemon.failure is None and daemon.intake.paused
    assert ids(worker) == ["a"] and visible(emu) == 1


async def test_a_pause_on_a_fifo_queue_keeps_the_group_in_order(
    emu: Emulator, worker: RecordingWorker, run_daemon: Any
) -> None:
    """FIFO: the group's later messages, buffered behind the one being delivered, go back at the
    pause; after the resume they come in their order."""
    emu.create_queue("jobs.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"})
    emu.preload("jobs.fifo", 4, body_factory=lambda i: f"m{i}", attributes={"MessageGroupId": "g"})
    hold = asyncio.Event()
    worker.handler = holding(b"m0", hold)
    settings = control_settings(
        emu, worker, queue_url=emu.queue_url("jobs.fifo"), http_connections=2, channel_capacity=4
    )
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: ids(worker) == ["m0"], what="m0 posted")
        await wait_until(lambda: daemon.pipeline.channel.stats().buffered == 3, what="m1-m3 buffered")
        await call(daemon, "POST", "/pause")
        await wait_until(lambda: daemon.counters.released == 3, what="m1-m3 released")
        hold.set()
        await wait_until(lambda: daemon.counters.deleted == 1, what="m0 deleted while paused")
        await call(daemon, "POST", "/resume")
        await wait_until(lambda: daemon.counters.deleted == 4, what="the rest delivered")
    assert ids(worker) == ["m0", "m1", "m2", "m3"]
