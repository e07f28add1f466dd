"""``asqsd local``: the embedded SQS emulator plus the daemon, one command, no AWS account.

Starts the emulator on 127.0.0.1 (port 9324 by default), creates the queue and a dead-letter
queue, prints the endpoint and a ready-to-paste send example, and runs the daemon against it.
With ``--demo`` a small built-in worker is started and fed sample messages, so a newcomer sees a
delivery, a retry and a dead-lettered message within seconds; the demo then stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from asqsd.cli.demo import DemoWorker, run_demo
from asqsd.config import Settings
from asqsd.emulator import Emulator
from asqsd.logs import get_logger

DEFAULT_PORT = 9324
DEFAULT_QUEUE = "default"
LOCAL_REGION = "us-east-1"
S3_ENDPOINT_VAR = "AWS_ENDPOINT_URL_S3"


@dataclass(slots=True, frozen=True)
class LocalOptions:
    """Options of ``asqsd local`` that are not daemon settings."""

    port: int = DEFAULT_PORT
    queue: str = DEFAULT_QUEUE
    max_receive_count: int = 3
    demo: bool = False
    demo_timeout_s: float = 60.0


def ensure_local_credentials(env: os._Environ[str] | dict[str, str]) -> None:
    """The emulator ignores signatures, but botocore refuses to sign without credentials."""
    if not env.get("AWS_ACCESS_KEY_ID"):
        env["AWS_ACCESS_KEY_ID"] = "local"
        env["AWS_SECRET_ACCESS_KEY"] = "local"  # noqa: S105 - a placeholder for a local emulator


def create_queues(emulator: Emulator, options: LocalOptions) -> tuple[str, str]:
    """The work queue with a redrive policy to ``<queue>-dlq``; returns both URLs."""
    fifo = options.queue.endswith(".fifo")
    dlq_name = options.queue.removesuffix(".fifo") + ("-dlq.fifo" if fifo else "-dlq")
    extra = {"FifoQueue": "true"} if fifo else {}
    dlq_url = emulator.create_queue(dlq_name, extra)
    arn = f"arn:aws:sqs:{LOCAL_REGION}:{emulator.store.account_id}:{dlq_name}"
    redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(options.max_receive_count)})
    queue_url = emulator.create_queue(options.queue, {**extra, "RedrivePolicy": redrive})
    return queue_url, dlq_url


def print_banner(out: TextIO, endpoint: str, queue_url: str, dlq_url: str, worker_url: str) -> None:
    """What a developer needs to paste: the endpoint, the queues and a send example."""
    body = json.dumps({"hello": "world"})
    out.write(
        f"""
asqsd local
  SQS endpoint : {endpoint}   (any AWS SDK or the AWS CLI, any credentials)
  queue        : {queue_url}
  dead letters : {dlq_url}
  worker       : {worker_url}

Send a message:
  aws --endpoint-url {endpoint} --region {LOCAL_REGION} sqs send-message \\
      --queue-url {queue_url} --message-body '{body}'

  python -c "import boto3; boto3.client('sqs', endpoint_url='{endpoint}', region_name='{LOCAL_REGION}',
      aws_access_key_id='x', aws_secret_access_key='x').send_message(QueueUrl='{queue_url}',
      MessageBody='hello from boto3')"

Ctrl+C stops (a second Ctrl+C forces).

"""
    )
    out.flush()


def local_settings(base: Mapping[str, Any], queue_url: str, endpoint: str, demo_port: int | None) -> Settings:
    """Daemon settings for the local run: the emulator's queue and endpoint, plus user overrides."""
    values: dict[str, Any] = {k: v for k, v in base.items() if v is not None}
    values.update(queue_url=queue_url, endpoint_url=endpoint, region=LOCAL_REGION)
    if values.pop("cloudwatch_metrics", False):
        # The emulator has no CloudWatch: the calls would go to real AWS with the user's credentials.
        get_logger("local").warning(
            "cloudwatch-metrics-disabled", reason="asqsd local never publishes to CloudWatch"
        )
    values.setdefault("log_settled", True)  # a development loop shows each message's fate
    values.setdefault("resolve_s3_pointers", True)  # the emulator's S3 holds offloaded payloads
    if demo_port is not None:
        values.update(
            http_url="http://127.0.0.1",
            http_port=demo_port,
            http_path="/",
            error_visibility_timeout=values.get("error_visibility_timeout", 1),
            wait_time_s=values.get("wait_time_s", 1),
            http_connections=values.get("http_connections", 4),
        )
    return Settings(**values)


async def run_local(base: Mapping[str, Any], options: LocalOptions, out: TextIO = sys.stdout) -> int:
    """Emulator + daemon (+ demo worker) until a signal, or until the demo has shown everything."""
    from asqsd.cli.serve import serve

    log = get_logger("local")
    async with Emulator(host="127.0.0.1", port=options.port) as emulator, _local_s3(emulator.endpoint_url):
        queue_url, dlq_url = create_queues(emulator, options)
        demo_worker = DemoWorker(out) if options.demo else None
        demo_port = await demo_worker.start() if demo_worker else None
        try:
            settings = local_settings(base, queue_url, emulator.endpoint_url, demo_port)
            print_banner(
                out, emulator.endpoint_url, queue_url, dlq_url, settings.worker_url + settings.http_path
            )
            log.info("local-ready", endpoint=emulator.endpoint_url, queue=queue_url)
            if demo_worker is None:
                return await serve(settings)
            demo = run_demo(emulator, queue_url, dlq_url, demo_worker, options.demo_timeout_s, out)
            return await serve(settings, until=demo)
        finally:
            if demo_worker is not None:
                await demo_worker.stop()


@contextlib.asynccontextmanager
async def _local_s3(endpoint: str) -> AsyncIterator[None]:
    """S3 calls (resolve_s3_pointers) go to the emulator's S3 while the local run lasts."""
    previous = os.environ.get(S3_ENDPOINT_VAR)
    os.environ[S3_ENDPOINT_VAR] = endpoint
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(S3_ENDPOINT_VAR, None)
        else:
            os.environ[S3_ENDPOINT_VAR] = previous


def main_local(base: Mapping[str, Any], options: LocalOptions, loop: str) -> int:
    """Entry used by the CLI: credentials placeholder, then run on the chosen loop."""
    from asqsd._compat import run

    ensure_local_credentials(os.environ)
    try:
        return run(run_local(base, options), loop)
    except OSError as exc:
        print(f"asqsd local: cannot listen on 127.0.0.1:{options.port}: {exc.strerror}", file=sys.stderr)
        return 3
    except asyncio.CancelledError:
        return 1
