"""S3 pointers in a ledger run (emulator with its S3 → daemon → ledger worker): plain messages and
pointer messages mixed, worker failures and a payload that appears only after its first delivery
failed; nothing is lost, and with delete_s3_payload_after_success no payload is left behind."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import structlog

from asqsd.emulator import Emulator
from tests.emulator.support import sqs_client
from tests.reliability.conftest import Record, Rig, daemon_running
from tests.support.ledger import OK, Action, LedgerWorker, at_rate, numbered_body
from tests.support.polling import wait_until

BUCKET = "ledger-payloads"
POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
FIRST_POINTER = 1000
PAYLOAD_BYTES = 300_000


def expected_body(n: int) -> bytes:
    """Plain messages carry their number; pointer messages' payloads are padded past SQS's limit."""
    return numbered_body(n, pad_to=PAYLOAD_BYTES if n >= FIRST_POINTER else 0).encode()


@pytest.fixture
async def worker() -> AsyncIterator[LedgerWorker]:
    """The ledger worker, checking every body it gets against :func:`expected_body`."""
    recorder = LedgerWorker(expect_body=expected_body)
    await recorder.start()
    try:
        yield recorder
    finally:
        await recorder.stop()


async def send_pointers(emu: Emulator, rig: Rig, numbers: range, missing: int) -> None:
    """Offload each message's body to the emulator's S3 (all but ``missing``) and send pointers."""
    async with sqs_client(emu.endpoint_url) as sqs:
        for n in numbers:
            payload = expected_body(n)
            if n != missing:
                emu.s3.put(BUCKET, f"p/{n}", payload)
            pointer = [POINTER_CLASS, {"s3BucketName": BUCKET, "s3Key": f"p/{n}"}]
            size = {"ExtendedPayloadSize": {"DataType": "Number", "StringValue": str(len(payload))}}
            await sqs.send_message(
                QueueUrl=rig.queue_url, MessageBody=json.dumps(pointer), MessageAttributes=size
            )
    rig.numbers.update(numbers)


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
async def test_pointer_messages_in_a_ledger_run(
    emu: Emulator, rig: Rig, record: Record, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", emu.endpoint_url)
    rig.worker.script = at_rate(0.2, Action(status=500), seed=7, otherwise=OK)
    rig.load(150)
    pointers = range(FIRST_POINTER, FIRST_POINTER + 40)
    await send_pointers(emu, rig, pointers, missing=FIRST_POINTER)
    settings = rig.settings(
        resolve_s3_pointers=True, delete_s3_payload_after_success=True, http_client=client
    )
    with structlog.testing.capture_logs() as logs:
        async with daemon_running(settings):
            await wait_until(
                lambda: any(e["event"] == "s3-pointer-fetch-failed" for e in logs), what="the missing payload"
            )
            # The producer was late: the payload appears after its first delivery failed.
            emu.s3.put(BUCKET, f"p/{FIRST_POINTER}", expected_body(FIRST_POINTER))
            await rig.wait_done(timeout_s=40)
            await wait_until(lambda: not emu.s3.buckets[BUCKET], what="every payload deleted")
    report = rig.report()
    record(report=report, client=client, pointers=len(pointers))
    assert report.lost == 0 and report.done == report.expected == 190, report.summary()
    assert all(r.body_ok for r in rig.worker.records)  # every payload whole, none truncated
