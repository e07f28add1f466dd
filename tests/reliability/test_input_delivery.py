"""Bad or extreme message content, end to end (emulator → daemon → worker): bodies at the 1 MiB
limit, a single space, characters from every Unicode plane SQS allows are delivered byte-exact;
a hostile SNS envelope never crashes the daemon."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from asqsd.emulator import Emulator
from tests.emulator.support import sqs_client
from tests.reliability.conftest import Record, Rig, daemon_running
from tests.support.ledger import LedgerWorker
from tests.support.polling import wait_until

MAX_BODY = 1024 * 1024  # SQS's limit, in UTF-8 bytes (body and attributes together)


def exactly(prefix: str, filler: str, size: int = MAX_BODY) -> str:
    """``prefix`` + as many ``filler`` as fit + ASCII padding: exactly ``size`` UTF-8 bytes."""
    room = size - len(prefix.encode())
    body = prefix + filler * (room // len(filler.encode()))
    return body + "." * (size - len(body.encode()))


# One character from each range SQS allows (#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD
# #x10000-#x10FFFF): its edges, and a character of every supplementary plane 1-16.
EVERY_PLANE = (
    "\t\n\r ~\x7f\x80\xa0\xff\u0100\u07ff\u0800\u2028\ud7ff\ue000\uf8ff\ufdd0\ufffd"
    + "".join(chr(plane * 0x10000 + 0x41) for plane in range(1, 17))
    + "\U0001ffff\U0010fffd\U0010ffff"
)

BODIES = {
    "max-ascii": exactly("1 MiB of ASCII ", "a"),
    "max-4-byte": exactly("1 MiB of emoji ", "\U0001f600"),
    "max-mixed": exactly("1 MiB mixed ", "\u00e9\u2603\U00010348z"),
    "single-space": " ",
    "whitespace-only": "\t\n\r ",
    "every-plane": EVERY_PLANE,
    "http-lookalike": "POST / HTTP/1.1\r\nHost: evil\r\nContent-Length: 0\r\n\r\n",
    "json-escapes": json.dumps({"nul": "\u0000", "quote": '"', "bs": "\\", "surrogate-escape": "\\ud800"}),
    "sns-envelope-not-unwrapped": json.dumps(
        {
            "Type": "Notification",
            "MessageId": "m",
            "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": "inner",
        }
    ),
}


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
async def test_bodies_are_delivered_byte_exact(emu: Emulator, record: Record, client: str) -> None:
    """Each body reaches the worker exactly once with exactly its UTF-8 bytes, and is deleted.
    Bodies under 1 MiB go through SendMessage; the 1 MiB ones are preloaded (the SDK's request
    would be over aiohttp's large-body warning threshold, an error under this test suite)."""
    emu.create_queue("bodies")
    async with sqs_client(emu.endpoint_url) as sqs:
        for body in BODIES.values():
            if len(body.encode()) < MAX_BODY:
                await sqs.send_message(QueueUrl=emu.queue_url("bodies"), MessageBody=body)
            else:
                emu.preload("bodies", 1, body=body)
    worker = LedgerWorker(keep_bodies=True)
    await worker.start()
    try:
        rig = Rig(emu, "bodies", worker)
        async with daemon_running(rig.settings(http_client=client, http_connections=4)) as daemon:
            await wait_until(
                lambda: emu.counters("bodies")["deleted"] == len(BODIES), timeout_s=20, what="all"
            )
    finally:
        await worker.stop()
    received = Counter(r.body for r in worker.records)
    expected = Counter(body.encode("utf-8") for body in BODIES.values())
    record(client=client, bodies=len(BODIES), largest=max(map(len, received)), failed=daemon.counters.failed)
    assert received == expected
    assert max(len(b) for b in received) == MAX_BODY


def _poison_envelope() -> str:
    # ASCII-only JSON, valid for SQS, whose Message decodes to a lone surrogate.
    return (
        '{"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:t", '
        '"Message": "\\ud800 poison"}'
    )


async def test_hostile_sns_envelope_does_not_crash_the_daemon(rig: Rig) -> None:
    """A message that unwraps to text UTF-8 cannot encode is settled (delivered as a failure or
    as the raw envelope), and the daemon keeps running."""
    rig.emu.preload(rig.queue, 1, body=_poison_envelope())
    rig.emu.preload(rig.queue, 1, body="ledger 0000001 after the poison")
    async with daemon_running(rig.settings(unwrap_sns=True, error_visibility_timeout=5)) as daemon:
        await wait_until(
            lambda: daemon.counters.delivered >= 2 or daemon.stopping, timeout_s=10, what="both settled"
        )
        assert not daemon.stopping, f"the daemon stopped: {daemon.failure!r}"
