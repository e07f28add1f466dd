"""Fault injection through the Python API, as an SDK client experiences it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from botocore.retries.standard import ThrottledRetryableChecker

from asqsd.emulator import Emulator, Faults
from tests.emulator.support import sqs_client, unique

DROPPED = (ConnectionClosedError, EndpointConnectionError)


@pytest.fixture
async def queue_url(emulator: Emulator) -> str:
    return emulator.create_queue(unique())


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("internal", 500, "InternalError"),
        ("unavailable", 503, "ServiceUnavailable"),
        ("throttling", 400, "ThrottlingException"),
        ("request_throttled", 403, "RequestThrottled"),
        ("expired_token", 403, "ExpiredToken"),
    ],
)
async def test_injected_errors(
    sqs: Any, emulator: Emulator, queue_url: str, kind: str, status: int, code: str
) -> None:
    emulator.faults.set("SendMessage", error_rate=1.0, error=kind)
    with pytest.raises(ClientError) as excinfo:
        await sqs.send_message(QueueUrl=queue_url, MessageBody="x")
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert excinfo.value.response["Error"]["Code"] == code
    await sqs.receive_message(QueueUrl=queue_url)  # other operations are untouched
    ops = emulator.counters()["operations"]
    assert ops["SendMessage"]["errors_injected"] == 1
    assert ops["ReceiveMessage"]["errors_injected"] == 0
    assert emulator.counters(queue_url.rsplit("/", 1)[1])["sent"] == 0


@pytest.mark.parametrize("kind", ["throttling", "request_throttled"])
async def test_throttling_is_recognised_by_botocore(
    sqs: Any, emulator: Emulator, queue_url: str, kind: str
) -> None:
    emulator.faults.set(error_rate=1.0, error=kind)
    with pytest.raises(ClientError) as excinfo:
        await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
    assert excinfo.value.response["Error"]["Code"] in ThrottledRetryableChecker._THROTTLED_ERROR_CODES
    if kind == "request_throttled":
        assert isinstance(excinfo.value, sqs.exceptions.RequestThrottled)


async def test_botocore_retries_injected_5xx(emulator: Emulator, queue_url: str) -> None:
    emulator.faults.set("SendMessage", error_rate=1.0, error="unavailable")
    config = Config(retries={"total_max_attempts": 2, "mode": "standard"})
    async with sqs_client(emulator.endpoint_url, config) as sqs:
        with pytest.raises(ClientError):
            await sqs.send_message(QueueUrl=queue_url, MessageBody="x")
    assert emulator.counters()["operations"]["SendMessage"]["calls"] == 2


async def test_latency_is_added(sqs: Any, emulator: Emulator, queue_url: str) -> None:
    emulator.faults.set("SendMessage", latency=0.3)
    started = time.monotonic()
    await sqs.send_message(QueueUrl=queue_url, MessageBody="x")
    assert time.monotonic() - started >= 0.3


async def test_partial_batch_failures(sqs: Any, emulator: Emulator, queue_url: str) -> None:
    emulator.faults.set("SendMessageBatch", batch_failure_rate=1.0)
    entries = [{"Id": str(i), "MessageBody": f"m{i}"} for i in range(4)]
    response = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    assert response["Successful"] == []
    assert {entry["Code"] for entry in response["Failed"]} == {"InternalError"}
    assert not any(entry["SenderFault"] for entry in response["Failed"])
    emulator.faults.set("SendMessageBatch", batch_failure_rate=0.5)
    response = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    succeeded = len(response["Successful"])
    name = queue_url.rsplit("/", 1)[1]
    assert emulator.counters(name)["sent"] == succeeded
    failed = emulator.counters()["operations"]["SendMessageBatch"]["batch_entries_failed"]
    assert failed == 4 + len(response["Failed"])


def test_seeded_faults_are_deterministic() -> None:
    def pattern(seed: int) -> list[tuple[bool, bool]]:
        faults = Faults(seed)
        faults.set(error_rate=0.5, batch_failure_rate=0.5)
        out = []
        for _ in range(50):
            decision = faults.decide("SendMessageBatch")
            assert decision is not None and decision.fail_entry is not None
            out.append((decision.error is not None, decision.fail_entry()))
        return out

    assert pattern(7) == pattern(7)
    assert pattern(7) != pattern(8)
    assert 10 < sum(error for error, _ in pattern(7)) < 40


def test_fault_settings_are_validated() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="error_rate"):
        faults.set(error_rate=1.5)
    with pytest.raises(ValueError, match="error must be"):
        faults.set(error="teapot")
    with pytest.raises(ValueError, match="unknown"):
        faults.set(explode=True)
    with pytest.raises(ValueError, match="mode"):
        faults.set_unavailable("sometimes")
    assert not faults.active
    faults.set("ReceiveMessage", latency=0.1)
    faults.set("ReceiveMessage", error_rate=0.2)  # merged into the same rule
    rule = faults.rule_for("ReceiveMessage")
    assert rule is not None and (rule.latency, rule.error_rate) == (0.1, 0.2)
    assert faults.rule_for("SendMessage") is None
    faults.clear("ReceiveMessage")
    assert not faults.active


async def test_dropped_connection(sqs: Any, emulator: Emulator, queue_url: str) -> None:
    emulator.faults.set("SendMessage", drop_rate=1.0)
    with pytest.raises(DROPPED):
        await sqs.send_message(QueueUrl=queue_url, MessageBody="x")
    name = queue_url.rsplit("/", 1)[1]
    assert emulator.counters(name)["sent"] == 0
    assert emulator.counters()["operations"]["SendMessage"]["connections_dropped"] == 1


async def test_dropped_after_processing(sqs: Any, emulator: Emulator, queue_url: str) -> None:
    emulator.faults.set("SendMessage", drop_after_rate=1.0)
    with pytest.raises(DROPPED):
        await sqs.send_message(QueueUrl=queue_url, MessageBody="x")
    assert emulator.counters(queue_url.rsplit("/", 1)[1])["sent"] == 1  # it happened; the client never knew


@pytest.mark.parametrize(("mode", "expected"), [("error", ClientError), ("drop", DROPPED)])
async def test_unavailable_switch(
    sqs: Any, emulator: Emulator, queue_url: str, mode: str, expected: type[Exception]
) -> None:
    emulator.faults.set_unavailable(mode)
    for call in (sqs.list_queues(), sqs.receive_message(QueueUrl=queue_url)):
        with pytest.raises(expected):
            await call
    emulator.faults.set_unavailable(None)
    await sqs.list_queues()
