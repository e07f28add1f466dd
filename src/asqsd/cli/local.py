"""``asqsd local``: the embedded SQS emulator plus the daemon, one command, no AWS account.

Starts the emulator on 127.0.0.1 (port 9324 by default), creates the queue and a dead-letter
queue, prints the endpoint and ``asqsd send`` commands that work as pasted, and runs the daemon
against it with a short long poll (so Ctrl+C stops at once), one ``settled`` line per message and
a ``queue-summary`` line every few seconds while the queue changes.
With ``--demo`` a small built-in worker is started and fed sample messages, so a newcomer sees a
delivery, a retry, a dead-lettered message and a job acknowledged asynchronously within seconds;
the demo then stops by itself.

Nothing local reaches AWS: the process signs with fixed local credentials (the shell's AWS keys,
profile and instance role are never read), and the settings that would create CloudWatch or
DynamoDB clients are refused as flags and turned off, with a warning, when they come from the
environment or a config file (:func:`local_settings`, docs/daemon.md, "Local mode").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from asqsd.cli.demo import DemoWorker, run_demo
from asqsd.cli.local_defaults import (
    DEFAULT_PORT,
    DEFAULT_QUEUE,
    LOCAL_ACCESS_KEY,
    LOCAL_REGION,
    LOCAL_SECRET_KEY,
    local_queue_url,
)
from asqsd.cli.local_summary import queue_summaries
from asqsd.config import Settings
from asqsd.emulator import Emulator
from asqsd.emulator.queue_spec import QueueSpec, create_queues, dead_letter_name
from asqsd.logs import get_logger
from asqsd.observe.probes import tcp_check
from asqsd.periodic.cron_yaml import CronTask, find_cron_file, load_cron_file

# Settings asqsd local decides itself: given as a flag they are refused (with this reason).
REFUSED_FLAGS: Mapping[str, str] = {
    "queue_url": "asqsd local creates its queue in the embedded emulator; name it with --queue NAME",
    "endpoint_url": "asqsd local's SQS endpoint is its embedded emulator; move it with --port PORT",
    "region": f"asqsd local talks only to its embedded emulator (region {LOCAL_REGION}), never to AWS",
    "dedup": "dedup needs DynamoDB, which asqsd local does not emulate (asqsd run has it)",
    "dedup_table": "dedup needs DynamoDB, which asqsd local does not emulate (asqsd run has it)",
    "cloudwatch_metrics": "asqsd local never publishes to CloudWatch (emf_file writes the same figures)",
    "health_metric": "asqsd local never publishes to CloudWatch",
    "registry_table": "asqsd local runs cron.yaml without leader election, so without a registry table",
}
# With --demo the built-in worker is the worker: flags that name another are refused.
DEMO_REFUSED_FLAGS: Mapping[str, str] = dict.fromkeys(
    ("http_url", "http_port", "http_path"),
    "--demo delivers to its built-in worker; drop --demo to use your own",
)
# Environment variables through which the shell's AWS identity could be used.
_AWS_IDENTITY_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
# Local mode's long poll: short, so a stop never waits for a parked receive.
LOCAL_WAIT_TIME_S = 1
# asqsd local points S3 (resolve_s3_pointers) at the emulator's S3 through this variable.
S3_ENDPOINT_VAR = "AWS_ENDPOINT_URL_S3"


@dataclass(slots=True, frozen=True)
class LocalOptions:
    """Options of ``asqsd local`` that are not daemon settings."""

    port: int = DEFAULT_PORT
    queue: str = DEFAULT_QUEUE
    max_receive_count: int = 3
    demo: bool = False
    demo_timeout_s: float = 60.0


def refused_flags(sources: Mapping[str, str], values: Mapping[str, Any], demo: bool = False) -> list[str]:
    """One problem per flag asqsd local cannot honour (``--no-dedup`` and the like are fine)."""
    refused = {**REFUSED_FLAGS, **(DEMO_REFUSED_FLAGS if demo else {})}
    return [
        f"--{name.replace('_', '-')}: {reason}"
        for name, reason in refused.items()
        if sources.get(name, "").startswith("flag") and values.get(name) not in (None, False)
    ]


def isolate_from_aws(env: MutableMapping[str, str]) -> list[str]:
    """Sign with fixed local credentials and read no AWS profile, config file or instance role.

    The emulator ignores signatures, but a signer needs some key: with the shell's own, a request
    that reached AWS by mistake would be signed by a real identity. Returns the names of the
    variables set before (for the log line; never their values).
    """
    replaced = [name for name in _AWS_IDENTITY_VARS if env.get(name)]
    for name in _AWS_IDENTITY_VARS:
        env.pop(name, None)
    env["AWS_ACCESS_KEY_ID"] = LOCAL_ACCESS_KEY
    env["AWS_SECRET_ACCESS_KEY"] = LOCAL_SECRET_KEY
    env["AWS_CONFIG_FILE"] = os.devnull  # no profile: no endpoint, region or credential process
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return replaced


def local_queues(options: LocalOptions) -> tuple[QueueSpec, QueueSpec]:
    """The work queue, with a redrive policy to ``<queue>-dlq``, and that dead-letter queue."""
    dlq = QueueSpec(dead_letter_name(options.queue))
    return QueueSpec(options.queue, {}, dlq.name, options.max_receive_count), dlq


def send_commands(port: int, queue: str) -> list[str]:
    """``asqsd send`` lines for the banner: they work as pasted (no AWS CLI, no credentials)."""
    target = [] if queue_is_default(port, queue) else ["--queue-url", local_queue_url(port, queue)]
    fifo = ["--group-id", "demo"] if queue.endswith(".fifo") else []
    body, piped = shlex.quote('{"hello": "world"}'), shlex.quote('{"from": "stdin"}')
    return [
        shlex.join(["asqsd", "send", *target, *fifo]) + f" {body}",
        shlex.join(["asqsd", "send", *target, *fifo, "--attr", "kind=load", "--count", "20"]) + f" {body}",
        f"echo {piped} | " + shlex.join(["asqsd", "send", *target, *fifo, "-"]),
    ]


def queue_is_default(port: int, queue: str) -> bool:
    """Whether ``asqsd send`` without --queue-url reaches this queue."""
    return port == DEFAULT_PORT and queue == DEFAULT_QUEUE


def print_banner(out: TextIO, endpoint: str, queue_url: str, dlq_url: str, worker_url: str) -> None:
    """What a developer needs to paste: the endpoint, the queues and send commands."""
    port = int(endpoint.rsplit(":", 1)[1])
    queue = queue_url.rsplit("/", 1)[1]
    sends = "\n  ".join(send_commands(port, queue))
    aws = (
        f"AWS_ACCESS_KEY_ID={LOCAL_ACCESS_KEY} AWS_SECRET_ACCESS_KEY={LOCAL_SECRET_KEY} "
        f"aws --endpoint-url {endpoint} --region {LOCAL_REGION} sqs send-message \\\n"
        f"      --queue-url {queue_url} --message-body {shlex.quote('{}')}"
    )
    out.write(
        f"""
