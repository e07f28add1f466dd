"""`asqsd local` as a development loop: the printed `asqsd send` commands work as pasted, and
nothing local reaches AWS or uses the shell's AWS identity.

The "AWS" here is a loopback server that refuses and counts every connection: AWS_ENDPOINT_URL
and HTTPS_PROXY point at it, so a CloudWatch or DynamoDB client (or any https call) that local
mode created would be counted there. HTTP_PROXY points at a recording proxy on loopback, so
every SQS request of the daemon passes through it with its Authorization header.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from asyncio.subprocess import PIPE
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli.test_cli import asqsd
from tests.integration.cli.test_queue_urls import clean_env
from tests.support.polling import wait_until
from tests.support.proxy import ForwardProxy
from tests.support.servers import free_loopback_port
from tests.support.worker import RecordingWorker

SHELL_KEY = "AKIAIOSFODNN7EXAMPLE"  # stands for the developer's real key
EB_CONFIG = """\
environment_name: my-env-prod
cloudwatch_metrics: true
health_metric: true
dedup: true
dedup_table: processed
no_such_key: 1
"""
CRON_YAML = """\
version: 1
cron:
  - name: "report"
    url: "/report"
    schedule: "*/5 * * * *"
"""


class LocalProcess:
    """``asqsd local`` as a child: its banner (stdout) and its JSON log lines (stderr) in files."""

    def __init__(self, args: list[str], env: dict[str, str], tmp_path: Path) -> None:
        self.out, self.log = tmp_path / "local.out", tmp_path / "local.log"
        with self.out.open("wb") as out, self.log.open("wb") as log:  # the child keeps its own copies
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "asqsd", "local", "--log-format", "json", *args],
                stdout=out,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=tmp_path,
            )

    async def banner(self) -> list[str]:
        """The banner's lines, once it is complete (the test's loop keeps running meanwhile)."""
        await wait_until(lambda: "Ctrl+C stops" in self.out.read_text(), timeout_s=20, what="the banner")
        return [line.strip() for line in self.out.read_text().splitlines()]

    def events(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.startswith("{")]

    async def stop(self, timeout_s: float = 10) -> int | None:
        """Ctrl+C, then its exit status (the test's loop keeps serving the worker meanwhile)."""
        self.proc.send_signal(signal.SIGINT)
        await wait_until(lambda: self.proc.poll() is not None, timeout_s=timeout_s, what="exit")
        return self.proc.returncode


@pytest.fixture
def local_process() -> Iterator[list[LocalProcess]]:
    """Holds the `asqsd local` children a test starts; kills any still running at the end."""
    started: list[LocalProcess] = []
    yield started
    for local in started:
        if local.proc.poll() is None:
            local.proc.kill()
            local.proc.wait(10)


def fresh_machine_env(tmp_path: Path) -> dict[str, str]:
    """A shell with no AWS configuration at all, and the venv's scripts on PATH."""
    env = {k: v for k, v in clean_env(tmp_path).items() if not k.startswith("AWS_") and "PROXY" not in k}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["HOME"] = str(tmp_path)
    return env


async def paste(line: str, tmp_path: Path) -> tuple[int | None, bytes, bytes]:
    """Run ``line`` in a shell of a fresh machine; its exit status, stdout and stderr."""
    shell = await asyncio.create_subprocess_shell(
        line, cwd=tmp_path, env=fresh_machine_env(tmp_path), stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(shell.communicate(), timeout=30)
    return shell.returncode, out, err


@pytest.mark.slow
async def test_printed_send_commands_work_and_nothing_reaches_aws(
    tmp_path: Path, worker: RecordingWorker, local_process: list[LocalProcess]
) -> None:
    """An EB-style config (CloudWatch, Health metric, dedup) and the shell's AWS key and profile:
    the printed `asqsd send` lines, pasted verbatim into a shell with no AWS configuration, deliver
    their messages; no CloudWatch or DynamoDB call is attempted; every SQS request is signed
    with the local key, never the shell's; the config warning is shown; Ctrl+C stops at once."""
    config = tmp_path / "default.yaml"
    config.write_text(EB_CONFIG)
    async with ForwardProxy(refuse=403) as aws, ForwardProxy() as recorder:
        env = clean_env(
            tmp_path,
            AWS_ACCESS_KEY_ID=SHELL_KEY,
            AWS_PROFILE="production",  # not in the (absent) config file: reading it would fail
            AWS_ENDPOINT_URL=aws.url,
            HTTPS_PROXY=aws.url,
            HTTP_PROXY=recorder.url,
            NO_PROXY="",
        )
        args = ["--port", "0", "--config", str(config), "--http-url", "http://127.0.0.1"]
        local = LocalProcess([*args, "--http-port", str(worker.port)], env, tmp_path)
        local_process.append(local)
        sends = [line for line in await local.banner() if "asqsd send" in line]

        assert len(sends) == 3 and all("--queue-url http://127.0.0.1:" in line for line in sends)
        pasted = await asyncio.gather(*(paste(line, tmp_path) for line in sends))
        assert all(code == 0 and out.strip() for code, out, _err in pasted), pasted  # ids printed
        await wait_until(lambda: len(worker.deliveries) >= 22, timeout_s=20, what="22 deliveries")
        await wait_until(
            lambda: sum('"settled"' in line for line in local.events()) >= 22, timeout_s=10, what="settled"
        )

        started = time.monotonic()
        assert await local.stop() == 0, local.log.read_text()
        assert time.monotonic() - started < 5  # a short long poll: nothing to wait for
        assert sorted({d.body for d in worker.deliveries}) == [b'{"from": "stdin"}\n', b'{"hello": "world"}']
        assert (aws.connections, aws.refused) == (0, 0)  # no CloudWatch, no DynamoDB, no https
        assert recorder.forwarded > 0 and all(
            "Credential=local/" in header for header in recorder.authorizations
        ), recorder.authorizations
        events = "\n".join(local.events())
        assert SHELL_KEY not in events and '"event": "config-warning"' in events and "no_such_key" in events
        for disabled in ("cloudwatch-metrics-disabled", "health-metric-disabled", "dedup-disabled"):
            assert f'"event": "{disabled}"' in events
        assert '"event": "worker-not-answering"' not in events


def test_local_refuses_flags_it_cannot_honour(tmp_path: Path) -> None:
    """Flags asqsd local decides itself, or that need AWS, are refused by name before anything starts."""
    result = asqsd(
        "local", "--queue-url", "http://127.0.0.1:1/000000000000/q", "--endpoint-url", "http://127.0.0.1:1",
        "--region", "eu-west-1", "--dedup", "--dedup-table", "t", "--cloudwatch-metrics",
        env=clean_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    refused = [line.split(":")[2].strip() for line in result.stderr.splitlines()]
    assert refused == [
        "--queue-url",
        "--endpoint-url",
        "--region",
        "--dedup",
        "--dedup-table",
        "--cloudwatch-metrics",
    ]
    assert "name it with --queue NAME" in result.stderr and "DynamoDB" in result.stderr


@pytest.mark.slow
async def test_local_warns_when_no_worker_answers_and_loads_cron_yaml(
    tmp_path: Path, local_process: list[LocalProcess]
) -> None:
    """Nothing listens on the worker port: one warning naming the port and the flag to change it.
    The cron.yaml of the current directory is loaded and its tasks scheduled without DynamoDB."""
    (tmp_path / "cron.yaml").write_text(CRON_YAML)
    port = free_loopback_port()
    args = ["--port", "0", "--http-url", "http://127.0.0.1", "--http-port", str(port)]
    local = LocalProcess(args, clean_env(tmp_path), tmp_path)
    local_process.append(local)
    await local.banner()

    def logged(event: str) -> list[str]:
        return [line for line in local.events() if f'"event": "{event}"' in line]

    await wait_until(lambda: bool(logged("started")), timeout_s=10, what="started")
    (warning,) = logged("worker-not-answering")
    assert f'"port": {port}' in warning and "--http-port PORT" in warning
    (loaded,) = logged("cron-loaded")
    assert '"tasks": 1' in loaded and str(tmp_path / "cron.yaml") in loaded
    assert logged("scheduler-started") and '"registry' not in "".join(local.events())
    assert await local.stop() == 0


def test_local_refuses_an_invalid_cron_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "cron.yaml"
    bad.write_text(CRON_YAML.replace("*/5 * * * *", "every five minutes"))
    result = asqsd("local", "--port", "0", "--cron-file", str(bad), env=clean_env(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"asqsd: config error: {bad}"), result.stderr
