"""Client CPU per POST to the worker: aiohttp ``WorkerClient`` vs ``LeanWorkerClient`` (the default).

The null worker (aiohttp on uvloop, reads the body, answers ``200 ok``) runs in a *separate* process
(``--serve``), so ``time.process_time()`` read here is the client's CPU alone. Both clients post the
same stock request (a ~210-byte JSON body and the headers ``build_request`` makes for a message with
the four system attributes and two custom attributes) from 50 concurrent tasks over 50 keep-alive
connections, on uvloop, as the daemon does at saturation.

    .venv/bin/python -m benchmarks.micro.http_client_cost    # table + benchmarks/results/*.json
    .venv/bin/py-spy record -r 500 --gil -f raw -o /tmp/http.txt -- \\
        .venv/bin/python -m benchmarks.micro.http_client_cost --variants lean --requests 40000 --rounds 1 \\
        --no-breakdown --output /tmp/http.json
    .venv/bin/python -m benchmarks.micro.http_client_cost --spy-summary /tmp/http.txt

Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import uvloop
from aiohttp import web

from asqsd.clients.http1.parser import ResponseParser
from asqsd.clients.worker.aiohttp_impl import WorkerClient, create_session
from asqsd.clients.worker.base import DeliveryResult, Request
from asqsd.clients.worker.lean_impl import LeanWorkerClient
from asqsd.message import Message, MessageAttribute
from asqsd.pipeline.request import StaticHeaders, build_request
from benchmarks.micro import microbench

RESULTS = Path(__file__).resolve().parents[1] / "results"  # benchmarks/results/
VARIANTS = ("aiohttp", "lean")
USER_AGENT = "aws-sqsd/3.0.4"


class Poster(Protocol):
    async def post(self, request: Request) -> DeliveryResult: ...


# --- the null worker (child process) --------------------------------------------------------------


def serve(port: int) -> None:
    """Read each body and answer 200 ``ok``: the cheapest honest worker."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop())


# --- the request and the clients -------------------------------------------------------------------


def stock_request() -> Request:
    """What the dispatcher builds for a typical message (contract §1.3 headers, ~210-byte body)."""
    body = json.dumps({"job": "resize", "id": 42, "pad": "x" * 150, "note": "héllo ✓"})
    message = Message(
        message_id="5fea7756-0ea4-451a-a703-a558b933e274",
        receipt_handle="r",
        body=body,
        attributes={
            "ApproximateReceiveCount": "1",
            "ApproximateFirstReceiveTimestamp": "1700000000123",
            "SentTimestamp": "1700000000000",
            "SenderId": "AIDAIT2UOQQY3AUEKVGXU",
        },
        message_attributes={
            "trace": MessageAttribute("String", "trace-42"),
            "tenant": MessageAttribute("Number", "7"),
        },
    )
    return build_request(message, StaticHeaders("application/json", USER_AGENT, "bench", "/"))


@asynccontextmanager
async def make_client(variant: str, base_url: str, connections: int) -> AsyncIterator[Poster]:
    # The daemon's settings: connect_timeout 5 s, inactivity_timeout 299 s.
    if variant == "aiohttp":
        async with create_session(connections, USER_AGENT) as session:
            yield WorkerClient(session, base_url, 5, 299)
    else:
        async with LeanWorkerClient(base_url, 5, 299, connections) as client:
            yield client


async def measure(
    client: Poster, request: Request, posts: int, concurrency: int, cap_s: float
) -> dict[str, float]:
    """``posts`` POSTs from ``concurrency`` tasks (or until ``cap_s``); CPU per POST in µs."""
    failed = 0

    async def post() -> None:
        nonlocal failed
        answer = await client.post(request)
        if answer.status != 200:
            failed += 1

    result = await microbench.measure(post, posts, concurrency, cap_s, unit="post")
    if failed:
        raise RuntimeError(f"{failed} of {result['posts']:.0f} posts did not get a 200")
    return result


async def run_all(args: argparse.Namespace, base_url: str) -> list[dict[str, Any]]:
    request = stock_request()
    runs: dict[str, list[dict[str, float]]] = {}
    for variant in microbench.interleaved(args.rounds, args.variants):
        async with make_client(variant, base_url, args.concurrency) as client:
            await measure(client, request, args.warmup, args.concurrency, args.time_cap)
            result = await measure(client, request, args.requests, args.concurrency, args.time_cap)
        runs.setdefault(variant, []).append(result)
        print(f"  {variant:8} {result['cpu_us_per_post']:6.1f} µs/POST", file=sys.stderr)
    medians = ("user_us_per_post", "system_us_per_post", "posts_per_s")
    return [
        {"variant": variant, **microbench.cpu_summary(results, "post", medians), "runs": results}
        for variant, results in runs.items()
    ]


