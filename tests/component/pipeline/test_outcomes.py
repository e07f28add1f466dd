"""What each worker answer (or transport failure) does to the message."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from aiohttp import web

from tests.component.conftest import SettingsFactory, queue_counts
from tests.support.polling import wait_until
from tests.support.servers import free_loopback_port
from tests.support.worker import Delivery, RecordingWorker


async def send(sqs: Any, queue_url: str, body: str = "job") -> str:
    return str((await sqs.send_message(QueueUrl=queue_url, MessageBody=body))["MessageId"])


def status_handler(status: int, headers: dict[str, str] | None = None) -> Any:
    async def handler(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        return web.Response(status=status, headers=headers)

    return handler


@pytest.mark.parametrize("status", [201, 202, 204, 302, 404, 500])
async def test_non_200_is_not_deleted_and_retried_after_error_visibility(
    status: int,
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
) -> None:
    """Any status but 200 leaves the message; error_visibility_timeout=0 makes it come straight back."""
    worker.handler = status_handler(status, {"Location": "/elsewhere"} if status == 302 else None)
    msgid = await send(sqs, queue_url)
    async with run_daemon(make_settings(error_visibility_timeout=0)) as daemon:
        await wait_until(lambda: len(worker.by_msgid(msgid)) >= 2, what="redelivery")
        assert daemon.counters.deleted == 0
        assert daemon.counters.retried >= 1
    assert [d.path for d in worker.deliveries[:2]] == ["/", "/"]  # redirects are not followed


async def test_success_statuses_can_accept_any_2xx(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """With success_statuses=2xx a 204 deletes."""
    worker.handler = status_handler(204)
    await send(sqs, queue_url)
    async with run_daemon(make_settings(success_statuses="2xx")) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="delete")
    assert await queue_counts(sqs, queue_url) == (0, 0)


async def test_unset_error_visibility_leaves_visibility_alone(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """error_visibility_timeout < 0 means unset: no ChangeMessageVisibility, the message stays
    invisible for the rest of its visibility timeout."""
    worker.handler = status_handler(500)
    await send(sqs, queue_url)
    async with run_daemon(make_settings(error_visibility_timeout=-1, visibility_timeout=30)) as daemon:
        await wait_until(lambda: daemon.counters.failed == 1, what="one failure")
        assert await queue_counts(sqs, queue_url) == (0, 1)
        assert daemon.counters.sqs_calls.get("ChangeMessageVisibilityBatch", 0) == 0
    assert len(worker.deliveries) == 1


async def test_error_visibility_delays_the_retry(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """With error_visibility_timeout=2 the second attempt comes about 2 s after the first."""
    worker.handler = status_handler(503)
    msgid = await send(sqs, queue_url)
    stamps: list[float] = []

    async def handler(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        stamps.append(time.monotonic())
        return web.Response(status=503)

    worker.handler = handler
    async with run_daemon(make_settings(error_visibility_timeout=2, visibility_timeout=30)):
        await wait_until(lambda: len(worker.by_msgid(msgid)) >= 2, timeout_s=15, what="retry")
    assert stamps[1] - stamps[0] >= 1.5  # not before the error visibility timeout (30 s would be the lease)


async def test_retry_after_sets_the_delay(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A 429 with Retry-After: 1 comes back after ~1 s although error_visibility_timeout is 60."""
    worker.handler = status_handler(429, {"Retry-After": "1"})
    msgid = await send(sqs, queue_url)
    async with run_daemon(make_settings(error_visibility_timeout=60)) as daemon:
        await wait_until(lambda: len(worker.by_msgid(msgid)) >= 2, timeout_s=15, what="retry after 1 s")
        assert daemon.counters.retried >= 1


async def test_connection_refused_counts_as_failure(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """Nothing listens on the worker port: the message is kept and its visibility set for a retry."""
    closed_port = free_loopback_port()
    await send(sqs, queue_url)
    settings = make_settings(http_port=closed_port, error_visibility_timeout=20)
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.counters.retried >= 1, what="visibility change after refusal")
        assert daemon.counters.by_status_class == {"error": 1}
        assert daemon.counters.deleted == 0
    assert await queue_counts(sqs, queue_url) == (0, 1)


