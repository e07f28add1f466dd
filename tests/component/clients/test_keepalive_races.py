"""The two sides of re-sending on a keep-alive connection, with figures (docs/http-client.md).

1. A worker that resets a connection after reading the whole request may have done the work:
   the lean client must not send it again at once (target: 0 re-sends).
2. A worker whose keep-alive timer (2 s) closes an idle connection just as a request arrives
   must not cost a failed delivery (target: 0 failures): ``keepalive_idle_s`` (1.5 s) keeps
   the client off connections idle that long.

No sleeps: idle gaps are moved on a clock shared by the client and the scripted worker.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct

import pytest
import uvloop

from asqsd.clients.worker.lean_impl import LeanWorkerClient
from tests.component.clients.test_http1_client import (
    OK,
    Exchange,
    FakeClock,
    RawServer,
    answer_ok,
    request,
    reset,
)

MESSAGES = 300
RESET_EVERY = 10  # every 10th request the worker reads is answered with a reset: 10 %
WORKER_KEEPALIVE_S = 2.0


def message_id(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0]
    line = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"x-aws-sqsd-msgid:"))
    return line.split(b":", 1)[1].strip().decode()


async def test_reset_after_the_request_was_read_is_never_resent_at_once() -> None:
    """300 messages, 4 connections, the worker resets every 10th request after reading it. Each
    failed post is retried only by the caller, in a later round (as SQS redelivers after the error
    visibility): the worker sees each message once per post, never twice for one post."""
    received: collections.Counter[str] = collections.Counter()
    seen = resets_on_reused = 0

    async def chaos(exchange: Exchange) -> bool:
        nonlocal seen, resets_on_reused
        received[message_id(exchange.request)] += 1
        seen += 1
        if seen % RESET_EVERY == 0:
            resets_on_reused += exchange.number > 0  # what was re-sent at once before
            reset(exchange.writer)
            return False
        return await answer_ok(exchange)

    posts: collections.Counter[str] = collections.Counter()
    pending = [f"msg-{n}" for n in range(MESSAGES)]
    failures = resends = 0
    async with (
        RawServer(chaos) as server,
        LeanWorkerClient(f"http://127.0.0.1:{server.port}", 1.0, 5.0, 4) as client,
    ):

        async def deliver(ids: list[str]) -> list[str]:
            nonlocal failures, resends
            failed = []
            for mid in ids:
                posts[mid] += 1
                result = await client.post(request(headers={"X-Aws-Sqsd-Msgid": mid}))
                resends += result.stale_resends
                if result.status != 200:
                    assert result.error is not None and "before responding" in result.error
                    failures += 1
                    failed.append(mid)
            return failed

        for _round in range(10):  # bounded: each round fails about a tenth of the last
            if not pending:
                break
            lanes = [pending[lane::4] for lane in range(4)]
            pending = [mid for failed in await asyncio.gather(*map(deliver, lanes)) for mid in failed]
    assert pending == []  # nothing lost: every message got its 200
    assert resends == 0
    assert received == posts  # one request per post: no immediate re-send
    assert failures == seen // RESET_EVERY  # every reset is a failed delivery the caller saw
    duplicates = sum(count - 1 for count in received.values())
    assert duplicates == failures  # duplicates only via the caller's later retry
    assert resets_on_reused > 0


class KeepAliveWorker:
    """A worker whose keep-alive timer closes a connection idle for 2 s (on the shared clock)
    exactly as the next request arrives: that request is read and never answered."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.answered_at: dict[int, float] = {}
        self.closed_on_arrival = 0
        self.served = 0

    async def __call__(self, exchange: Exchange) -> bool:
        last = self.answered_at.get(exchange.connection)
        if last is not None and self.clock.now - last >= WORKER_KEEPALIVE_S:
            self.closed_on_arrival += 1
            return False
        self.served += 1
        self.answered_at[exchange.connection] = self.clock.now
        return await answer_ok(exchange)


@pytest.mark.parametrize(("bound_s", "expected_failures"), [(1.5, 0), (None, 11)])
async def test_idle_gaps_around_the_worker_keepalive_timeout(
    bound_s: float | None, expected_failures: int
) -> None:
    """Gaps of 1.90 to 2.10 s (0.01 s apart) after a request on one connection. With the 1.5 s
    bound no request meets a worker closing its idle connection (0 failures); without it, each
    gap of 2 s or more (11 of 21) is a failed delivery (the request is not re-sent)."""
    clock = FakeClock()
    worker = KeepAliveWorker(clock)
    gaps = [round(1.90 + step / 100, 2) for step in range(21)]
    async with (
        RawServer(worker) as server,
        LeanWorkerClient(
            f"http://127.0.0.1:{server.port}", 1.0, 5.0, 1, keepalive_idle_s=bound_s, clock=clock
        ) as client,
    ):
        results = []
        for gap in gaps:
            assert (await client.post(request())).status == 200  # the connection was just used
            clock.now += gap
            results.append(await client.post(request()))
    failures = [r for r in results if r.status != 200]
    assert len(failures) == expected_failures
    assert worker.closed_on_arrival == expected_failures
    assert all(r.stale_resends == 0 for r in results)
    assert worker.served == 2 * len(gaps) - expected_failures


def test_reset_after_read_on_uvloop() -> None:
    uvloop.run(test_reset_after_the_request_was_read_is_never_resent_at_once())


async def test_request_the_socket_refused_is_resent_once() -> None:
    """The one re-send left: the worker reset an idle connection and the client writes before it
    has seen the reset, so the socket refuses the request. The worker cannot have read it: it is
    sent once more at once, on a new connection, without a failure."""
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    served: list[bytes] = []

    async def serve_one() -> socket.socket:
        conn, _ = await loop.sock_accept(listener)
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b'{"job": 1}'):
            data += await loop.sock_recv(conn, 65536)
        served.append(data)
        await loop.sock_sendall(conn, OK)
        return conn

    try:
        port = listener.getsockname()[1]
        async with LeanWorkerClient(f"http://127.0.0.1:{port}", 1.0, 5.0, 1) as client:
            first_conn, first = await asyncio.gather(serve_one(), client.post(request()))
            # Reset the kept-alive connection and post before the loop runs again: the client
            # still holds it as idle, and the kernel refuses the write.
            first_conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            first_conn.close()
            second_conn, second = await asyncio.gather(serve_one(), client.post(request()))
            second_conn.close()
    finally:
        listener.close()
    assert (first.status, first.stale_resends) == (200, 0)
    assert (second.status, second.error, second.stale_resends) == (200, None, 1)
    assert len(served) == 2  # the refused write never reached the worker
