"""The daemon with only the stock Elastic Beanstalk worker-tier permissions, on a moto_server that
enforces IAM (signatures and policies), against a real aiohttp worker, with both SQS clients.

The stock policy's queue statement allows ReceiveMessage, DeleteMessage, ChangeMessageVisibility
and SendMessage, not GetQueueAttributes: asqsd must start, deliver, delete, extend visibility,
change it after a failure and enqueue periodic tasks all the same. Without DeleteMessage it must
say so and keep running without a hot loop. Every user here gets its own credentials through the
environment, as the daemon's botocore credential chain reads them on an instance.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from asqsd.daemon import Daemon
from asqsd.errors import StartupError
from asqsd.periodic.cron_yaml import parse_cron_yaml
from asqsd.pipeline.channel import GroupedChannel
from tests.component.conftest import SettingsFactory, queue_counts
from tests.support.docs import code_blocks, section
from tests.support.dynamo import AcceleratedClock, new_registry
from tests.support.iam import STOCK_QUEUE, STOCK_QUEUE_ACTIONS, AccessKey, IamMoto, allow, as_moto_checks
from tests.support.polling import wait_until
from tests.support.worker import Delivery, RecordingWorker

CRON = 'version: 1\ncron:\n  - name: "tick"\n    url: "/tasks/tick"\n    schedule: "* * * * *"\n'

# moto checks DynamoDB calls against the resource "*" (it does not work out the table ARN), so a
# statement scoped to the registry table would deny everything there: the table statement is "*".
REGISTRY = allow(["dynamodb:*"])


@pytest.fixture
def moto_url(iam_moto: IamMoto) -> str:
    """The component fixtures (queue_url, make_settings) use the IAM-enforcing server."""
    return iam_moto.url


@pytest.fixture
async def sqs(iam_moto: IamMoto) -> AsyncIterator[Any]:
    """The test's own view of SQS, as the admin."""
    async with iam_moto.client("sqs") as client:
        yield client


@pytest.fixture(params=["lean", "botocore"])
def sqs_client(request: pytest.FixtureRequest) -> str:
    """Both SQS clients: they must sign alike and read denials alike."""
    return str(request.param)


