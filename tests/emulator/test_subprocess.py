"""``python -m asqsd.emulator`` as a harness runs it: ready line, serves SQS, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import pytest

from asqsd.emulator.__main__ import READY_PREFIX
from tests.emulator.support import sqs_client

pytestmark = pytest.mark.slow


async def test_subprocess_lifecycle() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asqsd.emulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--queue",
        "jobs",
        "--queue",
        "jobs.fifo",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode().strip()
        assert line.startswith(READY_PREFIX + " http://127.0.0.1:")
        endpoint = line.rsplit(" ", 1)[1]
        async with sqs_client(endpoint) as sqs:
            queues = await sqs.list_queues()
            assert [url.rsplit("/", 1)[1] for url in queues["QueueUrls"]] == ["jobs", "jobs.fifo"]
            fifo = await sqs.get_queue_attributes(
                QueueUrl=queues["QueueUrls"][1], AttributeNames=["FifoQueue"]
            )
            assert fifo["Attributes"]["FifoQueue"] == "true"
        async with aiohttp.ClientSession() as http, http.get(endpoint + "/_asqsd/health") as response:
            assert (await response.json())["loop"].startswith("uvloop")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