asqsd local
  SQS endpoint : {endpoint}   (any AWS SDK or the AWS CLI, any credentials)
  queue        : {queue_url}
  dead letters : {dlq_url}
  worker       : {worker_url}

Send messages:
  {sends}

With the AWS CLI:
  {aws}

Ctrl+C stops (a second Ctrl+C forces).

"""
    )
    out.flush()


def local_settings(base: Mapping[str, Any], queue_url: str, endpoint: str, demo_port: int | None) -> Settings:
    """Daemon settings for the local run: the emulator's queue and endpoint, plus user overrides.

    Settings that would create a CloudWatch or DynamoDB client are turned off, one warning each
    (as flags they were refused before: :func:`refused_flags`).
    """
    log = get_logger("local")
    values: dict[str, Any] = {k: v for k, v in base.items() if v is not None}
    replaced = [name for name in ("queue_url", "endpoint_url", "region") if name in values]
    if replaced:
        log.warning("settings-ignored", settings=replaced, reason="asqsd local uses its embedded emulator")
    values.update(queue_url=queue_url, endpoint_url=endpoint, region=LOCAL_REGION)
    if values.pop("cloudwatch_metrics", False):
        # The emulator has no CloudWatch: the calls would go to real AWS with the user's credentials.
        log.warning("cloudwatch-metrics-disabled", reason="asqsd local never publishes to CloudWatch")
    if values.get("environment_name") and values.get("health_metric", True):
        log.warning("health-metric-disabled", reason="asqsd local never publishes to CloudWatch")
    if values.pop("dedup", False):
        log.warning("dedup-disabled", reason=REFUSED_FLAGS["dedup"])
    values["health_metric"] = False
    values.setdefault("log_settled", True)  # a development loop shows each message's fate
    values.setdefault("wait_time_s", LOCAL_WAIT_TIME_S)
    values.setdefault("resolve_s3_pointers", True)  # the emulator's S3 holds offloaded payloads
    if demo_port is not None:
        values.update(
            http_url="http://127.0.0.1",
            http_port=demo_port,
            http_path="/",
            error_visibility_timeout=values.get("error_visibility_timeout", 1),
            http_connections=values.get("http_connections", 4),
            # The 'slow' sample acknowledges asynchronously; the ack URL is on the health server.
            async_ack=values.get("async_ack", True),
            health_server=values.get("health_server", True),
            health_port=values.get("health_port", 0),
        )
    return Settings(**values)


async def warn_if_no_worker(settings: Settings) -> bool:
    """One ``worker-not-answering`` warning, naming the port and how to change it, when nothing
    accepts a connection at the worker's address. Whether the worker answered."""
    if await tcp_check(settings.worker_url, timeout_s=1.0):
        return True
    get_logger("local").warning(
        "worker-not-answering",
        worker=settings.worker_url + settings.http_path,
        port=settings.http_port,
        hint="start your worker there, or point asqsd at it with --http-port PORT "
        "(--http-url for another host); messages wait in the queue until it answers",
    )
    return False


