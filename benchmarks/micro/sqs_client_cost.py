"""Client CPU per SQS call: BotocoreSQS (default / tuned AioConfig) vs LeanSQS, on loopback.

A canned-response aiohttp stub runs in a *separate* process (``--serve``), so the CPU read here with
``time.process_time()`` is the client's alone. Each variant makes the same calls through the
:class:`~asqsd.clients.sqs.base.SQSClient` interface the daemon uses: ReceiveMessage(10) (every message
with the stock system attributes and two message attributes, one of them Binary) and DeleteMessageBatch(10).

    .venv/bin/python -m benchmarks.micro.sqs_client_cost                # table + benchmarks/results/*.json
    .venv/bin/python -m benchmarks.micro.sqs_client_cost --profile      # cProfile of LeanSQS only
    .venv/bin/py-spy record -r 500 --gil -f raw -o /tmp/lean.txt -- \
        .venv/bin/python -m benchmarks.micro.sqs_client_cost --variants lean --calls 20000 --rounds 1 \
        --no-breakdown --output /tmp/lean.json
    .venv/bin/python -m benchmarks.micro.sqs_client_cost --spy-summary /tmp/lean.txt

Nothing leaves 127.0.0.1; the credentials are dummies set for this process only.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import hashlib
import json
import os
import pstats
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiohttp import web

from asqsd.clients.sqs.base import DeleteEntry, SQSClient
from asqsd.clients.sqs.botocore_impl import BotocoreSQS
from asqsd.clients.sqs.lean_impl import create_lean_sqs
from benchmarks.micro import microbench

RESULTS = Path(__file__).resolve().parents[1] / "results"  # benchmarks/results/
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/bench"
# "lean" is LeanSQS's default (its own asyncio-Protocol transport); "lean-aiohttp" and
# "lean-botocore-signer" send through an aiohttp session (transport="aiohttp").
VARIANTS = (
    "botocore-default",
    "botocore-tuned",
    "lean-botocore-signer",
    "lean-aiohttp",
    "lean",
    "aiohttp-floor",
)
OPS = ("ReceiveMessage(10)", "DeleteMessageBatch(10)")
TUNED_CONFIG = AioConfig(
    parameter_validation=False,
    max_pool_connections=64,
    # The daemon retries on SQSError.retryable itself; SDK retries would only add latency.
    retries={"mode": "standard", "max_attempts": 1},
)


# --- the stub server (child process) ------------------------------------------------------------


def canned_receive() -> bytes:
    """A realistic ReceiveMessage(10) response body: ~210-byte bodies, attributes, MD5s."""
    messages = []
    for i in range(10):
        body = json.dumps({"job": "resize", "id": i, "pad": "x" * 150, "note": "héllo ✓"})
        messages.append(
            {
                "MessageId": str(uuid.UUID(int=i)),
                "ReceiptHandle": base64.b64encode(f"receipt-{i}-".encode() * 12).decode(),
                "MD5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
                "Body": body,
                "Attributes": {
                    "SenderId": "AIDAIT2UOQQY3AUEKVGXU",
                    "ApproximateFirstReceiveTimestamp": "1700000000123",
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1700000000000",
                },
                "MD5OfMessageAttributes": "0" * 32,
                "MessageAttributes": {
                    "trace": {"StringValue": f"trace-{i}", "DataType": "String"},
                    "blob": {
                        "BinaryValue": base64.b64encode(b"\x00\x01binary").decode(),
                        "DataType": "Binary",
                    },
                },
            }
        )
    return json.dumps({"Messages": messages}).encode()


def serve(port: int) -> None:
    """Answer every SQS JSON POST with a canned body chosen by X-Amz-Target."""
    replies = {
        "AmazonSQS.ReceiveMessage": canned_receive(),
        "AmazonSQS.DeleteMessageBatch": json.dumps(
            {"Successful": [{"Id": str(i)} for i in range(10)]}
        ).encode(),
    }

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        body = replies.get(request.headers.get("X-Amz-Target", ""), b"{}")
        return web.Response(body=body, content_type="application/x-amz-json-1.0")

    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    app.router.add_get("/ping", ping)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop())


# --- the clients -----------------------------------------------------------------------------------


class RawFloor:
    """Not an SQS client: the same POSTs with fixed headers and no parsing, for the transport floor."""

    def __init__(self, http: aiohttp.ClientSession, endpoint: str) -> None:
        self._http = http
        self._url = endpoint + "/"

    async def _post(self, target: str, body: bytes) -> bytes:
        headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target}
        async with self._http.post(self._url, data=body, headers=headers) as response:
            return await response.read()

    async def receive(self, **_: int) -> bytes:
        return await self._post("AmazonSQS.ReceiveMessage", b'{"QueueUrl":"q","MaxNumberOfMessages":10}')

    async def delete_batch(self, entries: list[DeleteEntry]) -> bytes:
        body = json.dumps({"QueueUrl": QUEUE_URL, "Entries": [vars_of(e) for e in entries]}).encode()
        return await self._post("AmazonSQS.DeleteMessageBatch", body)


def vars_of(entry: DeleteEntry) -> dict[str, str]:
    return {"Id": entry.entry_id, "ReceiptHandle": entry.receipt_handle}


@asynccontextmanager
async def make_client(variant: str, endpoint: str) -> AsyncIterator[SQSClient | RawFloor]:
    session = get_session()
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        )
        config = TUNED_CONFIG if variant in ("botocore-tuned",) else None
        client = await stack.enter_async_context(
            session.create_client("sqs", endpoint_url=endpoint, region_name="us-east-1", config=config)
        )
        if variant.startswith("botocore"):
            yield BotocoreSQS(client, QUEUE_URL)
        elif variant == "lean":
            lean = await create_lean_sqs(session, client, http, QUEUE_URL, transport="lean", connections=64)
            stack.push_async_callback(lean.aclose)
            yield lean
        elif variant == "lean-aiohttp":
            yield await create_lean_sqs(session, client, http, QUEUE_URL, transport="aiohttp")
        elif variant == "lean-botocore-signer":
            yield await create_lean_sqs(
                session, client, http, QUEUE_URL, signer="botocore", transport="aiohttp"
            )
        else:
            yield RawFloor(http, endpoint)


def operation(client: Any, op: str) -> Callable[[], Awaitable[Any]]:
    entries = [
        DeleteEntry(str(i), base64.b64encode(f"receipt-{i}-".encode() * 12).decode()) for i in range(10)
    ]
    if op.startswith("Receive"):
        return lambda: client.receive(max_messages=10, wait_time_s=0, visibility_timeout_s=60)
    return lambda: client.delete_batch(entries)


async def measure(
    call: Callable[[], Awaitable[Any]], calls: int, concurrency: int, cap_s: float
) -> dict[str, float]:
    """Run ``calls`` calls over ``concurrency`` tasks (or until ``cap_s``); CPU per call in µs."""
    return await microbench.measure(call, calls, concurrency, cap_s, unit="call")


async def run_all(args: argparse.Namespace, endpoint: str) -> list[dict[str, Any]]:
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for variant in microbench.interleaved(args.rounds, args.variants):
        async with make_client(variant, endpoint) as client:
            for op in OPS:
                call = operation(client, op)
                await measure(call, args.warmup, args.concurrency, args.time_cap)
                result = await measure(call, args.calls, args.concurrency, args.time_cap)
                runs.setdefault((variant, op), []).append(result)
                print(f"  {variant:22} {op:24} {result['cpu_us_per_call']:7.1f} µs/call", file=sys.stderr)
    return [
        {
            "variant": variant,
            "op": op,
            **microbench.cpu_summary(results, "call", ("system_us_per_call",)),
            "runs": results,
        }
        for (variant, op), results in runs.items()
    ]


async def breakdown(n: int = 20_000) -> dict[str, float]:
    """CPU µs of LeanSQS's own per-call steps, timed in-process without any I/O."""
    from aiobotocore.credentials import AioRefreshableCredentials
    from botocore.credentials import ReadOnlyCredentials

    from asqsd.clients.sqs.lean_impl import LeanSQS, decode_body, encode_body
    from asqsd.clients.sqs.sigv4 import BotocoreSigV4, CachedKeySigV4
    from asqsd.clients.sqs.wire import batch_result, parse_message
    from asqsd.clients.sqs.wire import decode_binary_attributes as decode_binary  # the step being timed

    def per_call(step: Callable[[], object], count: int = n) -> float:
        start = time.process_time()
        for _ in range(count):
            step()
        return (time.process_time() - start) / count * 1e6

    frozen = ReadOnlyCredentials("AKIDEXAMPLE", "secret", "session-token")
    url = "http://127.0.0.1:9324/"
    async with aiohttp.ClientSession() as http:
        lean = LeanSQS(http, QUEUE_URL, endpoint_url=url, region="us-east-1", credentials=lambda: None)  # type: ignore[arg-type,return-value]
        body = lean.receive_body(max_messages=10, wait_time_s=20, visibility_timeout_s=60)
    cached, via_botocore = CachedKeySigV4(url, "us-east-1"), BotocoreSigV4(url, "us-east-1")
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))

    async def no_refresh() -> dict[str, str]:
        raise AssertionError("not due")

    refreshable = AioRefreshableCredentials.create_from_metadata(
        {"access_key": "A", "secret_key": "S", "token": "T", "expiry_time": expiry}, no_refresh, "bench"
    )
    start = time.process_time()
    for _ in range(n):
        await refreshable.get_frozen_credentials()
    frozen_us = (time.process_time() - start) / n * 1e6

    receive_json = canned_receive()
    delete_json = json.dumps({"Successful": [{"Id": str(i)} for i in range(10)]}).encode()
    entries = [{"Id": str(i), "ReceiptHandle": "r" * 180} for i in range(10)]

    def parse_receive() -> None:
        for raw in decode_body("ReceiveMessage", 200, receive_json)["Messages"]:
            decode_binary(raw)
            parse_message(raw)

    loads_us = per_call(lambda: decode_body("ReceiveMessage", 200, receive_json), 5000)
    return {
        "sign: CachedKeySigV4": per_call(lambda: cached.sign("AmazonSQS.ReceiveMessage", body, frozen)),
        "sign: botocore SigV4Auth (BotocoreSigV4)": per_call(
            lambda: via_botocore.sign("AmazonSQS.ReceiveMessage", body, frozen)
        ),
        "credentials: AioRefreshableCredentials.get_frozen_credentials (not due)": frozen_us,
        "receive: request body": per_call(
            lambda: lean.receive_body(max_messages=10, wait_time_s=20, visibility_timeout_s=60)
        ),
        "receive: decode_body (orjson) of 10 messages (5.4 kB)": loads_us,
        "receive: base64 + parse_message x10": per_call(parse_receive, 5000) - loads_us,
        "delete: request body (encode_body, orjson)": per_call(
            lambda: encode_body("DeleteMessageBatch", {"QueueUrl": QUEUE_URL, "Entries": entries})
        ),
        "delete: decode_body + batch_result": per_call(
            lambda: batch_result(decode_body("DeleteMessageBatch", 200, delete_json))
        ),
    }