def act_as(monkeypatch: pytest.MonkeyPatch, key: AccessKey) -> None:
    """Give the daemon ``key`` through the environment (the botocore credential chain)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key.secret_access_key)


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    """The captured log events called ``name``."""
    return [entry for entry in logs if entry["event"] == name]


async def send_every_duty(sqs: Any, queue_url: str, worker: RecordingWorker) -> asyncio.Event:
    """Queue a plain message, a slow job (held until the returned event is set) and one the worker
    fails once (500): together they need a delete, a visibility extension and a visibility change."""
    release_slow = asyncio.Event()
    failed_once: set[str] = set()

    async def handler(_request: web.Request, delivery: Delivery) -> web.StreamResponse:
        if delivery.body == b"slow":
            await release_slow.wait()
        if delivery.body == b"fail-once" and delivery.msgid not in failed_once:
            failed_once.add(delivery.msgid or "")
            return web.Response(status=500)
        return web.Response(status=200)

    worker.handler = handler
    for body in ("plain", "slow", "fail-once"):
        await sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    return release_slow


async def http_status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


async def test_moto_enforces_the_stock_policy(iam_moto: IamMoto, queue_url: str) -> None:
    """The probe behind every other test here: with the stock policy moto refuses
    GetQueueAttributes but allows ReceiveMessage, and it checks the signature (a wrong secret
    fails), so a passing daemon test really ran with those permissions."""
    user = await iam_moto.create_user([STOCK_QUEUE])
    async with iam_moto.client("sqs", user) as as_user:
        with pytest.raises(ClientError) as denied:
            await as_user.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
        assert "AccessDenied" in str(denied.value)
        assert "sqs:GetQueueAttributes" in str(denied.value)
        assert "Messages" not in await as_user.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)
    # Why STOCK_QUEUE adds the batch names: without them moto refuses the batch calls.
    singular_only = await iam_moto.create_user([allow(STOCK_QUEUE_ACTIONS)])
    async with iam_moto.client("sqs", singular_only) as as_user:
        with pytest.raises(ClientError, match="sqs:DeleteMessageBatch"):
            await as_user.delete_message_batch(
                QueueUrl=queue_url, Entries=[{"Id": "0", "ReceiptHandle": "none"}]
            )
    forged = AccessKey(user.user, user.access_key_id, "not-the-secret")
    async with iam_moto.client("sqs", forged) as as_forger:
        with pytest.raises(ClientError) as refused:
            await as_forger.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)
    assert "SignatureDoesNotMatch" in str(refused.value)  # moto answers in XML: botocore's code is "403"


async def test_stock_permissions_run_every_sqs_duty(
    iam_moto: IamMoto,
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    sqs_client: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1. A user with exactly the stock queue permissions (plus the registry table) runs the
    daemon: one warning names sqs:GetQueueAttributes and what is off without it. 2. A message is
    delivered and deleted. 3. A job held longer than the visibility timeout is extended by the
    heartbeat, never redelivered. 4. A 500 changes the visibility (error_visibility_timeout 0), and
    the redelivery succeeds. 5. The leader enqueues a periodic task (SendMessage), delivered once.
    6. /readyz is 200 and the SQS check makes no GetQueueAttributes call; no backlog poller runs.
    Only the start-up GetQueueAttributes failed."""
    user = await iam_moto.create_user([STOCK_QUEUE, REGISTRY])
    async with iam_moto.client("dynamodb") as dynamodb:
        registry = await new_registry(dynamodb)
    act_as(monkeypatch, user)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", iam_moto.url)

    release_slow = await send_every_duty(sqs, queue_url, worker)
    start = (time.time() // 60 + 1) * 60 - 1  # a second before a whole minute
    daemon = Daemon(
        make_settings(
            sqs_client=sqs_client,
            registry_table=registry.name,
            visibility_timeout=4,  # heartbeat tick 1 s, extends once 2 s are left
            inactivity_timeout=60,  # else visibility_timeout: the held job would time out
            error_visibility_timeout=0,
            health_server=True,
            health_port=0,
            health_check_ttl_s=0,
        ),
        tasks=parse_cron_yaml(CRON),
        periodic_clock=AcceleratedClock(start, speed=20),
    )
    with capture_logs() as logs:
        async with run_daemon(daemon):
            await wait_until(lambda: daemon.counters.extended >= 2, timeout_s=20, what="slow job extended")
            release_slow.set()
            await wait_until(lambda: daemon.counters.deleted >= 4, timeout_s=30, what="4 deletes")
            health = daemon.observers.health
            assert health is not None
            assert await http_status(health.url + "/readyz") == 200
            assert await daemon.check_sqs()
            assert daemon.observers.backlog is None
    bodies = [d.body for d in worker.deliveries if d.path != "/tasks/tick"]
    assert sorted(bodies) == [b"fail-once", b"fail-once", b"plain", b"slow"]  # slow: never redelivered
    ticks = [d for d in worker.deliveries if d.path == "/tasks/tick"]
    assert ticks and all(d.header("X-Aws-Sqsd-Taskname") == "tick" for d in ticks)
    assert len({d.header("X-Aws-Sqsd-Scheduled-At") for d in ticks}) == len(ticks)  # each run once
    counters = daemon.counters
    assert counters.retried == 1 and counters.extended >= 2
    assert counters.sqs_errors == {"GetQueueAttributes": 1}
    assert counters.sqs_calls["GetQueueAttributes"] == 1
    for operation in ("DeleteMessageBatch", "ChangeMessageVisibilityBatch", "SendMessage"):
        assert counters.sqs_calls.get(operation, 0) >= 1, operation
    [warning] = events(logs, "queue-attributes-denied")
    assert warning["log_level"] == "warning"
    assert warning["permission"] == "sqs:GetQueueAttributes"
    assert "backlog" in warning["turned_off"] and "dead-letter" in warning["turned_off"]
    assert warning["fifo"] is False
    assert [e.get("confirmed_by") for e in events(logs, "queue-ok")] == ["ReceiveMessage"]
    assert daemon.delivery.max_receive_count is None


async def test_fifo_is_read_from_the_queue_name(
    iam_moto: IamMoto,
    sqs: Any,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without GetQueueAttributes a queue named *.fifo gets the group-aware buffer: one group's
    messages arrive one at a time, in order."""
    fifo_url = (
        await sqs.create_queue(
            QueueName=f"f-{uuid.uuid4().hex[:10]}.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
        )
    )["QueueUrl"]
    for index in range(3):
        await sqs.send_message(QueueUrl=fifo_url, MessageBody=f"m{index}", MessageGroupId="g")
    act_as(monkeypatch, await iam_moto.create_user([STOCK_QUEUE]))
    with capture_logs() as logs:
        async with run_daemon(make_settings(queue_url=fifo_url)) as daemon:
            assert daemon.pipeline is not None
            assert isinstance(daemon.pipeline.channel, GroupedChannel)
            await wait_until(lambda: daemon.counters.deleted == 3, timeout_s=20, what="3 deletes")
    assert [e["fifo"] for e in events(logs, "queue-attributes-denied")] == [True]
    assert [d.body for d in worker.deliveries] == [b"m0", b"m1", b"m2"]
    assert worker.max_in_flight == 1


async def test_missing_queue_ends_startup_without_get_queue_attributes(
    iam_moto: IamMoto, make_settings: SettingsFactory, sqs_client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the stock permissions a queue that does not exist is found by the first receive:
    start-up ends with a StartupError (exit status 3 in the CLI) naming QueueDoesNotExist, after
    one ReceiveMessage call, not a retry loop."""
    act_as(monkeypatch, await iam_moto.create_user([STOCK_QUEUE]))
    missing = f"{iam_moto.url}/123456789012/missing-{uuid.uuid4().hex[:8]}"
    daemon = Daemon(make_settings(queue_url=missing, sqs_client=sqs_client))
    with pytest.raises(StartupError, match="QueueDoesNotExist"):
        async with asyncio.timeout(20):
            await daemon.run()
    assert daemon.counters.sqs_calls.get("ReceiveMessage") == 1
    assert not daemon.ready.is_set()


async def test_receive_not_allowed_ends_startup_naming_the_permission(
    iam_moto: IamMoto,
    queue_url: str,
    make_settings: SettingsFactory,
    sqs_client: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A policy scoped to another queue refuses both GetQueueAttributes and ReceiveMessage: the
    start-up error names sqs:ReceiveMessage instead of looping on refused receives."""
    other_queue = "arn:aws:sqs:us-east-1:123456789012:some-other-queue"
    act_as(monkeypatch, await iam_moto.create_user([allow(STOCK_QUEUE["Action"], other_queue)]))
    daemon = Daemon(make_settings(sqs_client=sqs_client))
    with pytest.raises(StartupError, match="sqs:ReceiveMessage on this queue"):
        async with asyncio.timeout(20):
            await daemon.run()
    assert daemon.counters.sqs_calls.get("ReceiveMessage") == 1


async def test_denied_delete_is_reported_once_and_never_spins(
    iam_moto: IamMoto,
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    sqs_client: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without sqs:DeleteMessage the worker's 200 cannot be settled: one permission-denied line
    names the permission, the daemon keeps running, the message is left to SQS and comes back
    only after its visibility timeout, and each delivery costs one DeleteMessageBatch call (no
    retry loop) while receives stay at the long-poll pace."""
    actions = [action for action in STOCK_QUEUE_ACTIONS if action != "sqs:DeleteMessage"]
    act_as(monkeypatch, await iam_moto.create_user([allow(as_moto_checks(actions))]))
    arrivals: list[float] = []

    async def handler(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        arrivals.append(time.monotonic())
        return web.Response(status=200)

    worker.handler = handler
    await sqs.send_message(QueueUrl=queue_url, MessageBody="undeletable")
    visibility_s = 2
    started = time.monotonic()
    with capture_logs() as logs:
        settings = make_settings(sqs_client=sqs_client, visibility_timeout=visibility_s)
        async with run_daemon(settings) as daemon:
            await wait_until(lambda: len(arrivals) >= 3, timeout_s=30, what="two redeliveries")
            await wait_until(
                lambda: daemon.counters.delete_failed >= 3, timeout_s=10, what="the third delete refused"
            )
            calls, errors = daemon.counters.sqs_calls, daemon.counters.sqs_errors
            deliveries = len(arrivals)
            elapsed_s = time.monotonic() - started
            assert not daemon.stopping and daemon.failure is None
            assert calls["DeleteMessageBatch"] == errors["DeleteMessageBatch"]
            assert calls["DeleteMessageBatch"] == daemon.counters.delete_failed
            assert deliveries - 1 <= calls["DeleteMessageBatch"] <= deliveries
            # One long poll (wait_time_s 1) per second at most, plus one per delivery.
            assert calls["ReceiveMessage"] <= elapsed_s / 1 + deliveries + 2
    assert daemon.counters.deleted == 0
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(gap >= visibility_s * 0.75 for gap in gaps), gaps  # SQS redelivered; asqsd did not
    [report] = events(logs, "permission-denied")
    assert (report["permission"], report["operation"]) == ("sqs:DeleteMessage", "DeleteMessageBatch")
    assert len(events(logs, "delete-failed")) == daemon.counters.delete_failed
    visible, in_flight = await queue_counts(sqs, queue_url)
    assert visible + in_flight == 1  # left to SQS, not lost


async def test_dead_lettering_without_get_queue_attributes_needs_a_dead_letter_queue_url(
    iam_moto: IamMoto,
    queue_url: str,
    make_settings: SettingsFactory,
    sqs_client: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the stock permissions the redrive target cannot be read: max_retries without
    dead_letter_queue_url ends start-up (exit status 3 in the CLI) naming the setting, before any
    receive, so nothing is ever deleted for want of a dead-letter queue."""
    act_as(monkeypatch, await iam_moto.create_user([STOCK_QUEUE]))
    daemon = Daemon(make_settings(max_retries=3, sqs_client=sqs_client))
    with pytest.raises(StartupError, match=r"denied\): set dead_letter_queue_url"):
        async with asyncio.timeout(20):
            await daemon.run()
    assert daemon.counters.sqs_calls.get("ReceiveMessage", 0) == 0


# The example queue of docs/iam.md, replaced by the test's queue.
DOC_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:jobs"


def documented_policy(heading: str, queue_arn: str) -> list[dict[str, Any]]:
    """The statements of the JSON policy under ``heading`` in docs/iam.md, in the form moto checks:
    the example queue replaced by ``queue_arn``, the batch names added (see tests/support/iam.py),
    DynamoDB on "*" (see REGISTRY)."""
    (block,) = code_blocks(section("docs/iam.md", heading), "json")
    statements: list[dict[str, Any]] = json.loads(block.replace(DOC_QUEUE_ARN, queue_arn))["Statement"]
    for statement in statements:
        action = statement["Action"]
        actions = [action] if isinstance(action, str) else action
        statement["Action"] = as_moto_checks(actions)
        if all(name.startswith("dynamodb:") for name in actions):
            statement["Resource"] = "*"
    return statements


async def queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


async def test_the_documented_run_policy_runs_every_duty_and_no_more(
    iam_moto: IamMoto,
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/iam.md's Run policy, as written: the daemon checks the queue, delivers and deletes,
    extends a long job's visibility and changes it after a 500, without one refused call. The
    same user may not send a message (the policy is in force, and it grants no more)."""
    arn = await queue_arn(sqs, queue_url)
    user = await iam_moto.create_user(documented_policy("## Run (`asqsd run`)", arn))
    async with iam_moto.client("sqs", user) as as_user:
        with pytest.raises(ClientError, match="sqs:SendMessage"):
            await as_user.send_message(QueueUrl=queue_url, MessageBody="not allowed")
    act_as(monkeypatch, user)
    release_slow = await send_every_duty(sqs, queue_url, worker)
    settings = make_settings(visibility_timeout=2, inactivity_timeout=60, error_visibility_timeout=0)
    with capture_logs() as logs:
        async with run_daemon(settings) as daemon:
            await wait_until(lambda: daemon.counters.extended >= 1, timeout_s=20, what="slow job extended")
            release_slow.set()
            await wait_until(lambda: daemon.counters.deleted == 3, timeout_s=20, what="3 deletes")
    counters = daemon.counters
    assert counters.sqs_errors == {}
    assert counters.retried == 1
    assert counters.sqs_calls["GetQueueAttributes"] >= 1
    assert not events(logs, "queue-attributes-denied") and not events(logs, "permission-denied")


async def test_the_documented_periodic_policy_enqueues_tasks(
    iam_moto: IamMoto,
    sqs: Any,
    queue_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/iam.md's Run and periodic-task policies together: the instance wins the election on
    the registry table and its periodic task is enqueued and delivered, without a refused call."""
    arn = await queue_arn(sqs, queue_url)
    statements = [
        *documented_policy("## Run (`asqsd run`)", arn),
        *documented_policy("## Periodic tasks (`cron.yaml`)", arn),
    ]
    user = await iam_moto.create_user(statements)
    async with iam_moto.client("dynamodb") as dynamodb:
        registry = await new_registry(dynamodb)
    act_as(monkeypatch, user)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", iam_moto.url)
    start = (time.time() // 60 + 1) * 60 - 1  # a second before a whole minute
    daemon = Daemon(
        make_settings(registry_table=registry.name),
        tasks=parse_cron_yaml(CRON),
        periodic_clock=AcceleratedClock(start, speed=20),
    )
    async with run_daemon(daemon):
        await wait_until(lambda: daemon.counters.deleted >= 1, timeout_s=20, what="a periodic task delivered")
    assert [d.path for d in worker.deliveries][:1] == ["/tasks/tick"]
    assert daemon.counters.sqs_errors == {}
    assert daemon.counters.sqs_calls["SendMessage"] >= 1
