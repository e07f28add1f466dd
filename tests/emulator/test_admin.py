"""The /_asqsd/ admin API, counters and preload, as a harness driving a subprocess would use them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from asqsd.emulator import Emulator
from tests.emulator.support import unique


@pytest.fixture
async def http(emulator: Emulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=emulator.endpoint_url) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
    async with http.request(method, "/_asqsd" + path, **kwargs) as response:
        assert response.status == status, await response.text()
        return await response.json()


async def test_health_and_create_queue(http: aiohttp.ClientSession, emulator: Emulator) -> None:
    assert (await call(http, "GET", "/health"))["status"] == "ok"
    created = await call(
        http, "POST", "/queues", json={"name": "jobs", "attributes": {"VisibilityTimeout": "5"}}
    )
    assert created["QueueUrl"] == f"{emulator.endpoint_url}/000000000000/jobs"
    assert emulator.store.get_queue("jobs").config.visibility_timeout == 5
    await call(http, "POST", "/queues", status=400, json={"name": "bad name"})
    await call(http, "POST", "/queues", status=400, json={})


async def test_preload_and_counters(http: aiohttp.ClientSession, sqs: Any, emulator: Emulator) -> None:
    url = emulator.create_queue("jobs")
    result = await call(
        http,
        "POST",
        "/queues/jobs/preload",
        json={
            "count": 25,
            "body": "job {i}",
            "message_attributes": {"k": {"DataType": "String", "StringValue": "v"}},
        },
    )
    assert result["added"] == 25 and result["visible"] == 25
    before_receive = time.time()
    received = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    after_receive = time.time()
    bodies = [message["Body"] for message in received["Messages"]]
    assert bodies == [f"job {i}" for i in range(10)]
    assert received["Messages"][0]["MessageAttributes"] == {"k": {"DataType": "String", "StringValue": "v"}}
    await sqs.delete_message(QueueUrl=url, ReceiptHandle=received["Messages"][0]["ReceiptHandle"])
    counters = await call(http, "GET", "/counters")
    assert counters["queues"]["jobs"] == {
        "sent": 25,
        "received": 10,
        "deleted": 1,
        "stale_deletes": 0,
        "duplicates": 0,
        "expired": 0,
        "redriven_out": 0,
        "redriven_in": 0,
        "purged": 0,
        "visible": 15,
        "in_flight": 9,
        "delayed": 0,
        "depth": 24,
        "max_depth": 25,
    }
    assert counters["operations"]["ReceiveMessage"]["calls"] == 1
    # When each operation was first called: the benchmarks' start-up probe.
    assert set(counters["first_calls"]) == {"ReceiveMessage", "DeleteMessage"}
    assert before_receive <= counters["first_calls"]["ReceiveMessage"] <= after_receive
    assert counters["first_calls"]["DeleteMessage"] >= after_receive
    assert counters["totals"]["depth"] == 24
    assert (await call(http, "GET", "/counters", params={"queue": "jobs"}))["deleted"] == 1
    await call(http, "GET", "/counters", status=404, params={"queue": "nope"})
    await call(http, "POST", "/counters/reset")
    after = await call(http, "GET", "/counters")
    assert after["operations"] == {} and after["first_calls"] == {}
    assert after["queues"]["jobs"]["sent"] == 0 and after["queues"]["jobs"]["depth"] == 24


async def test_preload_presets_drive_retention_and_redrive(
    http: aiohttp.ClientSession, sqs: Any, emulator: Emulator
) -> None:
    dlq_url = emulator.create_queue("dlq")
    policy = '{"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:dlq", "maxReceiveCount": 3}'
    url = emulator.create_queue("src", {"RedrivePolicy": policy, "MessageRetentionPeriod": "60"})
    old = int((time.time() - 120) * 1000)
    await call(http, "POST", "/queues/src/preload", json={"count": 2, "attributes": {"SentTimestamp": old}})
    first_receive = int(time.time() * 1000) - 5000
    emulator.preload(
        "src",
        1,
        body="tired",
        attributes={"ApproximateReceiveCount": 3, "ApproximateFirstReceiveTimestamp": first_receive},
    )
    assert "Messages" not in await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    moved = await sqs.receive_message(QueueUrl=dlq_url, MessageSystemAttributeNames=["All"])
    attributes = moved["Messages"][0]["Attributes"]
    assert attributes["ApproximateReceiveCount"] == "4"
    assert attributes["ApproximateFirstReceiveTimestamp"] == str(first_receive)
    counters = emulator.counters("src")
    assert (counters["expired"], counters["redriven_out"]) == (2, 1)
    assert emulator.counters("dlq")["duplicates"] == 1  # a delivery of an already-delivered message


async def test_preload_rejects_bad_input(http: aiohttp.ClientSession, emulator: Emulator) -> None:
    emulator.create_queue("jobs")
    await call(http, "POST", "/queues/nope/preload", status=404, json={"count": 1})
    await call(
        http, "POST", "/queues/jobs/preload", status=400, json={"count": 1, "attributes": {"Bogus": 1}}
    )
    await call(http, "POST", "/queues/jobs/preload", status=400, json={})
    with pytest.raises(ValueError, match="count"):
        emulator.preload("jobs", -1)
    assert emulator.preload("jobs", 3, body_factory=lambda i: f"n{i * 2}") == 3
    assert [m.body for m in emulator.store.receive(emulator.store.get_queue("jobs"), 10)] == [
        "n0",
        "n2",
        "n4",
    ]


async def test_faults_admin(http: aiohttp.ClientSession, sqs: Any, emulator: Emulator) -> None:
    url = emulator.create_queue(unique())
    spec = {"seed": 3, "operations": {"SendMessage": {"error_rate": 1.0, "error": "throttling"}}}
    current = await call(http, "POST", "/faults", json=spec)
    assert current["operations"]["SendMessage"]["error"] == "throttling"
    assert current["seed"] == 3
    with pytest.raises(sqs.exceptions.ClientError):
        await sqs.send_message(QueueUrl=url, MessageBody="x")
    merged = await call(http, "POST", "/faults", json={"operations": {"SendMessage": {"latency": 0.01}}})
    assert merged["operations"]["SendMessage"]["error_rate"] == 1.0
    replaced = await call(http, "PUT", "/faults", json={"unavailable": "error"})
    assert replaced["operations"] == {} and replaced["unavailable"] == "error"
    await call(http, "POST", "/faults", status=400, json={"operations": {"SendMessage": {"error_rate": 2}}})
    await call(http, "POST", "/faults", status=400, json={"unavailable": "maybe"})
    cleared = await call(http, "DELETE", "/faults")
    assert cleared["unavailable"] is None and cleared["operations"] == {}
    assert (await call(http, "GET", "/faults"))["operations"] == {}
    await sqs.send_message(QueueUrl=url, MessageBody="x")


async def test_purge_and_reset(http: aiohttp.ClientSession, sqs: Any, emulator: Emulator) -> None:
    url = emulator.create_queue("jobs")
    emulator.preload("jobs", 5)
    await sqs.purge_queue(QueueUrl=url)
    emulator.preload("jobs", 5)
    with pytest.raises(sqs.exceptions.PurgeQueueInProgress):
        await sqs.purge_queue(QueueUrl=url)
    assert (await call(http, "POST", "/queues/jobs/purge"))["purged"] == 5  # admin purge ignores the limit
    emulator.faults.set(latency=0.01)
    await call(http, "POST", "/reset")
    assert emulator.store.queues == {}
    assert not emulator.faults.active
    assert emulator.counters()["totals"]["purged"] == 0
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        await sqs.get_queue_url(QueueName="jobs")


async def test_totals_survive_queue_deletion(sqs: Any, emulator: Emulator) -> None:
    url = emulator.create_queue("gone")
    await sqs.send_message(QueueUrl=url, MessageBody="x")
    await sqs.delete_queue(QueueUrl=url)
    totals = emulator.counters()["totals"]
    assert totals["sent"] == 1 and totals["depth"] == 0


async def test_initial_queues() -> None:
    async with Emulator(queues=["a", "b.fifo"]) as emulator:
        assert sorted(emulator.store.queues) == ["a", "b.fifo"]
        assert emulator.store.get_queue("b.fifo").config.fifo