def load_local_tasks(settings: Settings, warnings: list[str]) -> tuple[Path | None, list[CronTask]]:
    """The cron.yaml at ``cron_file``, else ``./cron.yaml``, and its tasks (none without one).

    Raises :class:`~asqsd.errors.ConfigError` for a file that is invalid, or named and missing.
    """
    explicit = Path(settings.cron_file) if settings.cron_file else None
    path = find_cron_file(explicit, [Path.cwd()])
    return (path, load_cron_file(path, warnings)) if path is not None else (None, [])


@contextlib.asynccontextmanager
async def periodic_tasks(tasks: Sequence[CronTask], queue_url: str, endpoint: str) -> AsyncIterator[None]:
    """While inside: cron.yaml's tasks sent to the local queue on schedule (no election needed:
    this process is the queue's only consumer, docs/daemon.md, "Local mode")."""
    if not tasks:
        yield
        return
    from asqsd.cli.send import Route, open_client
    from asqsd.periodic.solo import SoloScheduler

    sqs = open_client(Route(queue_url, endpoint, LOCAL_REGION))
    scheduler = SoloScheduler(tasks, sqs)
    running = asyncio.create_task(scheduler.run())
    try:
        yield
    finally:
        scheduler.stop()
        await asyncio.wait([running], timeout=1.0)
        running.cancel()
        await sqs.aclose()


async def run_local(
    base: Mapping[str, Any], options: LocalOptions, out: TextIO = sys.stdout, tasks: Sequence[CronTask] = ()
) -> int:
    """Emulator + daemon (+ demo worker, + cron.yaml's tasks) until a signal, or until the demo has
    shown everything."""
    from asqsd.cli.serve import serve

    log = get_logger("local")
    async with Emulator(host="127.0.0.1", port=options.port) as emulator, _local_s3(emulator.endpoint_url):
        urls = create_queues(emulator, local_queues(options))
        queue_url, dlq_url = urls[options.queue], urls[dead_letter_name(options.queue)]
        demo_worker = DemoWorker(out) if options.demo else None
        demo_port = await demo_worker.start() if demo_worker else None
        try:
            settings = local_settings(base, queue_url, emulator.endpoint_url, demo_port)
            print_banner(
                out, emulator.endpoint_url, queue_url, dlq_url, settings.worker_url + settings.http_path
            )
            log.info("local-ready", endpoint=emulator.endpoint_url, queue=queue_url)
            if demo_worker is None:
                await warn_if_no_worker(settings)
                async with (
                    periodic_tasks(tasks, queue_url, emulator.endpoint_url),
                    queue_summaries(emulator, options.queue),
                ):
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


def main_local(
    base: Mapping[str, Any], options: LocalOptions, loop: str, tasks: Sequence[CronTask] = ()
) -> int:
    """Entry used by the CLI: local credentials only, then run on the chosen loop."""
    from asqsd._compat import run

    replaced = isolate_from_aws(os.environ)
    get_logger("local").info(
        "local-credentials",
        detail="signing with fixed local credentials; no AWS credentials, profile or role is used",
        ignored=replaced,
    )
    try:
        return run(run_local(base, options, tasks=tasks), loop)
    except OSError as exc:
        print(f"asqsd local: cannot listen on 127.0.0.1:{options.port}: {exc.strerror}", file=sys.stderr)
        return 3
    except asyncio.CancelledError:
        return 1
    except KeyboardInterrupt:  # Ctrl+C while starting, before the daemon handles signals itself
        print("asqsd local: interrupted while starting", file=sys.stderr)
        return 128 + signal.SIGINT
