"""`asqsd emulator`: the emulator alone, with queues, dead-letter queues and redrive policies from
flags and a file; loopback addresses only."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from tests.emulator.support import sqs_client
from tests.integration.cli.test_cli import asqsd


async def test_emulator_creates_queues_from_flags_and_a_file_and_prints_their_urls(tmp_path: Path) -> None:
    queues = tmp_path / "queues.json"
    queues.write_text(
        json.dumps({"queues": {"orders": {"dead_letter_queue": "orders-dlq", "max_receive_count": 7}}})
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asqsd", "emulator", "--port", "0", "--queue", "jobs", "--dlq", "jobs-dlq",
        "--file", str(queues), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split() for _ in range(5)]
        endpoint = lines[0][-1]
        assert lines[0][:-1] == ["asqsd-emulator", "listening", "on"]
        urls = {name: url for _queue, name, url in lines[1:]}
        assert list(urls) == ["jobs-dlq", "jobs", "orders-dlq", "orders"]
        assert urls["orders"] == f"{endpoint}/000000000000/orders"
        async with sqs_client(endpoint) as sqs:
            answer = await sqs.get_queue_attributes(QueueUrl=urls["orders"], AttributeNames=["RedrivePolicy"])
            policy = json.loads(answer["Attributes"]["RedrivePolicy"])
            assert policy == {
                "deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:orders-dlq",
                "maxReceiveCount": 7,
            }
            answer = await sqs.get_queue_attributes(QueueUrl=urls["jobs"], AttributeNames=["RedrivePolicy"])
            assert json.loads(answer["Attributes"]["RedrivePolicy"])["maxReceiveCount"] == 3
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_emulator_refuses_other_addresses_and_bad_queue_files(tmp_path: Path) -> None:
    refused = asqsd("emulator", "--host", "0.0.0.0")
    assert refused.returncode == 2
    assert "--host 0.0.0.0: asqsd emulator listens on loopback addresses only" in refused.stderr
    bad = tmp_path / "queues.yaml"
    bad.write_text("queues:\n  jobs: {dead_letter_queue: jobs-dlq.fifo}\n")
    result = asqsd("emulator", "--port", "0", "--file", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith("asqsd emulator: queue 'jobs': InvalidParameterValue:"), result.stderr
