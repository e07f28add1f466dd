"""async_ack against moto_server and a real worker: a 202 holds the job until the worker's ack.

The worker answers 202 and keeps the ``X-Asqsd-Ack-Url`` of each delivery; the test plays the
worker's background job and POSTs the acknowledgements itself, over HTTP, to the daemon's health
server.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
from aiohttp import web

from tests.component.conftest import SettingsFactory, queue_counts
from tests.component.pipeline.test_fifo import fifo_queue, send_groups
from tests.support.metrics import value_of
from tests.support.polling import wait_until, wait_until_async
from tests.support.worker import Delivery, RecordingWorker

ACK_URL = re.compile(r"^http://127\.0\.0\.1:(\d+)/ack/([A-Za-z0-9_-]{32,})$")


async def accept(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
    """The worker takes the job: 202 at once."""
    return web.Response(status=202, text="accepted")


def async_settings(make_settings: SettingsFactory, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "async_ack": True,
        "health_server": True,
        "health_port": 0,
        "visibility_timeout": 1,  # shorter than every held job here: the heartbeat keeps it leased
        "error_visibility_timeout": 0,
    }
    return make_settings(**(values | overrides))


async def send(sqs: Any, queue_url: str, count: int = 1) -> None:
    for i in range(count):
        await sqs.send_message(QueueUrl=queue_url, MessageBody=f"job {i}")


def ack_url(delivery: Delivery) -> str:
    url = delivery.header("X-Asqsd-Ack-Url")
    assert url is not None and ACK_URL.match(url), url
    return url


async def post(http: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    async with http.post(url, data=body) as response:
        return response.status, await response.json()


async def test_a_202_job_is_deleted_after_done_and_every_ack_gets_a_clear_answer(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """202: the message stays leased (past its 1 s visibility timeout) until ``done``; repeats,
    conflicts, unknown tokens and bad bodies are answered 200 / 409 / 404 / 400; the metrics count."""
    worker.handler = accept
    await send(sqs, queue_url)
    async with run_daemon(async_settings(make_settings)) as daemon, aiohttp.ClientSession() as http:
        await wait_until(lambda: len(worker.deliveries) == 1, what="the delivery")
        url = ack_url(worker.deliveries[0])
        assert int(ACK_URL.match(url).group(1)) == daemon.observers.health.port  # type: ignore[union-attr]
        await wait_until(lambda: daemon.counters.extended >= 2, what="the heartbeat extending the held job")
        assert await queue_counts(sqs, queue_url) == (0, 1)
        assert daemon.gauges()["async_jobs_held"] == 1 and daemon.gauges()["in_flight"] == 0
        assert (await post(http, url, b"{"))[0] == 400
        assert await post(http, url, b'{"outcome": "extend"}') == (
            200,
            {"status": "applied", "outcome": "extend", "deadline_in_s": 3600.0},
        )
        assert await post(http, url, b'{"outcome": "done"}') == (
            200,
            {"status": "applied", "outcome": "done"},
        )
        await wait_until(lambda: daemon.counters.deleted == 1, what="the delete")
        assert await post(http, url, b'{"outcome": "done"}') == (
            200,
            {"status": "already-applied", "outcome": "done"},
        )
        assert (await post(http, url, b'{"outcome": "fail"}'))[0] == 409
        assert (await post(http, url.rsplit("/", 1)[0] + "/x" * 1, b'{"outcome": "done"}'))[0] == 404
        base = daemon.observers.health.url  # type: ignore[union-attr]
        async with http.get(f"{base}/metrics") as response:
            text = await response.text()
    assert await queue_counts(sqs, queue_url) == (0, 0)
    assert len(worker.deliveries) == 1 and daemon.counters.lease_lost == 0
    assert value_of(text, "asqsd_async_acks_total", outcome="done") == 1
    assert value_of(text, "asqsd_async_acks_total", outcome="extend") == 1
    assert value_of(text, "asqsd_async_acks_total", outcome="fail") == 0
    assert value_of(text, "asqsd_async_jobs_held") == 0
    assert value_of(text, "asqsd_async_jobs_expired_total") == 0


async def test_max_async_jobs_stops_new_posts_until_a_job_ends(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """With 2 jobs held, messages received wait in the buffer; an acknowledgement lets one more go.
    Held jobs do not make the shutdown wait."""
    worker.handler = accept
    await send(sqs, queue_url, 4)
    settings = async_settings(make_settings, max_async_jobs=2, http_connections=4, shutdown_grace_s=60)
    async with run_daemon(settings) as daemon, aiohttp.ClientSession() as http:
        await wait_until(lambda: len(worker.deliveries) == 2, what="two jobs")
        # The others are received (moto may take a few polls) and wait in the channel, not POSTed.
        await wait_until(lambda: daemon.gauges()["channel_depth"] >= 1, what="a message waiting")
        assert len(worker.deliveries) == 2 and daemon.gauges()["async_jobs_held"] == 2
        assert (await post(http, ack_url(worker.deliveries[0]), b'{"outcome": "done"}'))[0] == 200
        await wait_until(lambda: len(worker.deliveries) == 3, what="the next POST")
        assert daemon.gauges()["async_jobs_held"] == 2
        stop_started = asyncio.get_running_loop().time()
    # Dispatchers waiting for room do not hold the shutdown for its grace period (60 s here).
    assert asyncio.get_running_loop().time() - stop_started < 30


async def test_a_job_past_its_deadline_is_released_and_its_late_ack_is_gone(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """No acknowledgement within async_ack_deadline_s: released for redelivery, never sooner; a late
    ``done`` gets 410 and deletes nothing."""
    answers = iter([202, 200])

    async def first_accept_then_ok(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        return web.Response(status=next(answers, 200))

    worker.handler = first_accept_then_ok
    await send(sqs, queue_url)
    async with run_daemon(async_settings(make_settings, async_ack_deadline_s=1.5)) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, timeout_s=15, what="the redelivery")
        first, second = worker.deliveries
        async with aiohttp.ClientSession() as http:
            status, body = await post(http, ack_url(first), b'{"outcome": "done"}')
        assert status == 410 and "released for redelivery" in body["error"]
        assert daemon.counters.async_jobs_expired == 1
        assert daemon.counters.deleted == 1
    assert second.header("X-Aws-Sqsd-Receive-Count") == "2"


async def test_at_shutdown_held_jobs_are_left_to_sqs(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """Stopping does not wait for held jobs, nor release or delete them: SQS shows the message
    again once its lease ends."""
    worker.handler = accept
    await send(sqs, queue_url)
    settings = async_settings(make_settings, visibility_timeout=4, shutdown_grace_s=30)
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.gauges().get("async_jobs_held") == 1, what="a held job")
        url = ack_url(worker.deliveries[0])
        daemon.request_stop()
    assert daemon.counters.released == 0 and daemon.counters.deleted == 0
    assert await queue_counts(sqs, queue_url) == (0, 1)
    async with aiohttp.ClientSession() as http:
        try:
            await post(http, url, b'{"outcome": "done"}')
        except aiohttp.ClientConnectionError:
            pass  # the health server is gone with the daemon
        else:
            raise AssertionError("an acknowledgement after shutdown was answered")
    await wait_until_async(
        lambda: _visible_again(sqs, queue_url), timeout_s=15, what="the message visible again"
    )


async def _visible_again(sqs: Any, queue_url: str) -> bool:
    return await queue_counts(sqs, queue_url) == (1, 0)


async def test_without_async_ack_there_is_no_ack_url_and_202_stays_a_failure(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """Off by default: no header, and the ack route of a health server answers 404."""
    worker.handler = accept
    await send(sqs, queue_url)
    settings = make_settings(health_server=True, health_port=0, error_visibility_timeout=0)
    async with run_daemon(settings) as daemon, aiohttp.ClientSession() as http:
        await wait_until(lambda: daemon.counters.retried >= 1, what="a retry")
        assert worker.deliveries[0].header("X-Asqsd-Ack-Url") is None
        base = daemon.observers.health.url  # type: ignore[union-attr]
        status, _ = await post(http, f"{base}/ack/{'a' * 32}", b'{"outcome": "done"}')
        assert status == 404
    assert daemon.counters.deleted == 0


async def test_on_a_fifo_queue_a_held_job_keeps_its_group_waiting(
    sqs: Any, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A0 answered 202: A1, already received, waits (with dispatchers free) until A0 is
    acknowledged; the group goes in order."""
    worker.handler = accept
    url = await fifo_queue(sqs)
    await send_groups(sqs, url, "A", 3)
    async with (
        run_daemon(async_settings(make_settings, queue_url=url)) as daemon,
        aiohttp.ClientSession() as http,
    ):

        def bodies() -> list[str]:
            return [d.body.decode() for d in worker.deliveries]

        await wait_until(lambda: daemon.gauges()["channel_depth"] >= 1, what="A1 received")
        await wait_until(lambda: bodies() == ["A0"], what="A0 delivered")
        assert daemon.gauges()["channel_depth"] >= 1 and bodies() == ["A0"]
        for step in (1, 2):
            assert (await post(http, ack_url(worker.deliveries[-1]), b'{"outcome": "done"}'))[0] == 200
            await wait_until(lambda n=1 + step: len(worker.deliveries) == n, what=f"A{step}")
        assert (await post(http, ack_url(worker.deliveries[-1]), b'{"outcome": "done"}'))[0] == 200
        await wait_until(lambda: daemon.counters.deleted == 3, what="all deleted")
    assert bodies() == ["A0", "A1", "A2"]
