"""The ``asqsd local --demo`` worker and scenario: a delivery, a retry and a dead letter.

The demo worker answers by the message body: ``ok`` → 200; ``flaky`` → 500 on the first
delivery, then 200; ``poison`` → always 500, so SQS moves it to the dead-letter queue after
``maxReceiveCount`` receives. The scenario sends one of each through the emulator's SQS API (as a
developer's code would) and returns once all three outcomes were seen, or the timeout passed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import TextIO

from aiohttp import web

from asqsd.clients.sqs.wire import queue_name
from asqsd.emulator import Emulator

SAMPLES = ("ok", "flaky", "poison")


class DemoWorker:
    """A tiny aiohttp worker that prints every delivery it gets."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._runner: web.AppRunner | None = None
        self.answers: dict[str, list[int]] = {}

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
        """Close the listener."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode("utf-8", "replace")
        kind = _kind(body)
        count = int(request.headers.get("X-Aws-Sqsd-Receive-Count", "0") or 0)
        status = 200 if kind == "ok" or (kind == "flaky" and count > 1) else 500
        self.answers.setdefault(kind, []).append(status)
        msgid = request.headers.get("X-Aws-Sqsd-Msgid", "?")[-8:]
        self._out.write(
            f"  worker  ← POST {request.path} {kind!r} msgid=…{msgid} receive-count={count} → {status}\n"
        )
        self._out.flush()
        return web.Response(status=status, text="ok" if status == 200 else "demo failure")


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
                f"'poison' moved to {dlq_name} after repeated failures.\n"
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
    return ok and flaky and poisoned
