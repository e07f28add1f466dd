"""One behaviour suite for the SQSClient implementations: BotocoreSQS and LeanSQS (both transports).

Most tests talk HTTP to moto_server; the error-mapping and timeout tests use a tiny canned-response
aiohttp stub on 127.0.0.1 so both clients see byte-identical responses. The signing tests are pure:
they compare LeanSQS's SigV4 headers with botocore's for the same request and timestamp.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from unittest import mock

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentials, AioRefreshableCredentials
from aiobotocore.session import AioSession, get_session
from aiohttp import web
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from asqsd.clients.sqs.base import DeleteEntry, SQSClient, VisibilityEntry
from asqsd.clients.sqs.botocore_impl import BotocoreSQS
from asqsd.clients.sqs.lean_impl import LeanSQS, create_lean_sqs
from asqsd.clients.sqs.sigv4 import BotocoreSigV4, CachedKeySigV4
from asqsd.clients.sqs.transport import LeanHTTPTransport, TransportError, request_url
from asqsd.errors import SQSError
from asqsd.message import SYSTEM_ATTRIBUTE_NAMES, Message, MessageAttribute
from tests.support.polling import wait_until, wait_until_async
from tests.support.servers import free_loopback_port
from tests.support.tls import self_signed_cert

# "lean" is LeanSQS over its own asyncio-Protocol transport (the factory default), "lean-aiohttp"
# LeanSQS over the caller's aiohttp session.
IMPLEMENTATIONS = ["botocore", "lean-aiohttp", "lean"]
# Body with BMP, astral-plane (surrogate pairs in JSON) and line-separator characters.
UNICODE_BODY = 'Grüße ✓ \u2028 «ß» 🎉𝄞\U0001f600\U0010fffd "quoted" \\ end'
BINARY = bytes(range(256))
ATTRIBUTES = {
    "s": MessageAttribute("String", string_value="naïve ☃ 🎉"),
    "n": MessageAttribute("Number", string_value="-12.5e3"),
    "b": MessageAttribute("Binary", binary_value=BINARY),
    "custom": MessageAttribute("String.custom", string_value="x-y"),
}
# Short timeouts and no SDK retries: failure tests must not wait out botocore's backoff.
FAST_CONFIG = AioConfig(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5)


def wire_attributes(attributes: Mapping[str, MessageAttribute]) -> dict[str, dict[str, Any]]:
    """MessageAttributes for a direct aiobotocore send_message."""
    wire: dict[str, dict[str, Any]] = {}
    for name, attr in attributes.items():
        if attr.binary_value is not None:
            wire[name] = {"DataType": attr.data_type, "BinaryValue": attr.binary_value}
        else:
            wire[name] = {"DataType": attr.data_type, "StringValue": attr.string_value}
    return wire


@dataclass
class Aws:
    """Objects a test needs to build either client: botocore session, raw client, aiohttp session."""

    session: AioSession
    raw: Any
    http: aiohttp.ClientSession
    endpoint: str
    clients: list[Any] = field(default_factory=list)
    leans: list[LeanSQS] = field(default_factory=list)

    async def sqs(
        self, impl: str, queue_url: str, *, raw: Any | None = None, **lean_options: Any
    ) -> SQSClient:
        """An SQSClient of the given implementation bound to ``queue_url``."""
        client = raw if raw is not None else self.raw
        if impl == "botocore":
            return BotocoreSQS(client, queue_url)
        transport: Literal["lean", "aiohttp"] = "aiohttp" if impl == "lean-aiohttp" else "lean"
        lean = await create_lean_sqs(
            self.session, client, self.http, queue_url, transport=transport, **lean_options
        )
        self.leans.append(lean)
        return lean

    def lean(self, queue_url: str, **options: Any) -> LeanSQS:
        """A LeanSQS built directly (closed at teardown)."""
        lean = LeanSQS(self.http, queue_url, **options)
        self.leans.append(lean)
        return lean

    async def raw_client(self, endpoint_url: str) -> Any:
        """Another aiobotocore client (closed at teardown), e.g. for a different endpoint."""
        client = await self.session.create_client(
            "sqs", endpoint_url=endpoint_url, config=FAST_CONFIG
        ).__aenter__()
        self.clients.append(client)
        return client


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> str:
    """Which SQSClient implementation the test runs against."""
    return str(request.param)


@pytest.fixture
async def aws(moto_url: str) -> AsyncIterator[Aws]:
    session = get_session()
    async with (
        session.create_client("sqs", endpoint_url=moto_url, config=FAST_CONFIG) as raw,
        aiohttp.ClientSession() as http,
    ):
        aws = Aws(session, raw, http, moto_url)
        try:
            yield aws
        finally:
            for lean in aws.leans:
                await lean.aclose()
            for client in aws.clients:
                await client.__aexit__(None, None, None)


@pytest.fixture(params=["lean", "aiohttp"])
def transport(request: pytest.FixtureRequest) -> str:
    """Which transport a directly built LeanSQS uses."""
    return str(request.param)


@pytest.fixture
async def queue_url(aws: Aws) -> AsyncIterator[str]:
    url = str((await aws.raw.create_queue(QueueName=f"clients-{uuid.uuid4().hex[:12]}"))["QueueUrl"])
    yield url
    await aws.raw.delete_queue(QueueUrl=url)


async def receive_n(sqs: SQSClient, count: int, visibility_timeout_s: int = 30) -> list[Message]:
    """Receive until ``count`` messages arrived (moto may split them over several receives)."""
    got: list[Message] = []

    async def enough() -> bool:
        got.extend(
            await sqs.receive(max_messages=10, wait_time_s=0, visibility_timeout_s=visibility_timeout_s)
        )
        return len(got) >= count

    await wait_until_async(enough, timeout_s=10, what=f"{count} messages")
    return got


# --- behaviour against moto, for both implementations ------------------------------------------


async def test_receive_with_attributes(aws: Aws, impl: str, queue_url: str) -> None:
    sent = await aws.raw.send_message(
        QueueUrl=queue_url, MessageBody=UNICODE_BODY, MessageAttributes=wire_attributes(ATTRIBUTES)
    )
    sqs = await aws.sqs(impl, queue_url)

    [message] = await receive_n(sqs, 1)

    assert message.message_id == sent["MessageId"]
    assert message.body == UNICODE_BODY
    assert message.message_attributes == ATTRIBUTES
    assert isinstance(message.message_attributes["b"].binary_value, bytes)
    assert set(SYSTEM_ATTRIBUTE_NAMES) <= set(message.attributes)
    assert message.attributes["ApproximateReceiveCount"] == "1"
    assert message.receive_count == 1
    assert message.receipt_handle
    assert message.group_id is None


async def test_empty_long_poll_waits(aws: Aws, impl: str, queue_url: str) -> None:
    sqs = await aws.sqs(impl, queue_url)
    started = time.monotonic()

    messages = await sqs.receive(max_messages=10, wait_time_s=1, visibility_timeout_s=30)

    assert messages == []
    assert time.monotonic() - started >= 0.9


async def test_delete_batch_reports_per_entry_failure(aws: Aws, impl: str, queue_url: str) -> None:
    for i in range(2):
        await aws.raw.send_message(QueueUrl=queue_url, MessageBody=f"m{i}")
    sqs = await aws.sqs(impl, queue_url)
    messages = await receive_n(sqs, 2)

    result = await sqs.delete_batch(
        [
            DeleteEntry("a", messages[0].receipt_handle),
            DeleteEntry("bogus", "not-a-receipt-handle"),
            DeleteEntry("b", messages[1].receipt_handle),
        ]
    )

    assert sorted(result.succeeded) == ["a", "b"]
    [failure] = result.failed
    assert failure.entry_id == "bogus"
    assert failure.sender_fault is True
    assert failure.code == "ReceiptHandleIsInvalid"
    attrs = await sqs.get_queue_attributes(
        ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    assert attrs == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


async def test_change_visibility_batch(aws: Aws, impl: str, queue_url: str) -> None:
    await aws.raw.send_message(QueueUrl=queue_url, MessageBody="lease me")
    sqs = await aws.sqs(impl, queue_url)
    [message] = await receive_n(sqs, 1, visibility_timeout_s=60)

    result = await sqs.change_visibility_batch(
        [VisibilityEntry("m", message.receipt_handle, 0), VisibilityEntry("x", "not-a-receipt-handle", 5)]
    )

    assert result.succeeded == ["m"]
    [failure] = result.failed
    assert (failure.entry_id, failure.sender_fault) == ("x", True)
    # Visibility 0: the message is receivable again at once, with its receive count bumped.
    [again] = await receive_n(sqs, 1)
    assert again.message_id == message.message_id
    assert again.attributes["ApproximateReceiveCount"] == "2"


async def test_get_queue_attributes(aws: Aws, impl: str, queue_url: str) -> None:
    for i in range(2):
        await aws.raw.send_message(QueueUrl=queue_url, MessageBody=f"m{i}")
    sqs = await aws.sqs(impl, queue_url)

    attrs = await sqs.get_queue_attributes(["ApproximateNumberOfMessages", "VisibilityTimeout"])

    assert attrs == {"ApproximateNumberOfMessages": "2", "VisibilityTimeout": "30"}


async def test_send_message_round_trips(aws: Aws, impl: str, queue_url: str) -> None:
    sqs = await aws.sqs(impl, queue_url)

    message_id = await sqs.send_message(UNICODE_BODY, ATTRIBUTES)

    response = await aws.raw.receive_message(
        QueueUrl=queue_url, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )
    [raw] = response["Messages"]
    assert raw["MessageId"] == message_id
    assert raw["Body"] == UNICODE_BODY
    assert raw["MessageAttributes"] == wire_attributes(ATTRIBUTES)


async def test_send_message_fifo_group(aws: Aws, impl: str) -> None:
    created = await aws.raw.create_queue(
        QueueName=f"clients-{uuid.uuid4().hex[:12]}.fifo", Attributes={"FifoQueue": "true"}
    )
    fifo_url = str(created["QueueUrl"])
    try:
        sqs = await aws.sqs(impl, fifo_url)
        message_id = await sqs.send_message("first", group_id="g-1", deduplication_id="d-1")

        [message] = await receive_n(sqs, 1)

        assert message.message_id == message_id
        assert message.group_id == "g-1"
    finally:
        await aws.raw.delete_queue(QueueUrl=fifo_url)


async def test_nonexistent_queue_is_not_retryable(aws: Aws, impl: str) -> None:
    sqs = await aws.sqs(impl, f"{aws.endpoint}/123456789012/missing-{uuid.uuid4().hex[:12]}")
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: sqs.receive(max_messages=1, wait_time_s=0, visibility_timeout_s=30),
        lambda: sqs.delete_batch([DeleteEntry("a", "handle")]),
        lambda: sqs.get_queue_attributes(["All"]),
        lambda: sqs.send_message("x"),
    ]
    for call in calls:
        with pytest.raises(SQSError) as caught:
            await call()
        assert caught.value.code == "QueueDoesNotExist"
        assert caught.value.retryable is False


async def test_closed_port_is_retryable(aws: Aws, impl: str) -> None:
    endpoint = f"http://127.0.0.1:{free_loopback_port()}"
    sqs = await aws.sqs(impl, f"{endpoint}/123456789012/q", raw=await aws.raw_client(endpoint))

    with pytest.raises(SQSError) as caught:
        await sqs.receive(max_messages=10, wait_time_s=1, visibility_timeout_s=30)
    assert caught.value.retryable is True
    with pytest.raises(SQSError) as caught:
        await sqs.delete_batch([DeleteEntry("a", "handle")])
    assert caught.value.retryable is True


async def test_both_clients_build_identical_messages(aws: Aws, queue_url: str) -> None:
    await aws.raw.send_message(
        QueueUrl=queue_url, MessageBody=UNICODE_BODY, MessageAttributes=wire_attributes(ATTRIBUTES)
    )
    botocore_sqs = await aws.sqs("botocore", queue_url)
    lean_sqs = await aws.sqs("lean", queue_url)

    [first] = await receive_n(botocore_sqs, 1)
    await botocore_sqs.change_visibility_batch([VisibilityEntry("0", first.receipt_handle, 0)])
    [second] = await receive_n(lean_sqs, 1)

    # Everything but the per-receive fields must be equal, down to types.
    assert second.attributes.pop("ApproximateReceiveCount") == "2"
    assert first.attributes.pop("ApproximateReceiveCount") == "1"
    assert second.receipt_handle != first.receipt_handle
    second.receipt_handle = first.receipt_handle
    assert second == first
    assert [type(v.binary_value) for v in second.message_attributes.values()] == [
        type(v.binary_value) for v in first.message_attributes.values()
    ]


# --- canned responses from a stub: error mapping and timeouts must match -----------------------


@dataclass
class StubReply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Stub:
    """An aiohttp app on loopback answering every POST with ``reply``; records what it got."""

    url: str
    reply: StubReply = field(default_factory=StubReply)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    state = Stub(url="")

    async def handle(request: web.Request) -> web.Response:
        state.requests.append((dict(request.headers), await request.read()))
        reply = state.reply
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return web.Response(
            status=reply.status,
            body=reply.body,
            headers={"Content-Type": "application/x-amz-json-1.0", **reply.headers},
        )

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    # Short shutdown timeout: the timeout tests leave a handler sleeping when the client gives up.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def lean_on_stub(aws: Aws, stub: Stub, credentials: Any, transport: str) -> LeanSQS:
    """A LeanSQS in eu-west-1 sending to the stub (queue ``<stub>/123456789012/q``)."""
    return aws.lean(
        f"{stub.url}/123456789012/q",
        endpoint_url=stub.url,
        region="eu-west-1",
        credentials=credentials,
        transport=transport,
    )


ERROR_CASES = [
    pytest.param(
        StubReply(
            400,
            b'{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"gone"}',
            {"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"},
        ),
        "QueueDoesNotExist",
        False,
        id="query-error-header",
    ),
    pytest.param(
        StubReply(400, b'{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"gone"}'),
        "QueueDoesNotExist",
        False,
        id="json-type-only",
    ),
    pytest.param(
        StubReply(
            400,
            b'{"__type":"com.amazonaws.sqs#RequestThrottled","Message":"slow down"}',
            {"x-amzn-query-error": "RequestThrottled;Sender"},
        ),
        "RequestThrottled",
        True,
        id="throttled",
    ),
    pytest.param(
        StubReply(
            400,
            b'{"__type":"com.amazon.coral.service#UnrecognizedClientException:http://internal",'
            b'"message":"bad token"}',
        ),
        "UnrecognizedClientException",
        False,
        id="coral-type-with-suffix",
    ),
    pytest.param(
        StubReply(500, b'{"__type":"com.amazonaws.sqs#InternalError","message":"oops"}'),
        "InternalError",
        True,
        id="internal-error",
    ),
    pytest.param(StubReply(503, b"<html>Service Unavailable</html>"), "503", True, id="html-503"),
    pytest.param(StubReply(413, b""), "413", False, id="empty-413"),
]


@pytest.mark.parametrize(("reply", "code", "retryable"), ERROR_CASES)
async def test_error_responses_map_alike(
    aws: Aws, impl: str, stub: Stub, reply: StubReply, code: str, retryable: bool
) -> None:
    stub.reply = reply
    sqs = await aws.sqs(impl, f"{stub.url}/123456789012/q", raw=await aws.raw_client(stub.url))

    with pytest.raises(SQSError) as caught:
        await sqs.get_queue_attributes(["All"])

    assert (caught.value.operation, caught.value.code, caught.value.retryable) == (
        "GetQueueAttributes",
        code,
        retryable,
    )


# Permission denials as SQS sends them (JSON with the query-compatible code, or the JSON type
# alone) and as an authorisation layer in front of it may (moto's IAM check: XML, HTTP 403),
# beside credential errors, which no policy change fixes and which are therefore not denials.
DENIAL_CASES = [
    pytest.param(
        StubReply(
            403,
            b'<?xml version="1.0" encoding="utf-8"?>\n<ErrorResponse><Errors><Error><Code>AccessDenied</Code>'
            b"<Message>User: arn:aws:iam::123456789012:user/u is not authorized to perform: "
            b"sqs:GetQueueAttributes &amp; more</Message><Type>Sender</Type></Error></Errors>"
            b"</ErrorResponse>",
            {"Content-Type": "text/html; charset=utf-8"},
        ),
        "AccessDenied",
        True,
        "is not authorized to perform: sqs:GetQueueAttributes & more",
        id="xml-403",
    ),
    pytest.param(
        StubReply(
            400,
            b'{"__type":"com.amazon.coral.service#AccessDeniedException","Message":"not authorized"}',
            {"x-amzn-query-error": "AccessDenied;Sender"},
        ),
        "AccessDenied",
        True,
        "not authorized",
        id="json-query-error",
    ),
    pytest.param(
        StubReply(400, b'{"__type":"com.amazon.coral.service#AccessDeniedException","message":"no"}'),
        "AccessDeniedException",
        True,
        "no",
        id="json-type",
    ),
    pytest.param(
        StubReply(
            403,
            b'{"__type":"com.amazon.coral.service#InvalidClientTokenId","message":"bad key"}',
            {"x-amzn-query-error": "InvalidClientTokenId;Sender"},
        ),
        "InvalidClientTokenId",
        False,
        "bad key",
        id="bad-credentials",
    ),
]


@pytest.mark.parametrize(("reply", "code", "denied", "message"), DENIAL_CASES)
async def test_permission_denials_are_recognised_alike(
    aws: Aws, impl: str, stub: Stub, reply: StubReply, code: str, denied: bool, message: str
) -> None:
    """Both clients read the same code and message from a denial, mark it ``denied`` (not
    retryable) and name the IAM action; a credential error is not a denial."""
    stub.reply = reply
    sqs = await aws.sqs(impl, f"{stub.url}/123456789012/q", raw=await aws.raw_client(stub.url))

    with pytest.raises(SQSError) as caught:
        await sqs.get_queue_attributes(["All"])

    error = caught.value
    assert (error.code, error.denied, error.retryable) == (code, denied, False)
    assert message in str(error)
    assert error.permission == "sqs:GetQueueAttributes"


async def test_slow_response_times_out_retryable(aws: Aws, impl: str, stub: Stub) -> None:
    stub.reply = StubReply(delay_s=3.0)
    raw = await aws.session.create_client(
        "sqs",
        endpoint_url=stub.url,
        config=AioConfig(retries={"max_attempts": 1}, read_timeout=0.5, connect_timeout=1),
    ).__aenter__()
    aws.clients.append(raw)
    sqs = await aws.sqs(impl, f"{stub.url}/123456789012/q", raw=raw, request_timeout_s=0.5)
    started = time.monotonic()

    with pytest.raises(SQSError) as caught:
        await sqs.get_queue_attributes(["All"])

    assert caught.value.retryable is True
    assert time.monotonic() - started < 2.8


async def test_lean_receive_timeout_covers_the_long_poll(aws: Aws, stub: Stub, transport: str) -> None:
    stub.reply = StubReply(body=b'{"Messages":[]}', delay_s=1.2)
    sqs = await aws.sqs("lean", f"{stub.url}/123456789012/q", raw=await aws.raw_client(stub.url))
    assert isinstance(sqs, LeanSQS)
    fast = aws.lean(
        sqs.queue_url,
        endpoint_url=stub.url,
        region="us-east-1",
        credentials=aws.session.get_credentials,
        request_timeout_s=0.3,
        receive_slack_s=1.0,
        transport=transport,
    )

    # WaitTimeSeconds=1 + 1 s slack > 1.2 s, although the plain request timeout is 0.3 s.
    assert await fast.receive(max_messages=10, wait_time_s=1, visibility_timeout_s=30) == []


async def test_lean_uses_refreshed_credentials_and_signs_like_botocore(
    aws: Aws, stub: Stub, transport: str
) -> None:
    refreshes = 0

    def metadata(n: int) -> dict[str, str]:
        # Expiring inside botocore's mandatory-refresh window: every call refreshes.
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
        return {
            "access_key": f"AKIDROTATED{n}",
            "secret_key": f"secret-{n}",
            "token": f"token-{n}",
            "expiry_time": expiry.isoformat(),
        }

    async def refresh() -> dict[str, str]:
        nonlocal refreshes
        refreshes += 1
        return metadata(refreshes)

    credentials = AioRefreshableCredentials.create_from_metadata(metadata(0), refresh, "test")

    async def source() -> AioRefreshableCredentials:
        return credentials

    stub.reply = StubReply(body=b'{"Attributes":{"VisibilityTimeout":"30"}}')
    lean = lean_on_stub(aws, stub, source, transport)

    for _ in range(2):
        assert await lean.get_queue_attributes(["VisibilityTimeout"]) == {"VisibilityTimeout": "30"}

    assert refreshes == 2
    for n, (headers, body) in enumerate(stub.requests, start=1):
        frozen = ReadOnlyCredentials(f"AKIDROTATED{n}", f"secret-{n}", f"token-{n}")
        assert headers["X-Amz-Security-Token"] == f"token-{n}"
        assert headers["Authorization"] == botocore_authorization(
            request_url(stub.url), headers, body, frozen, "eu-west-1"
        )


async def test_lean_signs_the_utf8_bytes_it_sends(aws: Aws, stub: Stub, transport: str) -> None:
    """Non-ASCII goes out as UTF-8 (not \\u escapes), and the signature covers exactly those bytes."""

    async def source() -> AioCredentials:
        return AioCredentials("AKIDUTF8", "secret-utf8")

    stub.reply = StubReply(body=b'{"MessageId":"m-1"}')
    lean = lean_on_stub(aws, stub, source, transport)
    assert await lean.send_message(UNICODE_BODY, ATTRIBUTES) == "m-1"
    stub.reply = StubReply(body=b'{"Successful":[{"Id":"0"}]}')
    await lean.delete_batch([DeleteEntry("0", "handle-ü")])

    [(_, send_body), (_, delete_body)] = stub.requests
    unquoted = UNICODE_BODY.split('"')[0]  # the part JSON does not escape
    assert unquoted.encode() in send_body  # raw UTF-8, as orjson writes it
    assert json.loads(send_body)["MessageBody"] == UNICODE_BODY
    entries = [{"Id": "0", "ReceiptHandle": "handle-ü"}]
    expected_delete = {"QueueUrl": f"{stub.url}/123456789012/q", "Entries": entries}
    assert delete_body == json.dumps(expected_delete, separators=(",", ":"), ensure_ascii=False).encode()
    frozen = ReadOnlyCredentials("AKIDUTF8", "secret-utf8", None)
    for headers, body in stub.requests:
        assert int(headers["Content-Length"]) == len(body)
        assert headers["Authorization"] == botocore_authorization(
            request_url(stub.url), headers, body, frozen, "eu-west-1"
        )


async def test_lean_resolves_missing_credentials_later(aws: Aws, stub: Stub) -> None:
    found: list[AioCredentials | None] = [None]

    async def source() -> AioCredentials | None:
        return found[0]

    lean = LeanSQS(aws.http, f"{stub.url}/1/q", endpoint_url=stub.url, region="us-east-1", credentials=source)
    with pytest.raises(SQSError) as caught:
        await lean.get_queue_attributes(["All"])
    assert (caught.value.code, caught.value.retryable) == ("NoCredentialsError", True)
    assert stub.requests == []

    found[0] = AioCredentials("AKIDLATER", "secret")
    assert await lean.get_queue_attributes(["All"]) == {}
    assert "Credential=AKIDLATER/" in stub.requests[0][0]["Authorization"]


# --- SigV4: byte-identical to botocore (pure, no network) ---------------------------------------


def botocore_authorization(
    url: str,
    sent_headers: Mapping[str, str],
    body: bytes,
    credentials: ReadOnlyCredentials,
    region: str,
) -> str:
    """The Authorization header botocore's SigV4Auth computes for this request at its X-Amz-Date."""
    amz_date = sent_headers["X-Amz-Date"]
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={name: sent_headers[name] for name in ("X-Amz-Target", "Content-Type", "x-amzn-query-mode")},
    )
    moment = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
        SigV4Auth(credentials, "sqs", region).add_auth(request)
    assert request.headers["X-Amz-Date"] == amz_date
    return str(request.headers["Authorization"])