def breakdown(n: int = 20_000, repeats: int = 5) -> dict[str, float]:
    """CPU µs of the lean client's pure steps, timed in-process without I/O (best of ``repeats``)."""
    client = LeanWorkerClient("http://127.0.0.1:9", 5, 299, 1)
    request = stock_request()
    # What the null worker (aiohttp) answers.
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n"
        b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\nServer: Python/3.11 aiohttp/3.14.5\r\n\r\nok"
    )
    parser = ResponseParser()

    def parse() -> None:
        parser.reset()
        parser.feed(response)

    steps = {
        "serialise the request (one bytes buffer)": lambda: client.serialize(request),
        "parse a 200 response (reset, then feed: llhttp and the callbacks)": parse,
    }
    out = {}
    for name, step in steps.items():
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            for _ in range(n):
                step()
            best = min(best, time.process_time() - start)
        out[name] = best / n * 1e6
    return out


def table(summary: list[dict[str, Any]]) -> str:
    lines = [
        "| Client | CPU µs/POST min | median | user µs (median) | system µs (median) | POSTs/s (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(
            f"| {s['variant']} | {s['cpu_us_per_post_min']:.1f} | {s['cpu_us_per_post_median']:.1f} | "
            f"{s['user_us_per_post_median']:.1f} | {s['system_us_per_post_median']:.1f} | "
            f"{s['posts_per_s_median']:.0f} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = microbench.base_parser(__doc__, prog="python -m benchmarks.micro.http_client_cost")
    parser.add_argument("--requests", type=int, default=20_000, help="measured POSTs per variant and round")
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent tasks = pool connections")
    microbench.add_round_arguments(parser, VARIANTS, time_cap_s=30.0)
    parser.add_argument(
        "--spy-summary", type=Path, help="bucket a py-spy raw profile of this script and exit"
    )
    parser.add_argument("--no-breakdown", action="store_true", help="skip the in-process step timings")
    parser.add_argument("--output", type=Path, default=RESULTS / "http_client_cost.json")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if microbench.run_side_mode(args, serve, spy_summary):
        return
    with microbench.server_process("benchmarks.micro.http_client_cost", "null worker") as base_url:
        summary = uvloop.run(run_all(args, base_url))
    steps = {} if args.no_breakdown else breakdown()
    print(table(summary))
    print("\n| LeanWorkerClient step (in-process, no I/O) | µs per POST |\n|---|---:|")
    for step, us in steps.items():
        print(f"| {step} | {us:.2f} |")
    request_bytes = len(LeanWorkerClient("http://127.0.0.1:80", 5, 299, 1).serialize(stock_request()))
    microbench.write_result(
        args.output,
        args,
        microbench.environment(),
        request_bytes=request_bytes,
        results=summary,
        lean_steps_us=steps,
    )


# py-spy frames -> where the lean client's CPU goes; the first rule matching from the leaf up wins.
def write_frame() -> str:
    """The py-spy frame name of the ``transport.write`` line (the send syscall runs under it)."""
    import asqsd.clients.http1.connection

    source = Path(asqsd.clients.http1.connection.__file__).read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if text.strip() == "transport.write(data)")
    return f"Connection.send (asqsd/clients/http1/connection.py:{line})"


SPY_BUCKETS = (
    ("socket send: transport.write, incl. the send syscall", "<write>"),
    ("response parsing (ResponseParser)", "ResponseParser."),
    ("request serialisation (serialize)", "LeanWorkerClient.serialize"),
    ("request serialisation (serialize)", "_request_line"),
    ("DeliveryResult construction (frozen dataclass __init__)", "__create_fn__"),
    ("connection protocol: data_received, send, timer", "Connection."),
    ("client: post / _deliver / _exchange / pool / slots", "LeanWorkerClient."),
    ("benchmark harness (tasks posting in a loop)", "http_client_cost"),
    ("benchmark harness (tasks posting in a loop)", "benchmarks/micro/microbench.py"),  # the posting loop
)


def spy_summary(path: Path) -> None:
    """Bucket a ``py-spy record -f raw`` file (collapsed stacks) with SPY_BUCKETS; print a table.

    Start-up (imports, module bodies) is left out: it is not per-POST cost.
    """
    counts = microbench.spy_counts(
        path.read_text().splitlines(),
        SPY_BUCKETS,
        "event loop: uvloop run_forever, task steps, future callbacks",
        skip_startup=True,
        aliases={write_frame(): "<write>"},
    )
    print(
        microbench.spy_table("Where the lean client's CPU goes ({total} samples, start-up excluded)", counts)
    )


if __name__ == "__main__":
    main()