async def test_inactivity_timeout_fails_a_silent_worker(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A worker that never answers fails after inactivity_timeout (1 s), not after the lease."""
    release = asyncio.Event()

    async def silent(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=200)

    worker.handler = silent
    await send(sqs, queue_url)
    try:
        async with run_daemon(make_settings(inactivity_timeout=1, error_visibility_timeout=20)) as daemon:
            await wait_until(lambda: daemon.counters.failed == 1, timeout_s=10, what="inactivity failure")
            assert daemon.counters.deleted == 0
    finally:
        release.set()


async def test_inactivity_timer_resets_while_bytes_arrive(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A 200 streamed over 2.4 s, a chunk every 0.3 s, succeeds with inactivity_timeout=1."""

    async def trickle(request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        for _ in range(8):
            await asyncio.sleep(0.3)
            await response.write(b"tick\n")
        await response.write_eof()
        return response

    worker.handler = trickle
    await send(sqs, queue_url)
    async with run_daemon(make_settings(inactivity_timeout=1)) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, timeout_s=15, what="delete after trickle")
        assert daemon.counters.failed == 0


async def test_connect_timeout_bounds_connecting(
    sqs: Any, queue_url: str, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A listener whose accept backlog is full never completes the handshake: the POST fails
    after connect_timeout (1 s) instead of hanging."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    port = listener.getsockname()[1]
    # Fill the accept queue so further SYNs are dropped (Linux keeps backlog+1 pending).
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        await send(sqs, queue_url)
        settings = make_settings(http_port=port, connect_timeout=1, error_visibility_timeout=20)
        async with run_daemon(settings) as daemon:
            await wait_until(lambda: daemon.counters.failed == 1, timeout_s=15, what="connect failure")
            assert daemon.counters.deleted == 0
    finally:
        for sock in [*fillers, listener]:
            sock.close()


async def test_idle_keepalive_connection_closed_by_the_worker_costs_no_failure(
    sqs: Any, queue_url: str, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A worker that answers on a kept-alive connection, then closes it while it is idle (its
    keep-alive timer firing): the next message goes out on a new connection, no failure."""
    requests: list[bytes] = []
    closed = asyncio.Event()

    async def read_request(reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = int(
            next(line.split(b":")[1] for line in lines if line.lower().startswith(b"content-length"))
        )
        return await reader.readexactly(length)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # The response said keep-alive; the worker's idle timer then closes the connection.
        writer.close()
        await writer.wait_closed()
        closed.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with run_daemon(make_settings(http_port=port, http_connections=1)) as daemon:
            await send(sqs, queue_url, "first")
            await wait_until(lambda: daemon.counters.deleted == 1, what="first delete")
            await closed.wait()
            await send(sqs, queue_url, "second")
            await wait_until(lambda: daemon.counters.deleted == 2, what="second delete")
            assert daemon.counters.failed == 0
            assert daemon.counters.stale_resends == 0
        assert requests == [b"first", b"second"]
    finally:
        server.close()


async def test_no_more_than_http_connections_in_flight(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """With 3 connections and 12 slow jobs the worker never sees a 4th concurrent request."""
    gate = asyncio.Event()

    async def held(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        await gate.wait()
        return web.Response(status=200)

    worker.handler = held
    await sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(10)]
    )
    await sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(2)]
    )
    async with run_daemon(make_settings(http_connections=3)) as daemon:
        await wait_until(lambda: worker.in_flight == 3, what="3 in flight")
        # Let the receivers fill the buffer: it holds at most http_connections more messages.
        await wait_until(lambda: daemon.pipeline.channel.stats().buffered == 3, what="buffer full")
        assert worker.max_in_flight == 3
        assert len(daemon.pipeline.leases) == 6
        gate.set()
        await wait_until(lambda: daemon.counters.deleted == 12, timeout_s=20, what="all deleted")
    assert worker.max_in_flight == 3


async def test_expired_message_is_deleted_without_a_post(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """A message first received more than retention_period (60 s) ago is deleted unsent.

    moto stamps ApproximateFirstReceiveTimestamp at the first receive, so the test receives the
    message itself, then runs the daemon with a clock 120 s in the future."""
    from asqsd.daemon import Daemon

    await send(sqs, queue_url, "old")
    await sqs.receive_message(QueueUrl=queue_url, VisibilityTimeout=0)
    daemon = Daemon(make_settings(retention_period=60), wall_clock=lambda: time.time() + 120)
    async with run_daemon(daemon) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="expired delete")
        assert daemon.counters.expired == 1
    assert worker.deliveries == []
    assert await queue_counts(sqs, queue_url) == (0, 0)


async def test_failed_delivery_logs_one_structured_event(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """One http-err event per failure with id, receive count, status and elapsed time; the
    receipt handle is never logged in full."""
    from structlog.testing import capture_logs

    worker.handler = status_handler(500)
    msgid = await send(sqs, queue_url)
    with capture_logs() as logs:
        async with run_daemon(make_settings(error_visibility_timeout=30)) as daemon:
            await wait_until(lambda: daemon.counters.failed == 1, what="a failure")
    failures = [e for e in logs if e["event"] == "http-err"]
    assert len(failures) == 1
    event = failures[0]
    assert event["message_id"] == msgid
    assert event["receive_count"] == 1
    assert event["status"] == 500
    assert event["elapsed_s"] >= 0
    assert event["retry_in_s"] == 30
    assert {"started", "stopping", "stopped"} <= {e["event"] for e in logs}


async def test_failure_log_carries_the_start_of_the_response_body(
    sqs: Any, queue_url: str, worker: RecordingWorker, make_settings: SettingsFactory, run_daemon: Any
) -> None:
    """http-err shows the first log_response_bytes bytes of the worker's answer, control
    characters escaped so a worker cannot forge log lines."""
    from structlog.testing import capture_logs

    async def handler(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        return web.Response(status=500, body=b"Traceback\n\x1b[2Jline2 \xff" + b"y" * 400)

    worker.handler = handler
    await send(sqs, queue_url)
    with capture_logs() as logs:
        async with run_daemon(make_settings(error_visibility_timeout=30, log_response_bytes=24)) as daemon:
            await wait_until(lambda: daemon.counters.failed == 1, what="a failure")
    (event,) = [e for e in logs if e["event"] == "http-err"]
    assert event["response"] == "Traceback\\n\\x1b[2Jline2 \ufffdyyy"  # 24 bytes
