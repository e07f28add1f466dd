"""``asqsd send``: put messages on a queue from the shell, with no AWS CLI or SDK to install.

The body comes from an argument, ``--file PATH`` or stdin (``-``); ``--attr`` adds message
attributes, ``--group-id`` / ``--dedup-id`` serve FIFO queues, ``--delay`` delays delivery and
``--count N`` sends N copies (SendMessageBatch, 10 per call) for quick load. The queue defaults
to the one ``asqsd local`` creates. Calls go through the daemon's own lean SQS client, to the
endpoint ``asqsd config`` would show for the queue URL; a loopback endpoint gets fixed local
credentials unless the environment names some, so the shell's AWS profile is never needed (or
used) to talk to the emulator. It prints one message id per line; any failure is one line on
stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from asqsd.addresses import is_loopback_host, url_address
from asqsd.cli.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from asqsd.cli.local_defaults import LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY, local_queue_url
from asqsd.errors import ConfigError, SQSError

if TYPE_CHECKING:
    from asqsd.clients.sqs.lean_impl import LeanSQS

MAX_COUNT = 10_000  # --count: quick load, not a benchmark (python -m benchmarks is that)
BATCH_SIZE = 10  # SendMessageBatch's limit
_TYPES = ("String", "Number", "Binary")


class UsageError(ValueError):
    """A bad argument; the message names it."""


@dataclass(frozen=True, slots=True)
class SendRequest:
    """What to send: one body ``count`` times, with the same attributes and FIFO ids."""

    body: str
    attributes: Mapping[str, Mapping[str, str]]
    group_id: str | None = None
    dedup_id: str | None = None
    delay_s: int | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class StaticCredentials:
    """Fixed credentials in the shape the lean client asks for (frozen botocore credentials)."""

    access_key: str
    secret_key: str
    token: str | None = None

    async def get_frozen_credentials(self) -> StaticCredentials:
        """Themselves: they never change."""
        return self


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``asqsd send``."""
    parser.add_argument("body", nargs="?", default=None, help="message body; - reads it from stdin")
    parser.add_argument("--file", type=Path, default=None, help="read the body from this file")
    parser.add_argument(
        "--queue-url", default=None, help=f"queue to send to (default: asqsd local's, {local_queue_url()})"
    )
    parser.add_argument("--endpoint-url", default=None, help="SQS endpoint (default: as asqsd config shows)")
    parser.add_argument("--region", default=None, help="AWS region (default: as asqsd config shows)")
    parser.add_argument(
        "--attr",
        action="append",
        default=[],
        metavar="NAME[:TYPE]=VALUE",
        help="message attribute (repeatable); TYPE String (default), Number or Binary (base64 value)",
    )
    parser.add_argument("--group-id", default=None, help="MessageGroupId (required by FIFO queues)")
    parser.add_argument(
        "--dedup-id",
        default=None,
        help="MessageDeduplicationId (FIFO; default a random one per message; '-<n>' added with --count)",
    )
    parser.add_argument("--delay", type=int, default=None, help="DelaySeconds, 0-900 (standard queues)")
    parser.add_argument(
        "--count", type=int, default=1, help=f"send the message this many times (1-{MAX_COUNT}, default 1)"
    )


def parse_attribute(spec: str) -> tuple[str, dict[str, str]]:
    """``name=value``, ``name:Number=42`` or ``name:Binary=<base64>`` as a SendMessage attribute."""
    key, sep, value = spec.partition("=")
    name, _, data_type = key.partition(":")
    data_type = data_type or "String"
    if not sep or not name:
        raise UsageError(f"--attr {spec!r}: expected NAME=VALUE or NAME:TYPE=VALUE")
    if data_type.split(".", 1)[0] not in _TYPES:
        raise UsageError(f"--attr {spec!r}: type {data_type!r} is not one of {', '.join(_TYPES)}")
    if not data_type.startswith("Binary"):
        return name, {"DataType": data_type, "StringValue": value}
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise UsageError(f"--attr {spec!r}: a Binary value is written in base64") from None
    return name, {"DataType": data_type, "BinaryValue": value}


def read_body(body: str | None, file: Path | None, stdin: TextIO) -> str:
    """The body from exactly one of the argument, ``--file`` and stdin (``-``)."""
    if body is not None and file is not None:
        raise UsageError("give the body as an argument or with --file, not both")
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--file {file}: cannot read: {exc}") from None
    if body is None:
        raise UsageError("no message body: give it as an argument, with --file PATH, or - to read stdin")
    return stdin.read() if body == "-" else body


def send_request(args: argparse.Namespace, stdin: TextIO) -> SendRequest:
    """Check the arguments and read the body; UsageError names the first bad one."""
    if not 1 <= args.count <= MAX_COUNT:
        raise UsageError(f"--count {args.count}: must be 1 to {MAX_COUNT}")
    if args.delay is not None and not 0 <= args.delay <= 900:
        raise UsageError(f"--delay {args.delay}: SQS allows 0 to 900 seconds")
    attributes = dict(parse_attribute(spec) for spec in args.attr)
    body = read_body(args.body, args.file, stdin)
    return SendRequest(body, attributes, args.group_id, args.dedup_id, args.delay, args.count)