def table(summary: list[dict[str, Any]]) -> str:
    by = {(s["variant"], s["op"]): s for s in summary}
    lines = [
        "| Variant | "
        + " | ".join(f"{op} µs/call (min / median)" for op in OPS)
        + " | per message (recv+del)/10 |",
        "|---|" + "---:|" * (len(OPS) + 1),
    ]
    for variant in dict.fromkeys(s["variant"] for s in summary):
        cells = [
            f"{by[variant, op]['cpu_us_per_call_min']:.0f} / {by[variant, op]['cpu_us_per_call_median']:.0f}"
            for op in OPS
        ]
        per_message = sum(by[variant, op]["cpu_us_per_call_min"] for op in OPS) / 10
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {per_message:.1f} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = microbench.base_parser(__doc__, prog="python -m benchmarks.micro.sqs_client_cost")
    parser.add_argument("--calls", type=int, default=3000, help="measured calls per variant and op")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent tasks issuing calls")
    microbench.add_round_arguments(parser, VARIANTS, time_cap_s=20.0)
    parser.add_argument("--profile", action="store_true", help="cProfile LeanSQS instead of the comparison")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the in-process step timings")
    parser.add_argument(
        "--spy-summary", type=Path, help="bucket a py-spy raw profile of this script and exit"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "sqs_client_cost.json")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if microbench.run_side_mode(args, serve, spy_summary):
        return

    # Dummy credentials for this process only; the endpoint is always the loopback stub.
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - a dummy; the stub checks nothing
        AWS_DEFAULT_REGION="us-east-1",
    )
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"):
        os.environ.pop(var, None)

    with microbench.server_process("benchmarks.micro.sqs_client_cost", "stub server") as endpoint:
        if args.profile:
            profile(args, endpoint)
            return
        summary = uvloop.run(run_all(args, endpoint))
    steps = {} if args.no_breakdown else uvloop.run(breakdown())
    print(table(summary))
    if steps:
        print("\n| LeanSQS step (in-process, no I/O) | µs per call |\n|---|---:|")
        for step, us in steps.items():
            print(f"| {step} | {us:.1f} |")
    import aiobotocore
    import botocore

    env = microbench.environment(aiobotocore=aiobotocore.__version__, botocore=botocore.__version__)
    microbench.write_result(args.output, args, env, results=summary, lean_steps_us=steps)


