"""The ``asqsd local --demo`` worker and scenario: a delivery, a retry, a dead letter, a slow job.

The demo worker answers by the message body: ``ok`` → 200; ``flaky`` → 500 on the first
delivery, then 200; ``poison`` → always 500, so SQS moves it to the dead-letter queue after
``maxReceiveCount`` receives; ``slow`` → 202 at once, then a background task reports ``done`` to
the delivery's ``X-Asqsd-Ack-Url`` (asynchronous acknowledgement, ``async_ack``). The scenario
sends one of each through the emulator's SQS API (as a developer's code would) and returns once
every outcome was seen, or the timeout passed.
``large`` is an S3 payload: the scenario puts it in the emulator's S3 and sends the extended
client libraries' pointer to it; the daemon (``resolve_s3_pointers``) POSTs the payload itself.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from asqsd.clients.sqs.wire import queue_name
from asqsd.emulator import Emulator

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"

SAMPLES = ("ok", "flaky", "poison", "slow")
ACK_HEADER = "X-Asqsd-Ack-Url"
SLOW_JOB_S = 1.0  # how long the demo's "slow" job runs after its 202
LARGE_BUCKET = "asqsd-demo-payloads"
LARGE_BYTES = 2 * 1024 * 1024  # well past SQS's message size limit


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
        app = web.Application(client_max_size=LARGE_BYTES + 1024 * 1024)
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
        raw = await request.read()
        body = raw.decode("utf-8", "replace")
        kind = _kind(body)
        count = int(request.headers.get("X-Aws-Sqsd-Receive-Count", "0") or 0)
        ack_url = request.headers.get(ACK_HEADER)
        if kind == "slow" and ack_url is not None:
            status = 202
            self._start_job(ack_url, request.headers.get("X-Aws-Sqsd-Msgid", "?")[-8:])
        else:
            # ("slow" without an acknowledgement URL, async_ack turned off: done at once.)
            status = 200 if kind in ("ok", "slow", "large") or (kind == "flaky" and count > 1) else 500
        self.answers.setdefault(kind, []).append(status)
        msgid = request.headers.get("X-Aws-Sqsd-Msgid", "?")[-8:]
        what = f"{kind!r} ({len(raw)} bytes)" if kind == "large" else repr(kind)
        self._say(f"worker  ← POST {request.path} {what} msgid=…{msgid} receive-count={count} → {status}")
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
        await _send_large(session, emulator.endpoint_url, sqs, queue_url, out)
    dlq_name = queue_name(dlq_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _all_seen(emulator, dlq_name, worker):
            out.write(
                "\ndemo complete: 'ok' delivered and deleted, 'flaky' retried then deleted, "
                f"'poison' moved to {dlq_name} after repeated failures, 'slow' accepted with 202 "
                "and deleted once its background job acknowledged 'done', "
                "'large' fetched from S3 and POSTed in place of its pointer.\n"
            )
            out.flush()
            return True
        await asyncio.sleep(0.2)
    out.write(f"\ndemo incomplete after {timeout_s:.0f}s: answers so far {worker.answers}\n")
    return False


async def _send_large(session: Any, endpoint: str, sqs: Any, queue_url: str, out: TextIO) -> None:
    """Offload a large body to S3 and send the pointer, as the AWS extended client libraries do."""
    payload = json.dumps({"demo": "large", "data": "x" * LARGE_BYTES}).encode()
    async with session.create_client("s3", endpoint_url=endpoint, region_name="us-east-1") as s3:
        await s3.put_object(Bucket=LARGE_BUCKET, Key="large.json", Body=payload)
    pointer = [POINTER_CLASS, {"s3BucketName": LARGE_BUCKET, "s3Key": "large.json"}]
    size = {"ExtendedPayloadSize": {"DataType": "Number", "StringValue": str(len(payload))}}
    await sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(pointer), MessageAttributes=size)
    out.write(f"  demo    → put {len(payload)} bytes in s3://{LARGE_BUCKET}, sent 'large' as its pointer\n")


def _all_seen(emulator: Emulator, dlq_name: str, worker: DemoWorker) -> bool:
    answers = worker.answers
    large = 200 in answers.get("large", [])
    ok = 200 in answers.get("ok", [])
    flaky = answers.get("flaky", [])[:1] == [500] and 200 in answers.get("flaky", [])
    poisoned = emulator.counters(dlq_name)["depth"] >= 1
    slow = 200 in worker.acks or 200 in answers.get("slow", [])
    return ok and flaky and poisoned and slow and large
