"""The ``asqsd local --demo`` worker and scenario: a delivery, a retry, a dead letter, a slow job.

The demo worker answers by the message body: ``ok`` → 200; ``flaky`` → 500 on the first
delivery, then 200; ``poison`` → always 500, so SQS moves it to the dead-letter queue after
``maxReceiveCount`` receives; ``slow`` → 202 at once, then a background task reports ``done`` to
the delivery's ``X-Asqsd-Ack-Url`` (asynchronous acknowledgement, ``async_ack``). The scenario
sends one of each through the emulator's SQS API (as a developer's code would) and returns once
every outcome was seen, or the timeout passed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import TextIO

import aiohttp
from aiohttp import web

from asqsd.clients.sqs.wire import queue_name
from asqsd.emulator import Emulator

SAMPLES = ("ok", "flaky", "poison", "slow")
ACK_HEADER = "X-Asqsd-Ack-Url"
SLOW_JOB_S = 1.0  # how long the demo's "slow" job runs after its 202


class DemoWorker:
    """A tiny aiohttp worker that prints every delivery it gets."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._runner: web.AppRunner | None = None
        self.answers: dict[str, list[int]] = {}
        self.acks: list[int] = []  # asqsd's answers to the slow jobs' acknowledgements
        self._jobs: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen on a free loopback port; returns the port."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        """Close the listener (and end slow jobs still running)."""
        for job in list(self._jobs):
            job.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode("utf-8", "replace")
        kind = _kind(body)
        count = int(request.headers.get("X-Aws-Sqsd-Receive-Count", "0") or 0)
        ack_url = request.headers.get(ACK_HEADER)
        if kind == "slow" and ack_url is not None:
            status = 202
            self._start_job(ack_url, request.headers.get("X-Aws-Sqsd-Msgid", "?")[-8:])
        else:
            # ("slow" without an acknowledgement URL, async_ack turned off: done at once.)
            status = 200 if kind in ("ok", "slow") or (kind == "flaky" and count > 1) else 500
        self.answers.setdefault(kind, []).append(status)
        msgid = request.headers.get("X-Aws-Sqsd-Msgid", "?")[-8:]
        self._say(f"worker  ← POST {request.path} {kind!r} msgid=…{msgid} receive-count={count} → {status}")
        text = {200: "ok", 202: "accepted: running in the background"}.get(status, "demo failure")
        return web.Response(status=status, text=text)

    def _say(self, line: str) -> None:
        self._out.write(f"  {line}\n")
        self._out.flush()

    def _start_job(self, ack_url: str, msgid: str) -> None:
        job = asyncio.create_task(self._run_slow_job(ack_url, msgid))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _run_slow_job(self, ack_url: str, msgid: str) -> None:
        """The work a real worker would do in a background thread, then its acknowledgement."""
        await asyncio.sleep(SLOW_JOB_S)  # the demo's stand-in for a long job
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.post(ack_url, json={"outcome": "done"}) as response,
        ):
            self.acks.append(response.status)
        self._say(f"worker  → ack 'done' for msgid=…{msgid} → {response.status}")


def _kind(body: str) -> str:
    try:
        value = json.loads(body).get("demo", "")
    except (ValueError, AttributeError):
        return "unknown"
    return str(value)


async def run_demo(
    emulator: Emulator, queue_url: str, dlq_url: str, worker: DemoWorker, timeout_s: float, out: TextIO
) -> bool:
    """Send the samples, wait for all three outcomes, print a summary; True if all were seen."""
    import aiobotocore.session

    session = aiobotocore.session.get_session()
    async with session.create_client(
        "sqs", endpoint_url=emulator.endpoint_url, region_name="us-east-1"
    ) as sqs:
        for kind in SAMPLES:
            await sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"demo": kind}))
            out.write(f"  demo    → sent {kind!r}\n")
    dlq_name = queue_name(dlq_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _all_seen(emulator, dlq_name, worker):
            out.write(
                "\ndemo complete: 'ok' delivered and deleted, 'flaky' retried then deleted, "
                f"'poison' moved to {dlq_name} after repeated failures, 'slow' accepted with 202 "
                "and deleted once its background job acknowledged 'done'.\n"
            )
            out.flush()
            return True
        await asyncio.sleep(0.2)
    out.write(f"\ndemo incomplete after {timeout_s:.0f}s: answers so far {worker.answers}\n")
    return False


def _all_seen(emulator: Emulator, dlq_name: str, worker: DemoWorker) -> bool:
    answers = worker.answers
    ok = 200 in answers.get("ok", [])
    flaky = answers.get("flaky", [])[:1] == [500] and 200 in answers.get("flaky", [])
    poisoned = emulator.counters(dlq_name)["depth"] >= 1
    slow = 200 in worker.acks or 200 in answers.get("slow", [])
    return ok and flaky and poisoned and slow