ENDPOINTS = [
    "http://127.0.0.1:4566",
    "https://sqs.us-east-1.amazonaws.com",
    "https://sqs.eu-west-1.amazonaws.com:443",
    "https://SQS-FIPS.us-gov-west-1.amazonaws.com/",
    "http://[::1]:9324",
    "http://localhost:80/prefix//path/../sqs",
    "http://127.0.0.1:9324/base?b=2&a=1&a=0",
]
BODIES = [
    b"",
    b'{"QueueUrl":"https://sqs.us-east-1.amazonaws.com/1/q","MaxNumberOfMessages":10}',
    json.dumps({"MessageBody": UNICODE_BODY}, ensure_ascii=False).encode(),
    b"x" * 300_000,
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE+token/with=chars", "  spaced   token "])
@pytest.mark.parametrize("body", BODIES, ids=["empty", "ascii", "unicode", "large"])
def test_cached_signer_matches_botocore(endpoint: str, token: str | None, body: bytes) -> None:
    credentials = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    url = request_url(endpoint)
    signer = CachedKeySigV4(url, "us-west-2")

    for amz_date in ("20240229T235959Z", "20240301T000000Z", "20240301T120000Z"):
        headers = signer.sign_at("AmazonSQS.ReceiveMessage", body, credentials, amz_date)
        expected = botocore_authorization(url, headers, body, credentials, "us-west-2")
        assert headers["Authorization"] == expected
        if token:
            assert headers["X-Amz-Security-Token"] == token


def test_cached_signer_follows_key_rotation() -> None:
    signer = CachedKeySigV4("https://sqs.us-east-1.amazonaws.com/", "us-east-1")
    for n in range(3):
        credentials = ReadOnlyCredentials(f"AKID{n}", f"secret-{n}", None)
        headers = signer.sign_at("AmazonSQS.SendMessage", b"{}", credentials, "20240101T000000Z")
        assert headers["Authorization"] == botocore_authorization(
            "https://sqs.us-east-1.amazonaws.com/", headers, b"{}", credentials, "us-east-1"
        )


def test_botocore_signer_wrapper_matches_cached_signer() -> None:
    url = "http://127.0.0.1:4566/"
    credentials = ReadOnlyCredentials("AKIDEXAMPLE", "secret", "token")
    moment = datetime.datetime(2024, 5, 6, 7, 8, 9)
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
        via_botocore = BotocoreSigV4(url, "ap-south-1").sign(
            "AmazonSQS.GetQueueAttributes", b"{}", credentials
        )
    cached = CachedKeySigV4(url, "ap-south-1").sign_at(
        "AmazonSQS.GetQueueAttributes", b"{}", credentials, "20240506T070809Z"
    )
    assert via_botocore == cached


class _Captured(Exception):
    """Raised from a before-send hook to stop aiobotocore before it touches the network."""


@pytest.mark.parametrize("token", [None, "session-token"])
async def test_lean_request_matches_what_aiobotocore_sends(
    monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    # The endpoint comes from the environment, as a deployment would set it: the factory must
    # pick up botocore's resolution of it (and the region), not re-implement it.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:9/sqs-prefix")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    session = get_session()
    if token:
        session.set_credentials("AKIDEXAMPLE", "secret-key", token)
    queue_url = "https://sqs.ap-southeast-2.amazonaws.com/123456789012/q"
    captured: list[AWSRequest] = []

    def capture(request: AWSRequest, **_: Any) -> None:
        captured.append(request)
        raise _Captured

    async with session.create_client("sqs") as client, aiohttp.ClientSession() as http:
        client.meta.events.register("before-send.sqs.*", capture)
        with pytest.raises(_Captured):
            await BotocoreSQS(client, queue_url).receive(
                max_messages=10, wait_time_s=20, visibility_timeout_s=60
            )
        lean = await create_lean_sqs(session, client, http, queue_url)

    [sent] = captured
    assert sent.url == lean.url == "http://127.0.0.1:9/sqs-prefix"
    frozen = await (await session.get_credentials()).get_frozen_credentials()
    body = bytes(sent.body)
    headers = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in sent.headers.items()}
    signer = CachedKeySigV4(lean.url, "ap-southeast-2")
    ours = signer.sign_at("AmazonSQS.ReceiveMessage", body, frozen, headers["X-Amz-Date"])
    assert ours["Authorization"] == headers["Authorization"]
    for name in ("X-Amz-Target", "Content-Type", "x-amzn-query-mode", "X-Amz-Date"):
        assert ours[name] == headers[name]
    assert ours.get("X-Amz-Security-Token") == headers.get("X-Amz-Security-Token") == token
    # And LeanSQS's own receive body says the same thing as botocore's.
    lean_body = json.loads(lean.receive_body(max_messages=10, wait_time_s=20, visibility_timeout_s=60))
    assert lean_body == json.loads(body)


async def test_factory_refuses_what_lean_cannot_honour(aws: Aws) -> None:
    """Unsigned requests, and botocore's proxies with the aiohttp transport (whose session has its
    own proxy settings); the lean transport honours them (tests/integration/clients/test_sqs_proxy.py)."""
    cases: list[tuple[AioConfig, Literal["lean", "aiohttp"]]] = [
        (AioConfig(signature_version=UNSIGNED), "lean"),
        (AioConfig(proxies={"https": "http://127.0.0.1:3128"}), "aiohttp"),
    ]
    for config, transport in cases:
        async with aws.session.create_client("sqs", endpoint_url=aws.endpoint, config=config) as client:
            with pytest.raises(ValueError, match="LeanSQS"):
                await create_lean_sqs(
                    aws.session, client, aws.http, f"{aws.endpoint}/1/q", transport=transport
                )


# --- the lean transport: keep-alive, stale connections, limits, deadlines, TLS ----------------------


async def _static_credentials() -> AioCredentials:
    return AioCredentials("AKIDEXAMPLE", "secret-key")


@dataclass
class RawServer:
    """A bare asyncio HTTP/1.1 server on loopback; ``behaviour`` decides per request what happens."""

    url: str = ""
    connections: int = 0
    requests: int = 0
    # (connection number, request number on it) -> "answer" | "close" | "hang"
    behaviour: Callable[[int, int], str] = lambda _conn, _n: "answer"
    body: bytes = b'{"Attributes":{"VisibilityTimeout":"30"}}'
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn_no, n = self.connections, 0
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                n += 1
                self.requests += 1
                action = self.behaviour(conn_no, n)
                if action == "close":
                    break
                if action == "hang":
                    await asyncio.sleep(3600)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(self.body), self.body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    state = RawServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        for writer in state.writers:
            writer.close()
        server.close()
        await server.wait_closed()


def lean_for(url: str, **options: Any) -> LeanSQS:
    return LeanSQS(
        None,
        f"{url}/123456789012/q",
        endpoint_url=url,
        region="us-east-1",
        credentials=_static_credentials,
        transport="lean",
        **options,
    )


async def test_lean_transport_reuses_keep_alive_connections(raw_server: RawServer) -> None:
    async with lean_for(raw_server.url, connections=2) as lean:
        for _ in range(5):
            assert await lean.get_queue_attributes(["All"]) == {"VisibilityTimeout": "30"}
        assert (raw_server.connections, raw_server.requests) == (1, 5)
        # Concurrency beyond the pool size waits for a connection instead of opening more.
        results = await asyncio.gather(*(lean.get_queue_attributes(["All"]) for _ in range(6)))
        assert all(r == {"VisibilityTimeout": "30"} for r in results)
        assert raw_server.connections <= 2
        transport = lean.lean_transport
        assert transport is not None and transport.open_connections <= 2


async def test_lean_transport_skips_a_connection_closed_while_idle(raw_server: RawServer) -> None:
    async with lean_for(raw_server.url) as lean:
        await lean.get_queue_attributes(["All"])
        # The server closes the idle keep-alive connection; the client notices the EOF and
        # opens a new connection for the next call.
        raw_server.writers[0].close()
        await asyncio.sleep(0.1)
        assert await lean.get_queue_attributes(["All"]) == {"VisibilityTimeout": "30"}
        assert raw_server.connections == 2


async def test_lean_transport_retries_once_on_a_stale_connection(raw_server: RawServer) -> None:
    # Every connection answers its first request and drops the next one unanswered: the close
    # races our reuse, so the client sees "disconnected before any response byte".
    raw_server.behaviour = lambda _conn, n: "answer" if n == 1 else "close"
    async with lean_for(raw_server.url) as lean:
        for _ in range(3):
            assert await lean.get_queue_attributes(["All"]) == {"VisibilityTimeout": "30"}
        # Calls 2 and 3 each hit a stale connection and were re-sent once on a new one.
        assert (raw_server.connections, raw_server.requests) == (3, 5)


async def test_lean_transport_does_not_retry_a_fresh_connection(raw_server: RawServer) -> None:
    raw_server.behaviour = lambda _conn, _n: "close"
    async with lean_for(raw_server.url) as lean:
        with pytest.raises(SQSError) as caught:
            await lean.get_queue_attributes(["All"])
    assert (caught.value.code, caught.value.retryable) == ("ServerDisconnectedError", True)
    assert raw_server.requests == 1


async def test_lean_transport_refuses_an_oversized_body(raw_server: RawServer) -> None:
    raw_server.body = b'{"Attributes":{"X":"' + b"x" * 5000 + b'"}}'
    async with lean_for(raw_server.url, max_response_bytes=4096) as lean:
        with pytest.raises(SQSError) as caught:
            await lean.get_queue_attributes(["All"])
        assert (caught.value.code, caught.value.retryable) == ("ProtocolError", True)
        assert "larger than 4096" in str(caught.value)
        raw_server.body = b'{"Attributes":{"X":"' + b"x" * 4000 + b'"}}'
        assert len((await lean.get_queue_attributes(["All"]))["X"]) == 4000


async def test_lean_transport_deadline_is_total(raw_server: RawServer) -> None:
    raw_server.behaviour = lambda _conn, _n: "hang"
    async with lean_for(raw_server.url, request_timeout_s=0.3, receive_slack_s=0.4) as lean:
        started = time.monotonic()
        with pytest.raises(SQSError) as caught:
            await lean.delete_batch([DeleteEntry("a", "handle")])
        elapsed = time.monotonic() - started
        assert (caught.value.code, caught.value.retryable) == ("TimeoutError", True)
        assert 0.25 < elapsed < 1.0
        started = time.monotonic()
        with pytest.raises(SQSError) as caught:
            await lean.receive(max_messages=10, wait_time_s=1, visibility_timeout_s=30)
        elapsed = time.monotonic() - started
        assert caught.value.retryable is True
        assert 1.3 < elapsed < 2.0  # WaitTimeSeconds + slack


async def test_lean_transport_waits_for_a_free_connection_within_the_deadline(raw_server: RawServer) -> None:
    raw_server.behaviour = lambda conn, _n: "hang" if conn == 1 else "answer"
    transport = LeanHTTPTransport(raw_server.url, connections=1)
    data = transport.serialize({"Host": "127.0.0.1"}, b"{}")
    holder = asyncio.create_task(transport.post(data, 30.0))
    try:
        await wait_until(lambda: raw_server.requests == 1, what="the first request at the server")
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            await transport.post(data, 0.2)
        assert caught.value.name == "TimeoutError"
        assert str(caught.value) == "no free connection before the deadline"
        assert 0.15 < time.monotonic() - started < 1.0
        # The caller that gave up left the queue: the slot the holder frees serves the next call.
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
        assert await transport.post(data, 5.0) == (200, raw_server.body, None)
        assert (raw_server.connections, transport.open_connections) == (2, 1)
    finally:
        holder.cancel()
        await transport.aclose()


async def test_lean_transport_closed_port_and_aclose(raw_server: RawServer) -> None:
    lean = lean_for(f"http://127.0.0.1:{free_loopback_port()}")
    with pytest.raises(SQSError) as caught:
        await lean.get_queue_attributes(["All"])
    assert (caught.value.code, caught.value.retryable) == ("ClientConnectorError", True)
    await lean.aclose()

    lean = lean_for(raw_server.url)
    await lean.get_queue_attributes(["All"])
    transport = lean.lean_transport
    assert transport is not None and transport.open_connections == 1
    await lean.aclose()
    assert transport.open_connections == 0
    with pytest.raises(SQSError):
        await lean.get_queue_attributes(["All"])


def _self_signed(tmp_path: Any) -> tuple[str, str]:
    cert, key = self_signed_cert(tmp_path)
    return str(cert), str(key)


async def test_lean_transport_verifies_tls(tmp_path: Any) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    state = RawServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://localhost:{server.sockets[0].getsockname()[1]}"
    try:
        # Default: the system trust store, which does not know this self-signed certificate.
        async with lean_for(url) as lean:
            with pytest.raises(SQSError) as caught:
                await lean.get_queue_attributes(["All"])
            assert caught.value.retryable is True
            assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
        # Trusting it explicitly proves the TLS path itself works (hostname checked: localhost).
        trusting = ssl.create_default_context(cafile=cert)
        async with lean_for(url, ssl_context=trusting) as lean:
            for _ in range(2):
                assert await lean.get_queue_attributes(["All"]) == {"VisibilityTimeout": "30"}
            assert state.connections == 1
    finally:
        for writer in state.writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_factory_sizes_the_lean_pool_from_the_session(aws: Aws) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=7)) as http:
        lean = await create_lean_sqs(aws.session, aws.raw, http, f"{aws.endpoint}/1/q")
        explicit = await create_lean_sqs(aws.session, aws.raw, None, f"{aws.endpoint}/1/q", connections=3)
    transport, other = lean.lean_transport, explicit.lean_transport
    assert transport is not None and other is not None
    assert (transport.limit, other.limit) == (7, 3)
    await lean.aclose()
    await explicit.aclose()