def entries(request: SendRequest, fifo: bool) -> Iterator[dict[str, Any]]:
    """One SendMessage parameter set (without QueueUrl) per message to send."""
    for index in range(request.count):
        entry: dict[str, Any] = {"MessageBody": request.body}
        if request.attributes:
            entry["MessageAttributes"] = request.attributes
        if request.delay_s is not None:
            entry["DelaySeconds"] = request.delay_s
        if request.group_id is not None:
            entry["MessageGroupId"] = request.group_id
        if request.dedup_id is not None:
            entry["MessageDeduplicationId"] = (
                request.dedup_id if request.count == 1 else f"{request.dedup_id}-{index + 1}"
            )
        elif fifo:
            # Copies of one body would otherwise be one message to a content-deduplicating queue.
            entry["MessageDeduplicationId"] = uuid.uuid4().hex
        yield entry


def batches(items: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Groups of at most :data:`BATCH_SIZE`."""
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


async def send_all(sqs: LeanSQS, request: SendRequest, out: TextIO, err: TextIO) -> int:
    """Send and print each message id; a failed entry is one stderr line. The exit code."""
    fifo = sqs.queue_url.endswith(".fifo")
    if request.count == 1:
        (entry,) = entries(request, fifo)
        response = await sqs.call("SendMessage", {"QueueUrl": sqs.queue_url, **entry})
        out.write(f"{response.get('MessageId', '')}\n")
        return EXIT_OK
    failed = 0
    for batch in batches(entries(request, fifo)):
        numbered = [{"Id": str(i), **entry} for i, entry in enumerate(batch)]
        response = await sqs.call("SendMessageBatch", {"QueueUrl": sqs.queue_url, "Entries": numbered})
        for ok in response.get("Successful") or ():
            out.write(f"{ok.get('MessageId', '')}\n")
        for bad in response.get("Failed") or ():
            failed += 1
            err.write(f"asqsd send: not sent: {bad.get('Code', '?')}: {bad.get('Message', '')}\n")
    return EXIT_FAILURE if failed else EXIT_OK


@dataclass(frozen=True, slots=True)
class Route:
    """Where the calls go: the queue, the endpoint and the region that signs them."""

    queue_url: str
    endpoint_url: str
    region: str


def route(queue_url: str, endpoint_url: str | None, region: str | None) -> Route:
    """The endpoint and region ``asqsd config`` would show for ``queue_url`` (no network).

    Raises :class:`ConfigError` for a URL or region that cannot be used.
    """
    import botocore.session

    from asqsd.clients.sqs.endpoint import regional_endpoint, sqs_target
    from asqsd.config import load_settings

    # The daemon's own checks of these three settings, with its messages (the environment's
    # ASQSD_* settings are for the daemon, not for this command).
    flags = {"queue_url": queue_url, "endpoint_url": endpoint_url, "region": region}
    settings = load_settings(flags, env={}).settings
    session = botocore.session.get_session()
    labels = {"region": "flag --region", "endpoint_url": "flag --endpoint-url"}
    target = sqs_target(settings, session, os.environ, labels)
    endpoint = target.endpoint_url or regional_endpoint(session, target.region)
    return Route(queue_url, endpoint, target.region)


def open_client(where: Route) -> LeanSQS:
    """The lean SQS client for ``where`` (the caller closes it)."""
    from asqsd.clients.sqs.aws_config import AwsConfigSession
    from asqsd.clients.sqs.credential_chain import BotocoreChain
    from asqsd.clients.sqs.lean_impl import LeanSQS

    credentials: Any
    if is_loopback_host(url_address(where.endpoint_url).host):
        fixed = local_credentials(os.environ)

        async def credentials() -> StaticCredentials:
            return fixed
    else:
        # The daemon's chain (asqsd run): environment keys without botocore's session, else
        # botocore's chain looked up off the event loop.
        credentials = BotocoreChain(AwsConfigSession()).get_credentials

    return LeanSQS(
        None,
        where.queue_url,
        endpoint_url=where.endpoint_url,
        region=where.region,
        credentials=credentials,
        transport="lean",
        connections=1,
    )


def local_credentials(env: Mapping[str, str]) -> StaticCredentials:
    """For a loopback endpoint: the environment's keys if it names both, else fixed local ones
    (no profile, no instance metadata: nothing slow, nothing real needed)."""
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return StaticCredentials(key, secret, env.get("AWS_SESSION_TOKEN") or None)
    return StaticCredentials(LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY)


async def run_send(where: Route, request: SendRequest, out: TextIO, err: TextIO) -> int:
    """Open the client, send, close; SQS errors become one line naming the cause."""
    sqs = open_client(where)
    try:
        return await send_all(sqs, request, out, err)
    except SQSError as exc:
        err.write(f"asqsd send: {exc}{_hint(sqs.url, exc)}\n")
        return EXIT_FAILURE
    finally:
        await sqs.aclose()


def _hint(endpoint: str, exc: SQSError) -> str:
    if exc.retryable and is_loopback_host(url_address(endpoint).host):
        return f" (is `asqsd local` or `asqsd emulator` listening on {endpoint}?)"
    return ""


def main_send(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Entry used by the CLI; usage and configuration problems exit 2, before any connection."""
    from asqsd._compat import run

    try:
        request = send_request(args, sys.stdin)
        where = route(args.queue_url or local_queue_url(), args.endpoint_url, args.region)
    except (UsageError, ConfigError) as exc:
        for problem in exc.problems if isinstance(exc, ConfigError) else [str(exc)]:
            err.write(f"asqsd send: {problem}\n")
        return EXIT_CONFIG
    return run(run_send(where, request, out, err), "auto")