# py-spy frames -> where LeanSQS's CPU goes; the first rule matching from the leaf upward wins.
SPY_BUCKETS = (
    ("signing (CachedKeySigV4)", "CachedKeySigV4."),
    ("signing (botocore SigV4Auth)", "BotocoreSigV4."),
    ("credentials (get_frozen_credentials)", "_frozen_credentials"),
    ("base64 of Binary attributes", "decode_binary_attributes"),
    ("parse_message / batch_result", "parse_message"),
    ("parse_message / batch_result", "batch_result"),
    ("JSON decode (decode_body, orjson)", "decode_body"),
    ("request bodies (encode_body, receive_body)", "encode_body"),
    ("request bodies (encode_body, receive_body)", "receive_body"),
    ("lean transport: parse the response (http1.ResponseParser)", "ResponseParser."),
    # asqsd.clients.http1's connection and pool (shared with the worker client) before the file-wide rule
    # below: their frames name that file too, and they are transport, not parsing.
    ("lean transport: connection + pool", "Connection."),
    ("lean transport: connection + pool", "KeepAlivePool."),
    ("lean transport: connection + pool", "LeanHTTPTransport."),
    ("lean transport: parse the response (http1.ResponseParser)", "asqsd/clients/http1/parser.py"),
    ("aiohttp: read + parse the response", "data_received"),
    ("aiohttp: read + parse the response", "ClientResponse."),
    ("aiohttp: read + parse the response", "StreamReader."),
    ("aiohttp: socket write (incl. the syscall)", "_writelines"),
    ("aiohttp: build + send the request", "aiohttp/"),
    ("LeanSQS glue", "LeanSQS."),
)


def spy_summary(path: Path) -> None:
    """Bucket a ``py-spy record -f raw`` file (collapsed stacks) with SPY_BUCKETS; print a table."""
    lines = path.read_text().splitlines()
    counts = microbench.spy_counts(lines, SPY_BUCKETS, "event loop, benchmark harness, imports")
    print(microbench.spy_table("Where LeanSQS's CPU goes ({total} samples)", counts))


def profile(args: argparse.Namespace, endpoint: str) -> None:
    """cProfile LeanSQS over both ops; prints the top functions by own time and cumulative time."""

    async def run() -> None:
        async with make_client("lean", endpoint) as client:
            for op in OPS:
                await measure(operation(client, op), args.warmup, args.concurrency, args.time_cap)
            # CPU time, not wall time: the stub shares the cores, and waiting for it is not our cost.
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            for op in OPS:
                await measure(operation(client, op), args.calls, args.concurrency, args.time_cap)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(30)

    uvloop.run(run())


if __name__ == "__main__":
    main()
